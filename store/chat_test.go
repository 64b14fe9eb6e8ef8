package store_test

import (
	"encoding/json"
	"fmt"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"mutuo/lending"
	"mutuo/store"
)

// ---------------------------------------------------------------- helpers

// chatTables are every table a chat use case writes.
var chatTables = []string{"chats", "chat_members", "messages", "notifications", "outbox"}

// chatSnapshot renders every row of the chat tables, to compare before and after.
func (e *lenv) chatSnapshot() string {
	e.t.Helper()
	var b strings.Builder
	for _, tbl := range chatTables {
		b.WriteString("== " + tbl + "\n")
		b.WriteString(e.str(`SELECT coalesce(string_agg(x::text, E'\n' ORDER BY x::text), '') FROM ` + tbl + ` x`))
		b.WriteString("\n")
	}
	return b.String()
}

// chatRefused runs op, wants code, and wants the chat tables unchanged.
func (e *lenv) chatRefused(code lending.Code, op func() error) error {
	e.t.Helper()
	before := e.chatSnapshot()
	err := op()
	if !lending.IsCode(err, code) {
		e.t.Fatalf("err = %v, want code %s", err, code)
	}
	if after := e.chatSnapshot(); after != before {
		e.t.Fatalf("refused operation (%v) changed the database:\nbefore:\n%s\nafter:\n%s", err, before, after)
	}
	return err
}

func (e *lenv) startChat(a, b lending.Viewer, loanID *int64) *lending.Chat {
	e.t.Helper()
	c, err := e.s.StartChat(e.ctx, a, b.UserID, loanID)
	if err != nil {
		e.t.Fatalf("start chat: %v", err)
	}
	return c
}

func (e *lenv) send(v lending.Viewer, chatID int64, body string, clientID *string) *lending.Message {
	e.t.Helper()
	m, err := e.s.SendMessage(e.ctx, v, chatID, body, clientID, time.Time{})
	if err != nil {
		e.t.Fatalf("send message: %v", err)
	}
	return m
}

// unread is the viewer's unreadCount of a chat.
func (e *lenv) unread(v lending.Viewer, chatID int64) int {
	e.t.Helper()
	m, err := e.s.UnreadCountsByChat(e.ctx, v, []int64{chatID})
	if err != nil {
		e.t.Fatal(err)
	}
	return m[chatID]
}

func (e *lenv) lastRead(v lending.Viewer, chatID int64) int64 {
	e.t.Helper()
	return int64(e.count(`SELECT last_read_message_id FROM chat_members WHERE chat_id = $1 AND user_id = $2`, chatID, v.UserID))
}

func strp(s string) *string { return &s }

// ---------------------------------------------------------------- startChat

func TestStartChatOnePerPairAndLoan(t *testing.T) {
	e := newLenv(t)
	a, b := e.user(lending.RoleInvestor), e.borrower()
	c := e.startChat(a, b, nil)
	if c.ID <= 0 || c.LoanID != nil || !reflect.DeepEqual(c.UserIDs, []int64{a.UserID, b.UserID}) || c.CreatedAt.IsZero() {
		t.Fatalf("chat = %+v", c)
	}
	if n := e.count(`SELECT count(*) FROM chat_members WHERE chat_id = $1 AND user_id IN ($2, $3) AND last_read_message_id = 0`, c.ID, a.UserID, b.UserID); n != 2 {
		t.Fatalf("members = %d, want 2", n)
	}
	// Either side, any number of times: the same chat, nothing written.
	before := e.chatSnapshot()
	for _, pair := range [][2]lending.Viewer{{a, b}, {b, a}, {a, b}} {
		if again := e.startChat(pair[0], pair[1], nil); !reflect.DeepEqual(again, c) {
			t.Fatalf("again = %+v, want %+v", again, c)
		}
	}
	if after := e.chatSnapshot(); after != before {
		t.Fatalf("returning the existing chat wrote:\n%s\n%s", before, after)
	}
	// About a loan: another chat, one per loan.
	l := e.request(b, 1_000_00, 6, t0)
	cl := e.startChat(b, a, &l.ID)
	if cl.ID == c.ID || cl.LoanID == nil || *cl.LoanID != l.ID {
		t.Fatalf("loan chat = %+v", cl)
	}
	if again := e.startChat(a, b, &l.ID); again.ID != cl.ID {
		t.Fatalf("loan chat again = %d, want %d", again.ID, cl.ID)
	}
	l2 := e.request(b, 2_000_00, 6, t0)
	if c2 := e.startChat(a, b, &l2.ID); c2.ID == cl.ID || c2.ID == c.ID {
		t.Fatalf("second loan's chat = %d", c2.ID)
	}
	// A third user has their own chat with a.
	x := e.user(lending.RoleInvestor)
	if cx := e.startChat(x, a, nil); cx.ID == c.ID || !reflect.DeepEqual(cx.UserIDs, []int64{a.UserID, x.UserID}) {
		t.Fatalf("third user's chat = %+v", cx)
	}
	if n := e.count(`SELECT count(*) FROM chats`); n != 4 {
		t.Fatalf("chats = %d, want 4", n)
	}
	if n := e.count(`SELECT count(*) FROM outbox`); n != 2 { // the two loans' events only
		t.Fatalf("outbox rows = %d, want 2", n)
	}
}

