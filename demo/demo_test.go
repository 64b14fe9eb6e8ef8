package demo

import (
	"context"
	"strings"
	"testing"
	"time"

	"mutuo/auth"
	"mutuo/internal/testenv"
	"mutuo/lending"
	"mutuo/pix"
	"mutuo/store"
)

func TestMain(m *testing.M) { testenv.Main(m) }

func newAuth(t *testing.T, st *store.Store) *auth.Service {
	t.Helper()
	rdb := testenv.NewRedis(t)
	keys, err := auth.NewHS256Keys([]byte(strings.Repeat("d", 32)))
	if err != nil {
		t.Fatal(err)
	}
	svc, err := auth.New(auth.Config{
		Issuer: "https://mutuo.test", Audience: "mutuo-api", Keys: keys,
		Redis: rdb.Client, Prefix: rdb.Prefix,
		Argon2: auth.Argon2Params{Memory: 1024, Iterations: 1, Parallelism: 1, SaltLen: 16, KeyLen: 32},
	}, st)
	if err != nil {
		t.Fatal(err)
	}
	return svc
}

func count(t *testing.T, st *store.Store, sql string, args ...any) int {
	t.Helper()
	var n int
	if err := st.Pool().QueryRow(context.Background(), sql, args...).Scan(&n); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
	return n
}

