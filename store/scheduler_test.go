package store_test

import (
	"context"
	"log/slog"
	"sync"
	"testing"
	"time"

	"mutuo/lending"
	"mutuo/store"
)

func day(y int, m time.Month, d, h int) time.Time { return time.Date(y, m, d, h, 0, 0, 0, time.UTC) }

func (e *lenv) run(now time.Time) store.SchedulerResult {
	e.t.Helper()
	res, err := e.s.RunScheduler(e.ctx, now)
	if err != nil {
		e.t.Fatalf("scheduler at %s: %v", now, err)
	}
	return res
}

func (e *lenv) wantRun(now time.Time, want store.SchedulerResult) {
	e.t.Helper()
	if got := e.run(now); got != want {
		e.t.Fatalf("scheduler at %s = %+v, want %+v", now.Format(time.RFC3339), got, want)
	}
	e.check()
}

func TestSchedulerCancelsUnfundedLoanAndReleasesHolds(t *testing.T) {
	e := newLenv(t)
	b := e.borrower()
	l := e.request(b, 1000_00, 6, t0)
	x := e.investor(500_00)
	y := e.investor(500_00)
	e.invest(x, l.ID, 300_00, t0)
	e.invest(x, l.ID, 100_00, t0)
	e.invest(y, l.ID, 200_00, t0)
	other := e.request(e.borrower(), 1000_00, 6, t0.Add(time.Hour)) // a later deadline
	e.invest(y, other.ID, 100_00, t0)
	e.wantWallet(x, 500_00, 400_00)
	e.wantWallet(y, 500_00, 300_00)

	// Not yet: one second before the deadline.
	e.wantRun(l.FundingDeadline.Add(-time.Second), store.SchedulerResult{})
	// At the deadline the loan is cancelled; the other one is not due yet.
	e.wantRun(l.FundingDeadline, store.SchedulerResult{Cancelled: 1})
	got := e.loanRow(l.ID)
	if got.Status != lending.LoanCancelled || got.FundedAmount != 600_00 {
		t.Fatalf("loan = %+v", got)
	}
	e.wantWallet(x, 500_00, 0) // every centavo available again, nothing moved
	e.wantWallet(y, 500_00, 100_00)
	if n := e.count(`SELECT count(*) FROM investments WHERE loan_id = $1 AND status = 'REFUNDED'`, l.ID); n != 3 {
		t.Fatalf("refunded = %d, want 3", n)
	}
	if n := e.count(`SELECT count(*) FROM holds h JOIN investments i ON i.id = h.investment_id WHERE i.loan_id = $1 AND h.status = 'VOIDED' AND h.resolved_at IS NOT NULL`, l.ID); n != 3 {
		t.Fatalf("voided holds = %d, want 3", n)
	}
	if n := e.count(`SELECT count(*) FROM ledger_entries WHERE loan_id = $1`, l.ID); n != 0 {
		t.Fatalf("a cancelled loan moved money: %d entries", n)
	}
	if e.notifications(x, lending.NotifLoanCancelled) != 1 || e.notifications(y, lending.NotifLoanCancelled) != 1 || e.notifications(b, lending.NotifLoanCancelled) != 1 {
		t.Fatal("LOAN_CANCELLED missing")
	}
	// Once only.
	e.wantRun(l.FundingDeadline.Add(time.Minute), store.SchedulerResult{})
	if e.notifications(x, lending.NotifLoanCancelled) != 1 {
		t.Fatal("notified twice")
	}
	// A cancelled loan takes no investment.
	e.refused(lending.CodeInvalidState, func() error {
		_, err := e.s.Invest(e.ctx, x, l.ID, 50_00, key(), l.FundingDeadline.Add(-time.Hour))
		return err
	})
	// The other loan goes at its own deadline; a loan with no investors too.
	e.wantRun(other.FundingDeadline, store.SchedulerResult{Cancelled: 1})
	e.wantWallet(y, 500_00, 0)
	lonely := e.request(e.borrower(), 600_00, 3, t0)
	e.wantRun(lonely.FundingDeadline, store.SchedulerResult{Cancelled: 1})
}

