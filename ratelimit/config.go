package ratelimit

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/99designs/gqlgen/graphql"
	"github.com/redis/go-redis/v9"
)

// Limit is a GCRA budget: Rate units per Period on average, and at most Burst
// at once. The zero Limit means "the default". A negative Rate turns the
// budget off.
type Limit struct {
	Rate   int
	Period time.Duration
	Burst  int
}

// PerMinute is rate a minute with the given burst.
func PerMinute(rate, burst int) Limit { return Limit{Rate: rate, Period: time.Minute, Burst: burst} }

// Off is a Limit that is never enforced.
var Off = Limit{Rate: -1}

func (l Limit) off() bool { return l.Rate < 0 }

func (l Limit) String() string {
	if l.off() {
		return "off"
	}
	return fmt.Sprintf("%d per %s (burst %d)", l.Rate, l.Period, l.Burst)
}

func (l Limit) withDefault(d Limit) Limit {
	if l == (Limit{}) {
		return d
	}
	return l
}

func (l Limit) validate(name string) error {
	if l.off() {
		return nil
	}
	if l.Rate == 0 || l.Period <= 0 || l.Burst <= 0 {
		return fmt.Errorf("ratelimit: %s needs a positive Rate, Period and Burst (got %s)", name, l)
	}
	return nil
}

// args is the Lua script's view of the limit: burst, rate, period in seconds.
func (l Limit) args() []any {
	if l.off() {
		return []any{0, 0, 0}
	}
	return []any{l.Burst, l.Rate, strconv.FormatFloat(l.Period.Seconds(), 'f', -1, 64)}
}

// Defaults. See the package documentation for the reasoning.
var (
	DefaultUser          = PerMinute(10_000, 5_000)
	DefaultIP            = PerMinute(20_000, 10_000)
	DefaultSignInPerIP   = PerMinute(20, 20)
	DefaultSignInPerMail = PerMinute(5, 5)
)

// Default durations and counts.
const (
	DefaultTimeout            = 200 * time.Millisecond
	DefaultIPv6PrefixLen      = 64
	DefaultPairMaxFailures    = 10
	DefaultPairWindow         = 15 * time.Minute
	DefaultPairLockout        = 15 * time.Minute
	DefaultEmailMaxFailures   = 20
	DefaultEmailWindow        = 15 * time.Minute
	DefaultEmailLockoutBase   = time.Minute
	DefaultEmailLockoutMax    = 15 * time.Minute
	DefaultEmailLockoutMemory = 24 * time.Hour
	DefaultKnownIPTTL         = 30 * 24 * time.Hour
	DefaultMaxKnownIPs        = 10
)

// Config configures a Limiter. Zero values are the defaults.
type Config struct {
	// Redis holds all state; required. Use a client made from RedisOptions
	// so that Timeout bounds socket I/O.
	Redis redis.Scripter
	// Prefix comes before every key, e.g. "mutuo:" (keys are
	// "<Prefix>rl:...").
	Prefix string
	// Timeout bounds each Redis call (DefaultTimeout).
	Timeout time.Duration
	// Logger gets Redis failures, at most once every 10 s (slog.Default()).
	Logger *slog.Logger

	// User is the budget per signed-in user, in cost points (DefaultUser).
	User Limit
	// IP is the budget per client IP, in cost points (DefaultIP).
	IP Limit
	// CostOf is an accepted operation's cost. When nil, it is the cost that
	// package limits measured (limits.CostOf, cost.requested), or 1 when
	// limits is not installed before the Extension.
	CostOf func(ctx context.Context, op *graphql.OperationContext) int
	// SkipSubscriptions makes the Extension leave subscriptions alone. Leave
	// it false with realtime.WSTransport: that transport creates every
	// operation through the executor, so the Extension charges it. Set it
	// only for a transport that calls Allow itself for each subscribe, so
	// that a subscription is never charged twice.
	SkipSubscriptions bool
	// FailClosed refuses operations when Redis cannot be reached. The
	// default (false) lets them through: see the package documentation.
	FailClosed bool

	// TrustedProxies are the peers whose X-Forwarded-For is believed (the
	// default is none).
	TrustedProxies []netip.Prefix
	// IPv6PrefixLen is the prefix that one IPv6 client is assumed to own, so
	// that it cannot rotate addresses within its /64 (DefaultIPv6PrefixLen).
	IPv6PrefixLen int

	// SignIn configures BeforeSignIn/AfterSignIn.
	SignIn SignInConfig
}

