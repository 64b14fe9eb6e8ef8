package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"reflect"
	"strings"
	"sync"
	"testing"

	"mutuo/lending"
)

// post is e.do for other goroutines: it reports failures instead of ending
// the test.
func (e *env) post(token, query string, vars map[string]any) (*gqlResponse, error) {
	body, _ := json.Marshal(map[string]any{"query": query, "variables": vars})
	req, _ := http.NewRequest(http.MethodPost, e.URL+"/graphql", bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	r := &gqlResponse{Status: resp.StatusCode, Body: string(b)}
	if err := json.Unmarshal(b, r); err != nil {
		return nil, fmt.Errorf("response is not JSON (%d): %s", resp.StatusCode, b)
	}
	if len(r.RawData) > 0 && string(r.RawData) != "null" {
		_ = json.Unmarshal(r.RawData, &r.Data)
	}
	return r, nil
}

// wantCode fails unless the response's first error has code.
func (e *env) wantCode(r *gqlResponse, code, what string) {
	e.t.Helper()
	if r.code(0) != code {
		e.t.Fatalf("%s: want %s, got %s", what, code, r.Body)
	}
}

const (
	startChatQ = `mutation($u: ID!, $l: ID) { startChat(userId: $u, loanId: $l) {
		id participants { id name } loan { id } unreadCount lastMessage { id } messages { edges { node { id } } } } }`
	sendQ = `mutation($c: ID!, $b: String!, $k: String) { sendMessage(chatId: $c, body: $b, clientMessageId: $k) {
		id body clientMessageId createdAt sender { id } chat { id unreadCount lastMessage { id } } } }`
	markReadQ  = `mutation($c: ID!) { markChatRead(chatId: $c) { id unreadCount lastMessage { id } } }`
	markNotesQ = `mutation($ids: [ID!]) { markNotificationsRead(ids: $ids) }`
	unreadQ    = `query($c: ID!) { node(id: $c) { ... on Chat { unreadCount } } }`
)

func TestChatThroughTheAPI(t *testing.T) {
	e := newEnv(t)
	w := apiWorld(t, e)
	ana, carla, bruno := w.tokens["inv1"], w.tokens["bor1"], w.tokens["inv2"]
	uid := func(k string) string { return gid(lending.KindUser, w.users[k]) }

	// startChat: one chat per pair, whoever starts it.
	d := e.ok(ana, startChatQ, map[string]any{"u": uid("bor1")})
	chatID := str(d, "startChat.id")
	parts := []string{str(d, "startChat.participants.0.id"), str(d, "startChat.participants.1.id")}
	if !reflect.DeepEqual(parts, []string{uid("inv1"), uid("bor1")}) || get(d, "startChat.loan") != nil ||
		num(d, "startChat.unreadCount") != 0 || get(d, "startChat.lastMessage") != nil || len(list(d, "startChat.messages.edges")) != 0 {
		t.Fatalf("startChat: %v", d)
	}
	if d := e.ok(carla, startChatQ, map[string]any{"u": uid("inv1")}); str(d, "startChat.id") != chatID {
		t.Fatalf("the other side's startChat made another chat: %v", d)
	}
	// About a loan: another chat.
	d = e.ok(carla, `mutation { requestLoan(input: {amount: "1000.00", termMonths: 3, purpose: "Capital de giro"}, idempotencyKey: "loan-1") { id } }`, nil)
	loanID := str(d, "requestLoan.id")
	d = e.ok(ana, startChatQ, map[string]any{"u": uid("bor1"), "l": loanID})
	loanChat := str(d, "startChat.id")
	if loanChat == chatID || str(d, "startChat.loan.id") != loanID {
		t.Fatalf("loan chat: %v", d)
	}
	if d := e.ok(carla, startChatQ, map[string]any{"u": uid("inv1"), "l": loanID}); str(d, "startChat.id") != loanChat {
		t.Fatalf("loan chat again: %v", d)
	}
	// Refusals.
	e.wantCode(e.do(ana, startChatQ, map[string]any{"u": uid("inv1")}), "BAD_USER_INPUT", "chat with oneself")
	e.wantCode(e.do(ana, startChatQ, map[string]any{"u": "not-an-id"}), "BAD_USER_INPUT", "malformed user id")
	e.wantCode(e.do(ana, startChatQ, map[string]any{"u": loanID}), "NOT_FOUND", "a loan's id as the user")
	e.wantCode(e.do(ana, startChatQ, map[string]any{"u": gid(lending.KindUser, 999_999)}), "NOT_FOUND", "unknown user")
	e.wantCode(e.do(ana, startChatQ, map[string]any{"u": uid("bor1"), "l": gid(lending.KindLoan, 999_999)}), "NOT_FOUND", "unknown loan")
	e.wantCode(e.do(ana, startChatQ, map[string]any{"u": uid("bor1"), "l": chatID}), "NOT_FOUND", "a chat's id as the loan")
	e.wantCode(e.do("", startChatQ, map[string]any{"u": uid("bor1")}), "UNAUTHENTICATED", "anonymous startChat")

	// Ten racing startChats from both sides: one chat.
	var wg sync.WaitGroup
	ids := make([]string, 10)
	errs := make([]error, 10)
	for i := range ids {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			tok, other := bruno, uid("bor2")
			if i%2 == 1 {
				tok, other = w.tokens["bor2"], uid("inv2")
			}
			r, err := e.post(tok, `mutation($u: ID!) { startChat(userId: $u) { id } }`, map[string]any{"u": other})
			if err == nil && len(r.Errors) > 0 {
				err = fmt.Errorf("%s", r.Body)
			}
			errs[i] = err
			if err == nil {
				ids[i] = str(r.Data, "startChat.id")
			}
		}(i)
	}
	wg.Wait()
	for i := range ids {
		if errs[i] != nil || ids[i] != ids[0] || ids[i] == "" {
			t.Fatalf("racing startChat: ids %v, errors %v", ids, errs)
		}
	}
	var chats int
	if err := e.DB.Pool.QueryRow(context.Background(), `SELECT count(*) FROM chats`).Scan(&chats); err != nil || chats != 3 {
		t.Fatalf("chats = %d (%v), want 3", chats, err)
	}

	// sendMessage: trimmed body, clientMessageId echoed, the sender has read it.
	d = e.ok(ana, sendQ, map[string]any{"c": chatID, "b": "  Olá, Carla! Qual o prazo?\n", "k": "c-1"})
	msg1 := str(d, "sendMessage.id")
	if str(d, "sendMessage.body") != "Olá, Carla! Qual o prazo?" || str(d, "sendMessage.clientMessageId") != "c-1" ||
		str(d, "sendMessage.sender.id") != uid("inv1") || str(d, "sendMessage.chat.id") != chatID ||
		num(d, "sendMessage.chat.unreadCount") != 0 || str(d, "sendMessage.chat.lastMessage.id") != msg1 || str(d, "sendMessage.createdAt") == "" {
		t.Fatalf("sendMessage: %v", d)
	}
	// A resend is the same message, and adds nothing.
	if d := e.ok(ana, sendQ, map[string]any{"c": chatID, "b": "Olá, Carla! Qual o prazo?", "k": "c-1"}); str(d, "sendMessage.id") != msg1 {
		t.Fatalf("resend made another message: %v", d)
	}
	d = e.ok(carla, `query($c: ID!) { node(id: $c) { ... on Chat { unreadCount lastMessage { id body } messages { edges { node { id } } } } } }`, map[string]any{"c": chatID})
	if num(d, "node.unreadCount") != 1 || str(d, "node.lastMessage.id") != msg1 || len(list(d, "node.messages.edges")) != 1 {
		t.Fatalf("recipient's view after the resend: %v", d)
	}
	// The same clientMessageId for something else is a conflict.
	e.wantCode(e.do(ana, sendQ, map[string]any{"c": chatID, "b": "Outra coisa", "k": "c-1"}), "CONFLICT", "clientMessageId reused")

	// Body limits, counted in characters after trimming.
	for name, body := range map[string]string{"empty": "", "white space": " \n\t ", "4001 characters": strings.Repeat("ã", 4001)} {
		e.wantCode(e.do(ana, sendQ, map[string]any{"c": chatID, "b": body}), "BAD_USER_INPUT", "body "+name)
	}
	e.wantCode(e.do(ana, sendQ, map[string]any{"c": chatID, "b": "oi", "k": ""}), "BAD_USER_INPUT", "empty clientMessageId")
	e.wantCode(e.do(ana, sendQ, map[string]any{"c": chatID, "b": "oi", "k": strings.Repeat("k", 65)}), "BAD_USER_INPUT", "long clientMessageId")
	d = e.ok(ana, sendQ, map[string]any{"c": chatID, "b": " " + strings.Repeat("ã", 4000) + " "})
	if len([]rune(str(d, "sendMessage.body"))) != 4000 {
		t.Fatalf("4000 characters: %d", len([]rune(str(d, "sendMessage.body"))))
	}
	msg2 := str(d, "sendMessage.id")

	// Only participants: another user's chat is NOT_FOUND everywhere, like a missing one.
	e.wantCode(e.do(bruno, sendQ, map[string]any{"c": chatID, "b": "intruso"}), "NOT_FOUND", "non-participant sends")
	e.wantCode(e.do(bruno, markReadQ, map[string]any{"c": chatID}), "NOT_FOUND", "non-participant marks read")
	e.wantCode(e.do(bruno, unreadQ, map[string]any{"c": chatID}), "NOT_FOUND", "non-participant's node")
	e.wantCode(e.do(bruno, sendQ, map[string]any{"c": gid(lending.KindChat, 999_999), "b": "x"}), "NOT_FOUND", "missing chat")
	e.wantCode(e.do(ana, sendQ, map[string]any{"c": loanID, "b": "x"}), "NOT_FOUND", "a loan's id as the chat")
	e.wantCode(e.do(ana, sendQ, map[string]any{"c": "###", "b": "x"}), "BAD_USER_INPUT", "malformed chat id")
	e.wantCode(e.do("", sendQ, map[string]any{"c": chatID, "b": "x"}), "UNAUTHENTICATED", "anonymous sendMessage")
	var intruders int
	if err := e.DB.Pool.QueryRow(context.Background(), `SELECT count(*) FROM messages WHERE sender_id = $1`, w.users["inv2"]).Scan(&intruders); err != nil || intruders != 0 {
		t.Fatalf("non-participant's messages = %d (%v)", intruders, err)
	}

	// One message.added outbox row for both participants' streams, with
	// exactly this payload.
	_, m1, _ := lending.ParseGlobalID(msg1)
	_, c1, _ := lending.ParseGlobalID(chatID)
	rows, err := e.DB.Pool.Query(context.Background(), `SELECT stream, payload::text FROM outbox WHERE topic = 'message.added' AND payload->>'messageId' = $1 ORDER BY stream`, fmt.Sprint(m1))
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]map[string]any{}
	for rows.Next() {
		var stream, payload string
		if err := rows.Scan(&stream, &payload); err != nil {
			t.Fatal(err)
		}
		var p map[string]any
		_ = json.Unmarshal([]byte(payload), &p)
		got[stream] = p
	}
	rows.Close()
	lo, hi := min(w.users["inv1"], w.users["bor1"]), max(w.users["inv1"], w.users["bor1"])
	want := map[string]map[string]any{
		fmt.Sprintf("messages:%d messages:%d", lo, hi): {"messageId": float64(m1), "chatId": float64(c1)},
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("message events = %v, want %v", got, want)
	}

	// NEW_MESSAGE notifications for Carla (one per message), none for Ana.
	d = e.ok(carla, `{ notifications(first: 10) { totalCount edges { node { id kind title body loan { id } readAt } } } }`, nil)
	notes := list(d, "notifications.edges")
	if len(notes) != 2 || num(d, "notifications.totalCount") != 2 {
		t.Fatalf("Carla's notifications: %v", d)
	}
	oldest := notes[1] // newest first
	if str(oldest, "node.kind") != "NEW_MESSAGE" || str(oldest, "node.title") != "Nova mensagem de Ana Investidora" ||
		str(oldest, "node.body") != "Olá, Carla! Qual o prazo?" || get(oldest, "node.readAt") != nil || get(oldest, "node.loan") != nil {
		t.Fatalf("notification: %v", oldest)
	}
	if b := []rune(str(notes[0], "node.body")); len(b) > 100 {
		t.Fatalf("preview of the long message has %d characters", len(b))
	}
	if d := e.ok(ana, `{ notifications { totalCount } }`, nil); num(d, "notifications.totalCount") != 0 {
		t.Fatalf("the sender was notified: %v", d)
	}

	// unreadCount per participant, before and after markChatRead.
	unread := func(tok string) int {
		t.Helper()
		return num(e.ok(tok, unreadQ, map[string]any{"c": chatID}), "node.unreadCount")
	}
	if unread(carla) != 2 || unread(ana) != 0 {
		t.Fatalf("before: Carla %d, Ana %d; want 2 and 0", unread(carla), unread(ana))
	}
	// In one document: the first field loads unreadCount (2), the second
	// marks the chat read and must not answer from that cache.
	d = e.ok(carla, `mutation($u: ID!, $c: ID!) { a: startChat(userId: $u) { unreadCount } b: markChatRead(chatId: $c) { id unreadCount lastMessage { id } } }`,
		map[string]any{"u": uid("inv1"), "c": chatID})
	if num(d, "a.unreadCount") != 2 || num(d, "b.unreadCount") != 0 || str(d, "b.id") != chatID || str(d, "b.lastMessage.id") != msg2 {
		t.Fatalf("markChatRead: %v", d)
	}
	if unread(carla) != 0 || unread(ana) != 0 {
		t.Fatalf("after: Carla %d, Ana %d", unread(carla), unread(ana))
	}
	d = e.ok(carla, sendQ, map[string]any{"c": loanChat, "b": "Sobre o empréstimo: 12 meses."})
	reply := e.ok(carla, sendQ, map[string]any{"c": chatID, "b": "12 meses."})
	if unread(ana) != 1 || unread(carla) != 0 {
		t.Fatalf("after the reply: Ana %d, Carla %d", unread(ana), unread(carla))
	}
	d = e.ok(ana, `{ chats { edges { node { id unreadCount lastMessage { id } } } } }`, nil)
	if str(d, "chats.edges.0.node.id") != chatID || num(d, "chats.edges.0.node.unreadCount") != 1 ||
		str(d, "chats.edges.0.node.lastMessage.id") != str(reply, "sendMessage.id") || num(d, "chats.edges.1.node.unreadCount") != 1 {
		t.Fatalf("Ana's chats: %v", d)
	}
	d = e.ok(ana, markReadQ, map[string]any{"c": chatID})
	if num(d, "markChatRead.unreadCount") != 0 || unread(ana) != 0 || unread(carla) != 0 {
		t.Fatalf("Ana reads: %v", d)
	}
	d = e.ok(ana, `{ notifications { edges { node { id loan { id } } } } }`, nil)
	anaNotes := list(d, "notifications.edges")
	if len(anaNotes) != 2 || str(anaNotes[1], "node.loan.id") != loanID {
		t.Fatalf("Ana's notifications: %v", d)
	}

	// markNotificationsRead: own ids change, another's are ignored.
	carlaNote := str(notes[0], "node.id")
	d = e.ok(ana, markNotesQ, map[string]any{"ids": []string{str(anaNotes[0], "node.id"), carlaNote}})
	if num(d, "markNotificationsRead") != 1 {
		t.Fatalf("own + another's: %v", d)
	}
	if d := e.ok(carla, `{ notifications(unreadOnly: true) { totalCount } }`, nil); num(d, "notifications.totalCount") != 2 {
		t.Fatalf("Carla's notification was marked by Ana: %v", d)
	}
	if d := e.ok(ana, markNotesQ, map[string]any{"ids": []string{}}); num(d, "markNotificationsRead") != 0 {
		t.Fatalf("empty list: %v", d)
	}
	if d := e.ok(ana, markNotesQ, map[string]any{"ids": nil}); num(d, "markNotificationsRead") != 1 {
		t.Fatalf("all: %v", d)
	}
	if d := e.ok(ana, `mutation { markNotificationsRead }`, nil); num(d, "markNotificationsRead") != 0 {
		t.Fatalf("all again: %v", d)
	}
	d = e.ok(ana, `{ notifications(unreadOnly: true) { totalCount } all: notifications { edges { node { readAt } } } }`, nil)
	if num(d, "notifications.totalCount") != 0 || get(d, "all.edges.0.node.readAt") == nil {
		t.Fatalf("Ana's notifications after reading: %v", d)
	}
	if d := e.ok(carla, markNotesQ, nil); num(d, "markNotificationsRead") != 2 {
		t.Fatalf("Carla's all: %v", d)
	}
	e.wantCode(e.do(ana, markNotesQ, map[string]any{"ids": []string{chatID}}), "NOT_FOUND", "a chat's id as a notification")
	e.wantCode(e.do(ana, markNotesQ, map[string]any{"ids": []string{"nope"}}), "BAD_USER_INPUT", "malformed notification id")
	many := make([]string, 1001)
	for i := range many {
		many[i] = gid(lending.KindNotification, int64(i+1))
	}
	e.wantCode(e.do(ana, markNotesQ, map[string]any{"ids": many}), "BAD_USER_INPUT", "1001 ids")
	e.wantCode(e.do("", markNotesQ, nil), "UNAUTHENTICATED", "anonymous markNotificationsRead")
}
