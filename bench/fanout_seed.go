package main

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/redis/go-redis/v9"

	"mutuo/auth"
	"mutuo/lending"
	"mutuo/store"
)

// The fan-out benchmark's accounts: one borrower with one FUNDING loan (the
// shared loan every client follows) and the clients' users, all investors
// with money in their wallets (the benchmark's investments rotate among
// them, so each event also sends one notificationAdded to one client).
//
// Users are created with set-based SQL and a password hash nothing matches:
// signing up or in through the API runs argon2id (19 MiB, 2 passes) per
// user, ≈ 30-60 ms of CPU each, which for 10,000 users is minutes of setup
// on two cores. Their access tokens are minted instead with the app's own
// claims type (auth.Claims), the server's HS256 secret, issuer and audience,
// and one of them is checked with the app's auth.Service.Authenticate (the
// very check connection_init makes) before any socket opens. Nothing in
// Authenticate looks the session up in Postgres (the refresh-token family
// is only used by signOut), so such a token is indistinguishable from one
// that signIn returns.

// fanoutSeed is what the benchmark seeded.
type fanoutSeed struct {
	LoanID     int64
	LoanAmount lending.Money
	UserIDs    []int64 // the clients' users, in creation order
	Took       time.Duration
}

const fanoutNoPassword = "$bench$no-password-matches"

// seedFanout creates the borrower, the loan and users investors.
func seedFanout(ctx context.Context, pool *pgxpool.Pool, users int, balance lending.Money) (*fanoutSeed, error) {
	start := time.Now()
	st := store.New(pool)
	income := lending.Money(10_000_00)
	b, err := st.CreateUser(ctx, "Fanout Borrower", "fanout-borrower@bench.mutuo.dev", fanoutNoPassword,
		[]lending.Role{lending.RoleBorrower}, &income)
	if err != nil {
		return nil, fmt.Errorf("borrower: %w", err)
	}
	loan, err := st.RequestLoan(ctx, lending.Viewer{UserID: b.ID, Roles: []lending.Role{lending.RoleBorrower}},
		store.RequestLoanInput{Amount: lending.MaxLoan, TermMonths: 12, Purpose: "Fan-out benchmark loan"},
		"fanout-loan", time.Now())
	if err != nil {
		return nil, fmt.Errorf("request loan: %w", err)
	}
	s := &fanoutSeed{LoanID: loan.ID, LoanAmount: loan.Amount}
	err = pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		rows, err := tx.Query(ctx, `
			INSERT INTO users (name, email, password_hash, roles)
			SELECT 'Fanout Investor ' || g, 'fanout' || g || '@bench.mutuo.dev', $2, ARRAY['INVESTOR']
			FROM generate_series(1, $1::int) g ORDER BY g
			RETURNING id`, users, fanoutNoPassword)
		if err != nil {
			return fmt.Errorf("users: %w", err)
		}
		if s.UserIDs, err = pgx.CollectRows(rows, pgx.RowTo[int64]); err != nil {
			return fmt.Errorf("users: %w", err)
		}
		if _, err := tx.Exec(ctx, `
			INSERT INTO investors (user_id, display_name)
			SELECT id, name FROM users WHERE id = ANY($1) ORDER BY id`, s.UserIDs); err != nil {
			return fmt.Errorf("investors: %w", err)
		}
		if _, err := tx.Exec(ctx, `
			INSERT INTO wallets (kind, user_id, balance)
			SELECT 'USER', id, $2 FROM users WHERE id = ANY($1) ORDER BY id`, s.UserIDs, int64(balance)); err != nil {
			return fmt.Errorf("wallets: %w", err)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	if _, err := pool.Exec(ctx, "ANALYZE"); err != nil {
		return nil, fmt.Errorf("analyze: %w", err)
	}
	if len(s.UserIDs) != users {
		return nil, fmt.Errorf("seeded %d users, want %d", len(s.UserIDs), users)
	}
	s.Took = time.Since(start)
	return s, nil
}

// fanoutTokenMinter signs access tokens exactly as auth's token issuer does
// (HS256, the server's secret, issuer and audience).
type fanoutTokenMinter struct {
	secret           []byte
	issuer, audience string
	ttl              time.Duration
}

func (m fanoutTokenMinter) mint(userID int64, roles []lending.Role) (string, error) {
	now := time.Now().Truncate(time.Second)
	c := &auth.Claims{
		RegisteredClaims: jwt.RegisteredClaims{
			Issuer:    m.issuer,
			Subject:   strconv.FormatInt(userID, 10),
			Audience:  jwt.ClaimStrings{m.audience},
			ExpiresAt: jwt.NewNumericDate(now.Add(m.ttl)),
			IssuedAt:  jwt.NewNumericDate(now),
			ID:        uuid.NewString(),
		},
		Roles:     roles,
		SessionID: uuid.NewString(),
	}
	return jwt.NewWithClaims(jwt.SigningMethodHS256, c).SignedString(m.secret)
}

// checkToken verifies tok with the app's auth service, configured as the
// server's is.
func (m fanoutTokenMinter) checkToken(ctx context.Context, pool *pgxpool.Pool, redisPrefix, tok string, wantUser int64) error {
	keys, err := auth.NewHS256Keys(m.secret)
	if err != nil {
		return err
	}
	ropt, err := redis.ParseURL(redisURL())
	if err != nil {
		return err
	}
	rdb := redis.NewClient(ropt)
	defer rdb.Close()
	svc, err := auth.New(auth.Config{Issuer: m.issuer, Audience: m.audience, Keys: keys, Redis: rdb, Prefix: redisPrefix}, store.New(pool))
	if err != nil {
		return err
	}
	v, _, err := svc.Authenticate(ctx, tok)
	if err != nil {
		return fmt.Errorf("the app's auth service refuses a minted token: %w", err)
	}
	if v.UserID != wantUser || !v.Has(lending.RoleInvestor) {
		return fmt.Errorf("minted token authenticates as %+v, want user %d, INVESTOR", v, wantUser)
	}
	return nil
}