func TestLoad(t *testing.T) {
	ctx := context.Background()
	db := testenv.NewDB(t)
	st := store.New(db.Pool)
	a := newAuth(t, st)
	// An admin alone does not make the database "not empty".
	if _, err := a.EnsureAdmin(ctx, "Admin", "admin@mutuo.dev", "admin-password-123"); err != nil {
		t.Fatal(err)
	}
	now := time.Date(2025, 3, 14, 15, 30, 0, 0, time.UTC)

	began := time.Now()
	creds, err := Load(ctx, st, a, pix.Sandbox{}, now)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("Load took %v", time.Since(began))
	if creds == nil || creds.Investor.Email != InvestorEmail || creds.Borrower.Email != BorrowerEmail ||
		creds.Investor.Password != Password || creds.Borrower.Password != Password {
		t.Fatalf("credentials = %+v", creds)
	}
	for _, acc := range []Account{creds.Investor, creds.Borrower} {
		if _, err := a.SignIn(ctx, acc.Email, acc.Password); err != nil {
			t.Fatalf("sign in as %s: %v", acc.Email, err)
		}
	}

	t.Run("people", func(t *testing.T) {
		if n := count(t, st, `SELECT count(*) FROM borrowers`); n < 20 {
			t.Errorf("%d borrowers, want >= 20", n)
		}
		if n := count(t, st, `SELECT count(*) FROM investors`); n < 10 {
			t.Errorf("%d investors, want >= 10", n)
		}
		if n := count(t, st, `SELECT count(DISTINCT grade) FROM borrowers`); n < 3 {
			t.Errorf("borrowers span %d grades, want >= 3", n)
		}
	})

	t.Run("loans", func(t *testing.T) {
		if n := count(t, st, `SELECT count(*) FROM loans`); n < 60 {
			t.Errorf("%d loans, want >= 60", n)
		}
		// FUNDED is transient (funding and disbursement are one transaction).
		for _, s := range []lending.LoanStatus{lending.LoanFunding, lending.LoanActive, lending.LoanRepaid, lending.LoanDefaulted, lending.LoanCancelled} {
			n := count(t, st, `SELECT count(*) FROM loans WHERE status = $1`, string(s))
			t.Logf("%-9s %d", s, n)
			if n == 0 {
				t.Errorf("no %s loans", s)
			}
		}
		if n := count(t, st, `SELECT count(*) FROM loans WHERE status = 'FUNDED'`); n != 0 {
			t.Errorf("%d loans rest in FUNDED", n)
		}
		multi := count(t, st, `SELECT count(*) FROM (SELECT loan_id FROM investments GROUP BY loan_id HAVING count(DISTINCT investor_id) >= 2) x`)
		if multi < 40 {
			t.Errorf("%d loans with investments from >= 2 investors, want >= 40", multi)
		}
		if n := count(t, st, `SELECT count(*) FROM loans WHERE status = 'FUNDING' AND funded_amount > 0 AND funded_amount < amount AND funding_deadline > $1`, now); n < 10 {
			t.Errorf("%d partly funded loans open now, want >= 10", n)
		}
		if n := count(t, st, `SELECT count(*) FROM installments WHERE status = 'LATE'`); n == 0 {
			t.Error("no LATE installments")
		}
		if n := count(t, st, `SELECT count(*) FROM loans l WHERE status = 'ACTIVE' AND EXISTS (SELECT 1 FROM installments i WHERE i.loan_id = l.id AND i.status = 'PAID')`); n == 0 {
			t.Error("no ACTIVE loans with paid installments")
		}
		if n := count(t, st, `SELECT count(*) FROM investments WHERE status = 'REFUNDED'`); n == 0 {
			t.Error("no REFUNDED investments")
		}
		if n := count(t, st, `SELECT count(*) FROM loans WHERE status = 'REPAID' AND EXISTS (SELECT 1 FROM installments i WHERE i.loan_id = loans.id AND i.status <> 'PAID')`); n != 0 {
			t.Errorf("%d REPAID loans with unpaid installments", n)
		}
	})

	t.Run("money", func(t *testing.T) {
		if n := count(t, st, `SELECT count(*) FROM wallets w WHERE w.balance <> coalesce((SELECT sum(amount) FROM ledger_entries e WHERE e.wallet_id = w.id), 0)`); n != 0 {
			t.Errorf("%d wallets whose balance is not the sum of their entries", n)
		}
		if n := count(t, st, `SELECT coalesce(sum(balance), 0) FROM wallets`); n != 0 {
			t.Errorf("wallets sum to %d, want 0", n)
		}
		if n := count(t, st, `SELECT count(*) FROM deposits WHERE status = 'COMPLETED'`); n < 10 {
			t.Errorf("%d completed deposits", n)
		}
		if n := count(t, st, `SELECT count(*) FROM withdrawals`); n == 0 {
			t.Error("no withdrawals")
		}
		if n := count(t, st, `SELECT count(DISTINCT kind) FROM ledger_entries`); n < 6 {
			t.Errorf("ledger has %d entry kinds, want >= 6", n)
		}
		if c, ok := any(st).(interface{ CheckInvariants(context.Context) error }); ok {
			if err := c.CheckInvariants(ctx); err != nil {
				t.Errorf("invariants: %v", err)
			}
		} else {
			t.Log("store has no CheckInvariants yet")
		}
	})

	// Every notification and message is numbered for replays once the
	// relay has numbered the events: the history written without events
	// by the loader itself, the rest by the relay.
	t.Run("publication sequence", func(t *testing.T) {
		for {
			b, err := st.RelayOutbox(ctx, 1000, nil)
			if err != nil {
				t.Fatal(err)
			}
			if b.Stamped == 0 {
				break
			}
		}
		if n := count(t, st, `SELECT count(*) FROM messages WHERE pub_seq IS NULL`); n != 0 {
			t.Errorf("%d messages without a number", n)
		}
		if n := count(t, st, `SELECT count(*) FROM notifications WHERE pub_seq IS NULL`); n != 0 {
			t.Errorf("%d notifications without a number", n)
		}
		if n := count(t, st, `SELECT count(*) FROM messages`); n == 0 {
			t.Error("no messages")
		}
	})

	t.Run("demo investor", func(t *testing.T) {
		u, _, err := st.UserByEmail(ctx, InvestorEmail)
		if err != nil {
			t.Fatal(err)
		}
		if n := count(t, st, `SELECT count(*) FROM investments i JOIN investors v ON v.id = i.investor_id WHERE v.user_id = $1`, u.ID); n < 10 {
			t.Errorf("%d investments, want >= 10", n)
		}
		if n := count(t, st, `SELECT count(DISTINCT l.status) FROM investments i JOIN investors v ON v.id = i.investor_id
			JOIN loans l ON l.id = i.loan_id WHERE v.user_id = $1`, u.ID); n < 5 {
			t.Errorf("invested in loans of %d statuses, want all 5", n)
		}
		if n := count(t, st, `SELECT balance FROM wallets WHERE user_id = $1`, u.ID); n <= 0 {
			t.Errorf("balance %d", n)
		}
		if n := count(t, st, `SELECT count(DISTINCT kind) FROM notifications WHERE user_id = $1`, u.ID); n < 4 {
			t.Errorf("%d notification kinds, want >= 4", n)
		}
		if n := count(t, st, `SELECT count(*) FROM notifications WHERE user_id = $1 AND read_at IS NULL`, u.ID); n == 0 {
			t.Error("no unread notifications")
		}
		v := lending.Viewer{UserID: u.ID, Roles: u.Roles}
		page, err := st.Chats(ctx, v, 100, nil)
		if err != nil {
			t.Fatal(err)
		}
		ids := make([]int64, len(page.Items))
		for i, c := range page.Items {
			ids[i] = c.ID
		}
		if len(ids) < 3 {
			t.Fatalf("%d chats, want >= 3", len(ids))
		}
		unread, err := st.UnreadCountsByChat(ctx, v, ids)
		if err != nil {
			t.Fatal(err)
		}
		total := 0
		for _, n := range unread {
			total += n
		}
		if total == 0 {
			t.Error("no unread messages")
		}
	})

	t.Run("demo borrower", func(t *testing.T) {
		u, _, err := st.UserByEmail(ctx, BorrowerEmail)
		if err != nil {
			t.Fatal(err)
		}
		if n := count(t, st, `SELECT count(DISTINCT l.status) FROM loans l JOIN borrowers b ON b.id = l.borrower_id WHERE b.user_id = $1`, u.ID); n < 4 {
			t.Errorf("loans in %d statuses, want >= 4", n)
		}
		inv, _, err := st.UserByEmail(ctx, InvestorEmail)
		if err != nil {
			t.Fatal(err)
		}
		low, high := min(u.ID, inv.ID), max(u.ID, inv.ID)
		if n := count(t, st, `SELECT count(*) FROM messages m JOIN chats c ON c.id = m.chat_id
			WHERE c.user_low = $1 AND c.user_high = $2 AND c.loan_id IS NOT NULL`, low, high); n < 6 {
			t.Errorf("%d messages between the demo investor and borrower about a loan, want >= 6", n)
		}
		if n := count(t, st, `SELECT count(DISTINCT kind) FROM notifications WHERE user_id = $1`, u.ID); n < 3 {
			t.Errorf("%d notification kinds, want >= 3", n)
		}
	})

	t.Run("chats", func(t *testing.T) {
		if n := count(t, st, `SELECT count(*) FROM chats`); n < 8 {
			t.Errorf("%d chats, want >= 8", n)
		}
		if n := count(t, st, `SELECT count(*) FROM chats c WHERE (SELECT count(*) FROM chat_members m WHERE m.chat_id = c.id) <> 2
			OR NOT EXISTS (SELECT 1 FROM chat_members m WHERE m.chat_id = c.id AND m.user_id = c.user_low)
			OR NOT EXISTS (SELECT 1 FROM chat_members m WHERE m.chat_id = c.id AND m.user_id = c.user_high)`); n != 0 {
			t.Errorf("%d chats without exactly their two members", n)
		}
		if n := count(t, st, `SELECT count(*) FROM chats c WHERE c.last_message_at IS DISTINCT FROM (SELECT max(created_at) FROM messages m WHERE m.chat_id = c.id)
			OR (SELECT count(*) FROM messages m WHERE m.chat_id = c.id) < 2`); n != 0 {
			t.Errorf("%d chats with fewer than 2 messages or a wrong last_message_at", n)
		}
		if n := count(t, st, `SELECT count(*) FROM messages WHERE created_at > $1`, now); n != 0 {
			t.Errorf("%d messages from the future", n)
		}
		if n := count(t, st, `SELECT count(*) FROM messages m JOIN chats c ON c.id = m.chat_id WHERE m.sender_id NOT IN (c.user_low, c.user_high)`); n != 0 {
			t.Errorf("%d messages from outsiders", n)
		}
	})

	t.Run("notifications", func(t *testing.T) {
		for _, k := range []lending.NotificationKind{lending.NotifDepositConfirmed, lending.NotifInvestmentConfirmed,
			lending.NotifLoanDisbursed, lending.NotifRepaymentReceived, lending.NotifLoanCancelled, lending.NotifNewMessage} {
			if n := count(t, st, `SELECT count(*) FROM notifications WHERE kind = $1`, string(k)); n == 0 {
				t.Errorf("no %s notifications", k)
			}
		}
	})

	t.Run("second load is a no-op", func(t *testing.T) {
		users := count(t, st, `SELECT count(*) FROM users`)
		entries := count(t, st, `SELECT count(*) FROM ledger_entries`)
		creds, err := Load(ctx, st, a, pix.Sandbox{}, now.Add(time.Hour))
		if err != nil || creds != nil {
			t.Fatalf("second Load = %+v, %v; want nil, nil", creds, err)
		}
		if u, e := count(t, st, `SELECT count(*) FROM users`), count(t, st, `SELECT count(*) FROM ledger_entries`); u != users || e != entries {
			t.Fatalf("second Load changed data: users %d -> %d, entries %d -> %d", users, u, entries, e)
		}
	})
}

