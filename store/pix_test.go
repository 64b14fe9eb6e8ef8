package store_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"mutuo/internal/testenv"
	"mutuo/lending"
	"mutuo/pix"
	"mutuo/store"
)

// ---------------------------------------------------------------- helpers

func pixViewer(uid int64) lending.Viewer {
	return lending.Viewer{UserID: uid, Roles: []lending.Role{lending.RoleInvestor}}
}

// countingCharge is store.PSPCharge on the Sandbox, counting its calls.
func countingCharge(calls *atomic.Int32, now func() time.Time) store.ChargeFunc {
	f := store.PSPCharge(pix.Sandbox{}, time.Hour, now)
	return func(ctx context.Context, amount lending.Money) (store.DepositCharge, error) {
		calls.Add(1)
		return f(ctx, amount)
	}
}

func pixDeposit(t *testing.T, s *store.Store, uid int64, amount lending.Money, key string) *lending.Deposit {
	t.Helper()
	d, err := s.CreateDeposit(context.Background(), pixViewer(uid), amount, key, store.PSPCharge(pix.Sandbox{}, time.Hour, time.Now))
	if err != nil {
		t.Fatalf("CreateDeposit: %v", err)
	}
	return d
}

// sandboxPayment is the payment the Sandbox PSP's webhook reports for txid,
// through the same parser the webhook handler uses.
func sandboxPayment(t *testing.T, txid string, amount lending.Money, at time.Time) pix.Payment {
	t.Helper()
	ps, err := pix.ParseWebhook(pix.Sandbox{}.PaymentWebhook(txid, amount, at))
	if err != nil || len(ps) != 1 {
		t.Fatalf("sandbox webhook: %v (%d payments)", err, len(ps))
	}
	return ps[0]
}

// otherPayment is a payment of the same charge by another Pix (another
// endToEndId).
func otherPayment(p pix.Payment, n int) pix.Payment {
	p.EndToEndID = fmt.Sprintf("E99999999%023d", n)
	p.Raw = nil
	return p
}

// fundByPix deposits amount into uid's wallet the way production does:
// CreateDeposit, then the PSP's webhook payment applied.
func fundByPix(t *testing.T, s *store.Store, uid int64, amount lending.Money) {
	t.Helper()
	d := pixDeposit(t, s, uid, amount, fmt.Sprintf("fund-%d-%d", uid, time.Now().UnixNano()))
	out, err := s.ApplyPixPayment(context.Background(), sandboxPayment(t, d.Txid, amount, time.Now()), time.Now())
	if err != nil || out.Outcome != store.PixCredited {
		t.Fatalf("fund: %+v, %v", out, err)
	}
}

func walletOf(t *testing.T, db *testenv.DB, uid int64) (balance, held lending.Money) {
	t.Helper()
	if err := db.Pool.QueryRow(context.Background(), `SELECT balance, held FROM wallets WHERE user_id = $1`, uid).Scan(&balance, &held); err != nil {
		t.Fatal(err)
	}
	return balance, held
}

func wantWallet(t *testing.T, db *testenv.DB, uid int64, balance, held lending.Money) {
	t.Helper()
	b, h := walletOf(t, db, uid)
	if b != balance || h != held {
		t.Fatalf("wallet of user %d: balance %v held %v, want %v and %v", uid, b, h, balance, held)
	}
}

// checkMoney asserts the ledger invariants: the simple ones here in SQL, and
// the store's full CheckInvariants.
func checkMoney(t *testing.T, s *store.Store, db *testenv.DB) {
	t.Helper()
	if n := count(t, db, `SELECT count(*) FROM wallets w
		WHERE w.balance <> (SELECT coalesce(sum(amount), 0) FROM ledger_entries e WHERE e.wallet_id = w.id)
		   OR w.held <> (SELECT coalesce(sum(amount), 0) FROM holds h WHERE h.wallet_id = w.id AND h.status = 'HELD')`); n != 0 {
		t.Fatalf("%d wallets whose balance or held disagree with their entries or holds", n)
	}
	if n := count(t, db, `SELECT count(*) FROM (SELECT sum(balance) AS s FROM wallets) x WHERE s <> 0`); n != 0 {
		t.Fatal("wallet balances do not sum to zero")
	}
	if err := s.CheckInvariants(context.Background()); err != nil {
		t.Fatal(err)
	}
}

