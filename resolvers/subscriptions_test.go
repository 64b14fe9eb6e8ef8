package resolvers_test

// The subscription resolvers at the resolver level, on the real pipeline:
// use cases commit outbox rows, a relay publishes them to Redis, a broker
// hands them to the hub the resolvers listen to.

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/99designs/gqlgen/graphql"
	"github.com/vektah/gqlparser/v2/ast"

	"mutuo/internal/testenv"
	"mutuo/lending"
	"mutuo/pix"
	"mutuo/realtime"
	"mutuo/resolvers"
	"mutuo/store"
)

type senv struct {
	t   *testing.T
	ctx context.Context
	s   *store.Store
	db  *testenv.DB
	hub *realtime.Hub
	r   *resolvers.Resolver
	n   atomic.Int64
}

func newSenv(t *testing.T) *senv {
	t.Helper()
	db := testenv.NewDB(t)
	rd := testenv.NewRedis(t)
	s := store.New(db.Pool)
	hub := realtime.NewHub()
	e := &senv{t: t, ctx: context.Background(), s: s, db: db, hub: hub,
		r: &resolvers.Resolver{Store: s, Hub: hub}}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	b := &realtime.Broker{Redis: rd.Client, Prefix: rd.Prefix, Hub: hub, Store: s}
	rl := &realtime.Relay{Store: s, Redis: rd.Client, Prefix: rd.Prefix, PollInterval: 50 * time.Millisecond}
	wg.Add(2)
	go func() { defer wg.Done(); _ = b.Run(ctx) }()
	go func() { defer wg.Done(); _ = rl.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		wg.Wait()
		hub.Close()
	})
	deadline := time.Now().Add(5 * time.Second)
	for !b.Ready() {
		if time.Now().After(deadline) {
			t.Fatal("broker not ready")
		}
		time.Sleep(10 * time.Millisecond)
	}
	return e
}

func (e *senv) user(roles ...lending.Role) lending.Viewer {
	e.t.Helper()
	n := e.n.Add(1)
	var income *lending.Money
	for _, r := range roles {
		if r == lending.RoleBorrower {
			m := lending.Money(10_000_00)
			income = &m
		}
	}
	u, err := e.s.CreateUser(e.ctx, fmt.Sprintf("User %d", n), fmt.Sprintf("sub%d@example.com", n), "hash", roles, income)
	if err != nil {
		e.t.Fatal(err)
	}
	return lending.Viewer{UserID: u.ID, Roles: u.Roles}
}

// deposit credits v's wallet the way production does: a Pix charge, then
// the PSP's payment (a wallet event and a DEPOSIT_CONFIRMED notification).
func (e *senv) deposit(v lending.Viewer, amount lending.Money) {
	e.t.Helper()
	d, err := e.s.CreateDeposit(e.ctx, v, amount, fmt.Sprintf("dep-%d", e.n.Add(1)), store.PSPCharge(pix.Sandbox{}, time.Hour, time.Now))
	if err != nil {
		e.t.Fatal(err)
	}
	ps, err := pix.ParseWebhook(pix.Sandbox{}.PaymentWebhook(d.Txid, amount, time.Now()))
	if err != nil {
		e.t.Fatal(err)
	}
	if out, err := e.s.ApplyPixPayment(e.ctx, ps[0], time.Now()); err != nil || out.Outcome != store.PixCredited {
		e.t.Fatalf("pix payment: %+v, %v", out, err)
	}
}

func (e *senv) send(v lending.Viewer, chat int64, body string) *lending.Message {
	e.t.Helper()
	m, err := e.s.SendMessage(e.ctx, v, chat, body, nil, time.Time{})
	if err != nil {
		e.t.Fatal(err)
	}
	return m
}

func (e *senv) chat(a, b lending.Viewer) *lending.Chat {
	e.t.Helper()
	c, err := e.s.StartChat(e.ctx, a, b.UserID, nil)
	if err != nil {
		e.t.Fatal(err)
	}
	return c
}