func TestLoadIsDeterministic(t *testing.T) {
	if testing.Short() {
		t.Skip("loads the demo data twice")
	}
	ctx := context.Background()
	now := time.Date(2025, 3, 14, 15, 30, 0, 0, time.UTC)
	summary := func() string {
		db := testenv.NewDB(t)
		st := store.New(db.Pool)
		if _, err := Load(ctx, st, newAuth(t, st), pix.Sandbox{}, now); err != nil {
			t.Fatal(err)
		}
		var s string
		if err := st.Pool().QueryRow(ctx, `SELECT string_agg(format('%s/%s/%s/%s/%s', b.display_name, l.amount, l.status, l.funded_amount,
			(SELECT string_agg(i.amount::text, ',' ORDER BY i.id) FROM investments i WHERE i.loan_id = l.id)), ';' ORDER BY l.id)
			FROM loans l JOIN borrowers b ON b.id = l.borrower_id`).Scan(&s); err != nil {
			t.Fatal(err)
		}
		return s
	}
	if a, b := summary(), summary(); a != b {
		t.Fatalf("two loads differ:\n%s\n%s", a, b)
	}
}

func TestConcurrentLoadsLoadOnce(t *testing.T) {
	if testing.Short() {
		t.Skip("loads the demo data")
	}
	ctx := context.Background()
	db := testenv.NewDB(t)
	st := store.New(db.Pool)
	a := newAuth(t, st)
	now := time.Date(2025, 3, 14, 15, 30, 0, 0, time.UTC)
	type result struct {
		creds *Credentials
		err   error
	}
	results := make(chan result, 3)
	for range 3 {
		go func() {
			c, err := Load(ctx, st, a, pix.Sandbox{}, now)
			results <- result{c, err}
		}()
	}
	loaded := 0
	for range 3 {
		r := <-results
		if r.err != nil {
			t.Fatal(r.err)
		}
		if r.creds != nil {
			loaded++
		}
	}
	if loaded != 1 {
		t.Fatalf("%d of 3 concurrent loads loaded, want 1", loaded)
	}
	if n := count(t, st, `SELECT count(*) FROM users WHERE email = $1`, InvestorEmail); n != 1 {
		t.Fatalf("%d demo investors", n)
	}
}
