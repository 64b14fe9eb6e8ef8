package store_test

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"mutuo/internal/testenv"
	"mutuo/lending"
	"mutuo/store"
)

// ---------------------------------------------------------------- helpers

// t0 is the tests' clock origin; every use case takes its time from the
// now argument, so tests move time by passing another one.
var t0 = time.Date(2025, 1, 10, 12, 0, 0, 0, time.UTC)

// lenv is one loan test's world: its own database and store.
type lenv struct {
	t   *testing.T
	s   *store.Store
	db  *testenv.DB
	ctx context.Context
	n   atomic.Int64
}

func newLenv(t *testing.T) *lenv {
	t.Helper()
	db := testenv.NewDB(t)
	return &lenv{t: t, s: store.New(db.Pool), db: db, ctx: context.Background()}
}

var keySeq atomic.Int64

// key returns a fresh idempotency key.
func key() string { return fmt.Sprintf("k-%d", keySeq.Add(1)) }

// user creates a user with roles (borrowers earn R$ 10.000,00 a month, which
// scores 500: grade C, 29% a year) and returns them as a viewer.
func (e *lenv) user(roles ...lending.Role) lending.Viewer {
	e.t.Helper()
	n := e.n.Add(1)
	var income *lending.Money
	for _, r := range roles {
		if r == lending.RoleBorrower {
			m := lending.Money(10_000_00)
			income = &m
		}
	}
	u, err := e.s.CreateUser(e.ctx, fmt.Sprintf("User %d", n), fmt.Sprintf("user%d@example.com", n), "hash", roles, income)
	if err != nil {
		e.t.Fatalf("create user: %v", err)
	}
	return lending.Viewer{UserID: u.ID, Roles: u.Roles}
}

func (e *lenv) borrower() lending.Viewer { return e.user(lending.RoleBorrower) }

// investor creates an investor with balance in their wallet.
func (e *lenv) investor(balance lending.Money) lending.Viewer {
	e.t.Helper()
	v := e.user(lending.RoleInvestor)
	if balance > 0 {
		e.deposit(v, balance)
	}
	return v
}

func (e *lenv) deposit(v lending.Viewer, amount lending.Money) {
	e.t.Helper()
	if err := e.s.DepositForTest(e.ctx, v.UserID, amount); err != nil {
		e.t.Fatalf("deposit: %v", err)
	}
}

// wallet returns a user's balance and held money.
func (e *lenv) wallet(v lending.Viewer) (balance, held lending.Money) {
	e.t.Helper()
	if err := e.db.Pool.QueryRow(e.ctx, `SELECT balance, held FROM wallets WHERE user_id = $1`, v.UserID).Scan(&balance, &held); err != nil {
		e.t.Fatal(err)
	}
	return balance, held
}

// wantWallet checks a user's balance and held money.
func (e *lenv) wantWallet(v lending.Viewer, balance, held lending.Money) {
	e.t.Helper()
	b, h := e.wallet(v)
	if b != balance || h != held {
		e.t.Fatalf("wallet of user %d: balance %v held %v, want %v held %v", v.UserID, b, h, balance, held)
	}
}

// platform returns the balance of a platform account or a loan's escrow.
func (e *lenv) platform(kind string) lending.Money {
	e.t.Helper()
	var b lending.Money
	if err := e.db.Pool.QueryRow(e.ctx, `SELECT balance FROM wallets WHERE kind = $1`, kind).Scan(&b); err != nil {
		e.t.Fatal(err)
	}
	return b
}

func (e *lenv) escrow(loanID int64) lending.Money {
	e.t.Helper()
	var b lending.Money
	if err := e.db.Pool.QueryRow(e.ctx, `SELECT balance FROM wallets WHERE kind = 'LOAN_ESCROW' AND loan_id = $1`, loanID).Scan(&b); err != nil {
		e.t.Fatal(err)
	}
	return b
}

func (e *lenv) count(sql string, args ...any) int {
	e.t.Helper()
	var n int
	if err := e.db.Pool.QueryRow(e.ctx, sql, args...).Scan(&n); err != nil {
		e.t.Fatalf("%s: %v", sql, err)
	}
	return n
}

func (e *lenv) str(sql string, args ...any) string {
	e.t.Helper()
	var s string
	if err := e.db.Pool.QueryRow(e.ctx, sql, args...).Scan(&s); err != nil {
		e.t.Fatalf("%s: %v", sql, err)
	}
	return s
}

func (e *lenv) loanRow(id int64) *lending.Loan {
	e.t.Helper()
	m, err := e.s.LoansByID(e.ctx, []int64{id})
	if err != nil || m[id] == nil {
		e.t.Fatalf("loan %d: %v", id, err)
	}
	return m[id]
}

// snapshotTables are every table a loan use case writes.
var snapshotTables = []string{"wallets", "transfers", "ledger_entries", "holds", "investments", "loans", "installments",
	"borrowers", "notifications", "outbox", "idempotency_keys", "loan_repayments"}

// snapshot renders every row of those tables, to compare before and after.
func (e *lenv) snapshot() string {
	e.t.Helper()
	var b strings.Builder
	for _, tbl := range snapshotTables {
		b.WriteString("== " + tbl + "\n")
		b.WriteString(e.str(`SELECT coalesce(string_agg(x::text, E'\n' ORDER BY x::text), '') FROM ` + tbl + ` x`))
		b.WriteString("\n")
	}
	return b.String()
}

