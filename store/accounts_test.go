package store_test

import (
	"context"
	"crypto/rand"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"

	"mutuo/internal/testenv"
	"mutuo/lending"
	"mutuo/store"
)

func TestMain(m *testing.M) { testenv.Main(m) }

func newStore(t *testing.T) (*store.Store, *testenv.DB) {
	t.Helper()
	db := testenv.NewDB(t)
	return store.New(db.Pool), db
}

func money(m lending.Money) *lending.Money { return &m }

func wantCode(t *testing.T, err error, code lending.Code) {
	t.Helper()
	if !lending.IsCode(err, code) {
		t.Fatalf("err = %v, want code %s", err, code)
	}
}

func count(t *testing.T, db *testenv.DB, sql string, args ...any) int {
	t.Helper()
	var n int
	if err := db.Pool.QueryRow(context.Background(), sql, args...).Scan(&n); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
	return n
}

func TestCreateUserWritesProfilesAndWallet(t *testing.T) {
	s, db := newStore(t)
	ctx := context.Background()

	inv, err := s.CreateUser(ctx, "Ana Investidora", "ana@example.com", "h1", []lending.Role{lending.RoleInvestor}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if inv.ID <= 0 || inv.Name != "Ana Investidora" || inv.Email != "ana@example.com" ||
		len(inv.Roles) != 1 || inv.Roles[0] != lending.RoleInvestor || inv.CreatedAt.IsZero() {
		t.Fatalf("investor user = %+v", inv)
	}
	if n := count(t, db, `SELECT count(*) FROM investors WHERE user_id = $1 AND display_name = 'Ana Investidora'`, inv.ID); n != 1 {
		t.Fatalf("investor rows = %d, want 1", n)
	}
	if n := count(t, db, `SELECT count(*) FROM borrowers WHERE user_id = $1`, inv.ID); n != 0 {
		t.Fatalf("borrower rows for an investor = %d, want 0", n)
	}

	income := lending.Money(1_000_000) // R$ 10,000.00
	// Roles given twice and out of order come back deduplicated in canonical order.
	both, err := s.CreateUser(ctx, "Bruno", "bruno@example.com", "h2",
		[]lending.Role{lending.RoleBorrower, lending.RoleInvestor, lending.RoleBorrower}, &income)
	if err != nil {
		t.Fatal(err)
	}
	if len(both.Roles) != 2 || both.Roles[0] != lending.RoleInvestor || both.Roles[1] != lending.RoleBorrower {
		t.Fatalf("roles = %v, want [INVESTOR BORROWER]", both.Roles)
	}
	var (
		grade, name string
		score       int
		gotIncome   int64
	)
	if err := db.Pool.QueryRow(ctx, `SELECT grade, credit_score, monthly_income, display_name FROM borrowers WHERE user_id = $1`, both.ID).
		Scan(&grade, &score, &gotIncome, &name); err != nil {
		t.Fatal(err)
	}
	wantScore := lending.Score(lending.CreditHistory{MonthlyIncome: income})
	if score != wantScore || grade != string(lending.GradeFor(wantScore)) || gotIncome != int64(income) || name != "Bruno" {
		t.Fatalf("borrower = grade %s score %d income %d name %q; want %s %d %d Bruno",
			grade, score, gotIncome, name, lending.GradeFor(wantScore), wantScore, income)
	}
	if n := count(t, db, `SELECT count(*) FROM investors WHERE user_id = $1`, both.ID); n != 1 {
		t.Fatalf("investor rows = %d, want 1", n)
	}
	for _, id := range []int64{inv.ID, both.ID} {
		if n := count(t, db, `SELECT count(*) FROM wallets WHERE user_id = $1 AND kind = 'USER' AND balance = 0 AND currency = 'BRL'`, id); n != 1 {
			t.Fatalf("user %d wallets = %d, want 1", id, n)
		}
	}
}

func TestCreateUserDuplicateEmailAnyCaseIsConflict(t *testing.T) {
	s, db := newStore(t)
	ctx := context.Background()
	if _, err := s.CreateUser(ctx, "Ana", "Ana@Example.com", "h", []lending.Role{lending.RoleInvestor}, nil); err != nil {
		t.Fatal(err)
	}
	_, err := s.CreateUser(ctx, "Outra Ana", "ana@EXAMPLE.COM", "h", []lending.Role{lending.RoleBorrower}, money(500_000))
	wantCode(t, err, lending.CodeConflict)
	if e, _ := lending.AsError(err); e.Message != "email already registered" {
		t.Fatalf("message = %q", e.Message)
	}
	// Nothing of the second attempt was left behind.
	if n := count(t, db, `SELECT count(*) FROM users`); n != 1 {
		t.Fatalf("users = %d, want 1", n)
	}
	if n := count(t, db, `SELECT count(*) FROM borrowers`); n != 0 {
		t.Fatalf("borrowers = %d, want 0", n)
	}
	if n := count(t, db, `SELECT count(*) FROM wallets WHERE kind = 'USER'`); n != 1 {
		t.Fatalf("user wallets = %d, want 1", n)
	}
}

func TestCreateUserRejectsBadRolesAndIncome(t *testing.T) {
	s, db := newStore(t)
	ctx := context.Background()
	cases := []struct {
		name   string
		roles  []lending.Role
		income *lending.Money
	}{
		{"no roles", nil, nil},
		{"unknown role", []lending.Role{"PIRATE"}, nil},
		{"borrower without income", []lending.Role{lending.RoleBorrower}, nil},
		{"borrower with zero income", []lending.Role{lending.RoleBorrower}, money(0)},
	}
	for _, c := range cases {
		_, err := s.CreateUser(ctx, "X", "x@example.com", "h", c.roles, c.income)
		if !lending.IsCode(err, lending.CodeBadUserInput) {
			t.Errorf("%s: err = %v, want BAD_USER_INPUT", c.name, err)
		}
	}
	if n := count(t, db, `SELECT count(*) FROM users`); n != 0 {
		t.Fatalf("users = %d, want 0", n)
	}
}

func TestUserLookups(t *testing.T) {
	s, _ := newStore(t)
	ctx := context.Background()
	u, err := s.CreateUser(ctx, "Carla", "Carla@Example.com", "the-hash", []lending.Role{lending.RoleInvestor}, nil)
	if err != nil {
		t.Fatal(err)
	}
	got, hash, err := s.UserByEmail(ctx, "  carla@example.COM ")
	if err != nil {
		t.Fatal(err)
	}
	if got.ID != u.ID || hash != "the-hash" || got.Email != "Carla@Example.com" {
		t.Fatalf("UserByEmail = %+v, %q", got, hash)
	}
	_, _, err = s.UserByEmail(ctx, "nobody@example.com")
	wantCode(t, err, lending.CodeNotFound)

	byID, err := s.UserByID(ctx, u.ID)
	if err != nil {
		t.Fatal(err)
	}
	if byID.ID != u.ID || byID.Name != "Carla" || len(byID.Roles) != 1 {
		t.Fatalf("UserByID = %+v", byID)
	}
	_, err = s.UserByID(ctx, u.ID+1000)
	wantCode(t, err, lending.CodeNotFound)
}

func TestUpsertAdmin(t *testing.T) {
	s, db := newStore(t)
	ctx := context.Background()

	a, err := s.UpsertAdmin(ctx, "Admin", "admin@example.com", "h1")
	if err != nil {
		t.Fatal(err)
	}
	if len(a.Roles) != 1 || a.Roles[0] != lending.RoleAdmin {
		t.Fatalf("roles = %v", a.Roles)
	}
	// Again, with another case and password: same user, new password, ADMIN once.
	b, err := s.UpsertAdmin(ctx, "Other Name", "ADMIN@example.com", "h2")
	if err != nil {
		t.Fatal(err)
	}
	if b.ID != a.ID || b.Name != "Admin" || len(b.Roles) != 1 {
		t.Fatalf("second upsert = %+v, want same user, name kept, one role", b)
	}
	if _, h, _ := s.UserByEmail(ctx, "admin@example.com"); h != "h2" {
		t.Fatalf("password hash = %q, want h2", h)
	}
	if n := count(t, db, `SELECT count(*) FROM wallets WHERE user_id = $1`, a.ID); n != 1 {
		t.Fatalf("admin wallets = %d, want 1", n)
	}

	// An existing investor becomes an admin too, keeping the investor role.
	inv, err := s.CreateUser(ctx, "Dora", "dora@example.com", "h", []lending.Role{lending.RoleInvestor}, nil)
	if err != nil {
		t.Fatal(err)
	}
	d, err := s.UpsertAdmin(ctx, "Dora", "dora@example.com", "h3")
	if err != nil {
		t.Fatal(err)
	}
	if d.ID != inv.ID || len(d.Roles) != 2 || d.Roles[0] != lending.RoleInvestor || d.Roles[1] != lending.RoleAdmin {
		t.Fatalf("upserted investor = %+v", d)
	}
	if n := count(t, db, `SELECT count(*) FROM wallets WHERE user_id = $1`, inv.ID); n != 1 {
		t.Fatalf("investor-admin wallets = %d, want 1", n)
	}
}

func randHash() []byte {
	b := make([]byte, 32)
	_, _ = rand.Read(b) // never fails (crypto/rand panics instead)
	return b
}

func newUser(t *testing.T, s *store.Store) int64 {
	t.Helper()
	u, err := s.CreateUser(context.Background(), "U", uuid.NewString()[:8]+"@example.com", "h", []lending.Role{lending.RoleInvestor}, nil)
	if err != nil {
		t.Fatal(err)
	}
	return u.ID
}

func TestRotateRefreshToken(t *testing.T) {
	s, db := newStore(t)
	ctx := context.Background()
	uid := newUser(t, s)
	family := uuid.New()
	later := time.Now().Add(time.Hour)

	h1, h2, h3 := randHash(), randHash(), randHash()
	if err := s.InsertRefreshToken(ctx, uid, family, h1, later); err != nil {
		t.Fatal(err)
	}
	gotUser, gotFamily, err := s.RotateRefreshToken(ctx, h1, h2, later)
	if err != nil {
		t.Fatal(err)
	}
	if gotUser != uid || gotFamily != family {
		t.Fatalf("rotate = %d %s, want %d %s", gotUser, gotFamily, uid, family)
	}
	if _, _, err := s.RotateRefreshToken(ctx, h2, h3, later); err != nil {
		t.Fatalf("rotating the successor: %v", err)
	}
	if n := count(t, db, `SELECT count(*) FROM refresh_tokens WHERE family_id = $1 AND used_at IS NOT NULL`, family); n != 2 {
		t.Fatalf("used tokens = %d, want 2", n)
	}

	// Unknown token.
	_, _, err = s.RotateRefreshToken(ctx, randHash(), randHash(), later)
	wantCode(t, err, lending.CodeUnauthenticated)

	// Expired token: refused, and its family is left alone.
	f2, old, fresh := uuid.New(), randHash(), randHash()
	if err := s.InsertRefreshToken(ctx, uid, f2, old, time.Now().Add(-time.Minute)); err != nil {
		t.Fatal(err)
	}
	if err := s.InsertRefreshToken(ctx, uid, f2, fresh, later); err != nil {
		t.Fatal(err)
	}
	_, _, err = s.RotateRefreshToken(ctx, old, randHash(), later)
	wantCode(t, err, lending.CodeUnauthenticated)
	if _, _, err := s.RotateRefreshToken(ctx, fresh, randHash(), later); err != nil {
		t.Fatalf("an expired token must not revoke its family: %v", err)
	}
}

func TestRefreshReuseRevokesFamilyDurably(t *testing.T) {
	s, db := newStore(t)
	ctx := context.Background()
	uid := newUser(t, s)
	family, other := uuid.New(), uuid.New()
	later := time.Now().Add(time.Hour)
	h1, h2, h3, o1 := randHash(), randHash(), randHash(), randHash()
	if err := s.InsertRefreshToken(ctx, uid, family, h1, later); err != nil {
		t.Fatal(err)
	}
	if err := s.InsertRefreshToken(ctx, uid, other, o1, later); err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.RotateRefreshToken(ctx, h1, h2, later); err != nil {
		t.Fatal(err)
	}
	// Replay of h1: refused, and the family is revoked, committed.
	_, _, err := s.RotateRefreshToken(ctx, h1, h3, later)
	wantCode(t, err, lending.CodeUnauthenticated)
	if n := count(t, db, `SELECT count(*) FROM refresh_tokens WHERE family_id = $1 AND revoked_at IS NULL`, family); n != 0 {
		t.Fatalf("unrevoked tokens in the family = %d, want 0", n)
	}
	if n := count(t, db, `SELECT count(*) FROM refresh_tokens WHERE token_hash = $1`, h3); n != 0 {
		t.Fatalf("the replay's successor was stored")
	}
	// The newest token of the family no longer works either.
	_, _, err = s.RotateRefreshToken(ctx, h2, randHash(), later)
	wantCode(t, err, lending.CodeUnauthenticated)
	// Other families are untouched.
	if _, _, err := s.RotateRefreshToken(ctx, o1, randHash(), later); err != nil {
		t.Fatalf("other family: %v", err)
	}
}

func TestRevokeRefreshFamily(t *testing.T) {
	s, _ := newStore(t)
	ctx := context.Background()
	uid := newUser(t, s)
	family := uuid.New()
	h := randHash()
	if err := s.InsertRefreshToken(ctx, uid, family, h, time.Now().Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	if err := s.RevokeRefreshFamily(ctx, family); err != nil {
		t.Fatal(err)
	}
	if err := s.RevokeRefreshFamily(ctx, family); err != nil {
		t.Fatalf("second revoke: %v", err)
	}
	if err := s.RevokeRefreshFamily(ctx, uuid.New()); err != nil {
		t.Fatalf("unknown family: %v", err)
	}
	_, _, err := s.RotateRefreshToken(ctx, h, randHash(), time.Now().Add(time.Hour))
	wantCode(t, err, lending.CodeUnauthenticated)
}

// Many concurrent refreshes with one token: exactly one wins, and since the
// others are replays the whole family ends up revoked.
func TestConcurrentRefreshOfOneToken(t *testing.T) {
	s, db := newStore(t)
	ctx := context.Background()
	uid := newUser(t, s)
	family := uuid.New()
	later := time.Now().Add(time.Hour)
	h := randHash()
	if err := s.InsertRefreshToken(ctx, uid, family, h, later); err != nil {
		t.Fatal(err)
	}
	const n = 8
	var (
		wg        sync.WaitGroup
		mu        sync.Mutex
		wins      int
		otherErrs []error
	)
	for range n {
		wg.Go(func() {
			_, _, err := s.RotateRefreshToken(ctx, h, randHash(), later)
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err == nil:
				wins++
			case !lending.IsCode(err, lending.CodeUnauthenticated):
				otherErrs = append(otherErrs, err)
			}
		})
	}
	wg.Wait()
	if len(otherErrs) > 0 {
		t.Fatalf("unexpected errors: %v", errors.Join(otherErrs...))
	}
	if wins != 1 {
		t.Fatalf("successful rotations = %d, want 1", wins)
	}
	if c := count(t, db, `SELECT count(*) FROM refresh_tokens WHERE family_id = $1 AND revoked_at IS NULL`, family); c != 0 {
		t.Fatalf("unrevoked tokens after replays = %d, want 0", c)
	}
}

// Sign-out racing a refresh never leaves a live token in the family.
func TestRevokeRacingRotateLeavesNothingLive(t *testing.T) {
	s, db := newStore(t)
	ctx := context.Background()
	uid := newUser(t, s)
	later := time.Now().Add(time.Hour)
	for range 20 {
		family, h := uuid.New(), randHash()
		if err := s.InsertRefreshToken(ctx, uid, family, h, later); err != nil {
			t.Fatal(err)
		}
		var wg sync.WaitGroup
		var rotErr, revErr error
		wg.Go(func() { _, _, rotErr = s.RotateRefreshToken(ctx, h, randHash(), later) })
		wg.Go(func() { revErr = s.RevokeRefreshFamily(ctx, family) })
		wg.Wait()
		if rotErr != nil && !lending.IsCode(rotErr, lending.CodeUnauthenticated) {
			t.Fatalf("rotate: %v", rotErr)
		}
		if revErr != nil {
			t.Fatalf("revoke: %v", revErr)
		}
		if c := count(t, db, `SELECT count(*) FROM refresh_tokens WHERE family_id = $1 AND revoked_at IS NULL`, family); c != 0 {
			t.Fatalf("live tokens after sign-out = %d, want 0", c)
		}
	}
}
