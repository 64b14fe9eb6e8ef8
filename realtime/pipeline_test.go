package realtime_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os/exec"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"mutuo/internal/testenv"
	"mutuo/realtime"
	"mutuo/store"
)

// ---------------------------------------------------------------- helpers

type penv struct {
	t     *testing.T
	ctx   context.Context
	db    *testenv.DB
	store *store.Store
	redis *testenv.Redis
}

func newPenv(t *testing.T) *penv {
	t.Helper()
	db := testenv.NewDB(t)
	return &penv{t: t, ctx: context.Background(), db: db, store: store.New(db.Pool), redis: testenv.NewRedis(t)}
}

// write commits one outbox row on stream, as a use case does, and returns its id.
func (e *penv) write(stream string, n int) int64 {
	e.t.Helper()
	var id int64
	if err := e.db.Pool.QueryRow(e.ctx, `INSERT INTO outbox (stream, topic, payload) VALUES ($1, 'test.event', jsonb_build_object('n', $2::int)) RETURNING id`,
		stream, n).Scan(&id); err != nil {
		e.t.Errorf("write outbox: %v", err)
	}
	return id
}

func (e *penv) count(sql string, args ...any) int {
	e.t.Helper()
	var n int
	if err := e.db.Pool.QueryRow(e.ctx, sql, args...).Scan(&n); err != nil {
		e.t.Fatalf("%s: %v", sql, err)
	}
	return n
}

func (e *penv) relay(rdb redis.UniversalClient) *realtime.Relay {
	return &realtime.Relay{Store: e.store, Redis: rdb, Prefix: e.redis.Prefix, PollInterval: 50 * time.Millisecond}
}

// run starts fn in a goroutine that ends with the test.
func run(t *testing.T, fn func(ctx context.Context) error) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = fn(ctx)
	}()
	t.Cleanup(func() {
		cancel()
		<-done
	})
}

// rawSub listens on the events channel directly, as a broker would.
type rawSub struct {
	mu  sync.Mutex
	evs []realtime.Event
}

func (e *penv) rawSubscribe(rdb *redis.Client) *rawSub {
	e.t.Helper()
	ps := rdb.Subscribe(e.ctx, realtime.Channel(e.redis.Prefix))
	if _, err := ps.Receive(e.ctx); err != nil { // the subscription's confirmation
		e.t.Fatalf("subscribe: %v", err)
	}
	r := &rawSub{}
	go func() {
		for m := range ps.Channel() {
			var ev realtime.Event
			if err := json.Unmarshal([]byte(m.Payload), &ev); err != nil {
				panic(err)
			}
			r.mu.Lock()
			r.evs = append(r.evs, ev)
			r.mu.Unlock()
		}
	}()
	e.t.Cleanup(func() { _ = ps.Close() })
	return r
}

func (r *rawSub) events() []realtime.Event {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]realtime.Event(nil), r.evs...)
}

func eventually(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// collector drains a hub subscription in the background.
type collector struct {
	mu  sync.Mutex
	ids []int64
	err error
}

func collect(t *testing.T, s *realtime.Subscription) *collector {
	c := &collector{}
	go func() {
		for e := range s.C {
			c.mu.Lock()
			c.ids = append(c.ids, e.ID)
			c.mu.Unlock()
		}
		c.mu.Lock()
		c.err = s.Err()
		c.mu.Unlock()
	}()
	t.Cleanup(s.Close)
	return c
}

func (c *collector) got() []int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]int64(nil), c.ids...)
}

// ownRedis is a redis-server of the test's own, which it can kill and restart.
type ownRedis struct {
	t    *testing.T
	port int
	cmd  *exec.Cmd
}

