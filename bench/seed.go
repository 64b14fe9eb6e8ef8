package main

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// seedSizes is how much marketplace data to seed.
type seedSizes struct {
	Borrowers, Investors, Loans, Investments int
}

func (s seedSizes) scaled(f float64) seedSizes {
	sc := func(n int) int { return max(1, int(float64(n)*f+0.5)) }
	return seedSizes{sc(s.Borrowers), sc(s.Investors), sc(s.Loans), sc(s.Investments)}
}

// defaultSizes is the dataset of issue 2's benchmark.
var defaultSizes = seedSizes{Borrowers: 2000, Investors: 500, Loans: 10000, Investments: 50000}

// seedStats describes what was seeded.
type seedStats struct {
	Sizes        seedSizes
	Funding      int // FUNDING loans: the marketplace
	MaxPerLoan   int // most investments on one loan
	Loans10Plus  int // loans with 10 or more investments
	FundingWith  int // FUNDING loans with at least one investment
	Took         time.Duration
	AnalyzeTook  time.Duration
	BenchAccount string // email domain of the seeded accounts
}

// Set-based seeding: a few INSERT … SELECT FROM generate_series statements
// in one transaction, so 60k+ rows take a second or two. Users get a
// password hash no password matches (they never sign in), every user a
// wallet. Loans spread over statuses (≈40% FUNDING), grades with their rate
// bands, amounts, terms, creation dates and deadlines; investments pick their
// loan with a skew (a few loans get dozens, ≈10% get 10+, many 1–5) through
// a permutation of loan ids so popular loans are scattered in every order.
var seedSQL = []string{
	// users: $1 borrowers then $2 investors, Brazilian-looking names
	`WITH fn AS (SELECT ARRAY['Ana','Bruno','Carla','Diego','Eduarda','Felipe','Gabriela','Henrique','Isabela','João',
		'Karina','Lucas','Mariana','Nicolas','Olívia','Pedro','Quitéria','Rafael','Sofia','Thiago','Ursula','Vitor',
		'Wesley','Yasmin','Zé','Beatriz','Caio','Daniela','Enzo','Fernanda'] AS a),
	 sn AS (SELECT ARRAY['Silva','Santos','Oliveira','Souza','Rodrigues','Ferreira','Alves','Pereira','Lima','Gomes',
		'Costa','Ribeiro','Martins','Carvalho','Almeida','Lopes','Soares','Fernandes','Vieira','Barbosa','Rocha',
		'Dias','Nascimento','Andrade','Moreira'] AS a)
	INSERT INTO users (name, email, password_hash, roles, created_at)
	SELECT fn.a[1 + g % 30] || ' ' || sn.a[1 + (g / 30) % 25] || ' ' || sn.a[1 + (g * 7 + 3) % 25],
		CASE WHEN g <= $1 THEN 'borrower' || g ELSE 'investor' || (g - $1) END || '@bench.mutuo.dev',
		'$bench$no-password-matches',
		CASE WHEN g <= $1 THEN ARRAY['BORROWER'] ELSE ARRAY['INVESTOR'] END,
		now() - random() * interval '730 days'
	FROM generate_series(1, $1::int + $2::int) g, fn, sn
	ORDER BY g`,
	`INSERT INTO borrowers (user_id, display_name, grade, credit_score, monthly_income, created_at)
	SELECT id, split_part(name, ' ', 1) || ' ' || left(split_part(name, ' ', 2), 1) || '.',
		CASE WHEN score >= 800 THEN 'A' WHEN score >= 700 THEN 'B' WHEN score >= 600 THEN 'C' WHEN score >= 500 THEN 'D' ELSE 'E' END,
		score, (1500 + floor(power(random(), 2) * 28500))::bigint * 100, created_at
	FROM (SELECT u.*, 350 + floor(random() * 600)::int AS score FROM users u
		WHERE u.email LIKE 'borrower%@bench.mutuo.dev' ORDER BY u.id) u`,
	`INSERT INTO investors (user_id, display_name, created_at)
	SELECT id, split_part(name, ' ', 1) || ' ' || left(split_part(name, ' ', 2), 1) || '.', created_at
	FROM users WHERE email LIKE 'investor%@bench.mutuo.dev' ORDER BY id`,
	`INSERT INTO wallets (kind, user_id, balance, created_at)
	SELECT 'USER', id, floor(random() * 50000)::bigint * 100, created_at
	FROM users WHERE email LIKE '%@bench.mutuo.dev' ORDER BY id`,
	// loans: $1 of them
	`WITH b AS (SELECT min(id) AS lo, count(*) AS n FROM borrowers),
	 r AS (
		SELECT g, b.lo + floor(random() * b.n)::bigint AS borrower_id,
			CASE WHEN s < .40 THEN 'FUNDING' WHEN s < .45 THEN 'FUNDED' WHEN s < .75 THEN 'ACTIVE'
				WHEN s < .90 THEN 'REPAID' WHEN s < .93 THEN 'DEFAULTED' ELSE 'CANCELLED' END AS status,
			CASE WHEN gr < .15 THEN 'A' WHEN gr < .45 THEN 'B' WHEN gr < .75 THEN 'C' WHEN gr < .90 THEN 'D' ELSE 'E' END AS grade,
			ra, rc
		FROM (SELECT g, random() AS s, random() AS gr, random() AS ra, random() AS rc FROM generate_series(1, $1) g) x, b),
	 t AS (
		SELECT r.*,
			CASE WHEN status = 'FUNDING' THEN now() - rc * interval '30 days'
				ELSE now() - interval '30 days' - rc * interval '700 days' END AS created_at
		FROM r)
	INSERT INTO loans (borrower_id, amount, term_months, annual_rate_bps, grade, purpose, status,
		funding_deadline, disbursed_at, created_at, updated_at)
	SELECT borrower_id,
		(10 + floor(power(random(), 2) * 990))::bigint * 10000,
		(ARRAY[6, 12, 18, 24, 36, 48, 60])[1 + floor(random() * 7)::int],
		10 * round((CASE grade WHEN 'A' THEN 1200 + ra * 600 WHEN 'B' THEN 1800 + ra * 600 WHEN 'C' THEN 2400 + ra * 800
			WHEN 'D' THEN 3200 + ra * 1000 ELSE 4200 + ra * 1800 END) / 10)::int,
		grade,
		(ARRAY['Capital de giro','Reforma da casa','Compra de equipamento','Quitar dívidas','Curso técnico',
			'Veículo para trabalho','Estoque para a loja','Tratamento de saúde'])[1 + g % 8] || ' #' || g,
		status,
		created_at + interval '30 days',
		CASE WHEN status IN ('ACTIVE', 'REPAID', 'DEFAULTED') THEN created_at + interval '20 days' END,
		created_at, created_at
	FROM t ORDER BY g`,
	// investments: $1 of them, oldest first so ids follow time
	`WITH l AS (SELECT min(id) AS lo, count(*) AS n FROM loans),
	 iv AS (SELECT min(id) AS lo, count(*) AS n FROM investors),
	 p AS (
		SELECT g, l.lo + (floor(power(random(), 1.6) * l.n)::bigint * 7919) % l.n AS loan_id,
			iv.lo + floor(random() * iv.n)::bigint AS investor_id, random() AS ra, random() AS rc
		FROM generate_series(1, $1) g, l, iv),
	 x AS (
		SELECT p.loan_id, p.investor_id, (5 + floor(power(p.ra, 3) * 195))::bigint * 1000 AS amount,
			CASE lo.status WHEN 'FUNDING' THEN 'COMMITTED' WHEN 'FUNDED' THEN 'COMMITTED' WHEN 'ACTIVE' THEN 'ACTIVE'
				WHEN 'DEFAULTED' THEN 'ACTIVE' WHEN 'REPAID' THEN 'CLOSED' ELSE 'REFUNDED' END AS status,
			lo.created_at + p.rc * (least(now(), lo.funding_deadline) - lo.created_at) AS created_at
		FROM p JOIN loans lo ON lo.id = p.loan_id)
	INSERT INTO investments (loan_id, investor_id, amount, status, created_at, updated_at)
	SELECT loan_id, investor_id, amount, status, created_at, created_at FROM x ORDER BY created_at`,
	`UPDATE loans l SET funded_amount = CASE WHEN l.status IN ('FUNDED', 'ACTIVE', 'REPAID', 'DEFAULTED') THEN l.amount
		ELSE least(l.amount, coalesce(s.total, 0)) END
	FROM (SELECT lo.id, (SELECT sum(amount) FROM investments i WHERE i.loan_id = lo.id) AS total FROM loans lo) s
	WHERE s.id = l.id`,
}