func TestStartChatRefusals(t *testing.T) {
	e := newLenv(t)
	a, b := e.user(lending.RoleInvestor), e.borrower()
	l := e.request(b, 1_000_00, 6, t0)
	noLoan := l.ID + 1000
	e.chatRefused(lending.CodeUnauthenticated, func() error { _, err := e.s.StartChat(e.ctx, lending.Viewer{}, b.UserID, nil); return err })
	e.chatRefused(lending.CodeBadUserInput, func() error { _, err := e.s.StartChat(e.ctx, a, a.UserID, nil); return err })
	e.chatRefused(lending.CodeBadUserInput, func() error { _, err := e.s.StartChat(e.ctx, a, a.UserID, &l.ID); return err })
	e.chatRefused(lending.CodeNotFound, func() error { _, err := e.s.StartChat(e.ctx, a, b.UserID+1000, nil); return err })
	e.chatRefused(lending.CodeNotFound, func() error { _, err := e.s.StartChat(e.ctx, a, b.UserID, &noLoan); return err })
}

func TestStartChatConcurrentCallsMakeOneChat(t *testing.T) {
	e := newLenv(t)
	a, b := e.user(lending.RoleInvestor), e.borrower()
	l := e.request(b, 1_000_00, 6, t0)
	for _, loanID := range []*int64{nil, &l.ID} {
		const n = 10
		ids := make([]int64, n)
		errs := make([]error, n)
		var wg sync.WaitGroup
		start := make(chan struct{})
		for i := 0; i < n; i++ {
			wg.Add(1)
			go func(i int) {
				defer wg.Done()
				me, other := a, b
				if i%2 == 1 {
					me, other = b, a
				}
				<-start
				c, err := e.s.StartChat(e.ctx, me, other.UserID, loanID)
				errs[i] = err
				if err == nil {
					ids[i] = c.ID
				}
			}(i)
		}
		close(start)
		wg.Wait()
		for i := range ids {
			if errs[i] != nil {
				t.Fatalf("call %d: %v", i, errs[i])
			}
			if ids[i] != ids[0] {
				t.Fatalf("calls returned chats %v, want one", ids)
			}
		}
		if m := e.count(`SELECT count(*) FROM chat_members WHERE chat_id = $1`, ids[0]); m != 2 {
			t.Fatalf("members = %d, want 2", m)
		}
	}
	if c := e.count(`SELECT count(*) FROM chats`); c != 2 {
		t.Fatalf("chats = %d, want 2 (one without a loan, one about it)", c)
	}
}

// ---------------------------------------------------------------- sendMessage