// ---------------------------------------------------------------- deposits

func TestCreateDeposit(t *testing.T) {
	s, db := newStore(t)
	ctx := context.Background()
	uid := newUser(t, s)
	var calls atomic.Int32
	now := time.Now()
	charge := countingCharge(&calls, func() time.Time { return now })

	d, err := s.CreateDeposit(ctx, pixViewer(uid), 150_00, "dep-1", charge)
	if err != nil {
		t.Fatal(err)
	}
	if d.UserID != uid || d.Amount != 150_00 || d.Status != lending.DepositPending || !pix.ValidTxid(d.Txid) ||
		(d.ExpiresAt.Sub(now.Add(time.Hour)).Abs() > time.Microsecond) || d.CreatedAt.IsZero() {
		t.Fatalf("deposit = %+v", d)
	}
	code, err := pix.Decode(d.BrCode)
	if err != nil || code.Amount != 150_00 {
		t.Fatalf("br code %q: %+v, %v", d.BrCode, code, err)
	}

	// Replay: same deposit, no second charge.
	again, err := s.CreateDeposit(ctx, pixViewer(uid), 150_00, "dep-1", charge)
	if err != nil {
		t.Fatal(err)
	}
	if again.ID != d.ID || again.Txid != d.Txid || again.BrCode != d.BrCode || calls.Load() != 1 {
		t.Fatalf("replay = %+v (charges %d), want deposit %d", again, calls.Load(), d.ID)
	}
	// Same key, other amount: CONFLICT, no charge.
	_, err = s.CreateDeposit(ctx, pixViewer(uid), 151_00, "dep-1", charge)
	wantCode(t, err, lending.CodeConflict)
	// The key is the caller's: another user's same key is a new deposit.
	other := newUser(t, s)
	od, err := s.CreateDeposit(ctx, pixViewer(other), 150_00, "dep-1", charge)
	if err != nil || od.ID == d.ID || od.UserID != other {
		t.Fatalf("other user's deposit = %+v, %v", od, err)
	}
	if calls.Load() != 2 {
		t.Fatalf("charges = %d, want 2", calls.Load())
	}

	// Refused inputs create nothing and call no PSP.
	for _, tc := range []struct {
		v      lending.Viewer
		amount lending.Money
		key    string
		code   lending.Code
	}{
		{lending.Viewer{}, 100, "k1", lending.CodeUnauthenticated},
		{pixViewer(uid), 0, "k2", lending.CodeBadUserInput},
		{pixViewer(uid), -5, "k3", lending.CodeBadUserInput},
		{pixViewer(uid), store.MaxDepositAmount + 1, "k4", lending.CodeBadUserInput},
		{pixViewer(uid), 100, "bad key!", lending.CodeBadUserInput},
	} {
		_, err := s.CreateDeposit(ctx, tc.v, tc.amount, tc.key, charge)
		wantCode(t, err, tc.code)
	}
	if _, err := s.CreateDeposit(ctx, pixViewer(uid), store.MaxDepositAmount, "max", charge); err != nil {
		t.Fatalf("deposit of the maximum: %v", err)
	}
	if calls.Load() != 3 {
		t.Fatalf("charges = %d, want 3", calls.Load())
	}

	// A failing PSP leaves nothing behind: the key can be used again.
	boom := errors.New("psp down")
	_, err = s.CreateDeposit(ctx, pixViewer(uid), 10_00, "retry-me", func(context.Context, lending.Money) (store.DepositCharge, error) {
		return store.DepositCharge{}, boom
	})
	if !errors.Is(err, boom) {
		t.Fatalf("err = %v, want the PSP's", err)
	}
	if n := count(t, db, `SELECT count(*) FROM idempotency_keys WHERE key = 'retry-me'`); n != 0 {
		t.Fatalf("a failed deposit left its key behind")
	}
	if _, err := s.CreateDeposit(ctx, pixViewer(uid), 10_00, "retry-me", charge); err != nil {
		t.Fatal(err)
	}
	if n := count(t, db, `SELECT count(*) FROM deposits WHERE user_id = $1`, uid); n != 3 {
		t.Fatalf("deposits = %d, want 3", n)
	}
	wantWallet(t, db, uid, 0, 0)
	checkMoney(t, s, db)
}

