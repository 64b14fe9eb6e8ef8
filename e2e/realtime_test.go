package e2e

// Realtime end to end: every subscription through the real app over real
// websockets (graphql-transport-ws), resuming with `after`, and two
// instances on one Postgres and one Redis.

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"sync"
	"testing"
	"time"

	"mutuo/app"
	"mutuo/lending"
	"mutuo/pix"
	"mutuo/store"
)

const (
	walletSubQ = `subscription { walletUpdated { id balance available held version owner { id } } }`
	loanSubQ   = `subscription($l: ID!) { loanUpdated(loanId: $l) { id status fundedAmount amount investorCount } }`
	notifSubQ  = `subscription($a: String) { notificationAdded(after: $a) { id kind title body } }`
	msgSubQ    = `subscription($c: ID, $a: String) { messageAdded(chatId: $c, after: $a) { id body chat { id } sender { id } } }`

	depositQ = `mutation($a: Money!, $k: String!) { createDeposit(amount: $a, idempotencyKey: $k) { txid } }`
	investQ  = `mutation($l: ID!, $a: Money!, $k: String!) { invest(loanId: $l, amount: $a, idempotencyKey: $k) { id status } }`
)

// wsWait is how long a test waits for an event to travel the pipeline
// (outbox → relay → Redis → broker → hub → resolver → socket).
const wsWait = 10 * time.Second

// ---------------------------------------------------------------- helpers

// numID is a global id's numeric part.
func numID(t testing.TB, gid string) int64 {
	t.Helper()
	_, id, err := lending.ParseGlobalID(gid)
	if err != nil {
		t.Fatalf("global id %q: %v", gid, err)
	}
	return id
}

// tryDeposit is e.deposit for any goroutine: a charge, then the PSP's signed
// webhook, to this env's server.
func (e *env) tryDeposit(tok, amount, key string) error {
	r, err := e.post(tok, depositQ, map[string]any{"a": amount, "k": key})
	if err != nil {
		return err
	}
	if len(r.Errors) > 0 {
		return fmt.Errorf("createDeposit: %s", r.Body)
	}
	txid := str(r.Data, "createDeposit.txid")
	body := fmt.Sprintf(`{"pix":[{"endToEndId":"E%031s","txid":%q,"valor":%q,"horario":%q}]}`,
		txid[:31], txid, amount, time.Now().UTC().Format(time.RFC3339))
	req, _ := http.NewRequest(http.MethodPost, e.URL+"/webhooks/pix", bytes.NewReader([]byte(body)))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-Mutuo-Signature", pix.Sign(e.App.Config.PixWebhookSecret, []byte(body)))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var out map[string]any
	_ = json.Unmarshal(b, &out)
	if resp.StatusCode != 200 || str(out, "results.0.outcome") != "CREDITED" {
		return fmt.Errorf("webhook: %d %s", resp.StatusCode, b)
	}
	return nil
}

// startChat returns the chat between tok's user and other (about loan, if
// not "").
func (e *env) startChat(tok, other, loan string) string {
	e.t.Helper()
	vars := map[string]any{"u": other}
	if loan != "" {
		vars["l"] = loan
	}
	return str(e.ok(tok, `mutation($u: ID!, $l: ID) { startChat(userId: $u, loanId: $l) { id } }`, vars), "startChat.id")
}

// send sends a message and returns its id.
func (e *env) sendMsg(tok, chat, body string) string {
	e.t.Helper()
	return str(e.ok(tok, sendQ, map[string]any{"c": chat, "b": body}), "sendMessage.id")
}

// trySend is send for any goroutine.
func (e *env) trySend(tok, chat, body string) (string, error) {
	r, err := e.post(tok, sendQ, map[string]any{"c": chat, "b": body})
	if err != nil {
		return "", err
	}
	if len(r.Errors) > 0 {
		return "", fmt.Errorf("sendMessage: %s", r.Body)
	}
	return str(r.Data, "sendMessage.id"), nil
}

// notificationIDs lists the viewer's notification ids, oldest first, with
// each one's edge cursor.
func (e *env) notificationIDs(tok string) ([]string, map[string]string) {
	e.t.Helper()
	d := e.ok(tok, `{ notifications(first: 100) { edges { cursor node { id } } } }`, nil)
	var ids []string
	cursors := map[string]string{}
	for _, ed := range list(d, "notifications.edges") {
		id := str(ed, "node.id")
		ids = append(ids, id)
		cursors[id] = str(ed, "cursor")
	}
	slices.Reverse(ids) // newest first → oldest first
	return ids, cursors
}

// messageIDs lists a chat's message ids, oldest first, with each one's edge
// cursor.
func (e *env) messageIDs(tok, chat string) ([]string, map[string]string) {
	e.t.Helper()
	d := e.ok(tok, `query($c: ID!) { node(id: $c) { ... on Chat { messages(last: 100) { edges { cursor node { id } } } } } }`,
		map[string]any{"c": chat})
	var ids []string
	cursors := map[string]string{}
	for _, ed := range list(d, "node.messages.edges") {
		id := str(ed, "node.id")
		ids = append(ids, id)
		cursors[id] = str(ed, "cursor")
	}
	return ids, cursors
}

// after returns the ids in all (oldest first) that come after id.
func after(t testing.TB, all []string, id string) []string {
	t.Helper()
	i := slices.Index(all, id)
	if i < 0 {
		t.Fatalf("%s is not among %v", id, all)
	}
	return slices.Clone(all[i+1:])
}

