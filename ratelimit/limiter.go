package ratelimit

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net/netip"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

	"mutuo/lending"
)

// ErrUnavailable is wrapped by the errors returned when Redis cannot be
// reached or answers nonsense.
var ErrUnavailable = errors.New("rate limiter unavailable")

// Subject is who is charged: a signed-in user (UserID > 0) and a client IP.
// The IP is as returned by ClientIP; IPv6 addresses are charged per
// IPv6PrefixLen prefix.
type Subject struct {
	UserID int64
	IP     string
}

// Decision is the outcome of Allow.
type Decision struct {
	Allowed bool
	// RetryAfter is how long to wait before the same cost can fit. It is 0
	// when Allowed is true.
	RetryAfter time.Duration
	// Remaining is the smallest budget left, in cost points, after this
	// charge. It is -1 when no budget applied (no user and no IP).
	Remaining int

	scope string // "user" or "IP address", when refused by a budget
	err   error  // set when refused because Redis failed (FailClosed)
}

// Err is nil when d allows. When d refuses, Err is a RATE_LIMITED
// *lending.Error whose message gives the delay. When d refuses because Redis
// failed and the limiter fails closed, Err wraps ErrUnavailable, which the
// error presenter shows as INTERNAL.
func (d Decision) Err() error {
	switch {
	case d.Allowed:
		return nil
	case d.err != nil:
		return d.err
	}
	scope := ""
	if d.scope != "" {
		scope = " for this " + d.scope
	}
	return lending.Errorf(lending.CodeRateLimited, "rate limit exceeded%s: retry in %ds", scope, RetryAfterSeconds(d.RetryAfter))
}

// RetryAfterSeconds is d rounded up to whole seconds, and at least 1. This
// is the Retry-After header value, in delay-seconds.
func RetryAfterSeconds(d time.Duration) int {
	s := int(math.Ceil(d.Seconds()))
	if s < 1 {
		s = 1
	}
	return s
}

// Limiter enforces the query budgets and guards signIn. It is safe for
// concurrent use, and it keeps no state of its own: any number of Limiters
// (one per instance) share their budgets through Redis.
type Limiter struct {
	cfg       Config
	rdb       redis.Scripter
	ips       ipResolver
	lastLog   atomic.Int64 // unix nanoseconds of the last logged Redis failure
	downUntil atomic.Int64 // unix nanoseconds until which Redis is not tried
	warnNoIP  atomic.Bool
	keyPrefix string
}

// New returns a Limiter. It fails when cfg lacks Redis or has a malformed
// Limit.
func New(cfg Config) (*Limiter, error) {
	if err := cfg.setDefaults(); err != nil {
		return nil, err
	}
	l := &Limiter{cfg: cfg, rdb: cfg.Redis, keyPrefix: cfg.Prefix + "rl:",
		ips: ipResolver{trusted: cfg.TrustedProxies}}
	if c, ok := cfg.Redis.(*redis.Client); ok && !c.Options().ContextTimeoutEnabled {
		cfg.Logger.Warn("ratelimit: the Redis client does not have ContextTimeoutEnabled; a hanging Redis " +
			"may delay requests beyond the limiter's Timeout (use ratelimit.RedisOptions)")
	}
	return l, nil
}

