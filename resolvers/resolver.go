// Package resolvers implements the GraphQL schema: each resolver maps its
// arguments, calls one store, auth or domain method and returns. Relations go
// through the request's dataloaders.
package resolvers

import (
	"mutuo/auth"
	"mutuo/store"
)

// Resolver holds the dependencies of every resolver.
type Resolver struct {
	Store *store.Store
	Auth  *auth.Service
}