// refused runs op, wants it to fail with code, and wants every balance and
// row exactly as they were.
func (e *lenv) refused(code lending.Code, op func() error) error {
	e.t.Helper()
	before := e.snapshot()
	err := op()
	if !lending.IsCode(err, code) {
		e.t.Fatalf("err = %v, want code %s", err, code)
	}
	if after := e.snapshot(); after != before {
		e.t.Fatalf("refused operation (%v) changed the database:\nbefore:\n%s\nafter:\n%s", err, before, after)
	}
	return err
}

// unchanged runs op, which must succeed, and wants nothing changed (a replay).
func (e *lenv) unchanged(op func() error) {
	e.t.Helper()
	before := e.snapshot()
	if err := op(); err != nil {
		e.t.Fatalf("replay: %v", err)
	}
	if after := e.snapshot(); after != before {
		e.t.Fatalf("replay changed the database:\nbefore:\n%s\nafter:\n%s", before, after)
	}
}

func (e *lenv) check() {
	e.t.Helper()
	if err := e.s.CheckInvariants(e.ctx); err != nil {
		e.t.Fatal(err)
	}
}

// request lists a loan for b at now.
func (e *lenv) request(b lending.Viewer, amount lending.Money, term int, now time.Time) *lending.Loan {
	e.t.Helper()
	l, err := e.s.RequestLoan(e.ctx, b, store.RequestLoanInput{Amount: amount, TermMonths: term, Purpose: "Capital de giro"}, key(), now)
	if err != nil {
		e.t.Fatalf("request loan: %v", err)
	}
	return l
}

func (e *lenv) invest(v lending.Viewer, loanID int64, amount lending.Money, now time.Time) *lending.Investment {
	e.t.Helper()
	inv, err := e.s.Invest(e.ctx, v, loanID, amount, key(), now)
	if err != nil {
		e.t.Fatalf("invest %v in loan %d: %v", amount, loanID, err)
	}
	return inv
}

// activeLoan lists a loan of amount for a new borrower and has it funded
// at now by new investors, one per amount; it returns the loan, the
// borrower and the investors.
func (e *lenv) activeLoan(amount lending.Money, term int, now time.Time, shares ...lending.Money) (*lending.Loan, lending.Viewer, []lending.Viewer) {
	e.t.Helper()
	b := e.borrower()
	l := e.request(b, amount, term, now)
	var invs []lending.Viewer
	for _, sh := range shares {
		v := e.investor(sh)
		e.invest(v, l.ID, sh, now)
		invs = append(invs, v)
	}
	l = e.loanRow(l.ID)
	if l.Status != lending.LoanActive {
		e.t.Fatalf("loan %d is %s, want ACTIVE", l.ID, l.Status)
	}
	return l, b, invs
}

func (e *lenv) notifications(v lending.Viewer, kind lending.NotificationKind) int {
	e.t.Helper()
	return e.count(`SELECT count(*) FROM notifications WHERE user_id = $1 AND kind = $2`, v.UserID, string(kind))
}

func wantErrCode(t *testing.T, err error, code lending.Code) {
	t.Helper()
	if !lending.IsCode(err, code) {
		t.Fatalf("err = %v, want code %s", err, code)
	}
}

// ---------------------------------------------------------------- requestLoan

func TestRequestLoanListsScoredAndPricedLoan(t *testing.T) {
	e := newLenv(t)
	b := e.borrower()
	l, err := e.s.RequestLoan(e.ctx, b, store.RequestLoanInput{Amount: 1000_00, TermMonths: 12, Purpose: "  Reforma da cozinha \n"}, "req-1", t0)
	if err != nil {
		t.Fatal(err)
	}
	// income R$ 10.000,00, no history: score 500 -> C -> 29% a year.
	if l.Status != lending.LoanFunding || l.Amount != 1000_00 || l.FundedAmount != 0 || l.TermMonths != 12 ||
		l.Grade != lending.GradeC || l.AnnualRateBps != 2900 || l.Purpose != "Reforma da cozinha" ||
		!l.FundingDeadline.Equal(t0.Add(14*24*time.Hour)) || l.DisbursedAt != nil || l.Version != 0 {
		t.Fatalf("loan = %+v", l)
	}
	if n := e.count(`SELECT count(*) FROM loans l JOIN borrowers b ON b.id = l.borrower_id WHERE l.id = $1 AND b.user_id = $2`, l.ID, b.UserID); n != 1 {
		t.Fatalf("loan is not the borrower's")
	}
	if n := e.count(`SELECT count(*) FROM borrowers WHERE user_id = $1 AND credit_score = 500 AND grade = 'C'`, b.UserID); n != 1 {
		t.Fatalf("borrower score not stored")
	}
	if n := e.count(`SELECT count(*) FROM wallets WHERE kind = 'LOAN_ESCROW' AND loan_id = $1 AND balance = 0 AND held = 0`, l.ID); n != 1 {
		t.Fatalf("escrow wallets = %d, want 1", n)
	}
	if n := e.count(`SELECT count(*) FROM outbox WHERE stream = $1 AND topic = 'loan.updated' AND payload->>'status' = 'FUNDING'`, fmt.Sprintf("loan:%d", l.ID)); n != 1 {
		t.Fatalf("loan events = %d, want 1", n)
	}
	e.check()

	// A replay returns the same loan and creates nothing.
	e.unchanged(func() error {
		again, err := e.s.RequestLoan(e.ctx, b, store.RequestLoanInput{Amount: 1000_00, TermMonths: 12, Purpose: "  Reforma da cozinha \n"}, "req-1", t0.Add(time.Hour))
		if err == nil && (again.ID != l.ID || again.Amount != l.Amount) {
			t.Fatalf("replay = %+v, want loan %d", again, l.ID)
		}
		return err
	})
	// The same key with other arguments is CONFLICT.
	e.refused(lending.CodeConflict, func() error {
		_, err := e.s.RequestLoan(e.ctx, b, store.RequestLoanInput{Amount: 2000_00, TermMonths: 12, Purpose: "Reforma da cozinha"}, "req-1", t0)
		return err
	})
	// Keys are per user: another borrower may use the same one.
	b2 := e.borrower()
	l2, err := e.s.RequestLoan(e.ctx, b2, store.RequestLoanInput{Amount: 1000_00, TermMonths: 12, Purpose: "  Reforma da cozinha \n"}, "req-1", t0)
	if err != nil || l2.ID == l.ID {
		t.Fatalf("other user's key: loan %+v, %v", l2, err)
	}
	e.check()
}