// Allow charges cost to s's budgets: the user's (when s.UserID > 0) and the
// IP's (when s.IP != ""). It charges all of them or none. HTTP operations
// are charged through Extension. A websocket transport that does not create
// its operations through the executor calls Allow for each subscribe, with
// the subscription's cost.
//
// When Redis fails, Allow returns the configured policy's decision together
// with an error that wraps ErrUnavailable. That is Allowed, unless FailClosed
// is set. Act on the Decision. The error is already logged (throttled).
func (l *Limiter) Allow(ctx context.Context, s Subject, cost int) (Decision, error) {
	if cost < 1 {
		cost = 1
	}
	var keys []string
	var args []any
	var scopes []string
	args = append(args, cost)
	if s.UserID > 0 && !l.cfg.User.off() {
		keys = append(keys, l.keyPrefix+"u:"+strconv.FormatInt(s.UserID, 10))
		args = append(args, l.cfg.User.args()...)
		scopes = append(scopes, "user")
	}
	if s.IP != "" && !l.cfg.IP.off() {
		keys = append(keys, l.keyPrefix+"ip:"+l.ipKey(s.IP))
		args = append(args, l.cfg.IP.args()...)
		scopes = append(scopes, "IP address")
	}
	if len(keys) == 0 {
		return Decision{Allowed: true, Remaining: -1}, nil
	}
	v, err := l.eval(ctx, "allow", allowScript, 4, keys, args...)
	var allowed, remaining, refused int64
	var wait float64
	if err == nil {
		allowed, _ = v[0].(int64)
		remaining, _ = v[1].(int64)
		refused, _ = v[3].(int64)
		s, _ := v[2].(string)
		if wait, err = strconv.ParseFloat(s, 64); err != nil {
			err = l.failure(ctx, "allow", err)
		}
	}
	if err != nil {
		if l.cfg.FailClosed {
			return Decision{RetryAfter: time.Second, Remaining: 0, err: err}, err
		}
		return Decision{Allowed: true, Remaining: -1}, err
	}
	if allowed == 1 {
		return Decision{Allowed: true, Remaining: int(remaining)}, nil
	}
	d := Decision{RetryAfter: time.Duration(wait * float64(time.Second))}
	if refused >= 1 && int(refused) <= len(scopes) {
		d.scope = scopes[refused-1]
	}
	if d.RetryAfter <= 0 {
		d.RetryAfter = time.Millisecond
	}
	return d, nil
}

// breakerWindow is how long Redis is left alone after a failure: requests
// get the failure policy at once instead of each waiting for Timeout.
const breakerWindow = time.Second

var errBreakerOpen = errors.New("not retried within 1s of a failure")

// eval runs a script with the limiter's timeout and returns its reply, which
// must be an array of n values. While the breaker is open (within
// breakerWindow of a failure) it fails at once. Errors wrap ErrUnavailable
// and are logged.
func (l *Limiter) eval(ctx context.Context, op string, s *redis.Script, n int, keys []string, args ...any) ([]any, error) {
	if time.Now().UnixNano() < l.downUntil.Load() {
		return nil, fmt.Errorf("%w: %s: %w", ErrUnavailable, op, errBreakerOpen)
	}
	rctx, cancel := context.WithTimeout(ctx, l.cfg.Timeout)
	defer cancel()
	v, err := s.Run(rctx, l.rdb, keys, args...).Slice()
	if err == nil && len(v) != n {
		err = fmt.Errorf("unexpected reply %v", v)
	}
	if err != nil {
		if ctx.Err() == nil { // not the caller giving up
			l.downUntil.Store(time.Now().Add(breakerWindow).UnixNano())
		}
		return nil, l.failure(ctx, op, err)
	}
	return v, nil
}

// failure wraps a Redis error in ErrUnavailable and logs it, at most once
// every 10 s.
func (l *Limiter) failure(ctx context.Context, op string, err error) error {
	now := time.Now().UnixNano()
	if last := l.lastLog.Load(); now-last >= int64(10*time.Second) && l.lastLog.CompareAndSwap(last, now) {
		l.cfg.Logger.ErrorContext(ctx, "ratelimit: redis failed", "op", op, "err", err,
			"fail_closed", l.cfg.FailClosed, "signin_fail_open", l.cfg.SignIn.FailOpen)
	}
	return fmt.Errorf("%w: %s: %w", ErrUnavailable, op, err)
}

// ipKey is the bucket name for a client IP: the address for IPv4, and the
// IPv6PrefixLen prefix for IPv6. A client cannot rotate addresses within the
// block it was given. A string that is not an address is used as it is, cut
// to 64 bytes.
func (l *Limiter) ipKey(ip string) string {
	a, err := netip.ParseAddr(ip)
	if err != nil {
		if len(ip) > 64 {
			ip = ip[:64]
		}
		return ip
	}
	a = a.Unmap().WithZone("")
	if a.Is6() {
		p, _ := a.Prefix(l.cfg.IPv6PrefixLen)
		return p.String()
	}
	return a.String()
}
