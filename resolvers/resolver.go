// Package resolvers implements the GraphQL schema: each resolver maps its
// arguments, calls one store, auth or domain method and returns. Relations go
// through the request's dataloaders.
package resolvers

import (
	"time"

	"mutuo/auth"
	"mutuo/pix"
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
}

func (r *Resolver) now() time.Time {
	if r.Now == nil {
		return time.Now()
	}
	return r.Now()
}
