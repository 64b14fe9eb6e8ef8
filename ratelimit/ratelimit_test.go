package ratelimit_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"mutuo/internal/testenv"
	"mutuo/lending"
	"mutuo/ratelimit"
)

func TestMain(m *testing.M) { testenv.Main(m) }

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// perSecond is a fast budget for tests.
func perSecond(rate, burst int) ratelimit.Limit {
	return ratelimit.Limit{Rate: rate, Period: time.Second, Burst: burst}
}

func newLimiter(t *testing.T, rdb redis.Scripter, prefix string, edit func(*ratelimit.Config)) *ratelimit.Limiter {
	t.Helper()
	cfg := ratelimit.Config{Redis: rdb, Prefix: prefix, Logger: quiet}
	if edit != nil {
		edit(&cfg)
	}
	l, err := ratelimit.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

func allow(t *testing.T, l *ratelimit.Limiter, s ratelimit.Subject, cost int) ratelimit.Decision {
	t.Helper()
	d, err := l.Allow(context.Background(), s, cost)
	if err != nil {
		t.Fatalf("Allow: %v", err)
	}
	return d
}

func mustAllow(t *testing.T, l *ratelimit.Limiter, s ratelimit.Subject, cost int) ratelimit.Decision {
	t.Helper()
	d := allow(t, l, s, cost)
	if !d.Allowed {
		t.Fatalf("Allow(%+v, %d) refused (retry after %v), want allowed", s, cost, d.RetryAfter)
	}
	return d
}

func mustRefuse(t *testing.T, l *ratelimit.Limiter, s ratelimit.Subject, cost int) ratelimit.Decision {
	t.Helper()
	d := allow(t, l, s, cost)
	if d.Allowed {
		t.Fatalf("Allow(%+v, %d) allowed (remaining %d), want refused", s, cost, d.Remaining)
	}
	if d.RetryAfter <= 0 {
		t.Fatalf("refused with RetryAfter %v, want > 0", d.RetryAfter)
	}
	e, ok := lending.AsError(d.Err())
	if !ok || e.Code != lending.CodeRateLimited || !strings.Contains(e.Message, "retry in") {
		t.Fatalf("refusal error = %v, want RATE_LIMITED with the delay", d.Err())
	}
	return d
}

func TestBudgetExhaustionAndRecovery(t *testing.T) {
	r := testenv.NewRedis(t)
	l := newLimiter(t, r.Client, r.Prefix, func(c *ratelimit.Config) { c.User = perSecond(10, 10) })
	u := ratelimit.Subject{UserID: 7}

	if d := mustAllow(t, l, u, 4); d.Remaining != 6 {
		t.Fatalf("remaining = %d, want 6", d.Remaining)
	}
	if d := mustAllow(t, l, u, 4); d.Remaining != 2 {
		t.Fatalf("remaining = %d, want 2", d.Remaining)
	}
	d := mustRefuse(t, l, u, 4)
	// 2 points are missing at 10 a second: about 200 ms.
	if d.RetryAfter > 250*time.Millisecond {
		t.Fatalf("RetryAfter = %v, want about 200ms", d.RetryAfter)
	}
	if !strings.Contains(d.Err().Error(), "for this user") {
		t.Fatalf("message %q should name the user budget", d.Err())
	}
	// The refusal charged nothing: the 2 points left are still there.
	mustAllow(t, l, u, 2)
	d = mustRefuse(t, l, u, 4)

	time.Sleep(d.RetryAfter + 30*time.Millisecond)
	mustAllow(t, l, u, 4)
	// After a full window the budget is whole again.
	time.Sleep(1100 * time.Millisecond)
	if d := mustAllow(t, l, u, 1); d.Remaining != 9 {
		t.Fatalf("remaining after a window = %d, want 9", d.Remaining)
	}
}

func TestCostBelowOneAndAboveBurst(t *testing.T) {
	r := testenv.NewRedis(t)
	l := newLimiter(t, r.Client, r.Prefix, func(c *ratelimit.Config) { c.User = perSecond(10, 10) })
	u := ratelimit.Subject{UserID: 1}
	if d := mustAllow(t, l, u, 0); d.Remaining != 9 {
		t.Fatalf("a cost of 0 left %d, want 9 (charged 1)", d.Remaining)
	}
	time.Sleep(150 * time.Millisecond)
	// A cost above the burst is charged the whole burst, not refused forever.
	if d := mustAllow(t, l, u, 1_000_000); d.Remaining != 0 {
		t.Fatalf("remaining = %d, want 0", d.Remaining)
	}
	d := mustRefuse(t, l, u, 1)
	if d.RetryAfter > 150*time.Millisecond {
		t.Fatalf("RetryAfter = %v, want about 100ms", d.RetryAfter)
	}
}

// Two instances (two limiters, two clients, one Redis) share one budget.
func TestBudgetSharedAcrossInstances(t *testing.T) {
	r := testenv.NewRedis(t)
	other := redis.NewClient(r.Client.Options())
	t.Cleanup(func() { _ = other.Close() })
	edit := func(c *ratelimit.Config) { c.User = perSecond(1, 10); c.IP = ratelimit.Off }
	a := newLimiter(t, r.Client, r.Prefix, edit)
	b := newLimiter(t, other, r.Prefix, edit)
	u := ratelimit.Subject{UserID: 42, IP: "192.0.2.1"}

	mustAllow(t, a, u, 6)
	if d := mustAllow(t, b, u, 3); d.Remaining != 1 {
		t.Fatalf("instance b sees remaining %d, want 1", d.Remaining)
	}
	mustRefuse(t, a, u, 2)
	mustRefuse(t, b, u, 2)
	// Another user is not affected.
	mustAllow(t, b, ratelimit.Subject{UserID: 43, IP: "192.0.2.1"}, 10)
}

func TestUserAndIPBudgets(t *testing.T) {
	r := testenv.NewRedis(t)
	l := newLimiter(t, r.Client, r.Prefix, func(c *ratelimit.Config) {
		c.User = perSecond(1, 10)
		c.IP = perSecond(1, 15)
	})
	const office, home = "198.51.100.7", "203.0.113.9"

	// Two users behind one address share its budget.
	mustAllow(t, l, ratelimit.Subject{UserID: 1, IP: office}, 10)
	d := mustRefuse(t, l, ratelimit.Subject{UserID: 2, IP: office}, 6)
	if !strings.Contains(d.Err().Error(), "IP address") {
		t.Fatalf("message %q should name the IP budget", d.Err())
	}
	// User 2's refusal was charged to neither bucket: 5 points still fit.
	mustAllow(t, l, ratelimit.Subject{UserID: 2, IP: office}, 5)
	// User 2 from another address has its own budget minus what it spent.
	if d := mustAllow(t, l, ratelimit.Subject{UserID: 2, IP: home}, 1); d.Remaining != 4 {
		t.Fatalf("remaining = %d, want 4 (user 2 has spent 6 of 10)", d.Remaining)
	}
	// User 1 has spent its budget everywhere.
	d = mustRefuse(t, l, ratelimit.Subject{UserID: 1, IP: home}, 1)
	if !strings.Contains(d.Err().Error(), "for this user") {
		t.Fatalf("message %q should name the user budget", d.Err())
	}
	// Anonymous clients have only the IP budget.
	mustRefuse(t, l, ratelimit.Subject{IP: office}, 1)
	mustAllow(t, l, ratelimit.Subject{IP: "192.0.2.200"}, 15)
	// No user and no IP: nothing to charge.
	if d := mustAllow(t, l, ratelimit.Subject{}, 1000); d.Remaining != -1 {
		t.Fatalf("remaining = %d, want -1", d.Remaining)
	}
}

// IPv6 clients are charged per /64, so rotating addresses does not help.
func TestIPv6ChargedPerPrefix(t *testing.T) {
	r := testenv.NewRedis(t)
	l := newLimiter(t, r.Client, r.Prefix, func(c *ratelimit.Config) { c.IP = perSecond(1, 10) })
	mustAllow(t, l, ratelimit.Subject{IP: "2001:db8:1:2::1"}, 10)
	mustRefuse(t, l, ratelimit.Subject{IP: "2001:db8:1:2:ffff::9"}, 1)
	mustAllow(t, l, ratelimit.Subject{IP: "2001:db8:1:3::1"}, 1)
}

func TestKeysUnderPrefix(t *testing.T) {
	r := testenv.NewRedis(t)
	l := newLimiter(t, r.Client, r.Prefix, nil)
	ctx := context.Background()
	mustAllow(t, l, ratelimit.Subject{UserID: 5, IP: "192.0.2.5"}, 3)
	_ = l.BeforeSignIn(ctx, "a@example.com", "192.0.2.5")
	l.AfterSignIn(ctx, "a@example.com", "192.0.2.5", false)
	l.AfterSignIn(ctx, "a@example.com", "192.0.2.5", true)

	marker := strings.Split(r.Prefix, ":")[1]
	all, err := r.Client.Keys(ctx, "*"+marker+"*").Result()
	if err != nil {
		t.Fatal(err)
	}
	if len(all) == 0 {
		t.Fatal("no keys written")
	}
	for _, k := range all {
		if !strings.HasPrefix(k, r.Prefix+"rl:") {
			t.Errorf("key %q is not under %q", k, r.Prefix+"rl:")
		}
		if ttl := r.Client.PTTL(ctx, k).Val(); ttl <= 0 {
			t.Errorf("key %q has no expiry (PTTL %v)", k, ttl)
		}
	}
}

// deadRedis is a client pointed at a closed port.
func deadRedis(t *testing.T) *redis.Client {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	_ = ln.Close()
	c := redis.NewClient(ratelimit.RedisOptions(&redis.Options{Addr: addr}))
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// hangingRedis is a client pointed at a server that accepts connections and
// never answers.
func hangingRedis(t *testing.T) *redis.Client {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var conns []net.Conn
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			conns = append(conns, c)
		}
	}()
	c := redis.NewClient(ratelimit.RedisOptions(&redis.Options{Addr: ln.Addr().String()}))
	t.Cleanup(func() {
		_ = c.Close()
		_ = ln.Close()
		<-done
		for _, c := range conns {
			_ = c.Close()
		}
	})
	return c
}

