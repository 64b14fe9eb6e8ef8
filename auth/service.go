package auth

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"net/mail"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/google/uuid"
	"github.com/redis/go-redis/v9"

	"mutuo/lending"
)

// AccountStore is the persistence auth needs; *store.Store implements it.
type AccountStore interface {
	// CreateUser opens an account (user, profiles for its roles, wallet) in
	// one transaction: CONFLICT when the email is taken in any case,
	// BAD_USER_INPUT for bad roles or a borrower without income.
	CreateUser(ctx context.Context, name, email, passwordHash string, roles []lending.Role, monthlyIncome *lending.Money) (*lending.User, error)
	// UserByEmail finds a user by email regardless of case, with the
	// encoded password hash: NOT_FOUND when there is none.
	UserByEmail(ctx context.Context, email string) (*lending.User, string, error)
	// UserByID finds a user: NOT_FOUND when there is none.
	UserByID(ctx context.Context, id int64) (*lending.User, error)
	// UpsertAdmin creates the admin, or sets its password and adds ADMIN.
	UpsertAdmin(ctx context.Context, name, email, passwordHash string) (*lending.User, error)
	// InsertRefreshToken stores a new refresh token's hash.
	InsertRefreshToken(ctx context.Context, userID int64, family uuid.UUID, hash []byte, expires time.Time) error
	// RotateRefreshToken spends a refresh token and stores its successor:
	// UNAUTHENTICATED when it is unknown, expired, revoked or already used
	// (reuse also revokes the family, durably).
	RotateRefreshToken(ctx context.Context, hash []byte, newHash []byte, newExpires time.Time) (int64, uuid.UUID, error)
	// RevokeRefreshFamily revokes every refresh token of a family.
	RevokeRefreshFamily(ctx context.Context, family uuid.UUID) error
}

// Defaults for Config.
const (
	DefaultAccessTTL  = 15 * time.Minute
	DefaultRefreshTTL = 30 * 24 * time.Hour
)

// Config configures a Service.
type Config struct {
	Issuer     string        // "iss" of access tokens; required
	Audience   string        // "aud" of access tokens; required
	AccessTTL  time.Duration // 0 means DefaultAccessTTL
	RefreshTTL time.Duration // 0 means DefaultRefreshTTL
	Keys       *Keys         // required
	Redis      *redis.Client // required (denylist)
	Prefix     string        // Redis key prefix, e.g. "mutuo:"
	Clock      func() time.Time
	Argon2     Argon2Params // zero means DefaultArgon2Params()
	Logger     *slog.Logger // nil means slog.Default()
}

// Service signs users up and in, issues and verifies tokens, and signs them
// out. It holds no per-user state: any number of instances may share one
// Postgres and one Redis.
type Service struct {
	accounts   AccountStore
	tokens     *tokenIssuer
	denylist   *Denylist
	hasher     *PasswordHasher
	refreshTTL time.Duration
	now        func() time.Time
	log        *slog.Logger
}

