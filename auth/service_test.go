package auth

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/google/uuid"
	"github.com/redis/go-redis/v9"

	"mutuo/internal/testenv"
	"mutuo/lending"
	"mutuo/store"
)

func TestMain(m *testing.M) { testenv.Main(m) }

// clock is a settable clock safe for concurrent use.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

type env struct {
	svc   *Service
	store *store.Store
	db    *testenv.DB
	rdb   *testenv.Redis
	clock *clock
	keys  *Keys
	cfg   Config
}

func edKeys(t *testing.T) *Keys {
	t.Helper()
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	k, err := NewEdDSAKeys(priv)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func hsKeys(t *testing.T) *Keys {
	t.Helper()
	k, err := NewHS256Keys([]byte(strings.Repeat("s", 32)))
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func newEnv(t *testing.T, keys *Keys) *env {
	t.Helper()
	db := testenv.NewDB(t)
	rdb := testenv.NewRedis(t)
	st := store.New(db.Pool)
	clk := &clock{t: time.Now().Truncate(time.Second)}
	cfg := Config{
		Issuer: "https://mutuo.test", Audience: "mutuo-api",
		Keys: keys, Redis: rdb.Client, Prefix: rdb.Prefix, Clock: clk.Now,
		Argon2: cheapParams(),
	}
	svc, err := New(cfg, st)
	if err != nil {
		t.Fatal(err)
	}
	return &env{svc: svc, store: st, db: db, rdb: rdb, clock: clk, keys: keys, cfg: cfg}
}

func wantCode(t *testing.T, err error, code lending.Code) {
	t.Helper()
	if !lending.IsCode(err, code) {
		t.Fatalf("err = %v, want code %s", err, code)
	}
}

func money(m lending.Money) *lending.Money { return &m }

const pw = "s3nha-forte!"

func (e *env) signUp(t *testing.T, email string, roles ...lending.Role) *Session {
	t.Helper()
	in := SignUpInput{Name: "Fulano", Email: email, Password: pw, Roles: roles}
	if hasRole(roles, lending.RoleBorrower) {
		in.MonthlyIncome = money(800_000)
	}
	s, err := e.svc.SignUp(context.Background(), in)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestSignUpRolesAndSession(t *testing.T) {
	e := newEnv(t, edKeys(t))
	ctx := context.Background()
	cases := []struct {
		email string
		roles []lending.Role
	}{
		{"investor@example.com", []lending.Role{lending.RoleInvestor}},
		{"borrower@example.com", []lending.Role{lending.RoleBorrower}},
		{"both@example.com", []lending.Role{lending.RoleBorrower, lending.RoleInvestor}},
	}
	for _, c := range cases {
		s := e.signUp(t, "  "+c.email+" ", c.roles...)
		if s.User == nil || s.User.ID <= 0 || s.User.Email != c.email || s.User.Name != "Fulano" {
			t.Fatalf("%s: user = %+v", c.email, s.User)
		}
		if len(s.User.Roles) != len(c.roles) {
			t.Fatalf("%s: roles = %v", c.email, s.User.Roles)
		}
		if want := e.clock.Now().Add(DefaultAccessTTL); !s.AccessTokenExpiresAt.Equal(want) {
			t.Fatalf("%s: access expires %v, want %v", c.email, s.AccessTokenExpiresAt, want)
		}
		if len(s.RefreshToken) != 43 {
			t.Fatalf("%s: refresh token %q is not 32 bytes of base64url", c.email, s.RefreshToken)
		}
		v, claims, err := e.svc.Authenticate(ctx, s.AccessToken)
		if err != nil {
			t.Fatalf("%s: %v", c.email, err)
		}
		if v.UserID != s.User.ID || len(v.Roles) != len(c.roles) || claims.ID == "" || claims.Family() == uuid.Nil {
			t.Fatalf("%s: viewer %+v claims %+v", c.email, v, claims)
		}
		var profiles struct{ inv, bor int }
		_ = e.db.Pool.QueryRow(ctx, `SELECT (SELECT count(*) FROM investors WHERE user_id = $1), (SELECT count(*) FROM borrowers WHERE user_id = $1)`,
			s.User.ID).Scan(&profiles.inv, &profiles.bor)
		if (profiles.inv == 1) != hasRole(c.roles, lending.RoleInvestor) || (profiles.bor == 1) != hasRole(c.roles, lending.RoleBorrower) {
			t.Fatalf("%s: profiles %+v", c.email, profiles)
		}
		// The stored password is an argon2id hash, not the password.
		_, hash, err := e.store.UserByEmail(ctx, c.email)
		if err != nil || !strings.HasPrefix(hash, "$argon2id$v=19$") || strings.Contains(hash, pw) {
			t.Fatalf("%s: stored hash %q, %v", c.email, hash, err)
		}
	}
	var grade string
	_ = e.db.Pool.QueryRow(ctx, `SELECT b.grade FROM borrowers b JOIN users u ON u.id = b.user_id WHERE u.email = 'borrower@example.com'`).Scan(&grade)
	if want := lending.GradeFor(lending.Score(lending.CreditHistory{MonthlyIncome: 800_000})); grade != string(want) {
		t.Fatalf("borrower grade = %s, want %s", grade, want)
	}
}

func TestSignUpValidation(t *testing.T) {
	e := newEnv(t, hsKeys(t))
	ok := SignUpInput{Name: "Ana", Email: "ana@example.com", Password: pw, Roles: []lending.Role{lending.RoleInvestor}}
	cases := []struct {
		name string
		mod  func(*SignUpInput)
		code lending.Code
	}{
		{"empty name", func(in *SignUpInput) { in.Name = "   " }, lending.CodeBadUserInput},
		{"long name", func(in *SignUpInput) { in.Name = strings.Repeat("é", 201) }, lending.CodeBadUserInput},
		{"control char in name", func(in *SignUpInput) { in.Name = "Ana\x00" }, lending.CodeBadUserInput},
		{"email without at", func(in *SignUpInput) { in.Email = "ana.example.com" }, lending.CodeBadUserInput},
		{"email without domain dot", func(in *SignUpInput) { in.Email = "ana@example" }, lending.CodeBadUserInput},
		{"email with display name", func(in *SignUpInput) { in.Email = "Ana <ana@example.com>" }, lending.CodeBadUserInput},
		{"email with space", func(in *SignUpInput) { in.Email = "a na@example.com" }, lending.CodeBadUserInput},
		{"email too long", func(in *SignUpInput) { in.Email = strings.Repeat("a", 250) + "@x.com" }, lending.CodeBadUserInput},
		{"password 9 chars", func(in *SignUpInput) { in.Password = "123456789" }, lending.CodeBadUserInput},
		{"password 129 chars", func(in *SignUpInput) { in.Password = strings.Repeat("p", 129) }, lending.CodeBadUserInput},
		{"no roles", func(in *SignUpInput) { in.Roles = nil }, lending.CodeBadUserInput},
		{"unknown role", func(in *SignUpInput) { in.Roles = []lending.Role{"ROOT"} }, lending.CodeBadUserInput},
		{"admin", func(in *SignUpInput) { in.Roles = []lending.Role{lending.RoleInvestor, lending.RoleAdmin} }, lending.CodeForbidden},
		{"borrower without income", func(in *SignUpInput) { in.Roles = []lending.Role{lending.RoleBorrower} }, lending.CodeBadUserInput},
		{"borrower with zero income", func(in *SignUpInput) {
			in.Roles, in.MonthlyIncome = []lending.Role{lending.RoleBorrower}, money(0)
		}, lending.CodeBadUserInput},
		{"investor with income", func(in *SignUpInput) { in.MonthlyIncome = money(100) }, lending.CodeBadUserInput},
	}
	for _, c := range cases {
		in := ok
		c.mod(&in)
		_, err := e.svc.SignUp(context.Background(), in)
		if !lending.IsCode(err, c.code) {
			t.Errorf("%s: err = %v, want %s", c.name, err, c.code)
		}
	}
	var n int
	_ = e.db.Pool.QueryRow(context.Background(), `SELECT count(*) FROM users`).Scan(&n)
	if n != 0 {
		t.Fatalf("users = %d after invalid sign-ups", n)
	}
	// Boundaries that are fine.
	in := ok
	in.Name, in.Password = strings.Repeat("é", 200), strings.Repeat("ç", 128)
	if _, err := e.svc.SignUp(context.Background(), in); err != nil {
		t.Fatalf("200-char name and 128-char password: %v", err)
	}
}

func TestSignUpDuplicateEmailDifferentCase(t *testing.T) {
	e := newEnv(t, hsKeys(t))
	e.signUp(t, "Maria@Example.com", lending.RoleInvestor)
	_, err := e.svc.SignUp(context.Background(), SignUpInput{
		Name: "Maria 2", Email: "mARIA@example.COM", Password: pw, Roles: []lending.Role{lending.RoleInvestor},
	})
	wantCode(t, err, lending.CodeConflict)
}

func TestSignIn(t *testing.T) {
	e := newEnv(t, edKeys(t))
	ctx := context.Background()
	up := e.signUp(t, "Joao@Example.com", lending.RoleInvestor)

	s, err := e.svc.SignIn(ctx, " joao@EXAMPLE.com ", pw)
	if err != nil {
		t.Fatal(err)
	}
	if s.User.ID != up.User.ID || s.RefreshToken == up.RefreshToken || s.AccessToken == "" {
		t.Fatalf("session = %+v", s)
	}
	// A sign-in starts its own session (refresh family).
	_, c1, _ := e.svc.Authenticate(ctx, up.AccessToken)
	_, c2, _ := e.svc.Authenticate(ctx, s.AccessToken)
	if c1.SessionID == c2.SessionID {
		t.Fatal("sign-in reused the sign-up session id")
	}

	_, wrongPw := e.svc.SignIn(ctx, "joao@example.com", pw+"x")
	_, unknown := e.svc.SignIn(ctx, "ninguem@example.com", pw)
	_, garbage := e.svc.SignIn(ctx, "", pw)
	wantCode(t, wrongPw, lending.CodeUnauthenticated)
	for _, err := range []error{unknown, garbage} {
		if err == nil || err.Error() != wrongPw.Error() {
			t.Fatalf("error %v differs from wrong-password error %v", err, wrongPw)
		}
	}
	if e1, _ := lending.AsError(wrongPw); e1.Message != "invalid email or password" {
		t.Fatalf("message = %q", e1.Message)
	}
}

// An unknown email costs a password hash, like a wrong password does.
func TestSignInTimingUnknownEmailLikeWrongPassword(t *testing.T) {
	e := newEnv(t, hsKeys(t))
	e.cfg.Argon2 = DefaultArgon2Params()
	svc, err := New(e.cfg, e.store)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if _, err := svc.SignUp(ctx, SignUpInput{Name: "T", Email: "t@example.com", Password: pw, Roles: []lending.Role{lending.RoleInvestor}}); err != nil {
		t.Fatal(err)
	}
	fastest := func(email string) time.Duration {
		best := time.Hour
		for range 5 {
			start := time.Now()
			_, err := svc.SignIn(ctx, email, "wrong-password")
			if d := time.Since(start); d < best {
				best = d
			}
			wantCode(t, err, lending.CodeUnauthenticated)
		}
		return best
	}
	wrong, unknown := fastest("t@example.com"), fastest("nobody@example.com")
	t.Logf("wrong password %v, unknown email %v", wrong, unknown)
	if unknown < wrong/3 {
		t.Fatalf("unknown email took %v, wrong password %v: unknown emails skip the hash", unknown, wrong)
	}
}

func TestTokenVerification(t *testing.T) {
	e := newEnv(t, edKeys(t))
	ctx := context.Background()
	s := e.signUp(t, "tok@example.com", lending.RoleInvestor)
	_, good, err := e.svc.Authenticate(ctx, s.AccessToken)
	if err != nil {
		t.Fatal(err)
	}
	pub := e.keys.verifyKey.(ed25519.PublicKey)

	claimsLike := func(mod func(*Claims)) *Claims {
		c := *good
		c.Audience = append(jwt.ClaimStrings(nil), good.Audience...)
		if mod != nil {
			mod(&c)
		}
		return &c
	}
	signEd := func(c *Claims) string {
		tok, err := jwt.NewWithClaims(jwt.SigningMethodEdDSA, c).SignedString(e.keys.signKey)
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	// Sanity: our own re-signing of the same claims verifies, so the cases
	// below fail for the reason they name.
	if _, _, err := e.svc.Authenticate(ctx, signEd(claimsLike(nil))); err != nil {
		t.Fatalf("re-signed token: %v", err)
	}

	noneTok, err := jwt.NewWithClaims(jwt.SigningMethodNone, claimsLike(nil)).SignedString(jwt.UnsafeAllowNoneSignatureType)
	if err != nil {
		t.Fatal(err)
	}
	// HS256 "signed" with the public key: the classic algorithm confusion.
	confused, err := jwt.NewWithClaims(jwt.SigningMethodHS256, claimsLike(nil)).SignedString([]byte(pub))
	if err != nil {
		t.Fatal(err)
	}
	otherKey := signWith(t, edKeys(t), claimsLike(nil))
	parts := strings.Split(s.AccessToken, ".")
	sig := []byte(parts[2])
	if sig[5] == 'A' {
		sig[5] = 'B'
	} else {
		sig[5] = 'A'
	}
	tamperedSig := parts[0] + "." + parts[1] + "." + string(sig)
	adminPayload := base64.RawURLEncoding.EncodeToString([]byte(strings.Replace(
		mustDecode(t, parts[1]), `"roles":["INVESTOR"]`, `"roles":["ADMIN"]`, 1)))
	if adminPayload == parts[1] {
		t.Fatal("payload did not change")
	}
	tamperedPayload := parts[0] + "." + adminPayload + "." + parts[2]

	cases := map[string]string{
		"empty":                  "",
		"garbage":                "not-a-jwt",
		"alg none":               noneTok,
		"HS256 with public key":  confused,
		"other Ed25519 key":      otherKey,
		"tampered signature":     tamperedSig,
		"tampered payload":       tamperedPayload,
		"wrong issuer":           signEd(claimsLike(func(c *Claims) { c.Issuer = "https://evil.test" })),
		"wrong audience":         signEd(claimsLike(func(c *Claims) { c.Audience = jwt.ClaimStrings{"other-api"} })),
		"no audience":            signEd(claimsLike(func(c *Claims) { c.Audience = nil })),
		"no exp":                 signEd(claimsLike(func(c *Claims) { c.ExpiresAt = nil })),
		"no iat":                 signEd(claimsLike(func(c *Claims) { c.IssuedAt = nil })),
		"iat in the future":      signEd(claimsLike(func(c *Claims) { c.IssuedAt = jwt.NewNumericDate(e.clock.Now().Add(2 * time.Minute)) })),
		"expired long ago":       signEd(claimsLike(func(c *Claims) { c.ExpiresAt = jwt.NewNumericDate(e.clock.Now().Add(-time.Hour)) })),
		"sub not a number":       signEd(claimsLike(func(c *Claims) { c.Subject = "abc" })),
		"sub zero":               signEd(claimsLike(func(c *Claims) { c.Subject = "0" })),
		"no jti":                 signEd(claimsLike(func(c *Claims) { c.ID = "" })),
		"sid not a uuid":         signEd(claimsLike(func(c *Claims) { c.SessionID = "x" })),
		"unknown role":           signEd(claimsLike(func(c *Claims) { c.Roles = []lending.Role{"ROOT"} })),
		"too long":               s.AccessToken + strings.Repeat("A", maxTokenLen),
		"token with extra parts": s.AccessToken + ".x",
	}
	for name, tok := range cases {
		v, c, err := e.svc.Authenticate(ctx, tok)
		if !lending.IsCode(err, lending.CodeUnauthenticated) {
			t.Errorf("%s: err = %v, want UNAUTHENTICATED", name, err)
			continue
		}
		if v.Authenticated() || c != nil {
			t.Errorf("%s: returned viewer %+v claims %v with the error", name, v, c)
		}
		// Clients see one message whatever the reason.
		if le, _ := lending.AsError(err); le.Message != "invalid or expired access token" {
			t.Errorf("%s: user-visible message %q", name, le.Message)
		}
	}

	// An EdDSA token is refused by an HS256 service, and vice versa.
	hs := newEnv(t, hsKeys(t))
	hsTok := signWith(t, hs.keys, claimsLike(nil))
	if _, _, err := hs.svc.Authenticate(ctx, hsTok); err != nil {
		t.Fatalf("HS256 token on the HS256 service: %v", err)
	}
	_, _, err = hs.svc.Authenticate(ctx, s.AccessToken)
	wantCode(t, err, lending.CodeUnauthenticated)
	_, _, err = e.svc.Authenticate(ctx, hsTok)
	wantCode(t, err, lending.CodeUnauthenticated)
}

func signWith(t *testing.T, k *Keys, c *Claims) string {
	t.Helper()
	tok, err := jwt.NewWithClaims(k.method, c).SignedString(k.signKey)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

func mustDecode(t *testing.T, s string) string {
	t.Helper()
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestTokenExpiryLeeway(t *testing.T) {
	e := newEnv(t, edKeys(t))
	ctx := context.Background()
	s := e.signUp(t, "exp@example.com", lending.RoleInvestor)

	e.clock.Add(DefaultAccessTTL + 29*time.Second)
	if _, _, err := e.svc.Authenticate(ctx, s.AccessToken); err != nil {
		t.Fatalf("29 s past expiry (within leeway): %v", err)
	}
	e.clock.Add(2 * time.Second)
	_, _, err := e.svc.Authenticate(ctx, s.AccessToken)
	wantCode(t, err, lending.CodeUnauthenticated)
}

func TestRefreshRotation(t *testing.T) {
	e := newEnv(t, edKeys(t))
	ctx := context.Background()
	s1 := e.signUp(t, "ref@example.com", lending.RoleInvestor)
	_, c1, _ := e.svc.Authenticate(ctx, s1.AccessToken)

	e.clock.Add(time.Minute)
	s2, err := e.svc.Refresh(ctx, s1.RefreshToken)
	if err != nil {
		t.Fatal(err)
	}
	if s2.RefreshToken == s1.RefreshToken || s2.AccessToken == s1.AccessToken || s2.User.ID != s1.User.ID {
		t.Fatalf("refresh did not rotate: %+v", s2)
	}
	_, c2, err := e.svc.Authenticate(ctx, s2.AccessToken)
	if err != nil {
		t.Fatal(err)
	}
	if c2.SessionID != c1.SessionID || c2.ID == c1.ID {
		t.Fatalf("refreshed claims sid %s jti %s; want sid %s and a new jti", c2.SessionID, c2.ID, c1.SessionID)
	}
	if !s2.AccessTokenExpiresAt.After(s1.AccessTokenExpiresAt) {
		t.Fatalf("refreshed token expires %v, not after %v", s2.AccessTokenExpiresAt, s1.AccessTokenExpiresAt)
	}
	var expires time.Time
	_ = e.db.Pool.QueryRow(ctx, `SELECT max(expires_at) FROM refresh_tokens WHERE family_id = $1`, c1.Family()).Scan(&expires)
	if want := e.clock.Now().Add(DefaultRefreshTTL); !expires.Equal(want) {
		t.Fatalf("new refresh token expires %v, want %v", expires, want)
	}
	s3, err := e.svc.Refresh(ctx, s2.RefreshToken)
	if err != nil {
		t.Fatalf("second rotation: %v", err)
	}

	for _, bad := range []string{"", "short", strings.Repeat("A", 43) + "=", strings.Repeat("*", 43), base64.RawURLEncoding.EncodeToString(make([]byte, 32))} {
		_, err := e.svc.Refresh(ctx, bad)
		wantCode(t, err, lending.CodeUnauthenticated)
	}
	// Those failures touched nothing: the newest token still works.
	if _, err := e.svc.Refresh(ctx, s3.RefreshToken); err != nil {
		t.Fatal(err)
	}
}

func TestRefreshReuseRevokesFamily(t *testing.T) {
	e := newEnv(t, hsKeys(t))
	ctx := context.Background()
	s1 := e.signUp(t, "reuse@example.com", lending.RoleInvestor)
	other, err := e.svc.SignIn(ctx, "reuse@example.com", pw) // another device
	if err != nil {
		t.Fatal(err)
	}
	s2, err := e.svc.Refresh(ctx, s1.RefreshToken)
	if err != nil {
		t.Fatal(err)
	}
	_, err = e.svc.Refresh(ctx, s1.RefreshToken) // replay
	wantCode(t, err, lending.CodeUnauthenticated)
	_, err = e.svc.Refresh(ctx, s2.RefreshToken) // the newest token of the family
	wantCode(t, err, lending.CodeUnauthenticated)
	if _, err := e.svc.Refresh(ctx, other.RefreshToken); err != nil {
		t.Fatalf("the other device's session was revoked too: %v", err)
	}
}

func TestSignOut(t *testing.T) {
	e := newEnv(t, edKeys(t))
	ctx := context.Background()
	s := e.signUp(t, "out@example.com", lending.RoleInvestor)
	other, err := e.svc.SignIn(ctx, "out@example.com", pw)
	if err != nil {
		t.Fatal(err)
	}
	_, claims, err := e.svc.Authenticate(ctx, s.AccessToken)
	if err != nil {
		t.Fatal(err)
	}
	wantCode(t, e.svc.SignOut(ctx, nil), lending.CodeUnauthenticated)
	if err := e.svc.SignOut(ctx, claims); err != nil {
		t.Fatal(err)
	}
	_, _, err = e.svc.Authenticate(ctx, s.AccessToken)
	wantCode(t, err, lending.CodeUnauthenticated)
	_, err = e.svc.Refresh(ctx, s.RefreshToken)
	wantCode(t, err, lending.CodeUnauthenticated)

	// The denylist entry is under the prefix and lives until the token can
	// no longer verify (expiry plus leeway), not forever.
	key := e.rdb.Prefix + "denylist:" + claims.ID
	ttl, err := e.rdb.Client.TTL(ctx, key).Result()
	if err != nil {
		t.Fatal(err)
	}
	if ttl < DefaultAccessTTL || ttl > DefaultAccessTTL+leeway+2*time.Second {
		t.Fatalf("denylist TTL = %v, want about %v", ttl, DefaultAccessTTL+leeway)
	}
	// Other sessions of the same user are unaffected.
	if _, _, err := e.svc.Authenticate(ctx, other.AccessToken); err != nil {
		t.Fatalf("other session: %v", err)
	}
	if _, err := e.svc.Refresh(ctx, other.RefreshToken); err != nil {
		t.Fatalf("other session refresh: %v", err)
	}
}

func TestEnsureAdmin(t *testing.T) {
	e := newEnv(t, hsKeys(t))
	ctx := context.Background()
	_, err := e.svc.EnsureAdmin(ctx, "Admin", "admin@example.com", "short")
	wantCode(t, err, lending.CodeBadUserInput)
	u, err := e.svc.EnsureAdmin(ctx, "Admin", "admin@example.com", "admin-password-1")
	if err != nil {
		t.Fatal(err)
	}
	if len(u.Roles) != 1 || u.Roles[0] != lending.RoleAdmin {
		t.Fatalf("roles = %v", u.Roles)
	}
	if _, err := e.svc.EnsureAdmin(ctx, "Admin", "admin@example.com", "admin-password-2"); err != nil {
		t.Fatal(err)
	}
	_, err = e.svc.SignIn(ctx, "admin@example.com", "admin-password-1")
	wantCode(t, err, lending.CodeUnauthenticated)
	s, err := e.svc.SignIn(ctx, "admin@example.com", "admin-password-2")
	if err != nil {
		t.Fatal(err)
	}
	v, _, err := e.svc.Authenticate(ctx, s.AccessToken)
	if err != nil || !v.IsAdmin() {
		t.Fatalf("admin viewer = %+v, %v", v, err)
	}
}

func TestKeysFromConfig(t *testing.T) {
	_, priv, _ := ed25519.GenerateKey(rand.Reader)
	der, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	pemKey := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
	k, err := KeysFromConfig(AlgEdDSA, pemKey)
	if err != nil {
		t.Fatal(err)
	}
	if k.Alg() != AlgEdDSA || !k.verifyKey.(ed25519.PublicKey).Equal(priv.Public()) {
		t.Fatalf("keys = %+v", k)
	}
	if k, err := KeysFromConfig(AlgHS256, []byte(strings.Repeat("k", 32))); err != nil || k.Alg() != AlgHS256 {
		t.Fatalf("HS256 keys: %v %v", k, err)
	}
	for name, c := range map[string]struct {
		alg      string
		material []byte
	}{
		"short secret": {AlgHS256, []byte("too-short")},
		"no pem":       {AlgEdDSA, []byte("not pem")},
		"wrong block":  {AlgEdDSA, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})},
		"RS256":        {"RS256", pemKey},
		"none":         {"none", nil},
	} {
		if _, err := KeysFromConfig(c.alg, c.material); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

func TestNewRequiresConfig(t *testing.T) {
	rdb := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1"})
	defer rdb.Close()
	full := Config{Issuer: "i", Audience: "a", Keys: hsKeys(t), Redis: rdb, Argon2: cheapParams()}
	var st *store.Store = store.New(nil)
	if _, err := New(full, st); err != nil {
		t.Fatal(err)
	}
	for name, mod := range map[string]func(*Config){
		"issuer":   func(c *Config) { c.Issuer = "" },
		"audience": func(c *Config) { c.Audience = "" },
		"keys":     func(c *Config) { c.Keys = nil },
		"redis":    func(c *Config) { c.Redis = nil },
		"argon2":   func(c *Config) { c.Argon2.Memory = 1 },
	} {
		c := full
		mod(&c)
		if _, err := New(c, st); err == nil {
			t.Errorf("missing %s accepted", name)
		}
	}
	if _, err := New(full, nil); err == nil {
		t.Error("nil store accepted")
	}
}