func TestRequestLoanRefusals(t *testing.T) {
	e := newLenv(t)
	b := e.borrower()
	inv := e.investor(0)
	ok := store.RequestLoanInput{Amount: 500_00, TermMonths: 3, Purpose: "Compra de estoque"}
	cases := []struct {
		name string
		v    lending.Viewer
		in   store.RequestLoanInput
		key  string
		code lending.Code
	}{
		{"anonymous", lending.Viewer{}, ok, "a", lending.CodeUnauthenticated},
		{"investor", inv, ok, "a", lending.CodeForbidden},
		{"borrower role without a borrower profile", lending.Viewer{UserID: inv.UserID, Roles: []lending.Role{lending.RoleBorrower}}, ok, "a", lending.CodeForbidden},
		{"amount below 500.00", b, store.RequestLoanInput{Amount: 499_99, TermMonths: 3, Purpose: "Compra de estoque"}, "a", lending.CodeBadUserInput},
		{"amount above 100,000.00", b, store.RequestLoanInput{Amount: 100_000_01, TermMonths: 3, Purpose: "Compra de estoque"}, "a", lending.CodeBadUserInput},
		{"term 2", b, store.RequestLoanInput{Amount: 500_00, TermMonths: 2, Purpose: "Compra de estoque"}, "a", lending.CodeBadUserInput},
		{"term 37", b, store.RequestLoanInput{Amount: 500_00, TermMonths: 37, Purpose: "Compra de estoque"}, "a", lending.CodeBadUserInput},
		{"purpose too short", b, store.RequestLoanInput{Amount: 500_00, TermMonths: 3, Purpose: "  ab  "}, "a", lending.CodeBadUserInput},
		{"purpose too long", b, store.RequestLoanInput{Amount: 500_00, TermMonths: 3, Purpose: strings.Repeat("é", 501)}, "a", lending.CodeBadUserInput},
		{"bad key", b, ok, "not a key!", lending.CodeBadUserInput},
		{"empty key", b, ok, "", lending.CodeBadUserInput},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			e.t = t
			e.refused(c.code, func() error {
				_, err := e.s.RequestLoan(e.ctx, c.v, c.in, c.key, t0)
				return err
			})
		})
	}
	e.t = t
	// The edges are accepted.
	if _, err := e.s.RequestLoan(e.ctx, b, store.RequestLoanInput{Amount: 100_000_00, TermMonths: 36, Purpose: "abc"}, key(), t0); err != nil {
		t.Fatal(err)
	}
	e.check()
}

func TestRequestLoanOneKeyManyRequestsOneLoan(t *testing.T) {
	e := newLenv(t)
	b := e.borrower()
	in := store.RequestLoanInput{Amount: 5000_00, TermMonths: 24, Purpose: "Equipamento"}
	ids := make([]int64, 16)
	var wg sync.WaitGroup
	for i := range ids {
		wg.Add(1)
		go func() {
			defer wg.Done()
			l, err := e.s.RequestLoan(e.ctx, b, in, "same-key", t0)
			if err != nil {
				t.Errorf("request %d: %v", i, err)
				return
			}
			ids[i] = l.ID
		}()
	}
	wg.Wait()
	for _, id := range ids {
		if id != ids[0] {
			t.Fatalf("ids = %v, want one loan", ids)
		}
	}
	if n := e.count(`SELECT count(*) FROM loans`); n != 1 {
		t.Fatalf("loans = %d, want 1", n)
	}
	e.check()
}

func TestRequestLoanScoresFromHistory(t *testing.T) {
	e := newLenv(t)
	b := e.borrower()
	first := e.request(b, 1000_00, 3, t0)
	if first.Grade != lending.GradeC {
		t.Fatalf("first grade %s", first.Grade)
	}
	for _, amt := range []lending.Money{600_00, 400_00} {
		e.invest(e.investor(amt), first.ID, amt, t0)
	}
	// R$ 1.000,00 now owed: score 500 - 1000/(12·10000)·250 = 498 -> D, 39%.
	second := e.request(b, 500_00, 3, t0.Add(time.Hour))
	want := lending.Score(lending.CreditHistory{MonthlyIncome: 10_000_00, OutstandingDebt: 1000_00})
	if want != 498 || second.Grade != lending.GradeD || second.AnnualRateBps != 3900 {
		t.Fatalf("second loan: grade %s rate %d (score %d)", second.Grade, second.AnnualRateBps, want)
	}
	// Paying the first installment on time: 674.60 owed, one paid on time.
	e.deposit(b, 100_00)
	if _, err := e.s.RepayLoan(e.ctx, b, first.ID, 349_57, key(), time.Date(2025, 2, 10, 20, 0, 0, 0, time.UTC)); err != nil {
		t.Fatal(err)
	}
	third := e.request(b, 500_00, 3, time.Date(2025, 2, 11, 0, 0, 0, 0, time.UTC))
	want = lending.Score(lending.CreditHistory{MonthlyIncome: 10_000_00, OutstandingDebt: 674_60, InstallmentsPaid: 1})
	if n := e.count(`SELECT count(*) FROM borrowers WHERE user_id = $1 AND credit_score = $2`, b.UserID, want); n != 1 || third.Grade != lending.GradeFor(want) {
		t.Fatalf("third loan grade %s, want score %d (%s)", third.Grade, want, lending.GradeFor(want))
	}
	e.check()
}

