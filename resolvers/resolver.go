// Package resolvers implements the GraphQL schema: each resolver maps its
// arguments, calls one store, auth or domain method and returns. Relations go
// through the request's dataloaders.
package resolvers

import (
	"context"
	"time"

	"mutuo/auth"
	"mutuo/pix"
	"mutuo/realtime"
	"mutuo/store"
)

// Resolver holds the dependencies of every resolver.
type Resolver struct {
	Store *store.Store
	Auth  *auth.Service
	PSP   pix.PSP
	// DepositExpiry is how long a Pix charge can be paid (0: the default).
	DepositExpiry time.Duration
	// Now is the clock (time.Now in production; tests move it).
	Now func() time.Time
	// Hub is the instance's realtime hub, which the subscriptions listen to.
	Hub *realtime.Hub
	// SignInGuard limits sign-in attempts (the rate limiter); nil means none.
	SignInGuard SignInGuard

	// loanReads shares loanUpdated's re-reads among the subscribers of one
	// loan (zero value ready).
	loanReads sharedLoanReads
}

// SignInGuard limits sign-in attempts per email and client address.
type SignInGuard interface {
	// BeforeSignIn refuses an attempt with RATE_LIMITED (or INTERNAL when
	// it cannot decide and fails closed).
	// (The client's address comes from ctx.)
	BeforeSignIn(ctx context.Context, email string) error
	// AfterSignIn records an attempt's outcome.
	AfterSignIn(ctx context.Context, email string, ok bool)
}

func (r *Resolver) now() time.Time {
	if r.Now == nil {
		return time.Now()
	}
	return r.Now()
}