// as is a subscription context for v; cancel ends the subscription.
func as(v lending.Viewer) (context.Context, context.CancelFunc) {
	return context.WithCancel(lending.WithViewer(context.Background(), v))
}

func next[T any](t *testing.T, c <-chan T) T {
	t.Helper()
	select {
	case v, ok := <-c:
		if !ok {
			t.Fatal("subscription channel closed")
		}
		return v
	case <-time.After(10 * time.Second):
		t.Fatal("nothing received")
	}
	panic("unreachable")
}

func quiet[T any](t *testing.T, c <-chan T, d time.Duration) {
	t.Helper()
	select {
	case v, ok := <-c:
		if ok {
			t.Fatalf("unexpected %+v", v)
		}
	case <-time.After(d):
	}
}

func closes[T any](t *testing.T, c <-chan T) {
	t.Helper()
	deadline := time.After(5 * time.Second)
	for {
		select {
		case _, ok := <-c:
			if !ok {
				return
			}
		case <-deadline:
			t.Fatal("the subscription did not end with its context")
		}
	}
}

func wantCode(t *testing.T, err error, code lending.Code) {
	t.Helper()
	if !lending.IsCode(err, code) {
		t.Fatalf("err = %v, want %s", err, code)
	}
}

func TestSubscriptionsRequireSignIn(t *testing.T) {
	e := newSenv(t)
	sub := e.r.Subscription()
	anon := context.Background()
	_, err := sub.WalletUpdated(anon)
	wantCode(t, err, lending.CodeUnauthenticated)
	_, err = sub.LoanUpdated(anon, lending.GlobalID(lending.KindLoan, 1))
	wantCode(t, err, lending.CodeUnauthenticated)
	_, err = sub.NotificationAdded(anon, nil)
	wantCode(t, err, lending.CodeUnauthenticated)
	_, err = sub.MessageAdded(anon, nil, nil)
	wantCode(t, err, lending.CodeUnauthenticated)
	if n := e.hub.Subscribers(); n != 0 {
		t.Fatalf("%d hub subscriptions left", n)
	}
}