// ---------------------------------------------------------------- invest

func TestInvestHoldsMoneyWithoutMovingIt(t *testing.T) {
	e := newLenv(t)
	b := e.borrower()
	l := e.request(b, 1000_00, 6, t0)
	v := e.investor(500_00)
	inv := e.invest(v, l.ID, 300_00, t0.Add(time.Minute))
	if inv.Status != lending.InvestmentCommitted || inv.Amount != 300_00 || inv.LoanID != l.ID || inv.ReceivedPrincipal != 0 {
		t.Fatalf("investment = %+v", inv)
	}
	e.wantWallet(v, 500_00, 300_00) // available 200.00, balance untouched
	if got := e.loanRow(l.ID); got.FundedAmount != 300_00 || got.Status != lending.LoanFunding || got.Version != 1 {
		t.Fatalf("loan = %+v", got)
	}
	if n := e.count(`SELECT count(*) FROM holds WHERE investment_id = $1 AND status = 'HELD' AND amount = 30000`, inv.ID); n != 1 {
		t.Fatalf("holds = %d", n)
	}
	if n := e.count(`SELECT count(*) FROM ledger_entries WHERE loan_id = $1`, l.ID); n != 0 {
		t.Fatalf("entries for a funding loan = %d, want 0", n)
	}
	if e.escrow(l.ID) != 0 {
		t.Fatal("escrow moved")
	}
	if e.notifications(v, lending.NotifInvestmentConfirmed) != 1 {
		t.Fatal("no INVESTMENT_CONFIRMED")
	}
	if n := e.count(`SELECT count(*) FROM outbox WHERE stream = $1`, fmt.Sprintf("wallet:%d", v.UserID)); n < 2 {
		t.Fatalf("wallet events = %d", n)
	}
	// The same investor may invest again in the same loan.
	e.invest(v, l.ID, 200_00, t0.Add(2*time.Minute))
	e.wantWallet(v, 500_00, 500_00)
	e.check()
}

func TestInvestRefusals(t *testing.T) {
	e := newLenv(t)
	b := e.borrower()
	l := e.request(b, 1000_00, 6, t0)
	v := e.investor(2000_00)
	e.invest(v, l.ID, 900_00, t0)
	both := e.user(lending.RoleInvestor, lending.RoleBorrower)
	e.deposit(both, 1000_00)
	own := e.request(both, 500_00, 3, t0)
	poor := e.investor(60_00)
	poorLoan := e.request(e.borrower(), 500_00, 3, t0)
	e.invest(poor, poorLoan.ID, 40_00, t0) // 20.00 left available
	funded, _, _ := e.activeLoan(500_00, 3, t0, 500_00)

	cases := []struct {
		name   string
		v      lending.Viewer
		loan   int64
		amount lending.Money
		key    string
		now    time.Time
		code   lending.Code
		msg    string
	}{
		{"anonymous", lending.Viewer{}, l.ID, 50_00, "a", t0, lending.CodeUnauthenticated, ""},
		{"borrower", b, l.ID, 50_00, "a", t0, lending.CodeForbidden, ""},
		{"own loan", both, own.ID, 50_00, "a", t0, lending.CodeForbidden, ""},
		{"below the minimum", v, l.ID, 24_99, "a", t0, lending.CodeBadUserInput, ""},
		{"more than remains", v, l.ID, 100_01, "a", t0, lending.CodeBadUserInput, "exceeds what remains"},
		{"unknown loan", v, l.ID + 1000, 50_00, "a", t0, lending.CodeNotFound, ""},
		{"deadline reached", v, l.ID, 50_00, "a", l.FundingDeadline, lending.CodeInvalidState, ""},
		{"funded loan", v, funded.ID, 50_00, "a", t0, lending.CodeInvalidState, ""},
		{"short of available money", poor, l.ID, 25_00, "a", t0, lending.CodeInsufficientFunds, ""},
		{"bad key", v, l.ID, 50_00, "bad key", t0, lending.CodeBadUserInput, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			e.t = t
			err := e.refused(c.code, func() error {
				_, err := e.s.Invest(e.ctx, c.v, c.loan, c.amount, c.key, c.now)
				return err
			})
			if c.msg != "" && !strings.Contains(err.Error(), c.msg) {
				t.Fatalf("err = %v, want it to say %q", err, c.msg)
			}
		})
	}
	e.t = t
	e.check()
}