// Concurrent requests with one key: one deposit, one charge, everyone gets it.
func TestCreateDepositConcurrentKey(t *testing.T) {
	s, db := newStore(t)
	uid := newUser(t, s)
	var calls atomic.Int32
	charge := countingCharge(&calls, time.Now)
	const n = 16
	ids := make([]int64, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			d, err := s.CreateDeposit(context.Background(), pixViewer(uid), 99_99, "same-key", charge)
			errs[i] = err
			if err == nil {
				ids[i] = d.ID
			}
		}()
	}
	wg.Wait()
	for i := range n {
		if errs[i] != nil {
			t.Fatalf("request %d: %v", i, errs[i])
		}
		if ids[i] != ids[0] {
			t.Fatalf("request %d got deposit %d, request 0 got %d", i, ids[i], ids[0])
		}
	}
	if calls.Load() != 1 || count(t, db, `SELECT count(*) FROM deposits`) != 1 {
		t.Fatalf("charges %d, deposits %d; want 1 and 1", calls.Load(), count(t, db, `SELECT count(*) FROM deposits`))
	}
}

// ---------------------------------------------------------------- payments

func TestApplyPixPaymentCreditsOnce(t *testing.T) {
	s, db := newStore(t)
	ctx := context.Background()
	uid := newUser(t, s)
	d := pixDeposit(t, s, uid, 250_00, "d")
	p := sandboxPayment(t, d.Txid, 250_00, time.Now())

	out, err := s.ApplyPixPayment(ctx, p, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if out.Outcome != store.PixCredited || out.Duplicate || out.EndToEndID != p.EndToEndID || out.DepositID == nil || *out.DepositID != d.ID {
		t.Fatalf("outcome = %+v", out)
	}
	wantWallet(t, db, uid, 250_00, 0)
	var status, e2e string
	var completed *time.Time
	if err := db.Pool.QueryRow(ctx, `SELECT status, end_to_end_id, completed_at FROM deposits WHERE id = $1`, d.ID).Scan(&status, &e2e, &completed); err != nil {
		t.Fatal(err)
	}
	if status != "COMPLETED" || e2e != p.EndToEndID || completed == nil {
		t.Fatalf("deposit: %s %s %v", status, e2e, completed)
	}
	if n := count(t, db, `SELECT count(*) FROM notifications WHERE user_id = $1 AND kind = 'DEPOSIT_CONFIRMED'`, uid); n != 1 {
		t.Fatalf("notifications = %d", n)
	}
	if n := count(t, db, `SELECT count(*) FROM outbox WHERE stream = $1`, fmt.Sprintf("wallet:%d", uid)); n != 1 {
		t.Fatalf("wallet events = %d, want 1", n)
	}
	if n := count(t, db, `SELECT count(*) FROM ledger_entries WHERE kind = 'DEPOSIT' AND description = 'Pix deposit'`); n != 2 {
		t.Fatalf("entries = %d, want 2", n)
	}
	// The raw item is kept for the audit trail.
	if n := count(t, db, `SELECT count(*) FROM pix_payments WHERE end_to_end_id = $1 AND payload->>'txid' = $2 AND outcome = 'CREDITED' AND deposit_id = $3`,
		p.EndToEndID, d.Txid, d.ID); n != 1 {
		t.Fatalf("pix_payments row missing")
	}

	// The same payment again (a PSP retry): the recorded outcome, nothing more.
	for range 3 {
		dup, err := s.ApplyPixPayment(ctx, p, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		if dup.Outcome != store.PixCredited || !dup.Duplicate || dup.DepositID == nil || *dup.DepositID != d.ID {
			t.Fatalf("duplicate = %+v", dup)
		}
	}
	// Another Pix paying the same charge: ALREADY_PAID, recorded, not credited.
	second := otherPayment(p, 1)
	out, err = s.ApplyPixPayment(ctx, second, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if out.Outcome != store.PixAlreadyPaid || out.Duplicate {
		t.Fatalf("second payment = %+v", out)
	}
	wantWallet(t, db, uid, 250_00, 0)
	if n := count(t, db, `SELECT count(*) FROM pix_payments`); n != 2 {
		t.Fatalf("pix_payments = %d, want 2", n)
	}
	if n := count(t, db, `SELECT count(*) FROM notifications`); n != 1 {
		t.Fatalf("notifications = %d, want 1", n)
	}
	checkMoney(t, s, db)
}

func TestApplyPixPaymentNotCredited(t *testing.T) {
	s, db := newStore(t)
	ctx := context.Background()
	uid := newUser(t, s)
	now := time.Now()

	dWrong := pixDeposit(t, s, uid, 100_00, "wrong")
	dLate := pixDeposit(t, s, uid, 100_00, "late")
	dExpired := pixDeposit(t, s, uid, 100_00, "expired")

	// ExpireDeposits marks only what is past its expiry, once.
	n, err := s.ExpireDeposits(ctx, now.Add(30*time.Minute))
	if err != nil || n != 0 {
		t.Fatalf("expire before expiry: %d, %v", n, err)
	}
	if _, err := db.Pool.Exec(ctx, `UPDATE deposits SET expires_at = $2 WHERE id = $1`, dExpired.ID, now.Add(-time.Minute)); err != nil {
		t.Fatal(err)
	}
	if n, err := s.ExpireDeposits(ctx, now); err != nil || n != 1 {
		t.Fatalf("expire: %d, %v; want 1", n, err)
	}
	if n, err := s.ExpireDeposits(ctx, now); err != nil || n != 0 {
		t.Fatalf("expire again: %d, %v; want 0", n, err)
	}

	cases := []struct {
		name string
		p    pix.Payment
		want store.PixOutcome
		dep  *int64
	}{
		{"unknown txid", sandboxPayment(t, pix.NewTxid(), 100_00, now), store.PixUnknownTxid, nil},
		{"no txid", func() pix.Payment {
			p := otherPayment(sandboxPayment(t, pix.NewTxid(), 5_00, now), 7)
			p.Txid = ""
			return p
		}(), store.PixUnknownTxid, nil},
		{"wrong amount", sandboxPayment(t, dWrong.Txid, 99_99, now), store.PixWrongAmount, &dWrong.ID},
		{"paid after expiry", sandboxPayment(t, dLate.Txid, 100_00, dLate.ExpiresAt.Add(time.Second)), store.PixExpired, &dLate.ID},
		{"deposit EXPIRED", sandboxPayment(t, dExpired.Txid, 100_00, now.Add(-2*time.Minute)), store.PixExpired, &dExpired.ID},
	}
	for _, tc := range cases {
		out, err := s.ApplyPixPayment(ctx, tc.p, now)
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if out.Outcome != tc.want || out.Duplicate || (tc.dep == nil) != (out.DepositID == nil) || (tc.dep != nil && *tc.dep != *out.DepositID) {
			t.Fatalf("%s: outcome %+v, want %s", tc.name, out, tc.want)
		}
		if n := count(t, db, `SELECT count(*) FROM pix_payments WHERE end_to_end_id = $1 AND outcome = $2`, tc.p.EndToEndID, string(tc.want)); n != 1 {
			t.Fatalf("%s: not recorded", tc.name)
		}
		dup, err := s.ApplyPixPayment(ctx, tc.p, now)
		if err != nil || !dup.Duplicate || dup.Outcome != tc.want {
			t.Fatalf("%s: duplicate = %+v, %v", tc.name, dup, err)
		}
	}
	wantWallet(t, db, uid, 0, 0)
	if n := count(t, db, `SELECT count(*) FROM ledger_entries`); n != 0 {
		t.Fatalf("entries = %d, want 0", n)
	}
	if n := count(t, db, `SELECT count(*) FROM deposits WHERE status = 'COMPLETED'`); n != 0 {
		t.Fatalf("completed deposits = %d", n)
	}
	if n := count(t, db, `SELECT count(*) FROM notifications`); n != 0 {
		t.Fatalf("notifications = %d", n)
	}
	// The wrong-amount charge can still be paid correctly.
	out, err := s.ApplyPixPayment(ctx, otherPayment(sandboxPayment(t, dWrong.Txid, 100_00, now), 2), now)
	if err != nil || out.Outcome != store.PixCredited {
		t.Fatalf("correct payment after a wrong one: %+v, %v", out, err)
	}
	wantWallet(t, db, uid, 100_00, 0)
	checkMoney(t, s, db)
}

// Payments arrive in any order: B's before A's, and each deposit is credited.
func TestApplyPixPaymentReordered(t *testing.T) {
	s, db := newStore(t)
	ctx := context.Background()
	u1, u2 := newUser(t, s), newUser(t, s)
	a := pixDeposit(t, s, u1, 10_00, "a")
	b := pixDeposit(t, s, u2, 20_00, "b")
	b2 := pixDeposit(t, s, u1, 30_00, "b2")
	for _, d := range []*lending.Deposit{b2, b, a} {
		out, err := s.ApplyPixPayment(ctx, sandboxPayment(t, d.Txid, d.Amount, time.Now()), time.Now())
		if err != nil || out.Outcome != store.PixCredited {
			t.Fatalf("deposit %d: %+v, %v", d.ID, out, err)
		}
	}
	wantWallet(t, db, u1, 40_00, 0)
	wantWallet(t, db, u2, 20_00, 0)
	checkMoney(t, s, db)
}

// 20 concurrent deliveries of one payment credit it once; 20 different Pix
// paying one charge concurrently credit it once too.
func TestApplyPixPaymentConcurrent(t *testing.T) {
	s, db := newStore(t)
	ctx := context.Background()
	uid := newUser(t, s)
	d1 := pixDeposit(t, s, uid, 77_77, "c1")
	d2 := pixDeposit(t, s, uid, 11_11, "c2")
	p1 := sandboxPayment(t, d1.Txid, 77_77, time.Now())
	p2 := sandboxPayment(t, d2.Txid, 11_11, time.Now())

	const n = 20
	outs := make([]store.PaymentOutcome, 2*n)
	errs := make([]error, 2*n)
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range 2 * n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			p := p1
			if i >= n {
				p = otherPayment(p2, i) // a different endToEndId each
			}
			outs[i], errs[i] = s.ApplyPixPayment(ctx, p, time.Now())
		}()
	}
	close(start)
	wg.Wait()
	credited1, dups1, credited2, paid2 := 0, 0, 0, 0
	for i := range 2 * n {
		if errs[i] != nil {
			t.Fatalf("delivery %d: %v", i, errs[i])
		}
		o := outs[i]
		switch {
		case i < n && o.Outcome == store.PixCredited && !o.Duplicate:
			credited1++
		case i < n && o.Outcome == store.PixCredited && o.Duplicate:
			dups1++
		case i >= n && o.Outcome == store.PixCredited && !o.Duplicate:
			credited2++
		case i >= n && o.Outcome == store.PixAlreadyPaid && !o.Duplicate:
			paid2++
		default:
			t.Fatalf("delivery %d: unexpected %+v", i, o)
		}
	}
	if credited1 != 1 || dups1 != n-1 || credited2 != 1 || paid2 != n-1 {
		t.Fatalf("same payment: %d credited, %d duplicates; same charge: %d credited, %d already paid", credited1, dups1, credited2, paid2)
	}
	wantWallet(t, db, uid, 77_77+11_11, 0)
	if c := count(t, db, `SELECT count(*) FROM pix_payments`); c != 1+n {
		t.Fatalf("pix_payments = %d, want %d", c, 1+n)
	}
	checkMoney(t, s, db)
}

// ---------------------------------------------------------------- withdrawals

// flakyPSP is the Sandbox behind a switch: it can fail with an unknown
// outcome (as a network error would) or answer PENDING, and it counts the
// payouts it is asked for per idempotency key.
type flakyPSP struct {
	pix.Sandbox
	mu      sync.Mutex
	down    bool
	pending bool
	calls   map[string]int
}

func (f *flakyPSP) Pay(ctx context.Context, p pix.Payout) (pix.PayoutResult, error) {
	f.mu.Lock()
	if f.calls == nil {
		f.calls = map[string]int{}
	}
	f.calls[p.IdempotencyKey]++
	down, pending := f.down, f.pending
	f.mu.Unlock()
	if down {
		return pix.PayoutResult{}, errors.New("psp: connection reset")
	}
	res, err := f.Sandbox.Pay(ctx, p)
	if err == nil && pending {
		res.Status = lending.WithdrawalPending
	}
	return res, err
}

func (f *flakyPSP) set(down, pending bool) {
	f.mu.Lock()
	f.down, f.pending = down, pending
	f.mu.Unlock()
}

func TestRequestWithdrawalCompletes(t *testing.T) {
	s, db := newStore(t)
	ctx := context.Background()
	uid := newUser(t, s)
	fundByPix(t, s, uid, 500_00)
	psp := &flakyPSP{}

	wd, err := s.RequestWithdrawal(ctx, pixViewer(uid), 120_50, " 123.456.789-09 ", "wd-1", psp)
	if err != nil {
		t.Fatal(err)
	}
	if wd.Status != lending.WithdrawalCompleted || wd.Amount != 120_50 || wd.PixKey != "12345678909" || wd.UserID != uid {
		t.Fatalf("withdrawal = %+v", wd)
	}
	wantWallet(t, db, uid, 500_00-120_50, 0)
	var holdStatus, keyType string
	var pspID *string
	if err := db.Pool.QueryRow(ctx, `SELECT h.status, w.pix_key_type, w.psp_id FROM holds h JOIN withdrawals w ON w.id = h.withdrawal_id WHERE w.id = $1`,
		wd.ID).Scan(&holdStatus, &keyType, &pspID); err != nil {
		t.Fatal(err)
	}
	if holdStatus != "POSTED" || keyType != "CPF" || pspID == nil || *pspID == "" {
		t.Fatalf("hold %s, key type %s, psp id %v", holdStatus, keyType, pspID)
	}
	if n := count(t, db, `SELECT count(*) FROM ledger_entries e JOIN wallets w ON w.id = e.wallet_id
		WHERE e.kind = 'WITHDRAWAL' AND ((w.user_id = $1 AND e.amount = -12050) OR (w.kind = 'PIX_CLEARING' AND e.amount = 12050))`, uid); n != 2 {
		t.Fatalf("withdrawal entries = %d, want 2", n)
	}

	// Replay: the same withdrawal, no second payout or debit (the key's form
	// does not matter, its normalized value does).
	again, err := s.RequestWithdrawal(ctx, pixViewer(uid), 120_50, "12345678909", "wd-1", psp)
	if err != nil || again.ID != wd.ID || again.Status != lending.WithdrawalCompleted {
		t.Fatalf("replay = %+v, %v", again, err)
	}
	if psp.calls[fmt.Sprintf("mutuo-withdrawal-%d", wd.ID)] != 1 || len(psp.calls) != 1 {
		t.Fatalf("payouts = %v, want one", psp.calls)
	}
	_, err = s.RequestWithdrawal(ctx, pixViewer(uid), 120_51, "12345678909", "wd-1", psp)
	wantCode(t, err, lending.CodeConflict)
	_, err = s.RequestWithdrawal(ctx, pixViewer(uid), 120_50, "ana@example.com", "wd-1", psp)
	wantCode(t, err, lending.CodeConflict)
	wantWallet(t, db, uid, 500_00-120_50, 0)
	checkMoney(t, s, db)
}

func TestRequestWithdrawalFailsAndReleases(t *testing.T) {
	s, db := newStore(t)
	ctx := context.Background()
	uid := newUser(t, s)
	fundByPix(t, s, uid, 100_00)

	for i, tc := range []struct {
		amount lending.Money
		key    string
	}{
		{50_13, "+55 (11) 98765-4321"}, // the Sandbox rejects amounts ending in .13
		{10_00, pix.SandboxFailingKey}, // and this key
	} {
		wd, err := s.RequestWithdrawal(ctx, pixViewer(uid), tc.amount, tc.key, fmt.Sprintf("fail-%d", i), pix.Sandbox{})
		if err != nil {
			t.Fatal(err)
		}
		if wd.Status != lending.WithdrawalFailed {
			t.Fatalf("withdrawal = %+v, want FAILED", wd)
		}
		var holdStatus string
		var failure *string
		if err := db.Pool.QueryRow(ctx, `SELECT h.status, w.failure FROM holds h JOIN withdrawals w ON w.id = h.withdrawal_id WHERE w.id = $1`,
			wd.ID).Scan(&holdStatus, &failure); err != nil {
			t.Fatal(err)
		}
		if holdStatus != "VOIDED" || failure == nil || *failure == "" {
			t.Fatalf("hold %s, failure %v", holdStatus, failure)
		}
		wantWallet(t, db, uid, 100_00, 0)
	}
	if n := count(t, db, `SELECT count(*) FROM ledger_entries WHERE kind = 'WITHDRAWAL'`); n != 0 {
		t.Fatalf("a failed withdrawal wrote %d entries", n)
	}
	checkMoney(t, s, db)
}

func TestRequestWithdrawalRefused(t *testing.T) {
	s, db := newStore(t)
	ctx := context.Background()
	uid := newUser(t, s)
	fundByPix(t, s, uid, 100_00)
	psp := &flakyPSP{}
	before := func() [4]int {
		return [4]int{
			count(t, db, `SELECT count(*) FROM withdrawals`), count(t, db, `SELECT count(*) FROM holds`),
			count(t, db, `SELECT count(*) FROM idempotency_keys`), count(t, db, `SELECT count(*) FROM outbox`),
		}
	}
	snap := before()
	for _, tc := range []struct {
		v      lending.Viewer
		amount lending.Money
		key    string
		idem   string
		code   lending.Code
	}{
		{pixViewer(uid), 100_01, "12345678909", "r1", lending.CodeInsufficientFunds},
		{lending.Viewer{}, 1_00, "12345678909", "r2", lending.CodeUnauthenticated},
		{pixViewer(uid), 0, "12345678909", "r3", lending.CodeBadUserInput},
		{pixViewer(uid), -1, "12345678909", "r4", lending.CodeBadUserInput},
		{pixViewer(uid), store.MaxWithdrawalAmount + 1, "12345678909", "r5", lending.CodeBadUserInput},
		{pixViewer(uid), 1_00, "123.456.789-00", "r6", lending.CodeBadUserInput}, // bad check digits
		{pixViewer(uid), 1_00, "11987654321", "r7", lending.CodeBadUserInput},    // a phone without +55 is a (bad) CPF
		{pixViewer(uid), 1_00, "not a key", "r8", lending.CodeBadUserInput},      // nothing
		{pixViewer(uid), 1_00, "12345678909", "bad idem key", lending.CodeBadUserInput},
	} {
		_, err := s.RequestWithdrawal(ctx, tc.v, tc.amount, tc.key, tc.idem, psp)
		wantCode(t, err, tc.code)
	}
	if got := before(); got != snap {
		t.Fatalf("refused withdrawals changed rows: %v -> %v", snap, got)
	}
	if len(psp.calls) != 0 {
		t.Fatalf("refused withdrawals reached the PSP: %v", psp.calls)
	}
	wantWallet(t, db, uid, 100_00, 0)
	// The key of a refused request is free: the same key with an amount that
	// fits now succeeds.
	wd, err := s.RequestWithdrawal(ctx, pixViewer(uid), 100_00, "12345678909", "r1", psp)
	if err != nil || wd.Status != lending.WithdrawalCompleted {
		t.Fatalf("withdrawal = %+v, %v", wd, err)
	}
	wantWallet(t, db, uid, 0, 0)
	checkMoney(t, s, db)
}

// A held withdrawal counts against available money: two withdrawals cannot
// spend the same money, even at once.
func TestRequestWithdrawalConcurrentSpend(t *testing.T) {
	s, db := newStore(t)
	uid := newUser(t, s)
	fundByPix(t, s, uid, 100_00)
	psp := &flakyPSP{}
	const n = 10
	var wg sync.WaitGroup
	var ok, insufficient atomic.Int32
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := s.RequestWithdrawal(context.Background(), pixViewer(uid), 30_00, "ana@example.com", fmt.Sprintf("spend-%d", i), psp)
			switch {
			case err == nil:
				ok.Add(1)
			case lending.IsCode(err, lending.CodeInsufficientFunds):
				insufficient.Add(1)
			default:
				t.Errorf("withdrawal %d: %v", i, err)
			}
		}()
	}
	wg.Wait()
	if ok.Load() != 3 || insufficient.Load() != n-3 {
		t.Fatalf("%d succeeded, %d insufficient; want 3 and %d", ok.Load(), insufficient.Load(), n-3)
	}
	wantWallet(t, db, uid, 10_00, 0)
	checkMoney(t, s, db)
}