// SignInConfig configures the protection of signIn. Zero values are the
// defaults.
type SignInConfig struct {
	PerIP    Limit // attempts per client IP (DefaultSignInPerIP)
	PerEmail Limit // attempts per email from IPs not known for it (DefaultSignInPerMail)

	PairMaxFailures int           // failures per (email, IP) that lock the pair (10)
	PairWindow      time.Duration // ... counted within (15 min)
	PairLockout     time.Duration // ... for (15 min)

	EmailMaxFailures   int           // failures per email, from unknown IPs, that lock it (20)
	EmailWindow        time.Duration // ... counted within (15 min)
	EmailLockoutBase   time.Duration // first lock (1 min), doubled each time it recurs
	EmailLockoutMax    time.Duration // ... up to (15 min)
	EmailLockoutMemory time.Duration // ... within (24 h)

	KnownIPTTL  time.Duration // how long an IP stays known after a success (30 days)
	MaxKnownIPs int           // most recent known IPs kept per email (10)

	// FailOpen lets sign-in attempts through when Redis cannot be reached.
	// The default (false) refuses them: see the package documentation.
	FailOpen bool
}

func (c *Config) setDefaults() error {
	if c.Redis == nil {
		return errors.New("ratelimit: Redis is required")
	}
	if c.Timeout <= 0 {
		c.Timeout = DefaultTimeout
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	c.User = c.User.withDefault(DefaultUser)
	c.IP = c.IP.withDefault(DefaultIP)
	if c.IPv6PrefixLen <= 0 || c.IPv6PrefixLen > 128 {
		c.IPv6PrefixLen = DefaultIPv6PrefixLen
	}
	s := &c.SignIn
	s.PerIP = s.PerIP.withDefault(DefaultSignInPerIP)
	s.PerEmail = s.PerEmail.withDefault(DefaultSignInPerMail)
	setInt(&s.PairMaxFailures, DefaultPairMaxFailures)
	setDur(&s.PairWindow, DefaultPairWindow)
	setDur(&s.PairLockout, DefaultPairLockout)
	setInt(&s.EmailMaxFailures, DefaultEmailMaxFailures)
	setDur(&s.EmailWindow, DefaultEmailWindow)
	setDur(&s.EmailLockoutBase, DefaultEmailLockoutBase)
	setDur(&s.EmailLockoutMax, DefaultEmailLockoutMax)
	setDur(&s.EmailLockoutMemory, DefaultEmailLockoutMemory)
	setDur(&s.KnownIPTTL, DefaultKnownIPTTL)
	setInt(&s.MaxKnownIPs, DefaultMaxKnownIPs)
	if s.EmailLockoutMax < s.EmailLockoutBase {
		s.EmailLockoutMax = s.EmailLockoutBase
	}
	for name, l := range map[string]Limit{"User": c.User, "IP": c.IP, "SignIn.PerIP": s.PerIP, "SignIn.PerEmail": s.PerEmail} {
		if err := l.validate(name); err != nil {
			return err
		}
	}
	return nil
}

func setInt(p *int, d int) {
	if *p <= 0 {
		*p = d
	}
}

func setDur(p *time.Duration, d time.Duration) {
	if *p <= 0 {
		*p = d
	}
}

// RedisOptions returns a copy of base tuned for the limiter. Contexts bound
// socket I/O, timeouts are short, and there is at most one retry. A Redis that
// is down or hanging then costs a request at most about Timeout. Use it to
// give the limiter its own client:
//
//	rl := redis.NewClient(ratelimit.RedisOptions(ropt))
func RedisOptions(base *redis.Options) *redis.Options {
	o := *base
	o.ContextTimeoutEnabled = true
	o.DialTimeout = 250 * time.Millisecond
	o.ReadTimeout = 250 * time.Millisecond
	o.WriteTimeout = 250 * time.Millisecond
	o.PoolTimeout = 250 * time.Millisecond
	o.MaxRetries = 1
	return &o
}

// ParseTrustedProxies parses a comma-separated list of CIDRs or single
// addresses, as in TRUSTED_PROXIES="10.0.0.0/8, 192.0.2.7".
func ParseTrustedProxies(s string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, f := range strings.Split(s, ",") {
		f = strings.TrimSpace(f)
		if f == "" {
			continue
		}
		if strings.Contains(f, "/") {
			p, err := netip.ParsePrefix(f)
			if err != nil {
				return nil, fmt.Errorf("TRUSTED_PROXIES: %q is not a CIDR", f)
			}
			if p.Addr().Is4In6() {
				p = netip.PrefixFrom(p.Addr().Unmap(), p.Bits()-96)
			}
			out = append(out, p.Masked())
			continue
		}
		a, err := netip.ParseAddr(f)
		if err != nil {
			return nil, fmt.Errorf("TRUSTED_PROXIES: %q is not an IP address or CIDR", f)
		}
		a = a.Unmap().WithZone("")
		out = append(out, netip.PrefixFrom(a, a.BitLen()))
	}
	return out, nil
}

// ApplyEnv reads the limiter's variables into c. Variables that are unset
// keep c's values. A bad value is an error that names the variable.
//
//	RATE_LIMIT_USER         "10000/1m burst 5000" (or "off")
//	RATE_LIMIT_IP           "20000/1m burst 10000" (or "off")
//	RATE_LIMIT_FAIL_CLOSED  "false"
//	SIGNIN_LIMIT_PER_IP     "20/1m burst 20"
//	SIGNIN_LIMIT_PER_EMAIL  "5/1m burst 5"
//	SIGNIN_LIMIT_FAIL_OPEN  "false"
//	TRUSTED_PROXIES         "" (comma-separated CIDRs)
func (c *Config) ApplyEnv(getenv func(string) string) error {
	limits := []struct {
		name string
		dst  *Limit
	}{
		{"RATE_LIMIT_USER", &c.User}, {"RATE_LIMIT_IP", &c.IP},
		{"SIGNIN_LIMIT_PER_IP", &c.SignIn.PerIP}, {"SIGNIN_LIMIT_PER_EMAIL", &c.SignIn.PerEmail},
	}
	for _, l := range limits {
		if v := strings.TrimSpace(getenv(l.name)); v != "" {
			lim, err := ParseLimit(v)
			if err != nil {
				return fmt.Errorf("%s: %w", l.name, err)
			}
			*l.dst = lim
		}
	}
	bools := []struct {
		name string
		dst  *bool
	}{{"RATE_LIMIT_FAIL_CLOSED", &c.FailClosed}, {"SIGNIN_LIMIT_FAIL_OPEN", &c.SignIn.FailOpen}}
	for _, b := range bools {
		if v := strings.TrimSpace(getenv(b.name)); v != "" {
			x, err := strconv.ParseBool(v)
			if err != nil {
				return fmt.Errorf("%s must be true or false, got %q", b.name, v)
			}
			*b.dst = x
		}
	}
	if v := getenv("TRUSTED_PROXIES"); strings.TrimSpace(v) != "" {
		p, err := ParseTrustedProxies(v)
		if err != nil {
			return err
		}
		c.TrustedProxies = p
	}
	return nil
}

// ParseLimit parses "RATE/PERIOD" with an optional " burst N", for example
// "10000/1m burst 5000". Without a burst, the burst is RATE. "off" disables
// the budget.
func ParseLimit(s string) (Limit, error) {
	s = strings.TrimSpace(s)
	if strings.EqualFold(s, "off") {
		return Off, nil
	}
	bad := fmt.Errorf("want RATE/PERIOD [burst N] (e.g. 10000/1m burst 5000) or off, got %q", s)
	spec, burstPart, hasBurst := strings.Cut(s, " burst ")
	rs, ps, ok := strings.Cut(strings.TrimSpace(spec), "/")
	if !ok {
		return Limit{}, bad
	}
	rate, err := strconv.Atoi(strings.TrimSpace(rs))
	if err != nil || rate <= 0 {
		return Limit{}, bad
	}
	ps = strings.TrimSpace(ps)
	if ps != "" && (ps[0] < '0' || ps[0] > '9') {
		ps = "1" + ps // "100/m"
	}
	period, err := time.ParseDuration(ps)
	if err != nil || period <= 0 {
		return Limit{}, bad
	}
	burst := rate
	if hasBurst {
		if burst, err = strconv.Atoi(strings.TrimSpace(burstPart)); err != nil || burst <= 0 {
			return Limit{}, bad
		}
	}
	return Limit{Rate: rate, Period: period, Burst: burst}, nil
}