func TestInvestIdempotency(t *testing.T) {
	e := newLenv(t)
	l := e.request(e.borrower(), 1000_00, 6, t0)
	v := e.investor(1000_00)
	first, err := e.s.Invest(e.ctx, v, l.ID, 100_00, "inv-1", t0)
	if err != nil {
		t.Fatal(err)
	}
	e.unchanged(func() error {
		again, err := e.s.Invest(e.ctx, v, l.ID, 100_00, "inv-1", t0.Add(time.Hour))
		if err == nil && (again.ID != first.ID || again.Amount != 100_00) {
			t.Fatalf("replay = %+v, want investment %d", again, first.ID)
		}
		return err
	})
	e.wantWallet(v, 1000_00, 100_00)
	e.refused(lending.CodeConflict, func() error {
		_, err := e.s.Invest(e.ctx, v, l.ID, 200_00, "inv-1", t0)
		return err
	})
	// A key of another operation is CONFLICT too.
	e.refused(lending.CodeConflict, func() error {
		_, err := e.s.RepayLoan(e.ctx, lending.Viewer{UserID: v.UserID, Roles: []lending.Role{lending.RoleBorrower}}, l.ID, 100_00, "inv-1", t0)
		return err
	})

	// 16 concurrent requests with one key: one investment, held once.
	ids := make([]int64, 16)
	var wg sync.WaitGroup
	for i := range ids {
		wg.Add(1)
		go func() {
			defer wg.Done()
			inv, err := e.s.Invest(e.ctx, v, l.ID, 50_00, "inv-race", t0)
			if err != nil {
				t.Errorf("invest %d: %v", i, err)
				return
			}
			ids[i] = inv.ID
		}()
	}
	wg.Wait()
	for _, id := range ids {
		if id != ids[0] {
			t.Fatalf("ids = %v", ids)
		}
	}
	e.wantWallet(v, 1000_00, 150_00)
	if got := e.loanRow(l.ID); got.FundedAmount != 150_00 {
		t.Fatalf("funded = %v, want 150.00", got.FundedAmount)
	}
	e.check()
}

func TestInvestLastCentavoFundsAndDisburses(t *testing.T) {
	e := newLenv(t)
	b := e.borrower()
	l := e.request(b, 1000_00, 3, t0)
	x := e.investor(1000_00)
	y := e.investor(1000_00)
	e.invest(x, l.ID, 250_00, t0)
	e.invest(y, l.ID, 400_00, t0)
	e.invest(x, l.ID, 100_00, t0) // x twice
	feesBefore := e.platform("PLATFORM_FEES")
	disbursedAt := t0.Add(3 * time.Hour)
	last := e.invest(y, l.ID, 250_00, disbursedAt)
	if last.Status != lending.InvestmentActive {
		t.Fatalf("last investment = %+v", last)
	}
	got := e.loanRow(l.ID)
	if got.Status != lending.LoanActive || got.FundedAmount != 1000_00 || got.DisbursedAt == nil || !got.DisbursedAt.Equal(disbursedAt) {
		t.Fatalf("loan = %+v", got)
	}
	// Holds posted: the money left the investors' wallets for good.
	e.wantWallet(x, 650_00, 0)
	e.wantWallet(y, 350_00, 0)
	// The borrower gets 1000.00 less the 2% origination fee.
	e.wantWallet(b, 980_00, 0)
	if fee := e.platform("PLATFORM_FEES") - feesBefore; fee != 20_00 {
		t.Fatalf("origination fee = %v, want 20.00", fee)
	}
	if e.escrow(l.ID) != 0 {
		t.Fatal("escrow not empty")
	}
	if n := e.count(`SELECT count(*) FROM holds h JOIN investments i ON i.id = h.investment_id WHERE i.loan_id = $1 AND h.status = 'POSTED' AND h.resolved_at IS NOT NULL`, l.ID); n != 4 {
		t.Fatalf("posted holds = %d, want 4", n)
	}
	if n := e.count(`SELECT count(*) FROM investments WHERE loan_id = $1 AND status = 'ACTIVE'`, l.ID); n != 4 {
		t.Fatalf("active investments = %d, want 4", n)
	}
	// The schedule is the Tabela Price from the disbursement date.
	want := lending.Schedule(1000_00, 2900, 3, time.Date(2025, 2, 10, 0, 0, 0, 0, time.UTC))
	insts, err := e.s.InstallmentsByLoan(e.ctx, []int64{l.ID})
	if err != nil || len(insts[l.ID]) != 3 {
		t.Fatalf("installments: %v %v", insts, err)
	}
	for k, in := range insts[l.ID] {
		w := want[k]
		if in.Number != w.Number || !in.DueDate.Equal(w.DueDate) || in.Principal != w.Principal || in.Interest != w.Interest ||
			in.Paid != 0 || in.Status != lending.InstallmentPending {
			t.Fatalf("installment %d = %+v, want %+v", k+1, in, w)
		}
	}
	if want[0].Principal != 325_40 || want[0].Interest != 24_17 || want[2].Total() != 349_58 {
		t.Fatalf("schedule = %+v", want)
	}
	// Notifications: one LOAN_FUNDED per investor, LOAN_DISBURSED to the borrower.
	if e.notifications(x, lending.NotifLoanFunded) != 1 || e.notifications(y, lending.NotifLoanFunded) != 1 ||
		e.notifications(b, lending.NotifLoanDisbursed) != 1 || e.notifications(x, lending.NotifInvestmentConfirmed) != 2 {
		t.Fatal("notifications missing")
	}
	if n := e.count(`SELECT count(*) FROM outbox WHERE stream = $1 AND payload->>'status' = 'ACTIVE'`, fmt.Sprintf("loan:%d", l.ID)); n != 1 {
		t.Fatalf("ACTIVE loan events = %d", n)
	}
	// The entries: each investment once into escrow, one disbursement, one fee.
	if n := e.count(`SELECT count(*) FROM ledger_entries WHERE loan_id = $1 AND kind = 'INVESTMENT' AND amount < 0`, l.ID); n != 4 {
		t.Fatalf("investment debits = %d, want 4", n)
	}
	// one INVESTMENT transfer per investment: its two entries name the same
	// investment, and the debit is that investment's wallet and amount
	if n := e.count(`SELECT count(*) FROM transfers t WHERE t.kind = 'INVESTMENT'
		AND EXISTS (SELECT 1 FROM ledger_entries e WHERE e.transfer_id = t.id AND e.loan_id = $1)
		AND (SELECT count(*) FROM ledger_entries e WHERE e.transfer_id = t.id) = 2
		AND (SELECT count(DISTINCT e.description) FROM ledger_entries e WHERE e.transfer_id = t.id) = 1
		AND EXISTS (SELECT 1 FROM ledger_entries e JOIN investments i ON e.description = format('Investment %s in loan #%s', i.id, i.loan_id)
			JOIN investors iv ON iv.id = i.investor_id JOIN wallets w ON w.user_id = iv.user_id
			WHERE e.transfer_id = t.id AND e.amount = -i.amount AND e.wallet_id = w.id)`, l.ID); n != 4 {
		t.Fatalf("well-formed investment transfers = %d, want 4", n)
	}
	if n := e.count(`SELECT count(*) FROM ledger_entries WHERE loan_id = $1 AND kind = 'DISBURSEMENT' AND amount = 98000`, l.ID); n != 1 {
		t.Fatalf("disbursement credits = %d, want 1", n)
	}
	e.check()
}

