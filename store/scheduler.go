package store

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/jackc/pgx/v5"

	"mutuo/lending"
)

// Scheduler timing rules.
const (
	// DueNoticeDays is how many days before an installment's due date the
	// borrower is sent INSTALLMENT_DUE (once).
	DueNoticeDays = 3
	// DefaultAfterDays is how many days an installment may be late before
	// its loan is DEFAULTED: a loan defaults when an installment is more than
	// this many days past its due date.
	DefaultAfterDays = 90
	// schedulerBatch bounds how many candidates of each kind one run looks at;
	// the next run picks up the rest.
	schedulerBatch = 1000
)

// SchedulerResult counts the transitions one RunScheduler call made.
type SchedulerResult struct {
	Cancelled  int // FUNDING loans past their deadline, now CANCELLED
	DueNotices int // INSTALLMENT_DUE notifications sent
	Late       int // installments now LATE
	Defaulted  int // loans now DEFAULTED
}

// RunScheduler makes every time-driven transition that is due at now:
//   - a FUNDING loan whose funding deadline is at or before now is CANCELLED:
//     every hold of its investments is VOIDED (the money is available again),
//     the investments are REFUNDED, and the investors and the borrower get
//     LOAN_CANCELLED;
//   - an unpaid PENDING installment of an ACTIVE or DEFAULTED loan due within
//     DueNoticeDays days (today included, dates in UTC) gets one
//     INSTALLMENT_DUE notification to the borrower;
//   - a PENDING installment whose due date is before today becomes LATE and
//     the borrower gets INSTALLMENT_LATE (once: the status changes);
//   - an ACTIVE loan with an unpaid installment more than DefaultAfterDays
//     days past due becomes DEFAULTED.
//
// Each transition is its own transaction that locks its loan with SKIP
// LOCKED and re-checks the condition, so any number of instances may run
// the scheduler at once: each transition happens exactly once, and a loan
// that another transaction holds (an investor, a repayment, another
// scheduler) is left for the next run. The clock is now, never the
// database's. A failing transition does not stop the others; their errors
// are joined in the returned error.
func (s *Store) RunScheduler(ctx context.Context, now time.Time) (SchedulerResult, error) {
	var res SchedulerResult
	var errs []error
	y, m, d := now.UTC().Date()
	today := time.Date(y, m, d, 0, 0, 0, 0, time.UTC)

	step := func(name string, list func() ([][2]int64, error), apply func(tx pgx.Tx, key [2]int64) (bool, error), n *int) {
		keys, err := list()
		if err != nil {
			errs = append(errs, fmt.Errorf("scheduler %s: %w", name, err))
			return
		}
		for _, k := range keys {
			if ctx.Err() != nil {
				errs = append(errs, ctx.Err())
				return
			}
			var done bool
			err := s.inTx(ctx, func(tx pgx.Tx) error {
				var err error
				done, err = apply(tx, k)
				return err
			})
			if err != nil {
				errs = append(errs, fmt.Errorf("scheduler %s %v: %w", name, k, err))
				continue
			}
			if done {
				*n++
			}
		}
	}

	step("cancel", func() ([][2]int64, error) {
		return s.schedulerKeys(ctx, `SELECT id, 0 FROM loans WHERE status = 'FUNDING' AND funding_deadline <= $1
			ORDER BY funding_deadline, id LIMIT $2`, now, schedulerBatch)
	}, func(tx pgx.Tx, k [2]int64) (bool, error) { return cancelLoan(ctx, tx, k[0], now) }, &res.Cancelled)

	step("due", func() ([][2]int64, error) {
		return s.schedulerKeys(ctx, `SELECT n.loan_id, n.number FROM installments n JOIN loans l ON l.id = n.loan_id
			WHERE n.status = 'PENDING' AND n.due_notified_at IS NULL AND n.due_date >= $1 AND n.due_date <= $2
			  AND l.status IN ('ACTIVE', 'DEFAULTED')
			ORDER BY n.due_date, n.loan_id, n.number LIMIT $3`, today, today.AddDate(0, 0, DueNoticeDays), schedulerBatch)
	}, func(tx pgx.Tx, k [2]int64) (bool, error) {
		return installmentDue(ctx, tx, k[0], int(k[1]), today, today.AddDate(0, 0, DueNoticeDays), now)
	}, &res.DueNotices)

	step("late", func() ([][2]int64, error) {
		return s.schedulerKeys(ctx, `SELECT n.loan_id, n.number FROM installments n JOIN loans l ON l.id = n.loan_id
			WHERE n.status = 'PENDING' AND n.due_date < $1 AND l.status IN ('ACTIVE', 'DEFAULTED')
			ORDER BY n.due_date, n.loan_id, n.number LIMIT $2`, today, schedulerBatch)
	}, func(tx pgx.Tx, k [2]int64) (bool, error) {
		return installmentLate(ctx, tx, k[0], int(k[1]), today, now)
	}, &res.Late)

	defaultBefore := today.AddDate(0, 0, -DefaultAfterDays)
	step("default", func() ([][2]int64, error) {
		return s.schedulerKeys(ctx, `SELECT DISTINCT l.id, 0 FROM loans l JOIN installments n ON n.loan_id = l.id
			WHERE l.status = 'ACTIVE' AND n.status <> 'PAID' AND n.due_date < $1
			ORDER BY l.id LIMIT $2`, defaultBefore, schedulerBatch)
	}, func(tx pgx.Tx, k [2]int64) (bool, error) { return defaultLoan(ctx, tx, k[0], defaultBefore, now) }, &res.Defaulted)

	return res, errors.Join(errs...)
}

