package store_test

import (
	"strings"
	"testing"
	"time"
)

// CheckInvariants passes on a busy but consistent database and names each
// kind of corruption it is shown.
func TestCheckInvariantsDetectsViolations(t *testing.T) {
	e := newLenv(t)
	active, b, invs := e.activeLoan(1000_00, 3, t0, 600_00, 400_00)
	if _, err := e.s.RepayLoan(e.ctx, b, active.ID, 200_00, key(), t0.Add(24*time.Hour)); err != nil {
		t.Fatal(err)
	}
	funding := e.request(e.borrower(), 2000_00, 6, t0)
	e.invest(invs[0], funding.ID, 100_00, t0)
	e.check()

	cases := []struct {
		name  string
		sql   string
		wants []string
	}{
		{"money created", `UPDATE wallets SET balance = balance + 1 WHERE user_id = $1`,
			[]string{"sum of balances is 1", "entries sum to"}},
		{"a hold without its money held", `UPDATE wallets SET held = held - 1 WHERE user_id = $1`,
			[]string{"HELD holds sum to"}},
		{"a committed investment not in the loan's funded amount", `UPDATE loans SET funded_amount = funded_amount + 1 WHERE status = 'FUNDING' AND $1 > 0`,
			[]string{"a FUNDING loan's HELD holds"}},
		{"a schedule that does not add up", `UPDATE installments SET principal = principal + 1 WHERE number = 1 AND $1 > 0`,
			[]string{"principal sums to the amount"}},
		{"an unbalanced transfer", `UPDATE ledger_entries SET amount = amount + 1 WHERE id = (SELECT max(id) FROM ledger_entries) AND $1 > 0`,
			[]string{"every transfer sums to zero"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			// The checks must see the corruption: write it with the ledger's
			// balance trigger out of the way (CHECKs still apply), then undo it.
			corrupt(t, e, c.sql, invs[0].UserID)
			err := e.s.CheckInvariants(e.ctx)
			if err == nil {
				t.Fatal("corruption not detected")
			}
			for _, w := range c.wants {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error does not mention %q:\n%v", w, err)
				}
			}
			// Undo by inverting the update.
			undo := strings.NewReplacer("+ 1", "- 1", "- 1", "+ 1").Replace(c.sql)
			corrupt(t, e, undo, invs[0].UserID)
			if err := e.s.CheckInvariants(e.ctx); err != nil {
				t.Fatalf("after undo: %v", err)
			}
		})
	}
}

// corrupt runs sql (with userID as $1) with the ledger's balance trigger
// disabled, in its own transaction.
func corrupt(t *testing.T, e *lenv, sql string, userID int64) {
	t.Helper()
	tx, err := e.db.Pool.Begin(e.ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = tx.Rollback(e.ctx) }()
	if _, err := tx.Exec(e.ctx, `ALTER TABLE ledger_entries DISABLE TRIGGER ledger_entries_balanced`); err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(e.ctx, sql, userID); err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(e.ctx, `ALTER TABLE ledger_entries ENABLE TRIGGER ledger_entries_balanced`); err != nil {
		t.Fatal(err)
	}
	if err := tx.Commit(e.ctx); err != nil {
		t.Fatal(err)
	}
}
