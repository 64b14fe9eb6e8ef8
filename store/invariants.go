package store

import (
	"context"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5"
)

// invariantChecks are the money invariants, each a query that returns one
// text row per violation. They read one snapshot (see CheckInvariants).
var invariantChecks = []struct {
	name string
	sql  string
}{
	{"money is conserved: all wallet balances sum to zero", `
		SELECT 'sum of balances is ' || sum(balance) FROM wallets HAVING sum(balance) <> 0`},
	{"every wallet's balance equals the sum of its entries", `
		SELECT format('wallet %s (%s): balance %s, entries sum to %s', w.id, w.kind, w.balance, coalesce(e.s, 0))
		FROM wallets w LEFT JOIN (SELECT wallet_id, sum(amount) AS s FROM ledger_entries GROUP BY wallet_id) e ON e.wallet_id = w.id
		WHERE w.balance <> coalesce(e.s, 0)`},
	{"every entry's balance_after is its wallet's running balance", `
		SELECT format('entry %s on wallet %s: balance_after %s, running sum %s', id, wallet_id, balance_after, running)
		FROM (SELECT id, wallet_id, balance_after, sum(amount) OVER (PARTITION BY wallet_id ORDER BY id) AS running
		      FROM ledger_entries) x
		WHERE balance_after <> running`},
	{"no negative balance or available (only Pix clearing mirrors the outside and may be negative)", `
		SELECT format('wallet %s (%s): balance %s, held %s, available %s', id, kind, balance, held, balance - held)
		FROM wallets WHERE kind <> 'PIX_CLEARING' AND (balance < 0 OR held < 0 OR balance - held < 0)`},
	{"every wallet's held equals its HELD holds", `
		SELECT format('wallet %s: held %s, HELD holds sum to %s', w.id, w.held, coalesce(h.s, 0))
		FROM wallets w LEFT JOIN (SELECT wallet_id, sum(amount) AS s FROM holds WHERE status = 'HELD' GROUP BY wallet_id) h ON h.wallet_id = w.id
		WHERE w.held <> coalesce(h.s, 0)`},
	{"every numbered notification or message event has numbered its item (replays read the item's number)", `
		SELECT format('event %s (%s, number %s): its item is not numbered', o.id, o.topic, o.pub_seq)
		FROM outbox o
		WHERE o.pub_seq IS NOT NULL AND (
			(o.topic = '` + topicNotificationAdded + `' AND NOT EXISTS (SELECT 1 FROM notifications nt
				WHERE nt.id = (o.payload->>'notificationId')::bigint AND nt.pub_seq IS NOT NULL))
			OR (o.topic = '` + topicMessageAdded + `' AND NOT EXISTS (SELECT 1 FROM messages m
				WHERE m.id = (o.payload->>'messageId')::bigint AND m.pub_seq IS NOT NULL)))`},
	{"every transfer sums to zero and has entries", `
		SELECT format('transfer %s (%s): %s entries summing to %s', t.id, t.kind, count(e.id), coalesce(sum(e.amount), 0))
		FROM transfers t LEFT JOIN ledger_entries e ON e.transfer_id = t.id
		GROUP BY t.id, t.kind HAVING coalesce(sum(e.amount), 0) <> 0 OR count(e.id) < 2`},
	{"every investment's hold matches its state (COMMITTED: HELD for its amount in its investor's wallet; ACTIVE/CLOSED: POSTED; REFUNDED: VOIDED)", `
		SELECT format('investment %s (%s, %s): hold %s (%s, %s) on wallet %s, investor wallet %s',
			i.id, i.status, i.amount, h.id, h.status, h.amount, h.wallet_id, w.id)
		FROM investments i
		JOIN investors iv ON iv.id = i.investor_id
		JOIN wallets w ON w.user_id = iv.user_id
		LEFT JOIN holds h ON h.investment_id = i.id
		WHERE h.id IS NULL OR h.amount <> i.amount OR h.wallet_id <> w.id
		   OR h.status <> CASE i.status WHEN 'COMMITTED' THEN 'HELD' WHEN 'REFUNDED' THEN 'VOIDED' ELSE 'POSTED' END`},
	// Funding holds the money in the investors' wallets, not in escrow (see
	// loans.go): this is the issue's "escrow equals committed investments
	// until disbursement" for that design.
	{"a FUNDING loan's HELD holds = its funded amount = its COMMITTED investments, and it has no others", `
		SELECT format('loan %s: funded %s, committed %s, held %s, other investments %s', l.id, l.funded_amount,
			coalesce(sum(i.amount) FILTER (WHERE i.status = 'COMMITTED'), 0),
			coalesce(sum(h.amount) FILTER (WHERE h.status = 'HELD'), 0),
			count(i.id) FILTER (WHERE i.status <> 'COMMITTED'))
		FROM loans l LEFT JOIN investments i ON i.loan_id = l.id LEFT JOIN holds h ON h.investment_id = i.id
		WHERE l.status = 'FUNDING'
		GROUP BY l.id, l.funded_amount
		HAVING l.funded_amount <> coalesce(sum(i.amount) FILTER (WHERE i.status = 'COMMITTED'), 0)
		    OR l.funded_amount <> coalesce(sum(h.amount) FILTER (WHERE h.status = 'HELD'), 0)
		    OR count(i.id) FILTER (WHERE i.status <> 'COMMITTED') > 0`},
	{"every loan escrow is empty between transactions", `
		SELECT format('escrow wallet %s of loan %s: balance %s, held %s', id, loan_id, balance, held)
		FROM wallets WHERE kind = 'LOAN_ESCROW' AND (balance <> 0 OR held <> 0)`},
	{"every loan has exactly one escrow wallet", `
		SELECT format('loan %s has no escrow wallet', l.id) FROM loans l
		WHERE NOT EXISTS (SELECT 1 FROM wallets w WHERE w.loan_id = l.id AND w.kind = 'LOAN_ESCROW')`},
	{"a disbursed loan was funded exactly by its ACTIVE/CLOSED investments and has its schedule (principal sums to the amount, one installment per month)", `
		SELECT format('loan %s (%s): amount %s, funded %s, investments %s, installments %s of %s with principal %s, disbursed_at %s',
			l.id, l.status, l.amount, l.funded_amount, coalesce(i.s, 0), coalesce(n.c, 0), l.term_months, coalesce(n.p, 0), l.disbursed_at)
		FROM loans l
		LEFT JOIN (SELECT loan_id, sum(amount) AS s FROM investments WHERE status IN ('ACTIVE', 'CLOSED') GROUP BY loan_id) i ON i.loan_id = l.id
		LEFT JOIN (SELECT loan_id, count(*) AS c, sum(principal) AS p FROM installments GROUP BY loan_id) n ON n.loan_id = l.id
		WHERE l.status IN ('ACTIVE', 'REPAID', 'DEFAULTED')
		  AND (l.funded_amount <> l.amount OR coalesce(i.s, 0) <> l.amount OR coalesce(n.p, 0) <> l.amount
		       OR coalesce(n.c, 0) <> l.term_months OR l.disbursed_at IS NULL)`},
	{"FUNDED is only ever seen inside the transaction that disburses", `
		SELECT format('loan %s is FUNDED', id) FROM loans WHERE status = 'FUNDED'`},
	{"loans not disbursed have no schedule; cancelled ones hold nothing", `
		SELECT format('loan %s (%s) has %s installments and %s HELD holds', l.id, l.status,
			(SELECT count(*) FROM installments n WHERE n.loan_id = l.id),
			(SELECT count(*) FROM investments i JOIN holds h ON h.investment_id = i.id WHERE i.loan_id = l.id AND h.status = 'HELD'))
		FROM loans l WHERE l.status IN ('FUNDING', 'CANCELLED')
		  AND (EXISTS (SELECT 1 FROM installments n WHERE n.loan_id = l.id)
		       OR (l.status = 'CANCELLED' AND EXISTS (SELECT 1 FROM investments i WHERE i.loan_id = l.id AND i.status <> 'REFUNDED')))`},
	{"an installment is PAID exactly when fully paid, and a REPAID loan's are all PAID", `
		SELECT format('installment %s of loan %s (%s): paid %s of %s, paid_at %s', n.number, n.loan_id, n.status, n.paid,
			n.principal + n.interest, n.paid_at)
		FROM installments n JOIN loans l ON l.id = n.loan_id
		WHERE (n.status = 'PAID') <> (n.paid = n.principal + n.interest)
		   OR (n.status = 'PAID') <> (n.paid_at IS NOT NULL)
		   OR (l.status = 'REPAID' AND n.status <> 'PAID')`},
	{"investors received exactly what the borrowers paid less servicing fees", `
		SELECT format('loan %s: installments paid %s, repayments %s (fees %s), investors received %s principal + %s interest',
			l.id, coalesce(n.paid, 0), coalesce(r.amount, 0), coalesce(r.fee, 0), coalesce(i.p, 0), coalesce(i.i, 0))
		FROM loans l
		LEFT JOIN (SELECT loan_id, sum(paid) AS paid FROM installments GROUP BY loan_id) n ON n.loan_id = l.id
		LEFT JOIN (SELECT loan_id, sum(amount) AS amount, sum(fee) AS fee FROM loan_repayments GROUP BY loan_id) r ON r.loan_id = l.id
		LEFT JOIN (SELECT loan_id, sum(received_principal) AS p, sum(received_interest) AS i FROM investments GROUP BY loan_id) i ON i.loan_id = l.id
		WHERE coalesce(n.paid, 0) <> coalesce(r.amount, 0)
		   OR coalesce(r.amount, 0) - coalesce(r.fee, 0) <> coalesce(i.p, 0) + coalesce(i.i, 0)`},
	{"a REPAID loan's investments are CLOSED", `
		SELECT format('investment %s of REPAID loan %s is %s', i.id, l.id, i.status)
		FROM loans l JOIN investments i ON i.loan_id = l.id
		WHERE l.status = 'REPAID' AND i.status <> 'CLOSED'`},
	{"every idempotency key that was committed has a result", `
		SELECT format('key %s of user %s (%s) has no result', key, user_id, operation)
		FROM idempotency_keys WHERE result_id IS NULL`},
}