// waitHubSubs waits until a's hub holds n subscriptions: a subscription
// without an initial message (notificationAdded, messageAdded) is live once
// it follows its stream.
func waitHubSubs(t testing.TB, a *app.App, n int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for a.Hub.Subscribers() != n {
		if time.Now().After(deadline) {
			t.Fatalf("hub subscriptions = %d, want %d", a.Hub.Subscribers(), n)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// collect reads n "next" messages of operation id and returns their data
// under field.
func (c *wsClient) collect(id, field string, n int) []map[string]any {
	c.t.Helper()
	var out []map[string]any
	for len(out) < n {
		d := c.expectNext(id, wsWait)
		m, _ := d[field].(map[string]any)
		out = append(out, m)
	}
	return out
}

func ids(items []map[string]any) []string {
	out := make([]string, len(items))
	for i, m := range items {
		out[i] = str(m, "id")
	}
	return out
}

func wantCodes(t testing.TB, errs []gqlError, code string, what string) {
	t.Helper()
	if len(errs) == 0 {
		t.Fatalf("%s: no errors", what)
	}
	for _, e := range errs {
		if c, _ := e.Extensions["code"].(string); c != code {
			t.Fatalf("%s: want %s, got %+v", what, code, errs)
		}
	}
}

// ---------------------------------------------------------------- instances

// instance is a second (third, …) Mutuo instance on an env's database and
// Redis prefix, with its own HTTP server. kill drops it the way a crashed
// process goes: every connection cut at once, no close frames.
type instance struct {
	*env
	srv    *httptest.Server
	ln     *connTracker
	stopRT context.CancelFunc
	once   sync.Once
}

// connTracker remembers the connections it accepts (httptest forgets
// hijacked ones) so that kill can cut them.
type connTracker struct {
	net.Listener
	mu    sync.Mutex
	conns []net.Conn
}

func (l *connTracker) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err == nil {
		l.mu.Lock()
		l.conns = append(l.conns, c)
		l.mu.Unlock()
	}
	return c, err
}

func (l *connTracker) dropAll() {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, c := range l.conns {
		_ = c.Close()
	}
	l.conns = nil
}

// startInstance runs another app.New with e's configuration (same
// DATABASE_URL, REDIS_PREFIX, JWT secret, webhook secret) and its realtime
// pipeline.
func startInstance(t *testing.T, e *env) *instance {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	a, err := app.New(ctx, e.App.Config, app.Options{})
	if err != nil {
		t.Fatal(err)
	}
	rtCtx, stopRT := context.WithCancel(context.Background())
	a.RunRealtime(rtCtx)
	srv := httptest.NewUnstartedServer(a.Handler())
	ln := &connTracker{Listener: srv.Listener}
	srv.Listener = ln
	srv.Start()
	in := &instance{env: &env{t: t, App: a, URL: srv.URL, Stmts: &stmtCounter{}, DB: e.DB}, srv: srv, ln: ln, stopRT: stopRT}
	t.Cleanup(in.kill)
	return in
}

// kill stops the instance abruptly: no new connections, every open one cut
// (websockets get no close frame), then its pipeline and pools go.
func (in *instance) kill() {
	in.once.Do(func() {
		_ = in.ln.Listener.Close()
		in.ln.dropAll()
		in.stopRT()
		in.srv.Close()
		in.App.Close()
	})
}

// ---------------------------------------------------------------- subscriptions

func TestRealtimeWalletUpdated(t *testing.T) {
	e := newEnv(t)
	w := apiWorld(t, e)
	ana, bruno := w.tokens["inv1"], w.tokens["inv2"]
	d := e.ok(ana, `{ me { id wallet { id version } } }`, nil)
	anaWallet, anaUser, v0 := str(d, "me.wallet.id"), str(d, "me.id"), num(d, "me.wallet.version")
	brunoWallet := str(e.ok(bruno, `{ me { wallet { id } } }`, nil), "me.wallet.id")

	a := wsConnect(t, e.URL, ana)
	a.subscribe("w", walletSubQ, nil)
	first := a.expectNext("w", wsWait)["walletUpdated"].(map[string]any)
	if str(first, "id") != anaWallet || str(first, "owner.id") != anaUser || str(first, "balance") != "0.00" || num(first, "version") != v0 {
		t.Fatalf("current state first: %v (wallet %s v%d)", first, anaWallet, v0)
	}
	b := wsConnect(t, e.URL, bruno)
	b.subscribe("w", walletSubQ, nil)
	if got := b.expectNext("w", wsWait)["walletUpdated"].(map[string]any); str(got, "id") != brunoWallet {
		t.Fatalf("bruno's first: %v", got)
	}

	// Bruno's deposit reaches Bruno and nothing reaches Ana.
	e.deposit(bruno, "50.00", "b-1")
	if got := b.expectNext("w", wsWait)["walletUpdated"].(map[string]any); str(got, "id") != brunoWallet || str(got, "balance") != "50.00" {
		t.Fatalf("bruno's update: %v", got)
	}

	// One deposit: an update with a higher version.
	e.deposit(ana, "10.00", "a-0")
	got := a.expectNext("w", wsWait)["walletUpdated"].(map[string]any)
	if str(got, "id") != anaWallet || str(got, "balance") != "10.00" || num(got, "version") <= v0 {
		t.Fatalf("after a deposit: %v", got)
	}
	last := num(got, "version")

	// Eight concurrent deposits (through the webhook, racing each other
	// and the subscriber's reads): versions only go up, and the last
	// update is the final balance. Nothing of Bruno's ever shows.
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for i := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := e.tryDeposit(ana, "5.00", fmt.Sprintf("a-%d", i+1)); err != nil {
				errs <- err
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	final := e.ok(ana, `{ me { wallet { balance version } } }`, nil)
	for {
		got := a.expectNext("w", wsWait)["walletUpdated"].(map[string]any)
		if str(got, "id") != anaWallet {
			t.Fatalf("Ana's stream showed another wallet: %v", got)
		}
		if v := num(got, "version"); v <= last {
			t.Fatalf("version %d after %d: %v", v, last, got)
		}
		last = num(got, "version")
		if last == num(final, "me.wallet.version") {
			if str(got, "balance") != "50.00" || str(got, "balance") != str(final, "me.wallet.balance") {
				t.Fatalf("final update %v, wallet %v", got, final)
			}
			break
		}
	}
	a.quiet(300 * time.Millisecond)
	b.quiet(10 * time.Millisecond)
}

func TestRealtimeLoanUpdated(t *testing.T) {
	e := newEnv(t)
	w := apiWorld(t, e)
	ana, bruno, carla := w.tokens["inv1"], w.tokens["inv2"], w.tokens["bor1"]
	e.deposit(ana, "1000.00", "a")
	e.deposit(bruno, "1000.00", "b")
	loan := str(e.ok(carla, `mutation { requestLoan(input: {amount: "1000.00", termMonths: 3, purpose: "Capital de giro"}, idempotencyKey: "l") { id } }`, nil), "requestLoan.id")

	// Any signed-in user may follow a loan: an investor and the borrower.
	inv := wsConnect(t, e.URL, ana)
	inv.subscribe("l", loanSubQ, map[string]any{"l": loan})
	bor := wsConnect(t, e.URL, carla)
	bor.subscribe("l", loanSubQ, map[string]any{"l": loan})
	for _, c := range []*wsClient{inv, bor} {
		got := c.expectNext("l", wsWait)["loanUpdated"].(map[string]any)
		if str(got, "id") != loan || str(got, "status") != "FUNDING" || str(got, "fundedAmount") != "0.00" || num(got, "investorCount") != 0 {
			t.Fatalf("current state first: %v", got)
		}
	}

	if r := e.do(ana, investQ, map[string]any{"l": loan, "a": "600.00", "k": "i1"}); len(r.Errors) > 0 {
		t.Fatal(r.Body)
	}
	for _, c := range []*wsClient{inv, bor} {
		got := c.expectNext("l", wsWait)["loanUpdated"].(map[string]any)
		if str(got, "status") != "FUNDING" || str(got, "fundedAmount") != "600.00" || num(got, "investorCount") != 1 {
			t.Fatalf("after the first investment: %v", got)
		}
	}
	// The last investment funds it: ACTIVE (disbursed), with everything in.
	if r := e.do(bruno, investQ, map[string]any{"l": loan, "a": "400.00", "k": "i2"}); len(r.Errors) > 0 {
		t.Fatal(r.Body)
	}
	for _, c := range []*wsClient{inv, bor} {
		funded := 600.0
		for {
			got := c.expectNext("l", wsWait)["loanUpdated"].(map[string]any)
			var f float64
			fmt.Sscan(str(got, "fundedAmount"), &f)
			if f < funded {
				t.Fatalf("fundedAmount went back: %v", got)
			}
			funded = f
			if str(got, "status") == "ACTIVE" {
				if str(got, "fundedAmount") != "1000.00" || num(got, "investorCount") != 2 {
					t.Fatalf("active: %v", got)
				}
				break
			}
		}
		c.quiet(200 * time.Millisecond)
	}

	// A loan that does not exist: an error, no complete (the pong is next).
	inv.subscribe("x", loanSubQ, map[string]any{"l": gid(lending.KindLoan, 999_999)})
	wantCodes(t, inv.expectError("x", wsWait), "NOT_FOUND", "unknown loan")
	inv.sync()
	inv.subscribe("y", loanSubQ, map[string]any{"l": "garbage"})
	wantCodes(t, inv.expectError("y", wsWait), "BAD_USER_INPUT", "malformed loan id")
	inv.sync()
}

func TestRealtimeNotificationAdded(t *testing.T) {
	e := newEnv(t)
	w := apiWorld(t, e)
	ana, bruno := w.tokens["inv1"], w.tokens["inv2"]
	a := wsConnect(t, e.URL, ana)
	a.subscribe("n", notifSubQ, nil)
	b := wsConnect(t, e.URL, bruno)
	b.subscribe("n", notifSubQ, nil)
	waitHubSubs(t, e.App, 2)

	e.deposit(ana, "25.00", "d-1")
	got := a.expectNext("n", wsWait)["notificationAdded"].(map[string]any)
	all, _ := e.notificationIDs(ana)
	if str(got, "kind") != "DEPOSIT_CONFIRMED" || len(all) != 1 || str(got, "id") != all[0] || str(got, "title") == "" {
		t.Fatalf("notification %v, Ana's notifications %v", got, all)
	}
	// Bruno's own deposit reaches him; Ana's never did.
	e.deposit(bruno, "30.00", "d-2")
	got = b.expectNext("n", wsWait)["notificationAdded"].(map[string]any)
	if bAll, _ := e.notificationIDs(bruno); str(got, "kind") != "DEPOSIT_CONFIRMED" || len(bAll) != 1 || str(got, "id") != bAll[0] {
		t.Fatalf("Bruno's notification %v", got)
	}
	a.quiet(300 * time.Millisecond)
	b.quiet(10 * time.Millisecond)
}

func TestRealtimeMessageAdded(t *testing.T) {
	e := newEnv(t)
	w := apiWorld(t, e)
	ana, carla, bruno := w.tokens["inv1"], w.tokens["bor1"], w.tokens["inv2"]
	uid := func(k string) string { return gid(lending.KindUser, w.users[k]) }
	chat := e.startChat(ana, uid("bor1"), "")
	loan := str(e.ok(carla, `mutation { requestLoan(input: {amount: "1000.00", termMonths: 3, purpose: "Capital de giro"}, idempotencyKey: "l") { id } }`, nil), "requestLoan.id")
	loanChat := e.startChat(ana, uid("bor1"), loan)
	brunoChat := e.startChat(bruno, uid("bor2"), "")

	c := wsConnect(t, e.URL, carla)
	c.subscribe("one", msgSubQ, map[string]any{"c": chat})
	c.subscribe("all", msgSubQ, nil)
	// Bruno: Carla's chat is NOT_FOUND (like a missing one), with no
	// complete after the error; his own feed shows nothing of theirs.
	b := wsConnect(t, e.URL, bruno)
	b.subscribe("theirs", msgSubQ, map[string]any{"c": chat})
	wantCodes(t, b.expectError("theirs", wsWait), "NOT_FOUND", "another user's chat")
	b.sync()
	b.subscribe("missing", msgSubQ, map[string]any{"c": gid(lending.KindChat, 999_999)})
	wantCodes(t, b.expectError("missing", wsWait), "NOT_FOUND", "a missing chat")
	b.subscribe("loan", msgSubQ, map[string]any{"c": loan})
	wantCodes(t, b.expectError("loan", wsWait), "NOT_FOUND", "a loan's id as the chat")
	b.sync()
	b.subscribe("mine", msgSubQ, nil)
	waitHubSubs(t, e.App, 3)

	m1 := e.sendMsg(ana, chat, "Olá, Carla!")
	byOp := map[string]map[string]any{}
	for range 2 {
		m := c.next(wsWait)
		if m.Type != "next" {
			t.Fatalf("got %s %s", m.Type, m.Payload)
		}
		byOp[m.ID] = wsPayloadData(t, m)["messageAdded"].(map[string]any)
	}
	for _, op := range []string{"one", "all"} {
		got := byOp[op]
		if str(got, "id") != m1 || str(got, "body") != "Olá, Carla!" || str(got, "chat.id") != chat || str(got, "sender.id") != uid("inv1") {
			t.Fatalf("%s: %v", op, got)
		}
	}
	// Another chat: only the unfiltered subscription. Then a message in the
	// first chat is the filtered one's very next message.
	m2 := e.sendMsg(ana, loanChat, "Sobre o empréstimo")
	if got := c.expectNext("all", wsWait)["messageAdded"].(map[string]any); str(got, "id") != m2 || str(got, "chat.id") != loanChat {
		t.Fatalf("all: %v", got)
	}
	m3 := e.sendMsg(ana, chat, "De novo")
	byOp = map[string]map[string]any{}
	for range 2 {
		m := c.next(wsWait)
		byOp[m.ID] = wsPayloadData(t, m)["messageAdded"].(map[string]any)
	}
	if str(byOp["one"], "id") != m3 || str(byOp["all"], "id") != m3 {
		t.Fatalf("after the other chat's message: %v", byOp)
	}
	// Bruno's own chat reaches him; nothing of Ana and Carla's did.
	m4 := e.sendMsg(w.tokens["bor2"], brunoChat, "Oi, Bruno")
	if got := b.expectNext("mine", wsWait)["messageAdded"].(map[string]any); str(got, "id") != m4 {
		t.Fatalf("Bruno's chat: %v", got)
	}
	c.quiet(300 * time.Millisecond)
	b.quiet(10 * time.Millisecond)
}

func TestRealtimeAuthorization(t *testing.T) {
	e := newEnv(t)
	apiWorld(t, e)
	for _, tc := range []struct{ name, token string }{
		{"no token", ""},
		{"garbage token", "not-a-jwt"},
		{"token signed with another key", "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxIn0.c2lnbmF0dXJl"},
	} {
		c, err := wsDialRaw(t, e.URL, nil)
		if err != nil {
			t.Fatal(err)
		}
		c.init(tc.token)
		if code := c.closeCode(5 * time.Second); code != 4403 {
			t.Fatalf("%s: close %d, want 4403", tc.name, code)
		}
	}
	// subscribe before connection_ack
	c, err := wsDialRaw(t, e.URL, nil)
	if err != nil {
		t.Fatal(err)
	}
	c.subscribe("w", walletSubQ, nil)
	if code := c.closeCode(5 * time.Second); code != 4401 {
		t.Fatalf("subscribe before ack: close %d, want 4401", code)
	}
	// a signed-out token's socket closes with 4403
	tok := signIn(e, "ana@test.dev", "password-123")
	s := wsConnect(t, e.URL, tok)
	s.subscribe("w", walletSubQ, nil)
	s.expectNext("w", wsWait)
	e.ok(tok, `mutation { signOut }`, nil)
	if code := s.closeCode(6 * time.Second); code != 4403 {
		t.Fatalf("after signOut: close %d, want 4403", code)
	}

	// signing out with a later token of the same session (after a refresh)
	// ends the session's earlier tokens too: the socket holding one closes
	// with 4403, and over HTTP it is 401
	d := e.ok("", `mutation($e: String!, $p: String!) { signIn(email: $e, password: $p) { accessToken refreshToken } }`,
		map[string]any{"e": "ana@test.dev", "p": "password-123"})
	old, refresh := str(d, "signIn.accessToken"), str(d, "signIn.refreshToken")
	s = wsConnect(t, e.URL, old)
	s.subscribe("w", walletSubQ, nil)
	s.expectNext("w", wsWait)
	d = e.ok("", `mutation($t: String!) { refreshToken(refreshToken: $t) { accessToken } }`, map[string]any{"t": refresh})
	later := str(d, "refreshToken.accessToken")
	other := signIn(e, "ana@test.dev", "password-123") // another session
	e.ok(later, `mutation { signOut }`, nil)
	if code := s.closeCode(6 * time.Second); code != 4403 {
		t.Fatalf("after signOut with the session's later token: close %d, want 4403", code)
	}
	if r := e.do(old, `{ me { id } }`, nil); r.Status != http.StatusUnauthorized || r.code(0) != "UNAUTHENTICATED" {
		t.Fatalf("the session's earlier token after signOut: %d %s", r.Status, r.Body)
	}
	e.ok(other, `{ me { id } }`, nil) // other sessions are untouched
}

// ---------------------------------------------------------------- resume with after

// TestResumeNotificationsAfter: a client reads notifications, loses its
// connection, events happen while it is away, and it resubscribes with the
// last cursor it saw while more happen: exactly the missed ones, then the
// live ones, in order, no gap and no duplicate.
func TestResumeNotificationsAfter(t *testing.T) {
	e := newEnv(t)
	w := apiWorld(t, e)
	ana, carla := w.tokens["inv1"], w.tokens["bor1"]
	chat := e.startChat(ana, gid(lending.KindUser, w.users["bor1"]), "")

	c1 := wsConnect(t, e.URL, ana)
	c1.subscribe("n", notifSubQ, nil)
	waitHubSubs(t, e.App, 1)
	e.deposit(ana, "10.00", "d-1")
	for i := range 2 {
		e.sendMsg(carla, chat, fmt.Sprintf("antes %d", i))
	}
	seen := ids(c1.collect("n", "notificationAdded", 3))
	all, cursors := e.notificationIDs(ana)
	if !slices.Equal(seen, all) {
		t.Fatalf("live: %v, Ana has %v", seen, all)
	}
	last := seen[len(seen)-1]
	c1.abort() // the phone loses its network
	waitHubSubs(t, e.App, 0)

	// Five while away (messages and a deposit, each a notification).
	for i := range 4 {
		e.sendMsg(carla, chat, fmt.Sprintf("ausente %d", i))
	}
	e.deposit(ana, "20.00", "d-2")

	// Resubscribe with the last cursor while six more are being written.
	var wg sync.WaitGroup
	wg.Add(1)
	var sendErr error
	go func() {
		defer wg.Done()
		for i := range 6 {
			if _, err := e.trySend(carla, chat, fmt.Sprintf("durante %d", i)); err != nil {
				sendErr = err
				return
			}
		}
	}()
	c2 := wsConnect(t, e.URL, ana)
	c2.subscribe("n", notifSubQ, map[string]any{"a": cursors[last]})
	wg.Wait()
	if sendErr != nil {
		t.Fatal(sendErr)
	}
	got := ids(c2.collect("n", "notificationAdded", 11))
	// and two live ones after that
	e.sendMsg(carla, chat, "depois 1")
	e.deposit(ana, "30.00", "d-3")
	got = append(got, ids(c2.collect("n", "notificationAdded", 2))...)
	all, _ = e.notificationIDs(ana)
	if want := after(t, all, last); !slices.Equal(got, want) {
		t.Fatalf("after resuming: got %v, want exactly %v", got, want)
	}
	c2.quiet(300 * time.Millisecond)

	// A cursor of another listing is refused: error, no complete.
	msgs, mcur := e.messageIDs(ana, chat)
	c2.subscribe("bad", notifSubQ, map[string]any{"a": mcur[msgs[0]]})
	wantCodes(t, c2.expectError("bad", wsWait), "BAD_USER_INPUT", "a message cursor as a notification cursor")
	c2.sync()

	// A phone that only has what it received live resumes after a
	// notification's id; another user's notification is refused like a bad
	// cursor.
	c2.subscribe("byid", notifSubQ, map[string]any{"a": all[len(all)-3]})
	if got := ids(c2.collect("byid", "notificationAdded", 2)); !slices.Equal(got, all[len(all)-2:]) {
		t.Fatalf("after id %s: got %v, want %v", all[len(all)-3], got, all[len(all)-2:])
	}
	c2.quiet(300 * time.Millisecond)
	e.sendMsg(ana, chat, "para a Carla")
	carlas, _ := e.notificationIDs(carla)
	c2.quiet(300 * time.Millisecond) // (Ana's own message notifies only Carla)
	c2.subscribe("theirs", notifSubQ, map[string]any{"a": carlas[0]})
	wantCodes(t, c2.expectError("theirs", wsWait), "BAD_USER_INPUT", "another user's notification id")
	c2.sync()
}

// TestResumeMessagesAfter: the same for messageAdded, for one chat and for
// all of the caller's chats.
func TestResumeMessagesAfter(t *testing.T) {
	e := newEnv(t)
	w := apiWorld(t, e)
	ana, carla := w.tokens["inv1"], w.tokens["bor1"]
	chat := e.startChat(ana, gid(lending.KindUser, w.users["bor1"]), "")
	other := e.startChat(w.tokens["inv2"], gid(lending.KindUser, w.users["bor1"]), "")

	c1 := wsConnect(t, e.URL, carla)
	c1.subscribe("one", msgSubQ, map[string]any{"c": chat})
	waitHubSubs(t, e.App, 1)
	for i := range 3 {
		e.sendMsg(ana, chat, fmt.Sprintf("antes %d", i))
	}
	seen := ids(c1.collect("one", "messageAdded", 3))
	all, cursors := e.messageIDs(carla, chat)
	if !slices.Equal(seen, all) {
		t.Fatalf("live: %v, chat has %v", seen, all)
	}
	last := seen[len(seen)-1]
	c1.abort()
	waitHubSubs(t, e.App, 0)

	for i := range 5 {
		e.sendMsg(ana, chat, fmt.Sprintf("ausente %d", i))
		e.sendMsg(w.tokens["inv2"], other, fmt.Sprintf("outro chat %d", i)) // not this chat's
	}
	var wg sync.WaitGroup
	wg.Add(1)
	var sendErr error
	go func() {
		defer wg.Done()
		for i := range 6 {
			if _, err := e.trySend(ana, chat, fmt.Sprintf("durante %d", i)); err != nil {
				sendErr = err
				return
			}
		}
	}()
	c2 := wsConnect(t, e.URL, carla)
	c2.subscribe("one", msgSubQ, map[string]any{"c": chat, "a": cursors[last]})
	wg.Wait()
	if sendErr != nil {
		t.Fatal(sendErr)
	}
	got := ids(c2.collect("one", "messageAdded", 11))
	e.sendMsg(carla, chat, "minha resposta") // the subscriber's own message too
	e.sendMsg(ana, chat, "depois")
	got = append(got, ids(c2.collect("one", "messageAdded", 2))...)
	all, _ = e.messageIDs(carla, chat)
	if want := after(t, all, last); !slices.Equal(got, want) {
		t.Fatalf("one chat after resuming: got %v, want exactly %v", got, want)
	}
	c2.quiet(300 * time.Millisecond)

	// All chats, from the cursor of an old message of the first chat: every
	// message of both chats after it, in id order (sent one at a time).
	c3 := wsConnect(t, e.URL, carla)
	c3.subscribe("all", msgSubQ, map[string]any{"a": cursors[seen[0]]})
	one, _ := e.messageIDs(carla, chat)
	two, _ := e.messageIDs(carla, other)
	want := append(after(t, one, seen[0]), two...)
	slices.SortFunc(want, func(a, b string) int { return int(numID(t, a) - numID(t, b)) })
	got = ids(c3.collect("all", "messageAdded", len(want)))
	if !slices.Equal(got, want) {
		t.Fatalf("all chats after resuming: got %v, want exactly %v", got, want)
	}
	m := e.sendMsg(w.tokens["inv2"], other, "ao vivo")
	if got := c3.expectNext("all", wsWait)["messageAdded"].(map[string]any); str(got, "id") != m {
		t.Fatalf("live after the replay: %v", got)
	}
	c3.quiet(300 * time.Millisecond)
}

// ---------------------------------------------------------------- two instances

// TestTwoInstances: two app.New on one database and one Redis prefix, each
// with its own pipeline; a subscriber on one receives what a mutation on
// the other causes, both ways.
func TestTwoInstances(t *testing.T) {
	e := newEnv(t)
	w := apiWorld(t, e)
	e2 := startInstance(t, e).env
	ana, carla := w.tokens["inv1"], w.tokens["bor1"]
	chat := e.startChat(ana, gid(lending.KindUser, w.users["bor1"]), "")

	// On instance 1: Ana's wallet and notifications, Carla's messages.
	wal := wsConnect(t, e.URL, ana)
	wal.subscribe("w", walletSubQ, nil)
	wal.subscribe("n", notifSubQ, nil)
	first := wal.expectNext("w", wsWait)["walletUpdated"].(map[string]any)
	msg := wsConnect(t, e.URL, carla)
	msg.subscribe("m", msgSubQ, map[string]any{"c": chat})
	waitHubSubs(t, e.App, 3)

	// A deposit webhook to instance 2 …
	e2.deposit(ana, "75.00", "d-1")
	byOp := map[string]map[string]any{}
	for range 2 {
		m := wal.next(wsWait)
		if m.Type != "next" {
			t.Fatalf("got %s %s", m.Type, m.Payload)
		}
		d := wsPayloadData(t, m)
		if m.ID == "w" {
			byOp["w"] = d["walletUpdated"].(map[string]any)
		} else {
			byOp["n"] = d["notificationAdded"].(map[string]any)
		}
	}
	if got := byOp["w"]; str(got, "balance") != "75.00" || num(got, "version") <= num(first, "version") {
		t.Fatalf("wallet via instance 2: %v", got)
	}
	if str(byOp["n"], "kind") != "DEPOSIT_CONFIRMED" {
		t.Fatalf("notification via instance 2: %v", byOp["n"])
	}
	// … and sendMessage on instance 2.
	m1 := e2.sendMsg(ana, chat, "via instância 2")
	if got := msg.expectNext("m", wsWait)["messageAdded"].(map[string]any); str(got, "id") != m1 {
		t.Fatalf("message via instance 2: %v", got)
	}

	// The other way: a subscriber on instance 2, a mutation on instance 1.
	msg2 := wsConnect(t, e2.URL, ana)
	msg2.subscribe("m", msgSubQ, nil)
	waitHubSubs(t, e2.App, 1)
	m2 := e.sendMsg(carla, chat, "via instância 1")
	if got := msg2.expectNext("m", wsWait)["messageAdded"].(map[string]any); str(got, "id") != m2 {
		t.Fatalf("message via instance 1 on instance 2: %v", got)
	}
	if got := msg.expectNext("m", wsWait)["messageAdded"].(map[string]any); str(got, "id") != m2 {
		t.Fatalf("message via instance 1 on instance 1: %v", got)
	}
	if got := wal.expectNext("n", wsWait)["notificationAdded"].(map[string]any); str(got, "kind") != "NEW_MESSAGE" || str(got, "body") != "via instância 1" {
		t.Fatalf("Ana's NEW_MESSAGE notification: %v", got)
	}
	// Each event reached each subscriber once, although both relays and
	// both brokers ran.
	wal.quiet(300 * time.Millisecond)
	msg.quiet(10 * time.Millisecond)
	msg2.quiet(10 * time.Millisecond)
}

// TestFaultInstanceKilledClientsResume: clients on an instance that dies
// lose their sockets; they reconnect to another instance with the last
// cursors they saw and get exactly what they missed, then live events.
func TestFaultInstanceKilledClientsResume(t *testing.T) {
	e := newEnv(t) // survives
	w := apiWorld(t, e)
	k := startInstance(t, e) // dies
	ana, carla := w.tokens["inv1"], w.tokens["bor1"]
	chat := e.startChat(ana, gid(lending.KindUser, w.users["bor1"]), "")

	msgs := wsConnect(t, k.URL, carla)
	msgs.subscribe("m", msgSubQ, map[string]any{"c": chat})
	notes := wsConnect(t, k.URL, carla)
	notes.subscribe("n", notifSubQ, nil)
	waitHubSubs(t, k.App, 2)
	for i := range 3 {
		e.sendMsg(ana, chat, fmt.Sprintf("antes %d", i))
	}
	seenM := ids(msgs.collect("m", "messageAdded", 3))
	seenN := ids(notes.collect("n", "notificationAdded", 3))
	_, mcur := e.messageIDs(carla, chat)
	_, ncur := e.notificationIDs(carla)
	lastM, lastN := seenM[2], seenN[2]

	k.kill()
	for _, c := range []*wsClient{msgs, notes} {
		if code := c.closeCode(5 * time.Second); code != 1006 {
			t.Fatalf("killed instance's socket closed with %d, want 1006 (dropped)", code)
		}
	}
	for i := range 4 {
		e.sendMsg(ana, chat, fmt.Sprintf("ausente %d", i))
	}

	msgs = wsConnect(t, e.URL, carla)
	msgs.subscribe("m", msgSubQ, map[string]any{"c": chat, "a": mcur[lastM]})
	notes = wsConnect(t, e.URL, carla)
	notes.subscribe("n", notifSubQ, map[string]any{"a": ncur[lastN]})
	gotM := ids(msgs.collect("m", "messageAdded", 4))
	gotN := ids(notes.collect("n", "notificationAdded", 4))
	for i := range 2 {
		e.sendMsg(ana, chat, fmt.Sprintf("depois %d", i))
	}
	gotM = append(gotM, ids(msgs.collect("m", "messageAdded", 2))...)
	gotN = append(gotN, ids(notes.collect("n", "notificationAdded", 2))...)
	allM, _ := e.messageIDs(carla, chat)
	allN, _ := e.notificationIDs(carla)
	if want := after(t, allM, lastM); !slices.Equal(gotM, want) {
		t.Fatalf("messages after the move: got %v, want exactly %v", gotM, want)
	}
	if want := after(t, allN, lastN); !slices.Equal(gotN, want) {
		t.Fatalf("notifications after the move: got %v, want exactly %v", gotN, want)
	}
	msgs.quiet(300 * time.Millisecond)
	notes.quiet(10 * time.Millisecond)
	if s := k.App.WS.Stats(); s.Sockets != 0 || s.Operations != 0 {
		t.Fatalf("the killed instance still holds %+v", s)
	}
}

// TestRealtimeQueriesAndMutationsComplete: over a websocket, a query or a
// mutation is one next and then complete (graphql-transport-ws: "complete"
// ends every operation that the server ends), with the app's real
// extensions installed.
func TestRealtimeQueriesAndMutationsComplete(t *testing.T) {
	e := newEnv(t)
	tok, _ := signUp(e, "Ana Investidora", "ana@test.dev", []string{"INVESTOR"}, "")
	c := wsConnect(t, e.URL, tok)
	c.subscribe("q", `{ me { id name } }`, nil)
	if d, errs := c.expectResult("q", wsWait); len(errs) > 0 || str(d, "me.name") != "Ana Investidora" {
		t.Fatalf("query: %v %v", d, errs)
	}
	c.subscribe("m", depositQ, map[string]any{"a": "10.00", "k": "k"})
	if d, errs := c.expectResult("m", wsWait); len(errs) > 0 || str(d, "createDeposit.txid") == "" {
		t.Fatalf("mutation: %v %v", d, errs)
	}
	c.subscribe("e", `{ node(id: "bad") { id } }`, nil)
	if _, errs := c.expectResult("e", wsWait); len(errs) == 0 {
		t.Fatal("a query that fails: no errors")
	}
	c.sync()
}

// TestResumeNotificationsAfterOutOfOrderCommit: the same for
// notificationAdded. A notification takes its id in a transaction that
// stays open (written as store's notify writes one: the row and its outbox
// event), while a later one (Ana's message notifies Carla) commits, is seen
// live, and Carla disconnects; the first then commits. Resuming after the
// one she saw (by its id, as a phone has it) replays the late one, then
// goes on live.
func TestResumeNotificationsAfterOutOfOrderCommit(t *testing.T) {
	e := newEnv(t)
	w := apiWorld(t, e)
	ana, carla := w.tokens["inv1"], w.tokens["bor1"]
	carlaID := w.users["bor1"]
	chat := e.startChat(ana, gid(lending.KindUser, carlaID), "")

	c1 := wsConnect(t, e.URL, carla)
	c1.subscribe("n", notifSubQ, nil)
	waitHubSubs(t, e.App, 1)

	ctx := context.Background()
	tx, err := e.DB.Pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(ctx)
	var lateID int64
	if err := tx.QueryRow(ctx, `INSERT INTO notifications (user_id, kind, title, body) VALUES ($1, 'REPAYMENT_RECEIVED', 'Pagamento recebido', 'lento')
		RETURNING id`, carlaID).Scan(&lateID); err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(ctx, `INSERT INTO outbox (stream, topic, payload) VALUES ($1, 'notification.added', jsonb_build_object('notificationId', $2::bigint, 'userId', $3::bigint))`,
		store.NotificationStream(carlaID), lateID, carlaID); err != nil {
		t.Fatal(err)
	}
	e.sendMsg(ana, chat, "rápida") // notifies Carla, with a larger id, and commits
	fast := str(c1.expectNext("n", wsWait)["notificationAdded"].(map[string]any), "id")
	if numID(t, fast) <= lateID {
		t.Fatalf("setup: the live notification %s does not have the larger id (late %d)", fast, lateID)
	}
	c1.abort()
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	late := gid(lending.KindNotification, lateID)
	// published while Carla is away: only the replay can bring it back
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		var published bool
		if err := e.DB.Pool.QueryRow(ctx, `SELECT published_at IS NOT NULL FROM outbox WHERE topic = 'notification.added'
			AND (payload->>'notificationId')::bigint = $1`, lateID).Scan(&published); err != nil {
			t.Fatal(err)
		}
		if published {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the late notification's event was not published")
		}
	}

	c2 := wsConnect(t, e.URL, carla)
	c2.subscribe("n", notifSubQ, map[string]any{"a": fast})
	got := ids(c2.collect("n", "notificationAdded", 1))
	e.sendMsg(ana, chat, "depois")
	got = append(got, ids(c2.collect("n", "notificationAdded", 1))...)
	all, _ := e.notificationIDs(carla)
	if want := []string{late, all[len(all)-1]}; !slices.Equal(got, want) {
		t.Fatalf("resumed after %s: got %v, want exactly %v", fast, got, want)
	}
	c2.quiet(300 * time.Millisecond)
}

// TestResumeAfterOutOfOrderCommit: resuming messageAdded over all of the
// caller's chats (and, the same way, notificationAdded) after a message
// with a smaller id committed later than the one the cursor names. Two
// chats' messages are written by unrelated transactions, so ids need not
// commit in order; a live subscriber gets both, and so must a resumed one:
// resuming goes by publication sequence number, not by id.
func TestResumeAfterOutOfOrderCommit(t *testing.T) {
	e := newEnv(t)
	w := apiWorld(t, e)
	ana, bruno, carla := w.tokens["inv1"], w.tokens["inv2"], w.tokens["bor1"]
	carlaID := gid(lending.KindUser, w.users["bor1"])
	chat1 := e.startChat(ana, carlaID, "")
	chat2 := e.startChat(bruno, carlaID, "")

	c1 := wsConnect(t, e.URL, carla)
	c1.subscribe("all", msgSubQ, nil)
	waitHubSubs(t, e.App, 1)

	// Ana's message takes its id, then waits (on her read position's row,
	// which sendMessage updates after inserting the message) …
	ctx := context.Background()
	tx, err := e.DB.Pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(ctx)
	if _, err := tx.Exec(ctx, `SELECT 1 FROM chat_members WHERE chat_id = $1 AND user_id = $2 FOR UPDATE`,
		numID(t, chat1), w.users["inv1"]); err != nil {
		t.Fatal(err)
	}
	late := make(chan string, 1)
	go func() {
		id, err := e.trySend(ana, chat1, "lenta")
		if err != nil {
			id = "error: " + err.Error()
		}
		late <- id
	}()
	for deadline := time.Now().Add(5 * time.Second); ; {
		var n int
		_ = e.DB.Pool.QueryRow(ctx, `SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'`).Scan(&n)
		if n == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("Ana's sendMessage is not waiting")
		}
		time.Sleep(10 * time.Millisecond)
	}
	// … while Bruno's, with a larger id, commits: Carla sees it and keeps
	// its cursor, then loses her connection.
	fast := e.sendMsg(bruno, chat2, "rápida")
	if got := c1.expectNext("all", wsWait)["messageAdded"].(map[string]any); str(got, "id") != fast {
		t.Fatalf("live: %v", got)
	}
	_, cur := e.messageIDs(carla, chat2)
	c1.abort()
	// Ana's message commits while Carla is away.
	if err := tx.Rollback(ctx); err != nil {
		t.Fatal(err)
	}
	slow := <-late
	if numID(t, slow) >= numID(t, fast) {
		t.Fatalf("setup: the late message %s does not have the smaller id (fast %s)", slow, fast)
	}
	c2 := wsConnect(t, e.URL, carla)
	c2.subscribe("all", msgSubQ, map[string]any{"a": cur[fast]})
	after := e.sendMsg(bruno, chat2, "depois")
	got := ids(c2.collect("all", "messageAdded", 1))
	got = append(got, ids(c2.collect("all", "messageAdded", 1))...)
	if want := []string{slow, after}; !slices.Equal(got, want) {
		t.Fatalf("resumed: got %v, want exactly %v", got, want)
	}
	c2.quiet(300 * time.Millisecond)
}
