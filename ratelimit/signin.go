package ratelimit

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"strconv"
	"strings"
	"time"

	"mutuo/lending"
)

// unknownIP stands for a missing client IP in sign-in keys. Requests without
// an IP (Middleware not installed) share it, which is strict but safe.
const unknownIP = "unknown"

// signInKeys are the Redis keys of one (email, IP) attempt.
type signInKeys struct {
	member                                  string // the IP as stored in the known set
	pairFail, pairLock                      string
	known, emailFail, emailLock, emailLevel string
	ipBucket, emailBucket                   string
}

func (l *Limiter) signInKeys(email, ip string) signInKeys {
	sum := sha256.Sum256([]byte(NormalizeEmail(email)))
	e := hex.EncodeToString(sum[:16])
	m := unknownIP
	if ip != "" {
		m = l.ipKey(ip)
	}
	p := l.keyPrefix + "si:"
	return signInKeys{
		member:      m,
		pairFail:    p + "pf:" + e + ":" + m,
		pairLock:    p + "pl:" + e + ":" + m,
		known:       p + "k:" + e,
		emailFail:   p + "ef:" + e,
		emailLock:   p + "el:" + e,
		emailLevel:  p + "ev:" + e,
		ipBucket:    p + "ip:" + m,
		emailBucket: p + "e:" + e,
	}
}

// NormalizeEmail is the form in which sign-in limits count an email:
// trimmed and lower-cased, matching the store's case-insensitive lookup.
func NormalizeEmail(email string) string { return strings.ToLower(strings.TrimSpace(email)) }

// BeforeSignIn decides whether a sign-in attempt for email from ip may
// check the password. Call it before the password is verified. It charges
// the attempt to the per-IP budget, and to the per-email budget when ip is
// not known for email. It returns nil to go ahead, or a RATE_LIMITED
// *lending.Error whose message gives the delay when the pair or the email
// is locked or a budget is spent. The refusal looks the same whether the
// email has an account or not. When Redis fails it returns an error
// wrapping ErrUnavailable, which is presented as INTERNAL (fail closed), or
// nil if SignIn.FailOpen is set.
//
// Within an HTTP request that went through Middleware, a refusal also sets
// the response's Retry-After header.
func (l *Limiter) BeforeSignIn(ctx context.Context, email, ip string) error {
	k := l.signInKeys(email, ip)
	c := l.cfg.SignIn
	args := []any{k.member, int64(c.KnownIPTTL / time.Second)}
	args = append(args, c.PerIP.args()...)
	args = append(args, c.PerEmail.args()...)
	v, err := l.eval(ctx, "before sign-in", signInBeforeScript, 4,
		[]string{k.pairLock, k.emailLock, k.known, k.ipBucket, k.emailBucket}, args...)
	var wait float64
	if err == nil {
		s, _ := v[1].(string)
		if wait, err = strconv.ParseFloat(s, 64); err != nil {
			err = l.failure(ctx, "before sign-in", err)
		}
	}
	if err != nil {
		if c.FailOpen {
			return nil
		}
		return fmt.Errorf("sign-in is temporarily unavailable: %w", err)
	}
	if allowed, _ := v[0].(int64); allowed == 1 {
		return nil
	}
	d := Decision{RetryAfter: time.Duration(wait * float64(time.Second))}
	if d.RetryAfter <= 0 {
		d.RetryAfter = time.Millisecond
	}
	if h, _ := ctx.Value(holderKey{}).(*holder); h != nil {
		h.set(d)
	}
	return lending.Errorf(lending.CodeRateLimited, "too many sign-in attempts: retry in %ds", RetryAfterSeconds(d.RetryAfter))
}

// AfterSignIn records the outcome of a password check that BeforeSignIn
// allowed. Pass ok=false only for wrong credentials (an unknown email or a
// wrong password), not for server errors. A failure counts toward the
// (email, IP) lockout, and toward the per-email lockout unless ip is known
// for email. A success clears the pair's failures and makes ip known for
// email. Errors are logged, not returned. The work is not cancelled with
// ctx, so a client cannot escape a failure by hanging up.
func (l *Limiter) AfterSignIn(ctx context.Context, email, ip string, ok bool) {
	ctx = context.WithoutCancel(ctx)
	k := l.signInKeys(email, ip)
	c := l.cfg.SignIn
	if ok {
		member := k.member
		if ip == "" {
			member = "" // never make "no IP" a known address
		}
		_, _ = l.eval(ctx, "sign-in succeeded", signInOKScript, 1, []string{k.pairFail, k.pairLock, k.known},
			member, c.KnownIPTTL.Milliseconds(), c.MaxKnownIPs)
		return
	}
	_, _ = l.eval(ctx, "sign-in failed", signInFailScript, 2,
		[]string{k.pairFail, k.pairLock, k.known, k.emailFail, k.emailLock, k.emailLevel},
		k.member, int64(c.KnownIPTTL/time.Second),
		c.PairMaxFailures, c.PairWindow.Milliseconds(), c.PairLockout.Milliseconds(),
		c.EmailMaxFailures, c.EmailWindow.Milliseconds(),
		c.EmailLockoutBase.Milliseconds(), c.EmailLockoutMax.Milliseconds(), c.EmailLockoutMemory.Milliseconds())
}