// A hot loan: 32 investors race to invest more than it needs. It never
// overfunds, funds exactly, and disburses once.
func TestInvestHotLoanRace(t *testing.T) {
	e := newLenv(t)
	b := e.borrower()
	l := e.request(b, 2000_00, 12, t0)
	const n = 32
	investors := make([]lending.Viewer, n)
	for i := range investors {
		investors[i] = e.investor(1000_00)
	}
	var wg sync.WaitGroup
	var committed atomic.Int64
	start := make(chan struct{})
	for i := range investors {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			v := investors[i]
			for attempt := 0; ; attempt++ {
				amount := lending.Money(25_00 * (1 + (i+attempt)%4)) // 25, 50, 75 or 100
				k := fmt.Sprintf("hot-%d-%d", i, attempt)
				inv, err := e.s.Invest(e.ctx, v, l.ID, amount, k, t0)
				switch {
				case err == nil:
					// Retrying the same key is a replay: same investment, no effect.
					again, err := e.s.Invest(e.ctx, v, l.ID, amount, k, t0)
					if err != nil || again.ID != inv.ID {
						t.Errorf("replay: %+v %v", again, err)
						return
					}
					committed.Add(int64(amount))
				case lending.IsCode(err, lending.CodeBadUserInput) && strings.Contains(err.Error(), "exceeds what remains"):
					continue // try a smaller amount
				case lending.IsCode(err, lending.CodeInvalidState):
					return // funded
				default:
					t.Errorf("invest: %v", err)
					return
				}
			}
		}()
	}
	close(start)
	wg.Wait()
	got := e.loanRow(l.ID)
	if got.Status != lending.LoanActive || got.FundedAmount != 2000_00 || committed.Load() != 2000_00 {
		t.Fatalf("loan %s funded %v, investors committed %v", got.Status, got.FundedAmount, lending.Money(committed.Load()))
	}
	if n := e.count(`SELECT coalesce(sum(amount), 0) FROM investments WHERE loan_id = $1 AND status = 'ACTIVE'`, l.ID); n != 2000_00 {
		t.Fatalf("investments sum to %d", n)
	}
	if n := e.count(`SELECT count(*) FROM ledger_entries WHERE loan_id = $1 AND kind = 'DISBURSEMENT' AND amount > 0`, l.ID); n != 1 {
		t.Fatalf("disbursements = %d, want 1", n)
	}
	if n := e.count(`SELECT count(*) FROM installments WHERE loan_id = $1`, l.ID); n != 12 {
		t.Fatalf("installments = %d, want 12", n)
	}
	e.wantWallet(b, 1960_00, 0)
	for _, v := range investors {
		if _, held := e.wallet(v); held != 0 {
			t.Fatalf("investor %d still holds %v", v.UserID, held)
		}
	}
	e.check()
}

// ---------------------------------------------------------------- repayLoan

