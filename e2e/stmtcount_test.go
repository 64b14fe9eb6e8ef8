package e2e

import (
	"context"
	"fmt"
	"testing"
	"time"
)

// TestMarketplaceStatementCount proves the dataloaders batch every level:
// the marketplace query runs the same small number of statements for 5 and
// for 50 loans.
func TestMarketplaceStatementCount(t *testing.T) {
	// a generous wait makes batching deterministic under -race on a busy machine
	e := newEnv(t, envOpts{loaderWait: 30 * time.Millisecond})
	w := seedWorld(t, e)
	ctx := context.Background()
	// 60 FUNDING loans over the 2 borrowers, each with 3 investments
	_, err := e.DB.Pool.Exec(ctx, `
		WITH l AS (
			INSERT INTO loans (borrower_id, amount, term_months, annual_rate_bps, grade, purpose, status, funding_deadline)
			SELECT CASE WHEN g % 2 = 0 THEN $1::bigint ELSE $2::bigint END, 100000 + g, 12, 2100, 'B', 'bulk ' || g, 'FUNDING', now() + interval '10 days'
			FROM generate_series(1, 60) g RETURNING id)
		INSERT INTO investments (loan_id, investor_id, amount, status)
		SELECT l.id, CASE WHEN k % 2 = 0 THEN $3::bigint ELSE $4::bigint END, 2500, 'COMMITTED' FROM l, generate_series(1, 3) k`,
		w.ids["borrower:bor1"], w.ids["borrower:bor2"], w.ids["investor:inv1"], w.ids["investor:inv2"])
	if err != nil {
		t.Fatal(err)
	}
	q := `query($n: Int) { loans(first: $n) { edges { node { borrower { user { name } }
		investments(first: 10) { edges { node { investor { displayName } } } } } } } }`
	counts := map[int]int64{}
	for _, n := range []int{5, 50} {
		e.ok(w.tokens["inv1"], q, map[string]any{"n": n}) // warm the pool and the query cache
		before := e.Stmts.n.Load()
		d := e.ok(w.tokens["inv1"], q, map[string]any{"n": n})
		counts[n] = e.Stmts.n.Load() - before
		if got := len(list(d, "loans.edges")); got != n {
			t.Fatalf("N=%d: got %d loans", n, got)
		}
		if got := len(list(d, "loans.edges.0.node.investments.edges")); got < 1 {
			t.Fatalf("N=%d: no investments loaded", n)
		}
	}
	t.Logf("statements: N=5 → %d, N=50 → %d", counts[5], counts[50])
	if counts[5] != counts[50] || counts[50] > 6 {
		t.Fatalf("statements per request must be constant and at most 6: %v", fmt.Sprint(counts))
	}
}
