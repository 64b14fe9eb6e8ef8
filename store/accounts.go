package store

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"mutuo/lending"
)

// errInvalidRefresh is the one answer for every refresh token that may not be
// used: unknown, expired, revoked or already used.
var errInvalidRefresh = lending.Errorf(lending.CodeUnauthenticated, "invalid or expired refresh token")

// refreshFamilyLockClass is the first key of the transaction-scoped advisory
// lock that serializes rotation and revocation of one refresh-token family
// (the second key is a hash of the family id).
const refreshFamilyLockClass = 0x52544b46 // "RTKF"

// CreateUser opens an account in one transaction: the user, an investor
// profile if roles has INVESTOR, a borrower profile (scored and graded from
// monthlyIncome) if roles has BORROWER, and the user's BRL wallet. name and
// email are stored as given (the caller trims and validates them; name is
// also the profiles' display name); passwordHash is an encoded hash, never a
// password. Emails are unique regardless of case: a taken one is CONFLICT.
// Roles that are empty or unknown, or BORROWER without a positive income,
// are BAD_USER_INPUT.
//
// (Positional rather than a store.NewUser struct so that auth.AccountStore,
// which may not import store, can name the same method.)
func (s *Store) CreateUser(ctx context.Context, name, email, passwordHash string, roles []lending.Role, monthlyIncome *lending.Money) (*lending.User, error) {
	roles, err := canonicalRoles(roles)
	if err != nil {
		return nil, err
	}
	isInvestor, isBorrower := hasRole(roles, lending.RoleInvestor), hasRole(roles, lending.RoleBorrower)
	var income lending.Money
	if isBorrower {
		if monthlyIncome == nil || *monthlyIncome <= 0 {
			return nil, lending.BadInput("monthlyIncome is required for borrowers and must be positive")
		}
		income = *monthlyIncome
	}
	var u *lending.User
	err = s.inTx(ctx, func(tx pgx.Tx) error {
		var err error
		u, err = scanUser(tx.QueryRow(ctx, `
			INSERT INTO users AS u (name, email, password_hash, roles) VALUES ($1, $2, $3, $4)
			RETURNING `+userCols,
			name, email, passwordHash, roleStrings(roles)))
		if isUniqueViolation(err, "users_email_lower") {
			return lending.Errorf(lending.CodeConflict, "email already registered")
		}
		if err != nil {
			return fmt.Errorf("insert user: %w", err)
		}
		if isInvestor {
			if _, err := tx.Exec(ctx, `INSERT INTO investors (user_id, display_name) VALUES ($1, $2)`, u.ID, name); err != nil {
				return fmt.Errorf("insert investor for user %d: %w", u.ID, err)
			}
		}
		if isBorrower {
			score := lending.Score(lending.CreditHistory{MonthlyIncome: income})
			if _, err := tx.Exec(ctx, `
				INSERT INTO borrowers (user_id, display_name, grade, credit_score, monthly_income)
				VALUES ($1, $2, $3, $4, $5)`,
				u.ID, name, string(lending.GradeFor(score)), score, int64(income)); err != nil {
				return fmt.Errorf("insert borrower for user %d: %w", u.ID, err)
			}
		}
		if _, err := tx.Exec(ctx, `INSERT INTO wallets (kind, user_id) VALUES ('USER', $1)`, u.ID); err != nil {
			return fmt.Errorf("insert wallet for user %d: %w", u.ID, err)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return u, nil
}

// UserByEmail returns the user whose email equals email regardless of case
// (surrounding spaces ignored), with their encoded password hash. NOT_FOUND
// when there is none.
func (s *Store) UserByEmail(ctx context.Context, email string) (*lending.User, string, error) {
	var hash string
	row := s.pool.QueryRow(ctx, `
		SELECT `+userCols+`, u.password_hash
		FROM users u WHERE lower(u.email) = lower(btrim($1))`, email)
	u, err := scanUser(row, &hash)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, "", lending.NotFound("user")
	}
	if err != nil {
		return nil, "", fmt.Errorf("user by email: %w", err)
	}
	return u, hash, nil
}

// UserByID returns the user with id. NOT_FOUND when there is none.
func (s *Store) UserByID(ctx context.Context, id int64) (*lending.User, error) {
	u, err := scanUser(s.pool.QueryRow(ctx, `
		SELECT `+userCols+` FROM users u WHERE u.id = $1`, id))
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, lending.NotFound("user")
	}
	if err != nil {
		return nil, fmt.Errorf("user %d: %w", id, err)
	}
	return u, nil
}

// UpsertAdmin makes sure an admin account with email exists, in one
// transaction: it creates the user (roles [ADMIN]) or, when the email (any
// case) is taken, sets its password hash and adds ADMIN to its roles, keeping
// its name and other roles; either way the user has a wallet. It is meant for
// start-up and is safe to run concurrently from several instances.
func (s *Store) UpsertAdmin(ctx context.Context, name, email, passwordHash string) (*lending.User, error) {
	var u *lending.User
	err := s.inTx(ctx, func(tx pgx.Tx) error {
		var err error
		u, err = scanUser(tx.QueryRow(ctx, `
			INSERT INTO users AS u (name, email, password_hash, roles) VALUES ($1, $2, $3, ARRAY['ADMIN'])
			ON CONFLICT ((lower(email))) DO UPDATE SET
				password_hash = EXCLUDED.password_hash,
				roles = CASE WHEN 'ADMIN' = ANY (u.roles) THEN u.roles ELSE u.roles || ARRAY['ADMIN'] END
			RETURNING `+userCols, name, email, passwordHash))
		if err != nil {
			return fmt.Errorf("upsert admin: %w", err)
		}
		if _, err := tx.Exec(ctx, `
			INSERT INTO wallets (kind, user_id) VALUES ('USER', $1) ON CONFLICT (user_id) DO NOTHING`, u.ID); err != nil {
			return fmt.Errorf("admin wallet for user %d: %w", u.ID, err)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return u, nil
}

// InsertRefreshToken stores the hash of a new refresh token of userID in
// family, valid until expires. A hash that already exists is an error (it
// never happens with 256-bit random tokens).
func (s *Store) InsertRefreshToken(ctx context.Context, userID int64, family uuid.UUID, hash []byte, expires time.Time) error {
	_, err := s.pool.Exec(ctx, `
		INSERT INTO refresh_tokens (user_id, family_id, token_hash, expires_at) VALUES ($1, $2, $3, $4)`,
		userID, family, hash, expires)
	if err != nil {
		return fmt.Errorf("insert refresh token for user %d: %w", userID, err)
	}
	return nil
}

// RotateRefreshToken spends the refresh token whose hash is hash and stores
// newHash, valid until newExpires, in the same family, in one transaction.
// It returns the token's user and family.
//
// A token that is unknown, expired or revoked is UNAUTHENTICATED. A token
// that was already used is a replay (stolen or leaked token): the whole
// family, including its newest token, is revoked and that revocation is
// committed before UNAUTHENTICATED is returned. Rotation and revocation of
// one family are serialized, so a concurrent RevokeRefreshFamily never misses
// the token that a rotation inserts.
func (s *Store) RotateRefreshToken(ctx context.Context, hash []byte, newHash []byte, newExpires time.Time) (int64, uuid.UUID, error) {
	var (
		userID int64
		family uuid.UUID
		reused bool
	)
	err := s.inTx(ctx, func(tx pgx.Tx) error {
		userID, family, reused = 0, uuid.Nil, false
		// Find the family first, without a row lock, so that the family
		// lock is always taken before any row lock (as RevokeRefreshFamily
		// does) and the two cannot deadlock.
		err := tx.QueryRow(ctx, `SELECT family_id FROM refresh_tokens WHERE token_hash = $1`, hash).Scan(&family)
		if errors.Is(err, pgx.ErrNoRows) {
			return errInvalidRefresh
		}
		if err != nil {
			return fmt.Errorf("find refresh token: %w", err)
		}
		if err := lockRefreshFamily(ctx, tx, family); err != nil {
			return err
		}
		var (
			id                     int64
			expired, used, revoked bool
		)
		err = tx.QueryRow(ctx, `
			SELECT id, user_id, expires_at <= now(), used_at IS NOT NULL, revoked_at IS NOT NULL
			FROM refresh_tokens WHERE token_hash = $1 FOR UPDATE`, hash).Scan(&id, &userID, &expired, &used, &revoked)
		if err != nil {
			return fmt.Errorf("lock refresh token: %w", err)
		}
		switch {
		case revoked || expired:
			return errInvalidRefresh
		case used:
			if err := revokeFamily(ctx, tx, family); err != nil {
				return err
			}
			reused = true
			return nil // commit the revocation; the caller gets the error below
		}
		tag, err := tx.Exec(ctx, `UPDATE refresh_tokens SET used_at = now() WHERE id = $1 AND used_at IS NULL`, id)
		if err != nil {
			return fmt.Errorf("spend refresh token %d: %w", id, err)
		}
		if err := mustOne(tag, "spend refresh token"); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `
			INSERT INTO refresh_tokens (user_id, family_id, token_hash, expires_at) VALUES ($1, $2, $3, $4)`,
			userID, family, newHash, newExpires); err != nil {
			return fmt.Errorf("insert rotated refresh token: %w", err)
		}
		return nil
	})
	if err != nil {
		return 0, uuid.Nil, err
	}
	if reused {
		return 0, uuid.Nil, fmt.Errorf("refresh token reused, family %s of user %d revoked: %w", family, userID, errInvalidRefresh)
	}
	return userID, family, nil
}

// RevokeRefreshFamily revokes every token of family (sign-out). Revoking an
// unknown or already revoked family is not an error.
func (s *Store) RevokeRefreshFamily(ctx context.Context, family uuid.UUID) error {
	return s.inTx(ctx, func(tx pgx.Tx) error {
		if err := lockRefreshFamily(ctx, tx, family); err != nil {
			return err
		}
		return revokeFamily(ctx, tx, family)
	})
}

func lockRefreshFamily(ctx context.Context, tx pgx.Tx, family uuid.UUID) error {
	if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock($1::int4, hashtext($2::text))`,
		refreshFamilyLockClass, family.String()); err != nil {
		return fmt.Errorf("lock refresh family %s: %w", family, err)
	}
	return nil
}

func revokeFamily(ctx context.Context, tx pgx.Tx, family uuid.UUID) error {
	if _, err := tx.Exec(ctx, `
		UPDATE refresh_tokens SET revoked_at = now() WHERE family_id = $1 AND revoked_at IS NULL`, family); err != nil {
		return fmt.Errorf("revoke refresh family %s: %w", family, err)
	}
	return nil
}

// scanUser scans userCols and then extra.
func scanUser(row pgx.Row, extra ...any) (*lending.User, error) {
	var (
		u     lending.User
		roles []string
	)
	if err := row.Scan(append([]any{&u.ID, &u.Name, &u.Email, &roles, &u.CreatedAt}, extra...)...); err != nil {
		return nil, err
	}
	u.Roles = make([]lending.Role, len(roles))
	for i, r := range roles {
		u.Roles[i] = lending.Role(r)
	}
	return &u, nil
}

// canonicalRoles returns roles deduplicated in the order INVESTOR, BORROWER,
// ADMIN; empty or unknown roles are BAD_USER_INPUT.
func canonicalRoles(in []lending.Role) ([]lending.Role, error) {
	if len(in) == 0 {
		return nil, lending.BadInput("at least one role is required")
	}
	for _, r := range in {
		if !lending.ValidEnum("Role", string(r)) {
			return nil, lending.BadInput("unknown role %q", string(r))
		}
	}
	var out []lending.Role
	for _, r := range []lending.Role{lending.RoleInvestor, lending.RoleBorrower, lending.RoleAdmin} {
		if hasRole(in, r) {
			out = append(out, r)
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

func roleStrings(roles []lending.Role) []string {
	out := make([]string, len(roles))
	for i, r := range roles {
		out[i] = string(r)
	}
	return out
}