// Installments: a due notice 3 days before, LATE the day after the due
// date, DEFAULTED when one is more than 90 days late; each once. A defaulted
// loan may still be repaid, and closes when paid in full.
func TestSchedulerDueLateDefault(t *testing.T) {
	e := newLenv(t)
	// disbursed 2025-01-10: due 2025-02-10, 03-10, 04-10
	l, b, invs := e.activeLoan(1000_00, 3, t0, 1000_00)

	e.wantRun(day(2025, 2, 6, 12), store.SchedulerResult{})             // 4 days before
	e.wantRun(day(2025, 2, 7, 0), store.SchedulerResult{DueNotices: 1}) // 3 days before
	e.wantRun(day(2025, 2, 8, 0), store.SchedulerResult{})              // once
	e.wantRun(day(2025, 2, 10, 23), store.SchedulerResult{})            // due today: not late
	e.wantRun(day(2025, 2, 11, 0), store.SchedulerResult{Late: 1})      // a day past due
	e.wantRun(day(2025, 2, 12, 0), store.SchedulerResult{})             // once
	if e.notifications(b, lending.NotifInstallmentDue) != 1 || e.notifications(b, lending.NotifInstallmentLate) != 1 {
		t.Fatal("due/late notifications")
	}
	if n := e.count(`SELECT count(*) FROM installments WHERE loan_id = $1 AND number = 1 AND status = 'LATE' AND late_at IS NOT NULL`, l.ID); n != 1 {
		t.Fatal("installment 1 not LATE")
	}
	// Paying a LATE installment in part keeps it LATE; in full makes it PAID.
	r, err := e.s.RepayLoan(e.ctx, b, l.ID, 100_00, key(), day(2025, 2, 12, 1))
	if err != nil || r.Installments[0].Status != lending.InstallmentLate {
		t.Fatalf("partial: %+v %v", r, err)
	}

	// Installment 2 is paid on time; its notice still went out once.
	e.wantRun(day(2025, 3, 8, 0), store.SchedulerResult{DueNotices: 1})
	r, err = e.s.RepayLoan(e.ctx, b, l.ID, 349_57-100_00+349_57, key(), day(2025, 3, 9, 0))
	if err != nil || len(r.Installments) != 2 || r.Installments[0].Status != lending.InstallmentPaid || r.Installments[1].Status != lending.InstallmentPaid {
		t.Fatalf("catch up: %+v %v", r, err)
	}
	e.wantRun(day(2025, 3, 11, 0), store.SchedulerResult{})

	// Installment 3 (due 04-10) goes unpaid: notice, late, and 90 days later
	// (07-09) still only late; more than 90 days (07-10) the loan defaults.
	e.wantRun(day(2025, 4, 8, 0), store.SchedulerResult{DueNotices: 1})
	e.wantRun(day(2025, 4, 11, 0), store.SchedulerResult{Late: 1})
	e.wantRun(day(2025, 7, 9, 12), store.SchedulerResult{})
	e.wantRun(day(2025, 7, 10, 0), store.SchedulerResult{Defaulted: 1})
	e.wantRun(day(2025, 7, 11, 0), store.SchedulerResult{})
	if got := e.loanRow(l.ID); got.Status != lending.LoanDefaulted {
		t.Fatalf("loan is %s", got.Status)
	}
	// The defaulted borrower pays in full: the investors get it and the loan closes.
	e.deposit(b, 100_00)
	before, _ := e.wallet(invs[0])
	r, err = e.s.RepayLoan(e.ctx, b, l.ID, 349_58, key(), day(2025, 7, 12, 0))
	if err != nil || r.Loan.Status != lending.LoanRepaid {
		t.Fatalf("recovery: %+v %v", r, err)
	}
	after, _ := e.wallet(invs[0])
	if after-before != 349_58-lending.FeeBps(349_58, lending.ServicingFeeBps) {
		t.Fatalf("investor received %v", after-before)
	}
	if n := e.count(`SELECT count(*) FROM investments WHERE loan_id = $1 AND status = 'CLOSED' AND received_principal = amount`, l.ID); n != 1 {
		t.Fatal("investment not closed in full")
	}
	e.check()
	// The borrower's record remembers: 1 paid on time, 2 late, no default now.
	b2 := e.request(b, 500_00, 3, day(2025, 7, 13, 0))
	want := lending.Score(lending.CreditHistory{MonthlyIncome: 10_000_00, InstallmentsPaid: 1, InstallmentsLate: 2})
	if b2.Grade != lending.GradeFor(want) || e.count(`SELECT credit_score FROM borrowers WHERE user_id = $1`, b.UserID) != want {
		t.Fatalf("grade %s, want score %d", b2.Grade, want)
	}
}

