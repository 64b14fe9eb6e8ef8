package ratelimit_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strconv"
	"testing"
	"time"

	"mutuo/internal/testenv"
	"mutuo/lending"
	"mutuo/ratelimit"
)

// attempt is a sign-in as the resolver runs it: BeforeSignIn, then (if
// allowed) the password check with outcome ok, then AfterSignIn.
func attempt(l *ratelimit.Limiter, email, ip string, ok bool) error {
	ctx := context.Background()
	if err := l.BeforeSignIn(ctx, email, ip); err != nil {
		return err
	}
	l.AfterSignIn(ctx, email, ip, ok)
	return nil
}

var retryIn = regexp.MustCompile(`retry in (\d+)s`)

// refusedFor asserts err is a RATE_LIMITED refusal and returns its delay.
func refusedFor(t *testing.T, err error) time.Duration {
	t.Helper()
	e, ok := lending.AsError(err)
	if !ok || e.Code != lending.CodeRateLimited {
		t.Fatalf("err = %v, want RATE_LIMITED", err)
	}
	m := retryIn.FindStringSubmatch(e.Message)
	if m == nil {
		t.Fatalf("message %q has no delay", e.Message)
	}
	s, _ := strconv.Atoi(m[1])
	return time.Duration(s) * time.Second
}

func noErr(t *testing.T, err error, what string) {
	t.Helper()
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}

func TestSignInPerIPLimit(t *testing.T) {
	r := testenv.NewRedis(t)
	l := newLimiter(t, r.Client, r.Prefix, func(c *ratelimit.Config) {
		c.SignIn.PerIP = ratelimit.PerMinute(3, 3)
		c.SignIn.PerEmail = ratelimit.Off
	})
	for i := 0; i < 3; i++ {
		noErr(t, attempt(l, fmt.Sprintf("user%d@example.com", i), "198.51.100.1", false), "attempt")
	}
	if d := refusedFor(t, attempt(l, "user9@example.com", "198.51.100.1", true)); d < 15*time.Second || d > 21*time.Second {
		t.Fatalf("delay %v, want about 20s (one attempt every 20 s)", d)
	}
	noErr(t, attempt(l, "user9@example.com", "198.51.100.2", true), "another IP")
}

func TestSignInPerEmailLimit(t *testing.T) {
	r := testenv.NewRedis(t)
	l := newLimiter(t, r.Client, r.Prefix, func(c *ratelimit.Config) {
		c.SignIn.PerEmail = ratelimit.PerMinute(3, 3)
		c.SignIn.PerIP = ratelimit.Off
	})
	const home = "203.0.113.10"
	noErr(t, attempt(l, "victim@example.com", home, true), "home sign-in") // 1 of 3, and home is known now
	noErr(t, attempt(l, "Victim@Example.COM ", "198.51.100.1", false), "attempt 2")
	noErr(t, attempt(l, "VICTIM@example.com", "198.51.100.2", false), "attempt 3")
	// The email's budget is spent, whatever the case and the address.
	refusedFor(t, attempt(l, "victim@example.com", "198.51.100.3", false))
	refusedFor(t, attempt(l, "victim@EXAMPLE.com", "198.51.100.4", false))
	// Another email is not affected.
	noErr(t, attempt(l, "other@example.com", "198.51.100.3", false), "other email")
	// A known address bypasses the per-email budget.
	for i := 0; i < 5; i++ {
		noErr(t, attempt(l, "victim@example.com", home, true), "from home")
	}
}

func TestSignInPairLockout(t *testing.T) {
	r := testenv.NewRedis(t)
	l := newLimiter(t, r.Client, r.Prefix, func(c *ratelimit.Config) {
		c.SignIn.PerIP, c.SignIn.PerEmail = ratelimit.Off, ratelimit.Off
		c.SignIn.PairMaxFailures = 3
		c.SignIn.PairLockout = time.Minute
		c.SignIn.EmailMaxFailures = 1000
	})
	const victim, attacker, cafe = "victim@example.com", "198.51.100.66", "203.0.113.20"
	for i := 0; i < 3; i++ {
		noErr(t, attempt(l, victim, attacker, false), "guess")
	}
	if d := refusedFor(t, attempt(l, victim, attacker, true)); d < 55*time.Second || d > 60*time.Second {
		t.Fatalf("pair lock delay %v, want about 1m", d)
	}
	// The attacker locked only its own address. The victim, from an address
	// it has never used, still signs in.
	noErr(t, attempt(l, victim, cafe, true), "victim from a new address")
	// The attacker can still try other emails from its address.
	noErr(t, attempt(l, "someone@example.com", attacker, false), "other email")

	// A success clears the pair's failures.
	for i := 0; i < 2; i++ {
		noErr(t, attempt(l, victim, cafe, false), "typo")
	}
	noErr(t, attempt(l, victim, cafe, true), "success")
	for i := 0; i < 2; i++ {
		noErr(t, attempt(l, victim, cafe, false), "typo after success")
	}
	noErr(t, attempt(l, victim, cafe, true), "not locked")
}