// schedulerKeys lists candidates (without locking them: each transition
// locks and re-checks its own).
func (s *Store) schedulerKeys(ctx context.Context, sql string, args ...any) ([][2]int64, error) {
	rows, err := s.pool.Query(ctx, sql, args...)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, func(r pgx.CollectableRow) ([2]int64, error) {
		var k [2]int64
		return k, r.Scan(&k[0], &k[1])
	})
}

// cancelLoan cancels a FUNDING loan past its deadline and voids its holds.
func cancelLoan(ctx context.Context, tx pgx.Tx, loanID int64, now time.Time) (bool, error) {
	loan, err := lockLoan(ctx, tx, loanID, true)
	if err != nil || loan == nil {
		return false, err
	}
	if loan.Status != lending.LoanFunding || now.Before(loan.FundingDeadline) {
		return false, nil // invested in full or cancelled meanwhile
	}
	rows, err := tx.Query(ctx, `
		SELECT i.id, h.id, iv.user_id, i.amount, h.wallet_id FROM investments i
		JOIN investors iv ON iv.id = i.investor_id
		JOIN holds h ON h.investment_id = i.id
		WHERE i.loan_id = $1 AND i.status = 'COMMITTED' ORDER BY i.id`, loanID)
	if err != nil {
		return false, fmt.Errorf("investments of loan %d: %w", loanID, err)
	}
	type refund struct {
		committedInvestment
		WalletID int64
	}
	refunds, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (refund, error) {
		var c refund
		return c, r.Scan(&c.ID, &c.HoldID, &c.UserID, &c.Amount, &c.WalletID)
	})
	if err != nil {
		return false, fmt.Errorf("investments of loan %d: %w", loanID, err)
	}
	wallets := make([]int64, len(refunds))
	var total lending.Money
	for k, r := range refunds {
		wallets[k] = r.WalletID
		total += r.Amount
	}
	if total != loan.FundedAmount {
		return false, fmt.Errorf("cancel loan %d: committed %v, funded %v", loanID, total, loan.FundedAmount)
	}
	if len(wallets) > 0 {
		if err := lockWallets(ctx, tx, wallets...); err != nil {
			return false, err
		}
	}
	holdIDs := make([]int64, len(refunds))
	for k, r := range refunds {
		holdIDs[k] = r.HoldID
	}
	if len(holdIDs) > 0 {
		voided, err := resolveHolds(ctx, tx, holdIDs, "VOIDED")
		if err != nil {
			return false, err
		}
		for _, r := range refunds {
			if held := voided[r.HoldID].Amount; held != r.Amount {
				return false, fmt.Errorf("investment %d: hold of %v for %v", r.ID, held, r.Amount)
			}
		}
	}
	tag, err := tx.Exec(ctx, `UPDATE investments SET status = 'REFUNDED', updated_at = $2 WHERE loan_id = $1 AND status = 'COMMITTED'`, loanID, now)
	if err != nil {
		return false, fmt.Errorf("refund investments of loan %d: %w", loanID, err)
	}
	if tag.RowsAffected() != int64(len(refunds)) {
		return false, fmt.Errorf("refund investments of loan %d: touched %d rows, want %d", loanID, tag.RowsAffected(), len(refunds))
	}
	if _, err := setLoanStatus(ctx, tx, loanID, lending.LoanFunding, lending.LoanCancelled, now); err != nil {
		return false, err
	}
	notified := map[int64]bool{}
	for _, r := range refunds {
		if notified[r.UserID] {
			continue
		}
		notified[r.UserID] = true
		if err := notify(ctx, tx, r.UserID, lending.NotifLoanCancelled, "Loan cancelled",
			fmt.Sprintf("Loan #%d was not fully funded by its deadline; the money you committed to it is available again.", loanID), &loanID); err != nil {
			return false, err
		}
	}
	if err := notify(ctx, tx, loan.BorrowerUserID, lending.NotifLoanCancelled, "Loan cancelled",
		fmt.Sprintf("Loan #%d was not fully funded by its deadline and has been cancelled.", loanID), &loanID); err != nil {
		return false, err
	}
	return true, nil
}