// CheckInvariants verifies, on one consistent snapshot, every invariant of
// the ledger and the loan lifecycle: the balances of all wallets sum to zero;
// each wallet's balance is the sum of its entries and each entry's
// balance_after its running balance; no wallet but Pix clearing has a
// negative balance or available money; each wallet's held money is the sum of
// its HELD holds; every transfer balances; each investment's hold matches its
// state; a FUNDING loan's HELD holds equal its funded amount and its
// COMMITTED investments; escrows are empty; every disbursed loan was funded
// exactly and its schedule's principal sums to its amount; installments are
// PAID exactly when fully paid; investors received what borrowers paid less
// fees; REPAID loans' investments are CLOSED; every idempotency key has a
// result. It returns nil, or an error listing every violation found.
func (s *Store) CheckInvariants(ctx context.Context) error {
	var violations []string
	err := pgx.BeginTxFunc(ctx, s.pool, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly}, func(tx pgx.Tx) error {
		for _, c := range invariantChecks {
			rows, err := tx.Query(ctx, c.sql)
			if err != nil {
				return fmt.Errorf("invariant %q: %w", c.name, err)
			}
			found, err := pgx.CollectRows(rows, pgx.RowTo[string])
			if err != nil {
				return fmt.Errorf("invariant %q: %w", c.name, err)
			}
			const maxShown = 10
			for k, f := range found {
				if k == maxShown {
					violations = append(violations, fmt.Sprintf("%s: … and %d more", c.name, len(found)-maxShown))
					break
				}
				violations = append(violations, c.name+": "+f)
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("check invariants: %w", err)
	}
	if len(violations) > 0 {
		return fmt.Errorf("%d invariant violation(s):\n  %s", len(violations), strings.Join(violations, "\n  "))
	}
	return nil
}