func TestRedisDown(t *testing.T) {
	for name, client := range map[string]func(*testing.T) *redis.Client{"closed port": deadRedis, "hanging": hangingRedis} {
		t.Run(name, func(t *testing.T) {
			rdb := client(t)
			ctx := context.Background()
			s := ratelimit.Subject{UserID: 1, IP: "192.0.2.1"}
			quick := func(what string, start time.Time) {
				t.Helper()
				if el := time.Since(start); el > time.Second {
					t.Errorf("%s took %v with Redis down, want well under a second", what, el)
				}
			}

			open := newLimiter(t, rdb, "x:", func(c *ratelimit.Config) { c.Timeout = 100 * time.Millisecond })
			start := time.Now()
			d, err := open.Allow(ctx, s, 1)
			quick("Allow (fail open)", start)
			if !d.Allowed || !errors.Is(err, ratelimit.ErrUnavailable) {
				t.Errorf("fail open: got %+v, %v; want allowed and ErrUnavailable", d, err)
			}
			// Within a second of a failure Redis is not tried again: the
			// policy answers at once.
			start = time.Now()
			if d, err := open.Allow(ctx, s, 1); !d.Allowed || !errors.Is(err, ratelimit.ErrUnavailable) {
				t.Errorf("second Allow: %+v, %v", d, err)
			}
			if el := time.Since(start); el > 20*time.Millisecond {
				t.Errorf("second Allow took %v; the breaker should answer at once", el)
			}
			// Sign-in fails closed by default, as INTERNAL, not RATE_LIMITED.
			start = time.Now()
			err = open.BeforeSignIn(ctx, "a@example.com", "192.0.2.1")
			quick("BeforeSignIn", start)
			if !errors.Is(err, ratelimit.ErrUnavailable) {
				t.Errorf("BeforeSignIn = %v, want ErrUnavailable (fail closed)", err)
			}
			if _, ok := lending.AsError(err); ok {
				t.Errorf("BeforeSignIn error %v is a lending.Error; want a server error (INTERNAL)", err)
			}
			start = time.Now()
			open.AfterSignIn(ctx, "a@example.com", "192.0.2.1", false)
			quick("AfterSignIn", start)

			closed := newLimiter(t, rdb, "x:", func(c *ratelimit.Config) {
				c.Timeout = 100 * time.Millisecond
				c.FailClosed = true
				c.SignIn.FailOpen = true
			})
			start = time.Now()
			d, err = closed.Allow(ctx, s, 1)
			quick("Allow (fail closed)", start)
			if d.Allowed || !errors.Is(err, ratelimit.ErrUnavailable) || !errors.Is(d.Err(), ratelimit.ErrUnavailable) {
				t.Errorf("fail closed: got %+v, %v; want refused with ErrUnavailable", d, err)
			}
			if err := closed.BeforeSignIn(ctx, "a@example.com", "192.0.2.1"); err != nil {
				t.Errorf("BeforeSignIn with SignIn.FailOpen = %v, want nil", err)
			}
		})
	}
}