// The whole life of a loan, with exact figures. R$ 1.000,00 at 29% a year
// over 3 months, first due 2025-02-10: installments 349.57, 349.57, 349.58
// (interest 24.17, 16.30, 8.25). Investors x 600.00 and y 400.00.
func TestLoanLifecycleExactFigures(t *testing.T) {
	e := newLenv(t)
	b := e.borrower()
	l := e.request(b, 1000_00, 3, t0)
	x := e.investor(1000_00)
	y := e.investor(500_00)
	ix := e.invest(x, l.ID, 600_00, t0)
	iy := e.invest(y, l.ID, 400_00, t0)
	e.wantWallet(b, 980_00, 0)
	e.deposit(b, 100_00) // 1080.00 to repay 1048.72
	fees := e.platform("PLATFORM_FEES")
	if fees != 20_00 {
		t.Fatalf("fees = %v", fees)
	}
	e.check()

	investment := func(id int64) *lending.Investment {
		t.Helper()
		var inv lending.Investment
		if err := e.db.Pool.QueryRow(e.ctx, `SELECT status, received_principal, received_interest FROM investments WHERE id = $1`, id).
			Scan(&inv.Status, &inv.ReceivedPrincipal, &inv.ReceivedInterest); err != nil {
			t.Fatal(err)
		}
		return &inv
	}
	wantInv := func(id int64, st lending.InvestmentStatus, principal, interest lending.Money) {
		t.Helper()
		inv := investment(id)
		if inv.Status != st || inv.ReceivedPrincipal != principal || inv.ReceivedInterest != interest {
			t.Fatalf("investment %d = %s %v principal %v interest, want %s %v %v", id, inv.Status, inv.ReceivedPrincipal, inv.ReceivedInterest, st, principal, interest)
		}
	}

	// 1. The first installment, exactly, before it is due. Fee 1% of 349.57 =
	// 3.50, from the interest: 20.67 interest split 3:2 (12.40 / 8.27), the
	// 325.40 principal 3:2 (195.24 / 130.16).
	r, err := e.s.RepayLoan(e.ctx, b, l.ID, 349_57, "pay-1", time.Date(2025, 2, 5, 10, 0, 0, 0, time.UTC))
	if err != nil {
		t.Fatal(err)
	}
	if r.Amount != 349_57 || r.Loan.ID != l.ID || r.Loan.Status != lending.LoanActive || len(r.Installments) != 1 ||
		r.Installments[0].Number != 1 || r.Installments[0].Status != lending.InstallmentPaid || r.Installments[0].Paid != 349_57 {
		t.Fatalf("repayment = %+v %+v", r, r.Installments)
	}
	wantInv(ix.ID, lending.InvestmentActive, 195_24, 12_40)
	wantInv(iy.ID, lending.InvestmentActive, 130_16, 8_27)
	// The ledger dates the payment by the use case's clock: borrower debit,
	// escrow in and out, two investors and the fee.
	if n := e.count(`SELECT count(*) FROM ledger_entries WHERE loan_id = $1 AND created_at = $2`, l.ID, time.Date(2025, 2, 5, 10, 0, 0, 0, time.UTC)); n != 6 {
		t.Fatalf("entries dated at the payment = %d, want 6", n)
	}
	e.wantWallet(x, 400_00+207_64, 0)
	e.wantWallet(y, 100_00+138_43, 0)
	e.wantWallet(b, 1080_00-349_57, 0)
	if got := e.platform("PLATFORM_FEES"); got != 20_00+3_50 {
		t.Fatalf("fees = %v", got)
	}
	if e.notifications(x, lending.NotifRepaymentReceived) != 1 || e.notifications(y, lending.NotifRepaymentReceived) != 1 {
		t.Fatal("REPAYMENT_RECEIVED missing")
	}
	e.check()

	// A replay returns the same repayment and moves nothing.
	e.unchanged(func() error {
		again, err := e.s.RepayLoan(e.ctx, b, l.ID, 349_57, "pay-1", time.Date(2025, 2, 6, 0, 0, 0, 0, time.UTC))
		if err == nil && (again.Amount != 349_57 || again.Loan.ID != l.ID || len(again.Installments) != 1 || again.Installments[0].Number != 1) {
			t.Fatalf("replay = %+v", again)
		}
		return err
	})
	e.refused(lending.CodeConflict, func() error {
		_, err := e.s.RepayLoan(e.ctx, b, l.ID, 100_00, "pay-1", t0)
		return err
	})

	// 2. A partial payment of 100.00: installment 2's 16.30 interest (less the
	// 1.00 fee: 9.18 / 6.12) and 83.70 of its principal (50.22 / 33.48).
	r, err = e.s.RepayLoan(e.ctx, b, l.ID, 100_00, "pay-2", time.Date(2025, 3, 1, 0, 0, 0, 0, time.UTC))
	if err != nil {
		t.Fatal(err)
	}
	if len(r.Installments) != 1 || r.Installments[0].Number != 2 || r.Installments[0].Status != lending.InstallmentPending || r.Installments[0].Paid != 100_00 {
		t.Fatalf("installments = %+v", r.Installments)
	}
	wantInv(ix.ID, lending.InvestmentActive, 245_46, 21_58)
	wantInv(iy.ID, lending.InvestmentActive, 163_64, 14_39)
	e.check()

	// Paying more than is owed (599.15) is refused whole.
	e.refused(lending.CodeBadUserInput, func() error {
		_, err := e.s.RepayLoan(e.ctx, b, l.ID, 599_16, key(), t0)
		return err
	})

	// 3. The rest, 599.15: installment 2's remaining 249.57 principal and all of
	// installment 3. Fee 5.99 from the 8.25 interest; principal by what each
	// is still owed closes both investments at exactly their amounts.
	r, err = e.s.RepayLoan(e.ctx, b, l.ID, 599_15, "pay-3", time.Date(2025, 3, 20, 0, 0, 0, 0, time.UTC))
	if err != nil {
		t.Fatal(err)
	}
	if r.Loan.Status != lending.LoanRepaid || len(r.Installments) != 2 || r.Installments[0].Number != 2 || r.Installments[1].Number != 3 ||
		r.Installments[0].Status != lending.InstallmentPaid || r.Installments[1].Status != lending.InstallmentPaid {
		t.Fatalf("repayment = %+v %+v", r.Loan, r.Installments)
	}
	wantInv(ix.ID, lending.InvestmentClosed, 600_00, 22_94)
	wantInv(iy.ID, lending.InvestmentClosed, 400_00, 15_29)
	// Every centavo accounted for: the borrower paid 1048.72; the platform
	// took 20.00 + 3.50 + 1.00 + 5.99; the investors the rest.
	e.wantWallet(b, 1080_00-1048_72, 0)
	e.wantWallet(x, 1000_00-600_00+622_94, 0)
	e.wantWallet(y, 500_00-400_00+415_29, 0)
	if got := e.platform("PLATFORM_FEES"); got != 30_49 {
		t.Fatalf("fees = %v, want 30.49", got)
	}
	if e.escrow(l.ID) != 0 {
		t.Fatal("escrow not empty")
	}
	if n := e.count(`SELECT count(*) FROM installments WHERE loan_id = $1 AND status = 'PAID' AND paid_at IS NOT NULL`, l.ID); n != 3 {
		t.Fatalf("paid installments = %d", n)
	}
	e.check()

	// A repaid loan cannot be repaid.
	e.refused(lending.CodeInvalidState, func() error {
		_, err := e.s.RepayLoan(e.ctx, b, l.ID, 1_00, key(), t0)
		return err
	})
}