func startOwnRedis(t *testing.T) *ownRedis {
	t.Helper()
	if _, err := exec.LookPath("redis-server"); err != nil {
		t.Fatalf("redis-server is needed for the Redis restart tests (make test installs it): %v", err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	_ = l.Close()
	r := &ownRedis{t: t, port: port}
	r.start()
	t.Cleanup(r.kill)
	return r
}

func (r *ownRedis) addr() string { return "127.0.0.1:" + strconv.Itoa(r.port) }

func (r *ownRedis) client() *redis.Client {
	c := redis.NewClient(&redis.Options{Addr: r.addr(), DialTimeout: time.Second, MaxRetries: 1})
	r.t.Cleanup(func() { _ = c.Close() })
	return c
}

func (r *ownRedis) start() {
	r.t.Helper()
	r.cmd = exec.Command("redis-server", "--port", strconv.Itoa(r.port), "--bind", "127.0.0.1",
		"--save", "", "--appendonly", "no", "--loglevel", "warning")
	if err := r.cmd.Start(); err != nil {
		r.t.Fatalf("start redis-server: %v", err)
	}
	c := redis.NewClient(&redis.Options{Addr: r.addr(), MaxRetries: -1})
	defer c.Close()
	eventually(r.t, 10*time.Second, "redis-server to answer", func() bool {
		return c.Ping(context.Background()).Err() == nil
	})
}

// kill stops the server abruptly (SIGKILL: no goodbye to its clients).
func (r *ownRedis) kill() {
	if r.cmd != nil && r.cmd.Process != nil {
		_ = r.cmd.Process.Kill()
		_ = r.cmd.Wait()
		r.cmd = nil
	}
}

// ---------------------------------------------------------------- relay

func TestRelayPublishesInOrderAndMarksPublished(t *testing.T) {
	e := newPenv(t)
	sub := e.rawSubscribe(e.redis.Client)
	var want []int64
	for i := 0; i < 10; i++ {
		want = append(want, e.write(fmt.Sprintf("s:%d", i%3), i))
	}
	r := e.relay(e.redis.Client)
	r.BatchSize = 4 // several batches
	if n, err := r.Backlog(e.ctx); err != nil || n != 10 {
		t.Fatalf("backlog before = %d, %v", n, err)
	}
	if err := r.Drain(e.ctx); err != nil {
		t.Fatal(err)
	}
	if n, err := r.Backlog(e.ctx); err != nil || n != 0 {
		t.Fatalf("backlog after = %d, %v", n, err)
	}
	if n := e.count(`SELECT count(*) FROM outbox WHERE published_at IS NULL`); n != 0 {
		t.Fatalf("%d rows unpublished", n)
	}
	if r.Published() != 10 || r.LastLatency() <= 0 || r.LastLatency() > time.Minute {
		t.Fatalf("published %d, latency %v", r.Published(), r.LastLatency())
	}
	eventually(t, 5*time.Second, "10 events", func() bool { return len(sub.events()) >= 10 })
	got := sub.events()
	for i, ev := range got {
		if ev.ID != want[i] || ev.Stream != fmt.Sprintf("s:%d", i%3) || ev.Topic != "test.event" ||
			string(ev.Payload) != fmt.Sprintf(`{"n":%d}`, i) || ev.CreatedAt.IsZero() {
			t.Fatalf("event %d = %+v (payload %s)", i, ev, ev.Payload)
		}
	}
	// nothing is published twice
	if err := r.Drain(e.ctx); err != nil {
		t.Fatal(err)
	}
	time.Sleep(100 * time.Millisecond)
	if n := len(sub.events()); n != 10 {
		t.Fatalf("%d events after a second drain", n)
	}
}

// The relay is woken by the outbox NOTIFY, well before its poll interval.
func TestRelayWokenByNotify(t *testing.T) {
	e := newPenv(t)
	sub := e.rawSubscribe(e.redis.Client)
	r := e.relay(e.redis.Client)
	r.PollInterval = time.Hour
	run(t, r.Run)
	eventually(t, 5*time.Second, "relay ready", r.Ready)
	time.Sleep(100 * time.Millisecond) // its LISTEN is in place
	start := time.Now()
	id := e.write("s", 1)
	eventually(t, 5*time.Second, "the event", func() bool { return len(sub.events()) == 1 })
	if got := sub.events()[0].ID; got != id {
		t.Fatalf("got event %d, want %d", got, id)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Fatalf("took %v", d)
	}
	// a rolled-back write wakes no one and publishes nothing
	tx, err := e.db.Pool.Begin(e.ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(e.ctx, `INSERT INTO outbox (stream, topic, payload) VALUES ('s', 'x', '{}')`); err != nil {
		t.Fatal(err)
	}
	_ = tx.Rollback(e.ctx)
	id2 := e.write("s", 2)
	eventually(t, 5*time.Second, "the second event", func() bool { return len(sub.events()) == 2 })
	if got := sub.events()[1].ID; got != id2 {
		t.Fatalf("got event %d, want %d", got, id2)
	}
}

// Several relays at once: every event is published exactly once (no
// failures here) and each stream's events in order.
func TestRelaysConcurrentlyPublishOnceInOrder(t *testing.T) {
	e := newPenv(t)
	sub := e.rawSubscribe(e.redis.Client)
	relays := make([]*realtime.Relay, 3)
	for i := range relays {
		relays[i] = e.relay(e.redis.Client)
		relays[i].BatchSize = 5
		relays[i].PollInterval = 20 * time.Millisecond
		run(t, relays[i].Run)
	}
	const streams, per = 6, 50
	var wg sync.WaitGroup
	for s := 0; s < streams; s++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < per; i++ {
				e.write(fmt.Sprintf("s:%d", s), i)
			}
		}()
	}
	wg.Wait()
	eventually(t, 20*time.Second, "every event", func() bool { return len(sub.events()) >= streams*per })
	time.Sleep(200 * time.Millisecond)
	got := sub.events()
	if len(got) != streams*per {
		t.Fatalf("%d events published, want %d", len(got), streams*per)
	}
	seen := map[int64]bool{}
	next := map[string]int{}
	for _, ev := range got {
		if seen[ev.ID] {
			t.Fatalf("event %d published twice", ev.ID)
		}
		seen[ev.ID] = true
		var p struct{ N int }
		_ = json.Unmarshal(ev.Payload, &p)
		if p.N != next[ev.Stream] {
			t.Fatalf("stream %s: got n=%d, want %d", ev.Stream, p.N, next[ev.Stream])
		}
		next[ev.Stream]++
	}
	if n := e.count(`SELECT count(*) FROM outbox WHERE published_at IS NULL`); n != 0 {
		t.Fatalf("%d rows unpublished", n)
	}
	var total int64
	for _, r := range relays {
		total += r.Published()
		if !r.Ready() {
			t.Fatal("relay not ready")
		}
	}
	if total != streams*per {
		t.Fatalf("relays published %d in all", total)
	}
}

// A failed publish rolls back: the rows stay unpublished and go later.
func TestRelayPublishFailureKeepsRowsForLater(t *testing.T) {
	e := newPenv(t)
	// a Redis that is not there
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := redis.NewClient(&redis.Options{Addr: l.Addr().String(), MaxRetries: -1, DialTimeout: time.Second})
	_ = l.Close()
	defer dead.Close()

	ids := []int64{e.write("s", 0), e.write("s", 1)}
	bad := e.relay(dead)
	if b, err := bad.Once(e.ctx); err == nil {
		t.Fatalf("publishing to a dead Redis succeeded: %+v", b)
	}
	run(t, bad.Run)
	eventually(t, 5*time.Second, "failed attempts", func() bool { return bad.Failures() > 1 })
	if bad.Ready() {
		t.Fatal("a relay that cannot publish is ready")
	}
	if n := e.count(`SELECT count(*) FROM outbox WHERE published_at IS NULL`); n != 2 {
		t.Fatalf("%d rows unpublished, want 2", n)
	}

	sub := e.rawSubscribe(e.redis.Client)
	good := e.relay(e.redis.Client)
	run(t, good.Run)
	eventually(t, 5*time.Second, "the events", func() bool { return len(sub.events()) == 2 })
	if got := sub.events(); got[0].ID != ids[0] || got[1].ID != ids[1] {
		t.Fatalf("got %v", got)
	}
	eventually(t, 5*time.Second, "good relay ready", good.Ready)
	if n := e.count(`SELECT count(*) FROM outbox WHERE published_at IS NULL`); n != 0 {
		t.Fatalf("%d rows unpublished", n)
	}
}

// ---------------------------------------------------------------- broker

func TestBrokerDispatchesToHub(t *testing.T) {
	e := newPenv(t)
	hub := realtime.NewHub()
	b := &realtime.Broker{Redis: e.redis.Client, Prefix: e.redis.Prefix, Hub: hub, Store: e.store}
	run(t, b.Run)
	eventually(t, 5*time.Second, "broker ready", b.Ready)
	a, z := collect(t, hub.Subscribe("a", 100)), collect(t, hub.Subscribe("z", 100))
	r := e.relay(e.redis.Client)
	run(t, r.Run)
	var want []int64
	for i := 0; i < 5; i++ {
		want = append(want, e.write("a", i))
	}
	eventually(t, 5*time.Second, "the events", func() bool { return len(a.got()) == 5 })
	if fmt.Sprint(a.got()) != fmt.Sprint(want) || len(z.got()) != 0 {
		t.Fatalf("a got %v want %v; z got %v", a.got(), want, z.got())
	}
}

// Events published while the broker was not subscribed are read back from
// the outbox when it resubscribes.
func TestBrokerCatchesUpAfterReconnect(t *testing.T) {
	e := newPenv(t)
	own := startOwnRedis(t)
	hub := realtime.NewHub()
	b := &realtime.Broker{Redis: own.client(), Prefix: e.redis.Prefix, Hub: hub, Store: e.store, PingInterval: 500 * time.Millisecond}
	run(t, b.Run)
	eventually(t, 5*time.Second, "broker ready", b.Ready)
	c := collect(t, hub.Subscribe("a", 100))

	own.kill()
	eventually(t, 5*time.Second, "broker to notice", func() bool { return !b.Ready() })
	// published (and marked so) while the broker could not hear them
	var want []int64
	for i := 0; i < 3; i++ {
		want = append(want, e.write("a", i))
	}
	for { // numbered and published to no one
		b, err := e.store.RelayOutbox(e.ctx, 100, func(context.Context, []store.OutboxEvent) error { return nil })
		if err != nil {
			t.Fatal(err)
		}
		if !b.More(100) {
			break
		}
	}
	if n := e.count(`SELECT count(*) FROM outbox WHERE published_at IS NULL`); n != 0 {
		t.Fatalf("%d rows unpublished", n)
	}
	own.start()
	eventually(t, 10*time.Second, "the missed events", func() bool { return len(c.got()) == 3 })
	if fmt.Sprint(c.got()) != fmt.Sprint(want) {
		t.Fatalf("got %v, want %v", c.got(), want)
	}
	if b.Subscriptions() != 2 {
		t.Fatalf("subscriptions = %d, want 2", b.Subscriptions())
	}
}

// Redis restarts in the middle of a stream of events: subscribers connected
// throughout receive every event exactly once, in order per stream.
func TestRedisRestartDeliversEveryEventOnce(t *testing.T) {
	e := newPenv(t)
	own := startOwnRedis(t)
	hub := realtime.NewHub()
	b := &realtime.Broker{Redis: own.client(), Prefix: e.redis.Prefix, Hub: hub, Store: e.store, PingInterval: 500 * time.Millisecond}
	r := &realtime.Relay{Store: e.store, Redis: own.client(), Prefix: e.redis.Prefix, PollInterval: 50 * time.Millisecond, BatchSize: 8}
	run(t, b.Run)
	run(t, r.Run)
	eventually(t, 5*time.Second, "broker ready", b.Ready)

	const streams, per = 4, 80
	subs := make([][]*collector, streams)
	for s := range subs {
		for j := 0; j < 2; j++ {
			subs[s] = append(subs[s], collect(t, hub.Subscribe(fmt.Sprintf("s:%d", s), 10_000)))
		}
	}
	want := make([][]int64, streams)
	var wg sync.WaitGroup
	for s := 0; s < streams; s++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < per; i++ {
				want[s] = append(want[s], e.write(fmt.Sprintf("s:%d", s), i))
				time.Sleep(25 * time.Millisecond)
			}
		}()
	}
	time.Sleep(400 * time.Millisecond)
	own.kill()
	time.Sleep(time.Second)
	own.start()
	wg.Wait()

	for s := range subs {
		for _, c := range subs[s] {
			eventually(t, 20*time.Second, fmt.Sprintf("stream %d's events", s), func() bool { return len(c.got()) >= per })
		}
	}
	time.Sleep(300 * time.Millisecond) // any repeat would have arrived by now
	for s := range subs {
		for j, c := range subs[s] {
			if got := c.got(); fmt.Sprint(got) != fmt.Sprint(want[s]) {
				t.Fatalf("stream %d subscriber %d:\n got %v\nwant %v", s, j, got, want[s])
			}
		}
	}
	if b.Subscriptions() < 2 {
		t.Fatalf("the broker subscribed %d times: Redis did not restart mid-stream", b.Subscriptions())
	}
	if n := e.count(`SELECT count(*) FROM outbox WHERE published_at IS NULL`); n != 0 {
		t.Fatalf("%d rows unpublished", n)
	}
	t.Logf("broker received %d (of %d events), hub dropped %d repeats, relay failures %d",
		b.Received(), streams*per, hub.Stats().Duplicates, r.Failures())
}