// seedMarketplace fills a migrated, empty database and analyzes it.
func seedMarketplace(ctx context.Context, pool *pgxpool.Pool, sz seedSizes) (seedStats, error) {
	st := seedStats{Sizes: sz, BenchAccount: "bench.mutuo.dev"}
	start := time.Now()
	err := pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		for i, q := range seedSQL {
			var args []any
			switch i {
			case 0:
				args = []any{sz.Borrowers, sz.Investors}
			case 4:
				args = []any{sz.Loans}
			case 5:
				args = []any{sz.Investments}
			}
			if _, err := tx.Exec(ctx, q, args...); err != nil {
				return fmt.Errorf("seed step %d: %w", i+1, err)
			}
		}
		return nil
	})
	if err != nil {
		return st, err
	}
	st.Took = time.Since(start)
	t := time.Now()
	if _, err := pool.Exec(ctx, "ANALYZE"); err != nil {
		return st, fmt.Errorf("analyze: %w", err)
	}
	st.AnalyzeTook = time.Since(t)
	err = pool.QueryRow(ctx, `
		SELECT (SELECT count(*) FROM loans WHERE status = 'FUNDING'),
			coalesce(max(n), 0), count(*) FILTER (WHERE n >= 10),
			(SELECT count(DISTINCT i.loan_id) FROM investments i JOIN loans l ON l.id = i.loan_id WHERE l.status = 'FUNDING')
		FROM (SELECT loan_id, count(*) AS n FROM investments GROUP BY loan_id) c`).
		Scan(&st.Funding, &st.MaxPerLoan, &st.Loans10Plus, &st.FundingWith)
	return st, err
}
