// Package store is Mutuo's PostgreSQL persistence: one exported method per use
// case, each in one transaction. It enforces ownership in its queries: a row
// the viewer may not see is not found.
package store

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
)

// Store is the Postgres store. It is safe for concurrent use.
type Store struct {
	pool *pgxpool.Pool
}

// New returns a Store on pool.
func New(pool *pgxpool.Pool) *Store { return &Store{pool: pool} }

// Pool exposes the pool for health checks and benchmarks.
func (s *Store) Pool() *pgxpool.Pool { return s.pool }

// inTx runs fn in one transaction, committing if it returns nil. Serialization
// failures and deadlocks are retried a few times.
func (s *Store) inTx(ctx context.Context, fn func(tx pgx.Tx) error) error {
	var err error
	for attempt := 0; attempt < 5; attempt++ {
		err = pgx.BeginFunc(ctx, s.pool, fn)
		if !isRetryable(err) {
			return err
		}
	}
	return err
}

func isRetryable(err error) bool {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		return pgErr.Code == "40001" || pgErr.Code == "40P01"
	}
	return false
}

// isUniqueViolation reports whether err is a unique violation of constraint
// (any constraint when name is empty).
func isUniqueViolation(err error, name string) bool {
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr) && pgErr.Code == "23505" && (name == "" || pgErr.ConstraintName == name)
}

// mustOne checks that a write touched exactly one row.
func mustOne(tag pgconn.CommandTag, what string) error {
	if tag.RowsAffected() != 1 {
		return fmt.Errorf("%s: touched %d rows, want 1", what, tag.RowsAffected())
	}
	return nil
}