// New returns a Service; it fails when cfg lacks a required field or has
// unusable Argon2 parameters.
func New(cfg Config, accounts AccountStore) (*Service, error) {
	switch {
	case cfg.Issuer == "":
		return nil, errors.New("auth: Issuer is required")
	case cfg.Audience == "":
		return nil, errors.New("auth: Audience is required")
	case cfg.Keys == nil:
		return nil, errors.New("auth: Keys are required")
	case cfg.Redis == nil:
		return nil, errors.New("auth: Redis is required")
	case accounts == nil:
		return nil, errors.New("auth: an AccountStore is required")
	case cfg.AccessTTL < 0 || cfg.RefreshTTL < 0:
		return nil, errors.New("auth: TTLs must not be negative")
	}
	if cfg.AccessTTL == 0 {
		cfg.AccessTTL = DefaultAccessTTL
	}
	if cfg.RefreshTTL == 0 {
		cfg.RefreshTTL = DefaultRefreshTTL
	}
	if cfg.Clock == nil {
		cfg.Clock = time.Now
	}
	if cfg.Argon2 == (Argon2Params{}) {
		cfg.Argon2 = DefaultArgon2Params()
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	hasher, err := NewPasswordHasher(cfg.Argon2)
	if err != nil {
		return nil, fmt.Errorf("auth: %w", err)
	}
	return &Service{
		accounts:   accounts,
		tokens:     newTokenIssuer(cfg.Keys, cfg.Issuer, cfg.Audience, cfg.AccessTTL, cfg.Clock),
		denylist:   NewDenylist(cfg.Redis, cfg.Prefix),
		hasher:     hasher,
		refreshTTL: cfg.RefreshTTL,
		now:        cfg.Clock,
		log:        cfg.Logger,
	}, nil
}

// SignUpInput is what a new user gives.
type SignUpInput struct {
	Name          string
	Email         string
	Password      string
	Roles         []lending.Role
	MonthlyIncome *lending.Money
}

// Session is what signing up, in or refreshing returns: a short-lived access
// token (for Authorization: Bearer and the websocket connection_init), its
// expiry, a single-use refresh token and the user.
type Session struct {
	AccessToken          string
	AccessTokenExpiresAt time.Time
	RefreshToken         string
	User                 *lending.User
}

// Input limits.
const (
	maxNameLen     = 200 // characters
	minPasswordLen = 10  // characters
	maxPasswordLen = 128 // characters
	maxEmailLen    = 254 // bytes
)

var (
	errInvalidCredentials = lending.Errorf(lending.CodeUnauthenticated, "invalid email or password")
	errInvalidRefresh     = lending.Errorf(lending.CodeUnauthenticated, "invalid or expired refresh token")
)

// SignUp opens an account and signs it in. Name (trimmed) must be 1-200
// characters, email a plain address, password 10-128 characters, roles
// INVESTOR and/or BORROWER, and monthlyIncome positive when (and only when)
// roles has BORROWER: otherwise BAD_USER_INPUT. ADMIN is FORBIDDEN. An email
// taken in any case is CONFLICT.
func (s *Service) SignUp(ctx context.Context, in SignUpInput) (*Session, error) {
	name, err := validName(in.Name)
	if err != nil {
		return nil, err
	}
	email, err := validEmail(in.Email)
	if err != nil {
		return nil, err
	}
	if err := validPassword(in.Password); err != nil {
		return nil, err
	}
	roles, err := signUpRoles(in.Roles)
	if err != nil {
		return nil, err
	}
	borrower := hasRole(roles, lending.RoleBorrower)
	switch {
	case borrower && in.MonthlyIncome == nil:
		return nil, lending.BadInput("monthlyIncome is required for borrowers")
	case borrower && *in.MonthlyIncome <= 0:
		return nil, lending.BadInput("monthlyIncome must be positive")
	case !borrower && in.MonthlyIncome != nil:
		return nil, lending.BadInput("monthlyIncome is only for borrowers")
	}
	hash, err := s.hasher.Hash(in.Password)
	if err != nil {
		return nil, err
	}
	u, err := s.accounts.CreateUser(ctx, name, email, hash, roles, in.MonthlyIncome)
	if err != nil {
		return nil, err
	}
	return s.newSession(ctx, u)
}

// SignIn checks an email (any case) and password and starts a session.
// An unknown email and a wrong password are the same UNAUTHENTICATED error
// and take about the same time.
func (s *Service) SignIn(ctx context.Context, email, password string) (*Session, error) {
	email = strings.TrimSpace(email)
	if email == "" || len(email) > maxEmailLen {
		s.hasher.VerifyDummy(password)
		return nil, errInvalidCredentials
	}
	u, hash, err := s.accounts.UserByEmail(ctx, email)
	if lending.IsCode(err, lending.CodeNotFound) {
		s.hasher.VerifyDummy(password)
		return nil, errInvalidCredentials
	}
	if err != nil {
		return nil, fmt.Errorf("sign in: %w", err)
	}
	ok, err := s.hasher.Verify(hash, password)
	if err != nil {
		return nil, fmt.Errorf("sign in user %d: %w", u.ID, err)
	}
	if !ok {
		return nil, errInvalidCredentials
	}
	return s.newSession(ctx, u)
}

// Refresh spends a refresh token and returns a new session in the same
// family (new access token, new refresh token). A token that is malformed,
// unknown, expired, revoked or already used is UNAUTHENTICATED; a used one
// also revokes its whole family, so a stolen token is useful at most once.
func (s *Service) Refresh(ctx context.Context, refreshToken string) (*Session, error) {
	hash, ok := hashRefreshToken(refreshToken)
	if !ok {
		return nil, fmt.Errorf("malformed refresh token: %w", errInvalidRefresh)
	}
	next, nextHash, err := newRefreshToken()
	if err != nil {
		return nil, err
	}
	userID, family, err := s.accounts.RotateRefreshToken(ctx, hash, nextHash, s.now().Add(s.refreshTTL))
	if err != nil {
		return nil, err
	}
	u, err := s.accounts.UserByID(ctx, userID)
	if lending.IsCode(err, lending.CodeNotFound) {
		return nil, fmt.Errorf("refresh for missing user %d: %w", userID, errInvalidRefresh)
	}
	if err != nil {
		return nil, err
	}
	access, claims, err := s.tokens.issue(u.ID, u.Roles, family)
	if err != nil {
		return nil, err
	}
	return &Session{AccessToken: access, AccessTokenExpiresAt: claims.ExpiresAt.Time, RefreshToken: next, User: u}, nil
}

// SignOut ends the session of claims (from ClaimsFrom): the access token is
// denylisted until it expires and the session's refresh tokens are revoked.
// No claims is UNAUTHENTICATED.
func (s *Service) SignOut(ctx context.Context, claims *Claims) error {
	if claims == nil || claims.ExpiresAt == nil {
		return lending.ErrUnauthenticated
	}
	// Outlive the leeway within which the token still verifies.
	if err := s.denylist.Add(ctx, claims.ID, claims.ExpiresAt.Add(leeway).Sub(s.now())+time.Second); err != nil {
		return err
	}
	// The session's other access tokens (issued before a refresh, perhaps
	// still held by a socket) end with it: its id is denylisted for as long
	// as any of them can verify.
	if claims.SessionID != "" {
		if err := s.denylist.Add(ctx, sessionRevocationID(claims.SessionID), s.tokens.ttl+leeway+time.Second); err != nil {
			return err
		}
	}
	return s.accounts.RevokeRefreshFamily(ctx, claims.Family())
}

// sessionRevocationID is the denylist entry of a signed-out session (sid),
// apart from token ids (jti).
func sessionRevocationID(sid string) string { return "sid:" + sid }

// RevocationIDs are the denylist entries that revoke c: its token id and,
// when it has one, its session's.
func (c *Claims) RevocationIDs() []string {
	if c.SessionID == "" {
		return []string{c.ID}
	}
	return []string{c.ID, sessionRevocationID(c.SessionID)}
}

// Authenticate verifies an access token (the part after "Bearer ") and
// returns who it speaks for. A token that is malformed, badly signed, of
// another algorithm, issuer or audience, expired (beyond 30 s of leeway),
// issued in the future or signed out is UNAUTHENTICATED (the reason is
// wrapped for logs). When the denylist cannot be read the error is not
// UNAUTHENTICATED (fail closed, but as a server error).
func (s *Service) Authenticate(ctx context.Context, token string) (lending.Viewer, *Claims, error) {
	c, err := s.tokens.verify(token)
	if err != nil {
		return lending.Viewer{}, nil, err
	}
	revoked, err := s.denylist.Revoked(ctx, c.RevocationIDs())
	if err != nil {
		return lending.Viewer{}, nil, err
	}
	if len(revoked) > 0 {
		return lending.Viewer{}, nil, invalidAccess("access token %s (session %s) was signed out", c.ID, c.SessionID)
	}
	return c.Viewer(), c, nil
}

// EnsureAdmin creates the admin account (or resets its password and adds
// ADMIN to an existing account with that email) and its wallet; main calls
// it at start from ADMIN_EMAIL and ADMIN_PASSWORD. The same input rules as
// SignUp apply (BAD_USER_INPUT).
func (s *Service) EnsureAdmin(ctx context.Context, name, email, password string) (*lending.User, error) {
	name, err := validName(name)
	if err != nil {
		return nil, err
	}
	if email, err = validEmail(email); err != nil {
		return nil, err
	}
	if err := validPassword(password); err != nil {
		return nil, err
	}
	hash, err := s.hasher.Hash(password)
	if err != nil {
		return nil, err
	}
	return s.accounts.UpsertAdmin(ctx, name, email, hash)
}

// newSession starts a refresh-token family for u and issues its first tokens.
func (s *Service) newSession(ctx context.Context, u *lending.User) (*Session, error) {
	refresh, hash, err := newRefreshToken()
	if err != nil {
		return nil, err
	}
	family := uuid.New()
	if err := s.accounts.InsertRefreshToken(ctx, u.ID, family, hash, s.now().Add(s.refreshTTL)); err != nil {
		return nil, err
	}
	access, claims, err := s.tokens.issue(u.ID, u.Roles, family)
	if err != nil {
		return nil, err
	}
	return &Session{AccessToken: access, AccessTokenExpiresAt: claims.ExpiresAt.Time, RefreshToken: refresh, User: u}, nil
}

// refreshTokenBytes is the entropy of a refresh token.
const refreshTokenBytes = 32

// newRefreshToken returns a random refresh token (32 bytes, unpadded
// base64url) and the SHA-256 hash under which it is stored.
func newRefreshToken() (string, []byte, error) {
	b := make([]byte, refreshTokenBytes)
	if _, err := rand.Read(b); err != nil {
		return "", nil, fmt.Errorf("refresh token: %w", err)
	}
	sum := sha256.Sum256(b)
	return base64.RawURLEncoding.EncodeToString(b), sum[:], nil
}

// hashRefreshToken returns the stored hash of token, or false if token is
// not one we could have issued.
func hashRefreshToken(token string) ([]byte, bool) {
	if len(token) != base64.RawURLEncoding.EncodedLen(refreshTokenBytes) {
		return nil, false
	}
	b, err := base64.RawURLEncoding.Strict().DecodeString(token)
	if err != nil || len(b) != refreshTokenBytes {
		return nil, false
	}
	sum := sha256.Sum256(b)
	return sum[:], true
}

func validName(name string) (string, error) {
	name = strings.TrimSpace(name)
	if n := utf8.RuneCountInString(name); n < 1 || n > maxNameLen {
		return "", lending.BadInput("name must be 1 to %d characters", maxNameLen)
	}
	if !utf8.ValidString(name) || strings.IndexFunc(name, unicode.IsControl) >= 0 {
		return "", lending.BadInput("name must not contain control characters")
	}
	return name, nil
}

// validEmail returns email trimmed if it is a plain address
// (local@domain.tld, no display name, no comments), else BAD_USER_INPUT.
func validEmail(email string) (string, error) {
	email = strings.TrimSpace(email)
	bad := lending.BadInput("invalid email address")
	if len(email) < 3 || len(email) > maxEmailLen {
		return "", bad
	}
	addr, err := mail.ParseAddress(email)
	if err != nil || addr.Name != "" || addr.Address != email {
		return "", bad
	}
	at := strings.LastIndexByte(email, '@')
	local, domain := email[:at], email[at+1:]
	if local == "" || strings.ContainsAny(email, " \t\r\n\"") || !strings.Contains(domain, ".") ||
		strings.HasPrefix(domain, ".") || strings.HasSuffix(domain, ".") || strings.Contains(domain, "..") {
		return "", bad
	}
	return email, nil
}

func validPassword(p string) error {
	if n := utf8.RuneCountInString(p); n < minPasswordLen || n > maxPasswordLen {
		return lending.BadInput("password must be %d to %d characters", minPasswordLen, maxPasswordLen)
	}
	return nil
}

// signUpRoles checks and deduplicates self-chosen roles.
func signUpRoles(in []lending.Role) ([]lending.Role, error) {
	if len(in) == 0 {
		return nil, lending.BadInput("choose at least one role")
	}
	var out []lending.Role
	for _, r := range in {
		switch r {
		case lending.RoleAdmin:
			return nil, lending.Forbidden("the ADMIN role cannot be chosen at sign-up")
		case lending.RoleInvestor, lending.RoleBorrower:
			if !hasRole(out, r) {
				out = append(out, r)
			}
		default:
			return nil, lending.BadInput("unknown role %q", string(r))
		}
	}
	return out, nil
}

func hasRole(roles []lending.Role, r lending.Role) bool {
	for _, x := range roles {
		if x == r {
			return true
		}
	}
	return false
}
