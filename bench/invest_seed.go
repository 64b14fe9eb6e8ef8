package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"mutuo/auth"
	"mutuo/lending"
)

// The invest benchmark's data: investors with funded wallets and borrowers
// with FUNDING loans big enough that no run ever fills one, written by
// set-based SQL in one transaction that keeps every ledger invariant (checked
// with Store.CheckInvariants before the load starts).

const (
	// investPassword is every seeded investor's password (they sign in
	// through the API); borrowers never sign in.
	investPassword = "bench-invest-password-123"
	// investLoanAmount is each loan's amount: R$ 1 billion, so 32 workers
	// investing R$ 25–100 for minutes never fill one (no disbursement, no
	// INVALID_STATE).
	investLoanAmount = lending.Money(1_000_000_000_00)
	// investDeposit is each investor's Pix deposit: R$ 10 million.
	investDeposit = lending.Money(10_000_000_00)
)

// investSeedResult is what the workload needs from the seed.
type investSeedResult struct {
	InvestorEmails  []string
	InvestorUserIDs []int64 // same order as the emails
	SpreadLoans     []int64 // FUNDING loans for the spread distribution
	HotLoan         int64   // the one loan of the hot-row distribution
	Borrowers       int
	Took            time.Duration
}

var investSeedSQL = []string{
	// 0: borrowers ($1), who never sign in
	`INSERT INTO users (name, email, password_hash, roles)
	SELECT 'Bench Borrower ' || g, 'invest-borrower' || g || '@bench.mutuo.dev', '$bench$no-password-matches', ARRAY['BORROWER']
	FROM generate_series(1, $1::int) g ORDER BY g`,
	`INSERT INTO borrowers (user_id, display_name, grade, credit_score, monthly_income)
	SELECT id, 'Borrower ' || id, 'B', 750, 1000000 FROM users
	WHERE email LIKE 'invest-borrower%@bench.mutuo.dev' ORDER BY id`,
	// 2: investors ($1) with a real argon2id hash ($2) of investPassword
	`INSERT INTO users (name, email, password_hash, roles)
	SELECT 'Bench Investor ' || g, 'invest-investor' || g || '@bench.mutuo.dev', $2, ARRAY['INVESTOR']
	FROM generate_series(1, $1::int) g ORDER BY g`,
	`INSERT INTO investors (user_id, display_name)
	SELECT id, 'Investor ' || id FROM users WHERE email LIKE 'invest-investor%@bench.mutuo.dev' ORDER BY id`,
	`INSERT INTO wallets (kind, user_id)
	SELECT 'USER', id FROM users WHERE email LIKE 'invest-%@bench.mutuo.dev' ORDER BY id`,
	// 5: loans ($1 of them, amount $2, rate $3): FUNDING, deadline in 30 days,
	// round-robin over the borrowers, each with its escrow wallet
	`INSERT INTO loans (borrower_id, amount, term_months, annual_rate_bps, grade, purpose, status, funding_deadline)
	SELECT b.ids[1 + (g - 1) % cardinality(b.ids)], $2, 12, $3, 'B', 'Capital de giro (bench) #' || g, 'FUNDING',
		now() + interval '30 days'
	FROM generate_series(1, $1::int) g, (SELECT array_agg(id ORDER BY id) AS ids FROM borrowers) b ORDER BY g`,
	`INSERT INTO wallets (kind, loan_id) SELECT 'LOAN_ESCROW', id FROM loans ORDER BY id`,
	// 7: one Pix DEPOSIT ($1 centavos) per investor wallet, as store.post
	// writes it: a transfer, a PIX_CLEARING debit then a wallet credit, each
	// entry with its wallet's running balance, and the balances updated
	`CREATE TEMP TABLE invest_bench_deposits ON COMMIT DROP AS
	SELECT w.id AS wallet_id, w.balance AS before, row_number() OVER (ORDER BY w.id) AS rn,
		nextval(pg_get_serial_sequence('transfers', 'id')) AS transfer_id
	FROM wallets w JOIN investors iv ON iv.user_id = w.user_id
	WHERE w.kind = 'USER' ORDER BY w.id`,
	`INSERT INTO transfers (id, kind) OVERRIDING SYSTEM VALUE
	SELECT transfer_id, 'DEPOSIT' FROM invest_bench_deposits ORDER BY rn`,
	`INSERT INTO ledger_entries (transfer_id, wallet_id, kind, amount, balance_after, description)
	SELECT transfer_id, wallet_id, 'DEPOSIT', amount, balance_after, 'Pix deposit' FROM (
		SELECT d.transfer_id, c.id AS wallet_id, -$1::bigint AS amount, c.balance - $1::bigint * d.rn AS balance_after, d.rn, 0 AS leg
		FROM invest_bench_deposits d, wallets c WHERE c.kind = 'PIX_CLEARING'
		UNION ALL
		SELECT d.transfer_id, d.wallet_id, $1::bigint, d.before + $1::bigint, d.rn, 1
		FROM invest_bench_deposits d) x
	ORDER BY rn, leg`,
	`UPDATE wallets w SET balance = w.balance + $1::bigint, version = w.version + 1
	FROM invest_bench_deposits d WHERE d.wallet_id = w.id`,
	`UPDATE wallets SET balance = balance - $1::bigint * (SELECT count(*) FROM invest_bench_deposits), version = version + 1
	WHERE kind = 'PIX_CLEARING'`,
}