// A distributed attack locks the email for new addresses. The lock is
// short, doubles up to a cap, cannot be extended while it holds, and never
// applies to an address the user has signed in from.
func TestSignInEmailLockoutBoundedAndKnownIPBypass(t *testing.T) {
	r := testenv.NewRedis(t)
	const base, lockCap = 300 * time.Millisecond, 1000 * time.Millisecond
	l := newLimiter(t, r.Client, r.Prefix, func(c *ratelimit.Config) {
		c.SignIn.PerIP, c.SignIn.PerEmail = ratelimit.Off, ratelimit.Off
		c.SignIn.PairMaxFailures = 1000
		c.SignIn.EmailMaxFailures = 4
		c.SignIn.EmailLockoutBase = base
		c.SignIn.EmailLockoutMax = lockCap
	})
	ctx := context.Background()
	const victim, home, newIP = "victim@example.com", "203.0.113.10", "192.0.2.200"
	noErr(t, attempt(l, victim, home, true), "victim signs in from home")

	bot := 0
	lockedFor := func() time.Duration {
		t.Helper()
		// BeforeSignIn's delay is in whole seconds; read the lock itself.
		keys := r.Client.Keys(ctx, r.Prefix+"rl:si:el:*").Val()
		if len(keys) != 1 {
			t.Fatalf("email lock keys = %v", keys)
		}
		return r.Client.PTTL(ctx, keys[0]).Val()
	}
	for round, want := range []time.Duration{base, 2 * base, lockCap, lockCap} {
		for i := 0; i < 4; i++ {
			bot++
			noErr(t, attempt(l, victim, fmt.Sprintf("198.51.100.%d", bot), false), fmt.Sprintf("round %d guess %d", round, i))
		}
		got := lockedFor()
		if got > want || got < want-150*time.Millisecond {
			t.Fatalf("round %d: email locked for %v, want %v", round, got, want)
		}
		// New addresses (the attacker's and the victim's) are refused ...
		refusedFor(t, l.BeforeSignIn(ctx, victim, newIP))
		for i := 0; i < 10; i++ {
			refusedFor(t, attempt(l, victim, fmt.Sprintf("198.51.101.%d", i), false))
		}
		// ... the victim's known address is not ...
		noErr(t, attempt(l, victim, home, true), "victim from home during the lock")
		// ... and the refused attempts did not extend the lock.
		if after := lockedFor(); after > got {
			t.Fatalf("round %d: lock grew from %v to %v", round, got, after)
		}
		time.Sleep(got + 50*time.Millisecond)
		noErr(t, l.BeforeSignIn(ctx, victim, newIP), fmt.Sprintf("round %d: new address after the lock", round))
	}

	// Failures from a known address (the user's typos) do not lock the
	// email for anyone else.
	for i := 0; i < 10; i++ {
		noErr(t, attempt(l, victim, home, false), "typo at home")
	}
	noErr(t, l.BeforeSignIn(ctx, victim, newIP), "new address after typos at home")
}

// A client that hangs up after the password check still gets its failure
// counted.
func TestAfterSignInSurvivesCancellation(t *testing.T) {
	r := testenv.NewRedis(t)
	l := newLimiter(t, r.Client, r.Prefix, func(c *ratelimit.Config) { c.SignIn.PairMaxFailures = 2 })
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	l.AfterSignIn(ctx, "a@example.com", "192.0.2.1", false)
	l.AfterSignIn(ctx, "a@example.com", "192.0.2.1", false)
	refusedFor(t, l.BeforeSignIn(context.Background(), "a@example.com", "192.0.2.1"))
}

// Within Middleware, a sign-in refusal sets Retry-After. The status stays
// 200 because it is a field error of an executed mutation.
func TestSignInRetryAfterHeader(t *testing.T) {
	r := testenv.NewRedis(t)
	l := newLimiter(t, r.Client, r.Prefix, func(c *ratelimit.Config) { c.SignIn.PerIP = ratelimit.PerMinute(1, 1) })
	h := l.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		err := l.BeforeSignIn(r.Context(), "a@example.com", ratelimit.ClientIPFrom(r.Context()))
		w.WriteHeader(http.StatusOK)
		_, _ = fmt.Fprint(w, err)
	}))
	do := func() *httptest.ResponseRecorder {
		req := httptest.NewRequest(http.MethodPost, "/graphql", nil)
		req.RemoteAddr = "192.0.2.1:1"
		w := httptest.NewRecorder()
		h.ServeHTTP(w, req)
		return w
	}
	if w := do(); w.Header().Get("Retry-After") != "" {
		t.Fatalf("first attempt: Retry-After %q", w.Header().Get("Retry-After"))
	}
	w := do()
	if ra, _ := strconv.Atoi(w.Header().Get("Retry-After")); w.Code != http.StatusOK || ra < 59 || ra > 60 {
		t.Fatalf("second attempt: %d, Retry-After %q, body %s", w.Code, w.Header().Get("Retry-After"), w.Body)
	}
}