// The PSP's answer is unknown (or PENDING): the withdrawal stays PENDING with
// its hold, and ResumePendingWithdrawals finishes it exactly once, even when
// many instances resume at once.
func TestResumePendingWithdrawals(t *testing.T) {
	s, db := newStore(t)
	ctx := context.Background()
	uid := newUser(t, s)
	fundByPix(t, s, uid, 100_00)
	psp := &flakyPSP{}

	psp.set(true, false) // down: unknown outcome
	wd, err := s.RequestWithdrawal(ctx, pixViewer(uid), 40_00, "+5511987654321", "p1", psp)
	if err != nil {
		t.Fatal(err)
	}
	if wd.Status != lending.WithdrawalPending {
		t.Fatalf("withdrawal = %+v, want PENDING", wd)
	}
	wantWallet(t, db, uid, 100_00, 40_00)
	psp.set(false, true) // up, but the payout stays pending at the PSP
	failing, err := s.RequestWithdrawal(ctx, pixViewer(uid), 20_13, "+5511987654321", "p2", psp)
	if err != nil || failing.Status != lending.WithdrawalPending {
		t.Fatalf("withdrawal = %+v, %v; want PENDING", failing, err)
	}
	wantWallet(t, db, uid, 100_00, 60_13)
	// Replaying the key returns the state as it is, without paying.
	again, err := s.RequestWithdrawal(ctx, pixViewer(uid), 40_00, "+55 11 98765-4321", "p1", psp)
	if err != nil || again.ID != wd.ID || again.Status != lending.WithdrawalPending {
		t.Fatalf("replay = %+v, %v", again, err)
	}

	// Too recent to resume.
	if n, err := s.ResumePendingWithdrawals(ctx, psp, time.Hour); err != nil || n != 0 {
		t.Fatalf("resume recent: %d, %v", n, err)
	}
	// Still pending at the PSP: nothing finishes.
	if n, err := s.ResumePendingWithdrawals(ctx, psp, 0); err != nil || n != 0 {
		t.Fatalf("resume while pending: %d, %v", n, err)
	}
	psp.set(false, false)
	const workers = 8
	var wg sync.WaitGroup
	var total atomic.Int32
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			n, err := s.ResumePendingWithdrawals(ctx, psp, 0)
			if err != nil {
				t.Error(err)
			}
			total.Add(int32(n))
		}()
	}
	wg.Wait()
	if total.Load() < 2 {
		t.Fatalf("resumed %d, want both", total.Load())
	}
	var st1, st2 string
	if err := db.Pool.QueryRow(ctx, `SELECT (SELECT status FROM withdrawals WHERE id = $1), (SELECT status FROM withdrawals WHERE id = $2)`,
		wd.ID, failing.ID).Scan(&st1, &st2); err != nil {
		t.Fatal(err)
	}
	if st1 != "COMPLETED" || st2 != "FAILED" {
		t.Fatalf("statuses %s, %s; want COMPLETED, FAILED", st1, st2)
	}
	// One debit, one release, whatever the number of resumers.
	wantWallet(t, db, uid, 60_00, 0)
	if n := count(t, db, `SELECT count(*) FROM transfers WHERE kind = 'WITHDRAWAL'`); n != 1 {
		t.Fatalf("withdrawal transfers = %d, want 1", n)
	}
	// Every attempt used the withdrawal's own payout key.
	for k := range psp.calls {
		if k != fmt.Sprintf("mutuo-withdrawal-%d", wd.ID) && k != fmt.Sprintf("mutuo-withdrawal-%d", failing.ID) {
			t.Fatalf("payout key %q", k)
		}
	}
	if n, err := s.ResumePendingWithdrawals(ctx, psp, 0); err != nil || n != 0 {
		t.Fatalf("resume after all finished: %d, %v", n, err)
	}
	checkMoney(t, s, db)
}