// seedInvest writes the benchmark's accounts and loans: borrowers, investors
// (password investPassword) with investDeposit each, and loans+1 FUNDING loans
// of investLoanAmount (the last is the hot one).
func seedInvest(ctx context.Context, pool *pgxpool.Pool, investors, loans int) (*investSeedResult, error) {
	start := time.Now()
	hasher, err := auth.NewPasswordHasher(auth.DefaultArgon2Params())
	if err != nil {
		return nil, err
	}
	hash, err := hasher.Hash(investPassword)
	if err != nil {
		return nil, err
	}
	borrowers := max(1, min(loans/10, 50))
	err = pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		for i, q := range investSeedSQL {
			var args []any
			switch i {
			case 0:
				args = []any{borrowers}
			case 2:
				args = []any{investors, hash}
			case 5:
				args = []any{loans + 1, int64(investLoanAmount), lending.RateBpsFor(lending.GradeB)}
			case 9, 10, 11:
				args = []any{int64(investDeposit)}
			}
			if _, err := tx.Exec(ctx, q, args...); err != nil {
				return fmt.Errorf("seed step %d: %w", i+1, err)
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	if _, err := pool.Exec(ctx, "ANALYZE"); err != nil {
		return nil, fmt.Errorf("analyze: %w", err)
	}
	r := &investSeedResult{Borrowers: borrowers}
	rows, err := pool.Query(ctx, `SELECT id, email FROM users WHERE email LIKE 'invest-investor%@bench.mutuo.dev' ORDER BY id`)
	if err != nil {
		return nil, err
	}
	for rows.Next() {
		var id int64
		var email string
		if err := rows.Scan(&id, &email); err != nil {
			rows.Close()
			return nil, err
		}
		r.InvestorUserIDs = append(r.InvestorUserIDs, id)
		r.InvestorEmails = append(r.InvestorEmails, email)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, err
	}
	lrows, err := pool.Query(ctx, `SELECT id FROM loans WHERE status = 'FUNDING' ORDER BY id`)
	if err != nil {
		return nil, err
	}
	ids, err := pgx.CollectRows(lrows, pgx.RowTo[int64])
	if err != nil {
		return nil, err
	}
	if len(r.InvestorUserIDs) != investors || len(ids) != loans+1 {
		return nil, fmt.Errorf("seeded %d investors and %d loans, want %d and %d", len(r.InvestorUserIDs), len(ids), investors, loans+1)
	}
	r.SpreadLoans, r.HotLoan = ids[:loans], ids[loans]
	r.Took = time.Since(start)
	return r, nil
}

// signInInvestors signs every investor in through the API's signIn mutation
// (argon2id verification, a few at a time) and returns their access tokens
// in the same order.
func signInInvestors(ctx context.Context, client *http.Client, baseURL string, emails []string) ([]string, error) {
	tokens := make([]string, len(emails))
	errs := make([]error, len(emails))
	sem := make(chan struct{}, 4)
	var wg sync.WaitGroup
	for i, email := range emails {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			data, err := gql(ctx, client, baseURL, "", `mutation($e: String!, $p: String!) { signIn(email: $e, password: $p) { accessToken } }`,
				map[string]any{"e": email, "p": investPassword})
			if err != nil {
				errs[i] = fmt.Errorf("sign in %s: %w", email, err)
				return
			}
			var r struct {
				SignIn struct {
					AccessToken string `json:"accessToken"`
				} `json:"signIn"`
			}
			if err := json.Unmarshal(data, &r); err != nil || r.SignIn.AccessToken == "" {
				errs[i] = fmt.Errorf("sign in %s: no token in %s", email, data)
				return
			}
			tokens[i] = r.SignIn.AccessToken
		}()
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return nil, err
		}
	}
	return tokens, nil
}
