package store

import (
	"context"
	"fmt"
	"time"

	"mutuo/lending"
)

// Portfolio computes an investor's figures from the investments and the
// ledger. The net annualized return is the XIRR of the money the investor put
// into disbursed loans, what the ledger shows they received back (net of
// fees), and the principal still outstanding on loans that are not in
// default, valued at now.
func (s *Store) Portfolio(ctx context.Context, investorID int64, now time.Time) (*lending.Portfolio, error) {
	var p lending.Portfolio
	var outstandingPerforming lending.Money
	err := s.pool.QueryRow(ctx, `
		SELECT coalesce(sum(i.amount) FILTER (WHERE i.status <> 'REFUNDED'), 0),
		       coalesce(sum(i.amount - i.received_principal) FILTER (WHERE i.status = 'ACTIVE'), 0),
		       coalesce(sum(i.received_principal), 0),
		       coalesce(sum(i.received_interest), 0),
		       count(*) FILTER (WHERE i.status = 'ACTIVE'),
		       coalesce(sum(i.amount - i.received_principal) FILTER (WHERE i.status = 'ACTIVE' AND l.status <> 'DEFAULTED'), 0)
		FROM investments i JOIN loans l ON l.id = i.loan_id WHERE i.investor_id = $1`, investorID).
		Scan(&p.Invested, &p.OutstandingPrincipal, &p.ReceivedPrincipal, &p.ReceivedInterest, &p.ActiveInvestments, &outstandingPerforming)
	if err != nil {
		return nil, fmt.Errorf("portfolio of investor %d: %w", investorID, err)
	}
	rows, err := s.pool.Query(ctx, `
		SELECT coalesce(l.disbursed_at, i.created_at), -i.amount
		FROM investments i JOIN loans l ON l.id = i.loan_id
		WHERE i.investor_id = $1 AND i.status IN ('ACTIVE', 'CLOSED')
		UNION ALL
		SELECT e.created_at, e.amount
		FROM investors iv JOIN wallets w ON w.user_id = iv.user_id JOIN ledger_entries e ON e.wallet_id = w.id
		WHERE iv.id = $1 AND e.kind = 'REPAYMENT' AND e.amount > 0`, investorID)
	if err != nil {
		return nil, fmt.Errorf("portfolio flows of investor %d: %w", investorID, err)
	}
	defer rows.Close()
	var flows []lending.CashFlow
	for rows.Next() {
		var f lending.CashFlow
		if err := rows.Scan(&f.At, &f.Amount); err != nil {
			return nil, err
		}
		flows = append(flows, f)
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	if outstandingPerforming > 0 {
		flows = append(flows, lending.CashFlow{At: now, Amount: outstandingPerforming})
	}
	p.NetAnnualizedReturn = lending.NetAnnualizedReturn(flows, now)
	return &p, nil
}