func TestSendMessageWritesEventsAndNotification(t *testing.T) {
	e := newLenv(t)
	a, b := e.user(lending.RoleInvestor), e.borrower()
	l := e.request(b, 1_000_00, 6, t0)
	c := e.startChat(a, b, &l.ID)
	outboxBefore := e.count(`SELECT coalesce(max(id), 0) FROM outbox`)

	long := strings.Repeat("palavra ", 30) // 240 characters
	at := time.Now().Add(time.Hour).Truncate(time.Microsecond)
	m, err := e.s.SendMessage(e.ctx, a, c.ID, "  \n"+long+"\t ", nil, at)
	if err != nil {
		t.Fatal(err)
	}
	if m.ID <= 0 || m.ChatID != c.ID || m.SenderID != a.UserID || m.Body != strings.TrimSpace(long) || m.ClientMessageID != nil || !m.CreatedAt.Equal(at) {
		t.Fatalf("message = %+v", m)
	}
	var last time.Time
	if err := e.db.Pool.QueryRow(e.ctx, `SELECT last_message_at FROM chats WHERE id = $1`, c.ID).Scan(&last); err != nil || !last.Equal(at) {
		t.Fatalf("last_message_at = %v (%v), want %v", last, err, at)
	}
	if got := e.lastRead(a, c.ID); got != m.ID {
		t.Fatalf("sender's read position = %d, want %d", got, m.ID)
	}
	if got := e.lastRead(b, c.ID); got != 0 {
		t.Fatalf("recipient's read position = %d, want 0", got)
	}
	if e.unread(a, c.ID) != 0 || e.unread(b, c.ID) != 1 {
		t.Fatalf("unread a=%d b=%d, want 0 and 1", e.unread(a, c.ID), e.unread(b, c.ID))
	}

	// One message.added event for both participants' streams, with exactly
	// this payload.
	var stream, payload string
	if err := e.db.Pool.QueryRow(e.ctx, `SELECT stream, payload::text FROM outbox WHERE id > $1 AND topic = 'message.added'`, outboxBefore).
		Scan(&stream, &payload); err != nil {
		t.Fatal(err)
	}
	low, high := min(a.UserID, b.UserID), max(a.UserID, b.UserID)
	if want := fmt.Sprintf("messages:%d messages:%d", low, high); stream != want {
		t.Fatalf("message event stream %q, want %q", stream, want)
	}
	var p map[string]any
	if err := json.Unmarshal([]byte(payload), &p); err != nil {
		t.Fatal(err)
	}
	if want := map[string]any{"messageId": float64(m.ID), "chatId": float64(c.ID)}; !reflect.DeepEqual(p, want) {
		t.Fatalf("payload %v, want %v", p, want)
	}

	// A NEW_MESSAGE notification for the other participant only, with its event.
	if n := e.notifications(a, lending.NotifNewMessage); n != 0 {
		t.Fatalf("sender got %d notifications", n)
	}
	var title, body string
	var loanID *int64
	var nid int64
	if err := e.db.Pool.QueryRow(e.ctx, `SELECT id, title, body, loan_id FROM notifications WHERE user_id = $1 AND kind = 'NEW_MESSAGE'`, b.UserID).
		Scan(&nid, &title, &body, &loanID); err != nil {
		t.Fatal(err)
	}
	senderName := e.str(`SELECT name FROM users WHERE id = $1`, a.UserID)
	if title != "Nova mensagem de "+senderName || loanID == nil || *loanID != l.ID {
		t.Fatalf("notification: title %q loan %v", title, loanID)
	}
	if r := []rune(body); len(r) != 100 || r[99] != '…' || !strings.HasPrefix(strings.TrimSpace(long), string(r[:99])) {
		t.Fatalf("preview = %q (%d characters)", body, len(r))
	}
	if n := e.count(`SELECT count(*) FROM outbox WHERE id > $1 AND stream = $2 AND topic = 'notification.added' AND payload = jsonb_build_object('notificationId', $3::bigint, 'userId', $4::bigint)`,
		outboxBefore, fmt.Sprintf("notifications:%d", b.UserID), nid, b.UserID); n != 1 {
		t.Fatalf("notification events = %d, want 1", n)
	}
	if n := e.count(`SELECT count(*) FROM outbox WHERE id > $1`, outboxBefore); n != 2 {
		t.Fatalf("outbox rows = %d, want 2", n)
	}

	// A short message is its own preview; last_message_at never moves back.
	m2, err := e.s.SendMessage(e.ctx, b, c.ID, "Oi,\n  tudo bem?", nil, at.Add(-time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	if s := e.str(`SELECT body FROM notifications WHERE user_id = $1 AND kind = 'NEW_MESSAGE'`, a.UserID); s != "Oi, tudo bem?" {
		t.Fatalf("preview = %q", s)
	}
	if err := e.db.Pool.QueryRow(e.ctx, `SELECT last_message_at FROM chats WHERE id = $1`, c.ID).Scan(&last); err != nil || !last.Equal(at) {
		t.Fatalf("last_message_at = %v, want %v", last, at)
	}
	if e.unread(a, c.ID) != 1 || e.unread(b, c.ID) != 0 || e.lastRead(b, c.ID) != m2.ID {
		t.Fatalf("after reply: unread a=%d b=%d", e.unread(a, c.ID), e.unread(b, c.ID))
	}
}

func TestSendMessageBodyAndClientIDLimits(t *testing.T) {
	e := newLenv(t)
	a, b := e.user(lending.RoleInvestor), e.borrower()
	c := e.startChat(a, b, nil)
	send := func(body string, cid *string) func() error {
		return func() error { _, err := e.s.SendMessage(e.ctx, a, c.ID, body, cid, time.Time{}); return err }
	}
	for name, body := range map[string]string{
		"empty":           "",
		"white space":     " \n\t\r\u00a0\u3000 ",
		"4001 characters": strings.Repeat("é", 4001),
		"4001 trimmed":    "  " + strings.Repeat("a", 4001) + "  ",
		"NUL":             "a\x00b",
		"invalid UTF-8":   "a\xffb",
	} {
		t.Run(name, func(t *testing.T) { e.chatRefused(lending.CodeBadUserInput, send(body, nil)) })
	}
	for name, cid := range map[string]string{"empty": "", "65 characters": strings.Repeat("x", 65)} {
		t.Run("clientMessageId "+name, func(t *testing.T) { e.chatRefused(lending.CodeBadUserInput, send("oi", strp(cid))) })
	}
	// The bounds themselves are fine: 4,000 characters (multi-byte ones,
	// counted as characters) once trimmed, one character, a 64-character id.
	max := strings.Repeat("é", 4000)
	if m := e.send(a, c.ID, "\n "+max+" \n", nil); m.Body != max {
		t.Fatalf("4000 characters: body has %d", len([]rune(m.Body)))
	}
	if m := e.send(a, c.ID, " x ", strp(strings.Repeat("y", 64))); m.Body != "x" || *m.ClientMessageID != strings.Repeat("y", 64) {
		t.Fatalf("message = %+v", m)
	}
	if m := e.send(a, c.ID, "ação", strp("ç")); m.Body != "ação" {
		t.Fatalf("message = %+v", m)
	}
}

func TestSendMessageOnlyParticipants(t *testing.T) {
	e := newLenv(t)
	a, b, x := e.user(lending.RoleInvestor), e.borrower(), e.user(lending.RoleInvestor)
	c := e.startChat(a, b, nil)
	e.send(a, c.ID, "oi", nil)
	errOther := e.chatRefused(lending.CodeNotFound, func() error { _, err := e.s.SendMessage(e.ctx, x, c.ID, "oi", nil, time.Time{}); return err })
	errNone := e.chatRefused(lending.CodeNotFound, func() error { _, err := e.s.SendMessage(e.ctx, x, c.ID+1000, "oi", nil, time.Time{}); return err })
	if errOther.Error() != errNone.Error() {
		t.Fatalf("another's chat (%v) and no chat (%v) differ", errOther, errNone)
	}
	e.chatRefused(lending.CodeUnauthenticated, func() error {
		_, err := e.s.SendMessage(e.ctx, lending.Viewer{}, c.ID, "oi", nil, time.Time{})
		return err
	})
	e.chatRefused(lending.CodeNotFound, func() error { _, err := e.s.MarkChatRead(e.ctx, x, c.ID); return err })
	e.chatRefused(lending.CodeNotFound, func() error { _, err := e.s.MarkChatRead(e.ctx, x, c.ID+1000); return err })
	if _, err := e.s.Node(e.ctx, x, lending.KindChat, c.ID); !lending.IsCode(err, lending.CodeNotFound) {
		t.Fatalf("node of another's chat: %v", err)
	}
	if m, err := e.s.ChatsByID(e.ctx, x, []int64{c.ID}); err != nil || len(m) != 0 {
		t.Fatalf("another's chat by id: %v %v", m, err)
	}
}

func TestSendMessageResendIsIdempotent(t *testing.T) {
	e := newLenv(t)
	a, b := e.user(lending.RoleInvestor), e.borrower()
	c := e.startChat(a, b, nil)
	other := e.startChat(a, e.user(lending.RoleInvestor), nil)
	m := e.send(a, c.ID, "Olá", strp("c-1"))
	if m.ClientMessageID == nil || *m.ClientMessageID != "c-1" {
		t.Fatalf("message = %+v", m)
	}
	e.unchangedChat(func() error {
		again, err := e.s.SendMessage(e.ctx, a, c.ID, "  Olá\n", strp("c-1"), time.Time{})
		if err == nil && !reflect.DeepEqual(again, m) {
			t.Fatalf("resend = %+v, want %+v", again, m)
		}
		return err
	})
	// The id is the sender's: another sender may use it too.
	mb := e.send(b, c.ID, "Olá", strp("c-1"))
	if mb.ID == m.ID {
		t.Fatal("another sender's message with the same clientMessageId was taken for a resend")
	}
	// The same id for something else is a conflict.
	e.chatRefused(lending.CodeConflict, func() error { _, err := e.s.SendMessage(e.ctx, a, c.ID, "Outra", strp("c-1"), time.Time{}); return err })
	e.chatRefused(lending.CodeConflict, func() error {
		_, err := e.s.SendMessage(e.ctx, a, other.ID, "Olá", strp("c-1"), time.Time{})
		return err
	})

	// Racing resends: one message, one notification, events once.
	const n = 10
	got := make([]*lending.Message, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			<-start
			got[i], errs[i] = e.s.SendMessage(e.ctx, a, c.ID, "race", strp("c-race"), time.Time{})
		}(i)
	}
	close(start)
	wg.Wait()
	for i := range got {
		if errs[i] != nil {
			t.Fatalf("resend %d: %v", i, errs[i])
		}
		if got[i].ID != got[0].ID {
			t.Fatalf("racing resends made messages %d and %d", got[0].ID, got[i].ID)
		}
	}
	if k := e.count(`SELECT count(*) FROM messages WHERE sender_id = $1 AND client_message_id = 'c-race'`, a.UserID); k != 1 {
		t.Fatalf("messages = %d, want 1", k)
	}
	if k := e.count(`SELECT count(*) FROM notifications WHERE user_id = $1 AND kind = 'NEW_MESSAGE'`, b.UserID); k != 2 { // "Olá" and "race"
		t.Fatalf("notifications = %d, want 2", k)
	}
	if k := e.count(`SELECT count(*) FROM outbox WHERE topic = 'message.added' AND (payload->>'messageId')::bigint = $1`, got[0].ID); k != 1 {
		t.Fatalf("events = %d, want 1", k)
	}
}

// unchangedChat runs op, which must succeed, and wants the chat tables unchanged.
func (e *lenv) unchangedChat(op func() error) {
	e.t.Helper()
	before := e.chatSnapshot()
	if err := op(); err != nil {
		e.t.Fatalf("replay: %v", err)
	}
	if after := e.chatSnapshot(); after != before {
		e.t.Fatalf("replay changed the database:\nbefore:\n%s\nafter:\n%s", before, after)
	}
}

// ---------------------------------------------------------------- markChatRead

func TestMarkChatReadPerParticipant(t *testing.T) {
	e := newLenv(t)
	a, b := e.user(lending.RoleInvestor), e.borrower()
	c := e.startChat(a, b, nil)
	// An empty chat: nothing to read, and reading it is fine.
	if got, err := e.s.MarkChatRead(e.ctx, a, c.ID); err != nil || got.ID != c.ID {
		t.Fatalf("mark empty chat read: %v %v", got, err)
	}
	var last *lending.Message
	for i := 0; i < 3; i++ {
		last = e.send(a, c.ID, fmt.Sprintf("m%d", i), nil)
	}
	if e.unread(a, c.ID) != 0 || e.unread(b, c.ID) != 3 {
		t.Fatalf("before: unread a=%d b=%d, want 0 and 3", e.unread(a, c.ID), e.unread(b, c.ID))
	}
	got, err := e.s.MarkChatRead(e.ctx, b, c.ID)
	if err != nil || !reflect.DeepEqual(got.UserIDs, c.UserIDs) || got.ID != c.ID {
		t.Fatalf("mark read: %+v %v", got, err)
	}
	if e.unread(b, c.ID) != 0 || e.lastRead(b, c.ID) != last.ID || e.unread(a, c.ID) != 0 {
		t.Fatalf("after: unread a=%d b=%d", e.unread(a, c.ID), e.unread(b, c.ID))
	}
	reply := e.send(b, c.ID, "ok", nil)
	if e.unread(a, c.ID) != 1 || e.unread(b, c.ID) != 0 {
		t.Fatalf("after reply: unread a=%d b=%d", e.unread(a, c.ID), e.unread(b, c.ID))
	}
	e.unchangedChat(func() error { _, err := e.s.MarkChatRead(e.ctx, b, c.ID); return err })
	if _, err := e.s.MarkChatRead(e.ctx, a, c.ID); err != nil || e.unread(a, c.ID) != 0 || e.lastRead(a, c.ID) != reply.ID {
		t.Fatalf("a reads: %v unread %d", err, e.unread(a, c.ID))
	}
	// Never backwards.
	if _, err := e.db.Pool.Exec(e.ctx, `UPDATE chat_members SET last_read_message_id = $3 WHERE chat_id = $1 AND user_id = $2`, c.ID, a.UserID, reply.ID+100); err != nil {
		t.Fatal(err)
	}
	if _, err := e.s.MarkChatRead(e.ctx, a, c.ID); err != nil || e.lastRead(a, c.ID) != reply.ID+100 {
		t.Fatalf("read position moved back to %d (%v)", e.lastRead(a, c.ID), err)
	}
	e.chatRefused(lending.CodeUnauthenticated, func() error { _, err := e.s.MarkChatRead(e.ctx, lending.Viewer{}, c.ID); return err })
}

// Many messages from both sides at once, with reads in between: every
// message once, with its events and notification, no deadlock, and each
// chat's messages committed in id order.
func TestChatConcurrentSendsAndReads(t *testing.T) {
	e := newLenv(t)
	a, b := e.user(lending.RoleInvestor), e.borrower()
	c := e.startChat(a, b, nil)
	const per = 15
	var wg sync.WaitGroup
	errs := make(chan error, 4*per)
	start := make(chan struct{})
	for _, v := range []lending.Viewer{a, b} {
		for i := 0; i < per; i++ {
			wg.Add(2)
			go func(v lending.Viewer, i int) {
				defer wg.Done()
				<-start
				if _, err := e.s.SendMessage(e.ctx, v, c.ID, fmt.Sprintf("msg %d from %d", i, v.UserID), strp(fmt.Sprintf("c%d", i)), time.Time{}); err != nil {
					errs <- err
				}
			}(v, i)
			go func(v lending.Viewer) {
				defer wg.Done()
				<-start
				if _, err := e.s.MarkChatRead(e.ctx, v, c.ID); err != nil {
					errs <- err
				}
			}(v)
		}
	}
	close(start)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if n := e.count(`SELECT count(*) FROM messages WHERE chat_id = $1`, c.ID); n != 2*per {
		t.Fatalf("messages = %d, want %d", n, 2*per)
	}
	if n := e.count(`SELECT count(*) FROM outbox WHERE topic = 'message.added'`); n != 2*per {
		t.Fatalf("message events = %d, want %d", n, 2*per)
	}
	for _, v := range []lending.Viewer{a, b} {
		if n := e.notifications(v, lending.NotifNewMessage); n != per {
			t.Fatalf("notifications of %d = %d, want %d", v.UserID, n, per)
		}
		own := int64(e.count(`SELECT max(id) FROM messages WHERE chat_id = $1 AND sender_id = $2`, c.ID, v.UserID))
		if lr := e.lastRead(v, c.ID); lr < own {
			t.Fatalf("read position of %d = %d, behind their own message %d", v.UserID, lr, own)
		}
	}
	// The chat lock serialises sends, so ids follow commit order, and the
	// outbox (whose ids also follow it here) lists each chat's messages in
	// id order.
	if n := e.count(`SELECT count(*) FROM (SELECT (payload->>'messageId')::bigint AS m,
		lag((payload->>'messageId')::bigint) OVER (PARTITION BY stream ORDER BY id) AS prev
		FROM outbox WHERE topic = 'message.added') x WHERE m <= prev`); n != 0 {
		t.Fatalf("%d message events out of id order", n)
	}
	if _, err := e.s.MarkChatRead(e.ctx, a, c.ID); err != nil || e.unread(a, c.ID) != 0 {
		t.Fatalf("final read: %v", err)
	}
}

// ---------------------------------------------------------------- markNotificationsRead

func TestMarkNotificationsRead(t *testing.T) {
	e := newLenv(t)
	a, b := e.user(lending.RoleInvestor), e.borrower()
	c := e.startChat(a, b, nil)
	for i := 0; i < 4; i++ {
		e.send(b, c.ID, fmt.Sprintf("para a %d", i), nil)
	}
	e.send(a, c.ID, "para b", nil)
	var mine []int64
	rows, err := e.db.Pool.Query(e.ctx, `SELECT id FROM notifications WHERE user_id = $1 ORDER BY id`, a.UserID)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var id int64
		_ = rows.Scan(&id)
		mine = append(mine, id)
	}
	rows.Close()
	theirs := int64(e.count(`SELECT id FROM notifications WHERE user_id = $1`, b.UserID))
	if len(mine) != 4 {
		t.Fatalf("a has %d notifications, want 4", len(mine))
	}
	unread := func(v lending.Viewer) int {
		n, err := e.s.CountNotifications(e.ctx, v, true)
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	mark := func(v lending.Viewer, ids []int64) int {
		t.Helper()
		n, err := e.s.MarkNotificationsRead(e.ctx, v, ids)
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	// Own and another's (and a missing one, and one twice): only own change.
	if n := mark(a, []int64{mine[0], mine[1], mine[1], theirs, theirs + 1000}); n != 2 {
		t.Fatalf("marked %d, want 2", n)
	}
	if unread(a) != 2 || unread(b) != 1 {
		t.Fatalf("unread a=%d b=%d, want 2 and 1", unread(a), unread(b))
	}
	if n := mark(a, []int64{mine[0]}); n != 0 {
		t.Fatalf("already read: marked %d", n)
	}
	if n := mark(a, []int64{}); n != 0 {
		t.Fatalf("empty list: marked %d", n)
	}
	if n := mark(a, nil); n != 2 {
		t.Fatalf("all: marked %d, want 2", n)
	}
	if n := mark(a, nil); n != 0 {
		t.Fatalf("all again: marked %d, want 0", n)
	}
	if unread(a) != 0 || unread(b) != 1 {
		t.Fatalf("unread a=%d b=%d, want 0 and 1", unread(a), unread(b))
	}
	tooMany := make([]int64, store.MaxNotificationIDs+1)
	for i := range tooMany {
		tooMany[i] = int64(i + 1)
	}
	e.chatRefused(lending.CodeBadUserInput, func() error { _, err := e.s.MarkNotificationsRead(e.ctx, b, tooMany); return err })
	e.chatRefused(lending.CodeUnauthenticated, func() error { _, err := e.s.MarkNotificationsRead(e.ctx, lending.Viewer{}, nil); return err })
	if n := mark(b, tooMany[:store.MaxNotificationIDs]); n != 1 { // theirs is among 1..1000
		t.Fatalf("b marked %d, want 1", n)
	}
}