// Many scheduler instances at once: every transition happens exactly once.
func TestSchedulerManyInstances(t *testing.T) {
	e := newLenv(t)
	var loans []*lending.Loan
	var investors []lending.Viewer
	for i := 0; i < 12; i++ {
		l := e.request(e.borrower(), 1000_00, 6, t0)
		v := e.investor(300_00)
		e.invest(v, l.ID, 100_00, t0)
		e.invest(v, l.ID, 200_00, t0)
		loans = append(loans, l)
		investors = append(investors, v)
	}
	active, b, _ := e.activeLoan(1000_00, 6, t0, 1000_00)
	now := loans[0].FundingDeadline.AddDate(0, 2, 0) // everything cancelled, installments 1-2 late
	var mu sync.Mutex
	var total store.SchedulerResult
	var wg sync.WaitGroup
	for i := 0; i < 8; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			res, err := e.s.RunScheduler(e.ctx, now)
			if err != nil {
				t.Errorf("scheduler: %v", err)
			}
			mu.Lock()
			total.Cancelled += res.Cancelled
			total.Late += res.Late
			total.DueNotices += res.DueNotices
			total.Defaulted += res.Defaulted
			mu.Unlock()
		}()
	}
	wg.Wait()
	// SKIP LOCKED may leave a row to the next run: one more sweep finishes.
	rest := e.run(now)
	total.Cancelled += rest.Cancelled
	total.Late += rest.Late
	total.DueNotices += rest.DueNotices
	if total != (store.SchedulerResult{Cancelled: 12, Late: 2}) {
		t.Fatalf("transitions = %+v", total)
	}
	for _, v := range investors {
		e.wantWallet(v, 300_00, 0)
		if e.notifications(v, lending.NotifLoanCancelled) != 1 {
			t.Fatalf("investor %d cancellation notices", v.UserID)
		}
	}
	if n := e.count(`SELECT count(*) FROM loans WHERE status = 'CANCELLED'`); n != 12 {
		t.Fatalf("cancelled = %d", n)
	}
	if e.notifications(b, lending.NotifInstallmentLate) != 2 || e.loanRow(active.ID).Status != lending.LoanActive {
		t.Fatal("late notices")
	}
	e.check()
}

func TestSchedulerRunLoopUsesItsClockAndStops(t *testing.T) {
	e := newLenv(t)
	l := e.request(e.borrower(), 1000_00, 6, t0)
	v := e.investor(100_00)
	e.invest(v, l.ID, 100_00, t0)
	ctx, cancel := context.WithCancel(e.ctx)
	var mu sync.Mutex
	clock := t0
	sc := &store.Scheduler{Store: e.s, Interval: 10 * time.Millisecond, Logger: slog.New(slog.DiscardHandler), Clock: func() time.Time {
		mu.Lock()
		defer mu.Unlock()
		return clock
	}}
	done := make(chan error, 1)
	go func() { done <- sc.Run(ctx) }()
	time.Sleep(50 * time.Millisecond)
	if got := e.loanRow(l.ID); got.Status != lending.LoanFunding {
		t.Fatalf("cancelled before its time: %s", got.Status)
	}
	mu.Lock()
	clock = l.FundingDeadline
	mu.Unlock()
	deadline := time.Now().Add(10 * time.Second)
	for e.loanRow(l.ID).Status != lending.LoanCancelled {
		if time.Now().After(deadline) {
			t.Fatal("the scheduler loop never cancelled the loan")
		}
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Run = %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not end with its context")
	}
	e.wantWallet(v, 100_00, 0)
	e.check()
}