// installmentDue sends the one INSTALLMENT_DUE notice of an installment due
// between from and to.
func installmentDue(ctx context.Context, tx pgx.Tx, loanID int64, number int, from, to, now time.Time) (bool, error) {
	loan, err := lockLoan(ctx, tx, loanID, true)
	if err != nil || loan == nil {
		return false, err
	}
	var due time.Time
	var owed lending.Money
	err = tx.QueryRow(ctx, `
		UPDATE installments SET due_notified_at = $5
		WHERE loan_id = $1 AND number = $2 AND status = 'PENDING' AND due_notified_at IS NULL
		  AND due_date >= $3 AND due_date <= $4
		RETURNING due_date, principal + interest - paid`, loanID, number, from, to, now).Scan(&due, &owed)
	if errors.Is(err, pgx.ErrNoRows) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("installment %d of loan %d: %w", number, loanID, err)
	}
	return true, notify(ctx, tx, loan.BorrowerUserID, lending.NotifInstallmentDue, "Installment due soon",
		fmt.Sprintf("Installment %d of loan #%d (R$ %v) is due on %s.", number, loanID, owed, due.Format(time.DateOnly)), &loanID)
}

// installmentLate marks a PENDING installment due before today LATE.
func installmentLate(ctx context.Context, tx pgx.Tx, loanID int64, number int, today, now time.Time) (bool, error) {
	loan, err := lockLoan(ctx, tx, loanID, true)
	if err != nil || loan == nil {
		return false, err
	}
	var due time.Time
	var owed lending.Money
	err = tx.QueryRow(ctx, `
		UPDATE installments SET status = 'LATE', late_at = $4
		WHERE loan_id = $1 AND number = $2 AND status = 'PENDING' AND due_date < $3
		RETURNING due_date, principal + interest - paid`, loanID, number, today, now).Scan(&due, &owed)
	if errors.Is(err, pgx.ErrNoRows) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("installment %d of loan %d: %w", number, loanID, err)
	}
	// the loan changed (an installment is late): bump its version so
	// loanUpdated subscribers, which skip versions they have sent, see it
	tag, err := tx.Exec(ctx, `UPDATE loans SET version = version + 1, updated_at = $2 WHERE id = $1`, loanID, now)
	if err != nil {
		return false, fmt.Errorf("bump loan %d: %w", loanID, err)
	}
	if err := mustOne(tag, "bump loan version"); err != nil {
		return false, err
	}
	if err := emitLoan(ctx, tx, loanID, loan.Status); err != nil {
		return false, err
	}
	return true, notify(ctx, tx, loan.BorrowerUserID, lending.NotifInstallmentLate, "Installment late",
		fmt.Sprintf("Installment %d of loan #%d (R$ %v) was due on %s and is late.", number, loanID, owed, due.Format(time.DateOnly)), &loanID)
}

// defaultLoan marks an ACTIVE loan DEFAULTED if an installment due before
// dueBefore is still unpaid.
func defaultLoan(ctx context.Context, tx pgx.Tx, loanID int64, dueBefore, now time.Time) (bool, error) {
	loan, err := lockLoan(ctx, tx, loanID, true)
	if err != nil || loan == nil || loan.Status != lending.LoanActive {
		return false, err
	}
	var overdue bool
	if err := tx.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM installments
		WHERE loan_id = $1 AND status <> 'PAID' AND due_date < $2)`, loanID, dueBefore).Scan(&overdue); err != nil {
		return false, fmt.Errorf("overdue installments of loan %d: %w", loanID, err)
	}
	if !overdue {
		return false, nil
	}
	_, err = setLoanStatus(ctx, tx, loanID, lending.LoanActive, lending.LoanDefaulted, now)
	return err == nil, err
}

// Scheduler runs RunScheduler every Interval until its context ends. Any
// number of instances may run one (see RunScheduler).
type Scheduler struct {
	Store    *Store
	Interval time.Duration    // between runs; 0 means one minute
	Clock    func() time.Time // the time each run uses; nil means time.Now
	Logger   *slog.Logger     // nil means slog.Default()
}

// Run runs the scheduler at once and then every Interval, logging each run's
// transitions and errors, and returns nil when ctx ends.
func (sc *Scheduler) Run(ctx context.Context) error {
	interval := sc.Interval
	if interval <= 0 {
		interval = time.Minute
	}
	clock := sc.Clock
	if clock == nil {
		clock = time.Now
	}
	log := sc.Logger
	if log == nil {
		log = slog.Default()
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		res, err := sc.Store.RunScheduler(ctx, clock())
		if ctx.Err() != nil {
			return nil
		}
		if err != nil {
			log.ErrorContext(ctx, "scheduler run failed", "err", err)
		}
		if res != (SchedulerResult{}) {
			log.InfoContext(ctx, "scheduler run", "cancelled", res.Cancelled, "dueNotices", res.DueNotices,
				"late", res.Late, "defaulted", res.Defaulted)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}