func TestRepayLoanRefusals(t *testing.T) {
	e := newLenv(t)
	l, b, invs := e.activeLoan(1000_00, 3, t0, 1000_00)
	other := e.borrower()
	e.deposit(other, 500_00)
	funding := e.request(b, 500_00, 3, t0)
	cases := []struct {
		name   string
		v      lending.Viewer
		loan   int64
		amount lending.Money
		key    string
		code   lending.Code
	}{
		{"anonymous", lending.Viewer{}, l.ID, 10_00, "a", lending.CodeUnauthenticated},
		{"investor", invs[0], l.ID, 10_00, "a", lending.CodeForbidden},
		{"another borrower's loan", other, l.ID, 10_00, "a", lending.CodeNotFound},
		{"unknown loan", b, l.ID + 1000, 10_00, "a", lending.CodeNotFound},
		{"loan still funding", b, funding.ID, 10_00, "a", lending.CodeInvalidState},
		{"zero", b, l.ID, 0, "a", lending.CodeBadUserInput},
		{"negative", b, l.ID, -1, "a", lending.CodeBadUserInput},
		{"more than is owed", b, l.ID, 1048_73, "a", lending.CodeBadUserInput},
		{"more than the wallet has", b, l.ID, 980_01, "a", lending.CodeInsufficientFunds},
		{"bad key", b, l.ID, 10_00, "a b", lending.CodeBadUserInput},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			e.t = t
			e.refused(c.code, func() error {
				_, err := e.s.RepayLoan(e.ctx, c.v, c.loan, c.amount, c.key, t0)
				return err
			})
		})
	}
	e.t = t
	// The whole wallet is fine.
	if _, err := e.s.RepayLoan(e.ctx, b, l.ID, 980_00, key(), t0); err != nil {
		t.Fatal(err)
	}
	e.check()
}

func TestRepayLoanOneKeyManyRequestsOnePayment(t *testing.T) {
	e := newLenv(t)
	l, b, _ := e.activeLoan(1000_00, 6, t0, 500_00, 500_00)
	var wg sync.WaitGroup
	for i := 0; i < 16; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r, err := e.s.RepayLoan(e.ctx, b, l.ID, 123_45, "repay-race", t0)
			if err != nil || r.Amount != 123_45 {
				t.Errorf("repay %d: %+v %v", i, r, err)
			}
		}()
	}
	wg.Wait()
	e.wantWallet(b, 980_00-123_45, 0)
	if n := e.count(`SELECT count(*) FROM loan_repayments WHERE loan_id = $1`, l.ID); n != 1 {
		t.Fatalf("repayments = %d, want 1", n)
	}
	e.check()
}

// Many borrowers repay and many investors invest at once, over loans that
// share investors: wallets are locked in one order, so nothing deadlocks
// (or, if Postgres ever reports one, the retry absorbs it) and every
// invariant holds afterwards.
func TestConcurrentInvestAndRepayAcrossLoans(t *testing.T) {
	e := newLenv(t)
	const loans = 6
	shared := []lending.Viewer{e.investor(100_000_00), e.investor(100_000_00), e.investor(100_000_00)}
	var active []*lending.Loan
	var borrowers []lending.Viewer
	for i := 0; i < loans; i++ {
		b := e.borrower()
		e.deposit(b, 2000_00)
		l := e.request(b, 1500_00, 6, t0)
		for _, v := range shared {
			e.invest(v, l.ID, 500_00, t0)
		}
		active = append(active, e.loanRow(l.ID))
		borrowers = append(borrowers, b)
	}
	var funding []*lending.Loan
	for i := 0; i < loans; i++ {
		funding = append(funding, e.request(e.borrower(), 5000_00, 12, t0))
	}
	var wg sync.WaitGroup
	for i := 0; i < loans; i++ {
		wg.Add(2)
		go func() {
			defer wg.Done()
			for k := 0; k < 5; k++ {
				if _, err := e.s.RepayLoan(e.ctx, borrowers[i], active[i].ID, 50_00, key(), t0); err != nil {
					t.Errorf("repay: %v", err)
				}
			}
		}()
		go func() {
			defer wg.Done()
			for k := 0; k < 5; k++ {
				v := shared[(i+k)%len(shared)]
				if _, err := e.s.Invest(e.ctx, v, funding[(i+k)%loans].ID, 100_00, key(), t0); err != nil {
					t.Errorf("invest: %v", err)
				}
			}
		}()
	}
	wg.Wait()
	for _, b := range borrowers {
		e.wantWallet(b, 2000_00+1470_00-250_00, 0)
	}
	e.check()
}