func TestWalletUpdatedCurrentThenEveryChange(t *testing.T) {
	e := newSenv(t)
	v := e.user(lending.RoleInvestor)
	other := e.user(lending.RoleInvestor)
	e.deposit(v, 100_00)
	ctx, cancel := as(v)
	c, err := e.r.Subscription().WalletUpdated(ctx)
	if err != nil {
		t.Fatal(err)
	}
	w := next(t, c)
	if w.UserID != v.UserID || w.Balance != 100_00 {
		t.Fatalf("first = %+v", w)
	}
	e.deposit(other, 7_00) // not ours
	e.deposit(v, 50_00)
	w2 := next(t, c)
	if w2.Balance != 150_00 || w2.Version <= w.Version {
		t.Fatalf("after a deposit = %+v (before %+v)", w2, w)
	}
	e.deposit(v, 1_00)
	if w3 := next(t, c); w3.Balance != 151_00 || w3.Version <= w2.Version {
		t.Fatalf("after another = %+v", w3)
	}
	quiet(t, c, 200*time.Millisecond)
	cancel()
	closes(t, c)
	deadline := time.Now().Add(5 * time.Second)
	for e.hub.Subscribers() != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("%d hub subscriptions left", e.hub.Subscribers())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// Many changes in a burst: the versions received only increase and the
// last one is the wallet's final state.
func TestWalletUpdatedNeverGoesBack(t *testing.T) {
	e := newSenv(t)
	v := e.user(lending.RoleInvestor)
	ctx, cancel := as(v)
	defer cancel()
	c, err := e.r.Subscription().WalletUpdated(ctx)
	if err != nil {
		t.Fatal(err)
	}
	last := next(t, c)
	for i := 0; i < 30; i++ {
		e.deposit(v, 1_00)
	}
	for last.Balance != 30_00 {
		w := next(t, c)
		if w.Version <= last.Version {
			t.Fatalf("version %d after %d", w.Version, last.Version)
		}
		last = w
	}
}

func TestLoanUpdated(t *testing.T) {
	e := newSenv(t)
	b := e.user(lending.RoleBorrower)
	inv := e.user(lending.RoleInvestor)
	watcher := e.user(lending.RoleInvestor) // any signed-in user
	e.deposit(inv, 1000_00)
	l, err := e.s.RequestLoan(e.ctx, b, store.RequestLoanInput{Amount: 1000_00, TermMonths: 12, Purpose: "Capital de giro"}, "req-1", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := as(watcher)
	defer cancel()
	sub := e.r.Subscription()
	_, err = sub.LoanUpdated(ctx, lending.GlobalID(lending.KindLoan, l.ID+1000))
	wantCode(t, err, lending.CodeNotFound)
	_, err = sub.LoanUpdated(ctx, lending.GlobalID(lending.KindWallet, l.ID))
	wantCode(t, err, lending.CodeNotFound)
	_, err = sub.LoanUpdated(ctx, "garbage!")
	wantCode(t, err, lending.CodeBadUserInput)

	c, err := sub.LoanUpdated(ctx, l.GID())
	if err != nil {
		t.Fatal(err)
	}
	// a second subscriber of the same loan shares the reads
	c2, err := sub.LoanUpdated(ctx, l.GID())
	if err != nil {
		t.Fatal(err)
	}
	first := next(t, c)
	if first.ID != l.ID || first.FundedAmount != 0 || first.Status != lending.LoanFunding {
		t.Fatalf("first = %+v", first)
	}
	next(t, c2)
	if _, err := e.s.Invest(e.ctx, inv, l.ID, 300_00, "inv-1", time.Now()); err != nil {
		t.Fatal(err)
	}
	for _, ch := range []<-chan *lending.Loan{c, c2} {
		got := next(t, ch)
		if got.FundedAmount != 300_00 || got.Version <= first.Version {
			t.Fatalf("after investing = %+v", got)
		}
	}
	if _, err := e.s.Invest(e.ctx, inv, l.ID, 700_00, "inv-2", time.Now()); err != nil {
		t.Fatal(err)
	}
	// fully funded: the funding and the status change may arrive as one
	// update or two, each newer than the last
	got := next(t, c)
	for got.Status == lending.LoanFunding {
		if got.FundedAmount != 1000_00 {
			t.Fatalf("after the second investment = %+v", got)
		}
		got = next(t, c)
	}
	if got.FundedAmount != 1000_00 {
		t.Fatalf("final = %+v", got)
	}
}

func notificationCursor(id int64) *string {
	s := store.Cursor{Tag: "notifications", ID: id}.Encode()
	return &s
}

func messageCursor(id int64) *string {
	s := store.Cursor{Tag: store.TagChatMessages, ID: id}.Encode()
	return &s
}

func TestNotificationAddedReplaysThenLive(t *testing.T) {
	e := newSenv(t)
	v := e.user(lending.RoleInvestor)
	other := e.user(lending.RoleInvestor)
	e.deposit(v, 10_00) // DEPOSIT_CONFIRMED notifications
	e.deposit(v, 20_00)
	e.deposit(v, 30_00)
	e.deposit(other, 5_00)
	// replays read numbered items: wait for the relay to number all three
	var have []*lending.Notification
	var err error
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		have, err = e.s.NotificationsAfter(e.ctx, v, 0, 10)
		if err != nil || len(have) == 3 || time.Now().After(deadline) {
			break
		}
	}
	if err != nil || len(have) != 3 {
		t.Fatalf("fixture: %v, %v", have, err)
	}
	sub := e.r.Subscription()

	ctx, cancel := as(v)
	defer cancel()
	_, err = sub.NotificationAdded(ctx, messageCursor(have[0].ID))
	wantCode(t, err, lending.CodeBadUserInput)

	// live only: nothing old
	live, err := sub.NotificationAdded(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	// resumed after the first: the two others, then live
	resumed, err := sub.NotificationAdded(ctx, notificationCursor(have[0].ID))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range have[1:] {
		if got := next(t, resumed); got.ID != want.ID {
			t.Fatalf("replayed %d, want %d", got.ID, want.ID)
		}
	}
	quiet(t, live, 100*time.Millisecond)
	e.deposit(other, 5_00)
	e.deposit(v, 40_00)
	for _, c := range []<-chan *lending.Notification{live, resumed} {
		got := next(t, c)
		if got.UserID != v.UserID || got.ID <= have[2].ID || got.Kind != lending.NotifDepositConfirmed {
			t.Fatalf("live = %+v", got)
		}
		quiet(t, c, 200*time.Millisecond)
	}
}

func TestMessageAddedAuthorizationAndFilter(t *testing.T) {
	e := newSenv(t)
	a, b, c := e.user(lending.RoleInvestor), e.user(lending.RoleInvestor), e.user(lending.RoleInvestor)
	ab, bc := e.chat(a, b), e.chat(b, c)
	sub := e.r.Subscription()
	actx, cancel := as(a)
	defer cancel()
	_, err := sub.MessageAdded(actx, ptr(bc.GID()), nil) // not a's chat
	wantCode(t, err, lending.CodeNotFound)
	_, err = sub.MessageAdded(actx, ptr(lending.GlobalID(lending.KindChat, bc.ID+100)), nil)
	wantCode(t, err, lending.CodeNotFound)
	_, err = sub.MessageAdded(actx, ptr(lending.GlobalID(lending.KindLoan, ab.ID)), nil)
	wantCode(t, err, lending.CodeNotFound)
	_, err = sub.MessageAdded(actx, nil, notificationCursor(1))
	wantCode(t, err, lending.CodeBadUserInput)

	bctx, cancelB := as(b)
	defer cancelB()
	all, err := sub.MessageAdded(bctx, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	onlyAB, err := sub.MessageAdded(bctx, ptr(ab.GID()), nil)
	if err != nil {
		t.Fatal(err)
	}
	aAll, err := sub.MessageAdded(actx, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	m1 := e.send(a, ab.ID, "oi")
	m2 := e.send(c, bc.ID, "olá")
	m3 := e.send(b, ab.ID, "tudo bem?")
	for _, want := range []*lending.Message{m1, m2, m3} {
		if got := next(t, all); got.ID != want.ID || got.Body != want.Body {
			t.Fatalf("b (all chats) got %+v, want %+v", got, want)
		}
	}
	for _, want := range []*lending.Message{m1, m3} {
		if got := next(t, onlyAB); got.ID != want.ID {
			t.Fatalf("b (chat ab) got %d, want %d", got.ID, want.ID)
		}
		if got := next(t, aAll); got.ID != want.ID {
			t.Fatalf("a got %d, want %d", got.ID, want.ID)
		}
	}
	quiet(t, onlyAB, 200*time.Millisecond)
	quiet(t, aAll, 10*time.Millisecond)
	quiet(t, all, 10*time.Millisecond)
}

func ptr[T any](v T) *T { return &v }

// Resuming while messages keep arriving: everything after the cursor comes
// exactly once, in order, across the seam between replay and live.
func TestMessageAddedResumeHasNoGapAndNoDuplicate(t *testing.T) {
	e := newSenv(t)
	a, b := e.user(lending.RoleInvestor), e.user(lending.RoleInvestor)
	ab := e.chat(a, b)
	var sent []int64
	var mu sync.Mutex
	for i := 0; i < 20; i++ {
		sent = append(sent, e.send(a, ab.ID, fmt.Sprintf("m%d", i)).ID)
	}
	cursor := sent[4]
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := 20; i < 80; i++ {
			id := e.send(a, ab.ID, fmt.Sprintf("m%d", i)).ID
			mu.Lock()
			sent = append(sent, id)
			mu.Unlock()
			time.Sleep(2 * time.Millisecond)
		}
	}()
	time.Sleep(20 * time.Millisecond)
	ctx, cancel := as(b)
	defer cancel()
	c, err := e.r.Subscription().MessageAdded(ctx, ptr(ab.GID()), messageCursor(cursor))
	if err != nil {
		t.Fatal(err)
	}
	<-done
	want := sent[5:]
	for i, id := range want {
		if got := next(t, c); got.ID != id {
			t.Fatalf("message %d: got %d, want %d", i, got.ID, id)
		}
	}
	quiet(t, c, 300*time.Millisecond)
}

// A subscriber that does not read for a while falls behind the hub's
// buffer; it catches up from the store and still gets every message once.
func TestMessageAddedRecoversFromLag(t *testing.T) {
	e := newSenv(t)
	a, b := e.user(lending.RoleInvestor), e.user(lending.RoleInvestor)
	ab := e.chat(a, b)
	ctx, cancel := as(b)
	defer cancel()
	c, err := e.r.Subscription().MessageAdded(ctx, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	lagged0 := e.hub.Stats().Lagged
	var want []int64
	for i := 0; i < 3*realtime.DefaultBuffer; i++ {
		want = append(want, e.send(a, ab.ID, fmt.Sprintf("m%d", i)).ID)
	}
	deadline := time.Now().Add(5 * time.Second)
	for e.hub.Stats().Lagged == lagged0 {
		if time.Now().After(deadline) {
			t.Fatal("the subscriber never lagged")
		}
		time.Sleep(10 * time.Millisecond)
	}
	for i, id := range want {
		if got := next(t, c); got.ID != id {
			t.Fatalf("message %d: got %d, want %d", i, got.ID, id)
		}
	}
	quiet(t, c, 300*time.Millisecond)
}

// When the hub closes (the instance shuts down), subscriptions end.
func TestSubscriptionsEndWhenHubCloses(t *testing.T) {
	e := newSenv(t)
	v := e.user(lending.RoleInvestor)
	ctx, cancel := as(v)
	defer cancel()
	w, err := e.r.Subscription().WalletUpdated(ctx)
	if err != nil {
		t.Fatal(err)
	}
	n, err := e.r.Subscription().NotificationAdded(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	next(t, w)
	e.hub.Close()
	closes(t, w)
	closes(t, n)
}

// Each response of a subscription gets fresh loaders; other operations
// keep their request's.
func TestSubscriptionLoadersFreshPerEvent(t *testing.T) {
	ext := resolvers.SubscriptionLoaders{}
	reqLoaders := &resolvers.Loaders{}
	base := resolvers.WithLoaders(context.Background(), reqLoaders)
	var seen []*resolvers.Loaders
	next := func(ctx context.Context) *graphql.Response {
		seen = append(seen, resolvers.For(ctx))
		return &graphql.Response{}
	}
	subCtx := graphql.WithOperationContext(base, &graphql.OperationContext{Operation: &ast.OperationDefinition{Operation: ast.Subscription}})
	ext.InterceptResponse(subCtx, next)
	ext.InterceptResponse(subCtx, next)
	queryCtx := graphql.WithOperationContext(base, &graphql.OperationContext{Operation: &ast.OperationDefinition{Operation: ast.Query}})
	ext.InterceptResponse(queryCtx, next)
	if seen[0] == reqLoaders || seen[1] == reqLoaders || seen[0] == seen[1] || seen[2] != reqLoaders {
		t.Fatalf("loaders per response: %p %p %p (request's %p)", seen[0], seen[1], seen[2], reqLoaders)
	}
}