func TestParseLimitAndEnv(t *testing.T) {
	for in, want := range map[string]ratelimit.Limit{
		"10000/1m burst 5000": ratelimit.PerMinute(10000, 5000),
		"20/m":                ratelimit.PerMinute(20, 20),
		"5/1s burst 2":        {Rate: 5, Period: time.Second, Burst: 2},
		"off":                 ratelimit.Off,
	} {
		got, err := ratelimit.ParseLimit(in)
		if err != nil || got != want {
			t.Errorf("ParseLimit(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, in := range []string{"", "10", "x/1m", "10/xyz", "10/1m burst 0", "-1/1m"} {
		if _, err := ratelimit.ParseLimit(in); err == nil {
			t.Errorf("ParseLimit(%q) succeeded, want an error", in)
		}
	}
	env := map[string]string{
		"RATE_LIMIT_USER": "100/1m burst 50", "RATE_LIMIT_IP": "off", "RATE_LIMIT_FAIL_CLOSED": "true",
		"SIGNIN_LIMIT_PER_EMAIL": "3/1m", "SIGNIN_LIMIT_FAIL_OPEN": "1", "TRUSTED_PROXIES": "10.0.0.0/8, 192.0.2.7",
	}
	var c ratelimit.Config
	if err := c.ApplyEnv(func(k string) string { return env[k] }); err != nil {
		t.Fatal(err)
	}
	if c.User != ratelimit.PerMinute(100, 50) || c.IP != ratelimit.Off || !c.FailClosed || !c.SignIn.FailOpen ||
		c.SignIn.PerEmail != ratelimit.PerMinute(3, 3) || len(c.TrustedProxies) != 2 {
		t.Errorf("ApplyEnv gave %+v", c)
	}
	env = map[string]string{"TRUSTED_PROXIES": "10.0.0.0/33"}
	if err := c.ApplyEnv(func(k string) string { return env[k] }); err == nil {
		t.Error("a bad TRUSTED_PROXIES was accepted")
	}
	if _, err := ratelimit.New(ratelimit.Config{}); err == nil {
		t.Error("New without Redis succeeded")
	}
}

// After Redis comes back, the limiter uses it again (the breaker closes).
func TestBreakerRecovers(t *testing.T) {
	r := testenv.NewRedis(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	_ = ln.Close()
	// A client whose dialer goes to a dead port until up is set.
	var up atomic.Bool
	opt := ratelimit.RedisOptions(r.Client.Options())
	live := opt.Addr
	opt.Dialer = func(ctx context.Context, network, _ string) (net.Conn, error) {
		target := addr
		if up.Load() {
			target = live
		}
		var d net.Dialer
		return d.DialContext(ctx, network, target)
	}
	c := redis.NewClient(opt)
	t.Cleanup(func() { _ = c.Close() })
	l := newLimiter(t, c, r.Prefix, func(c *ratelimit.Config) { c.User = perSecond(1, 1); c.Timeout = 100 * time.Millisecond })
	u := ratelimit.Subject{UserID: 1}
	if _, err := l.Allow(context.Background(), u, 1); !errors.Is(err, ratelimit.ErrUnavailable) {
		t.Fatalf("with Redis down: %v", err)
	}
	up.Store(true)
	time.Sleep(1100 * time.Millisecond)
	mustAllow(t, l, u, 1)
	mustRefuse(t, l, u, 1)
}
