package auth

import (
	"crypto/ed25519"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/google/uuid"

	"mutuo/lending"
)

// Algorithms that Keys support, as JWT "alg" values.
const (
	AlgHS256 = "HS256"
	AlgEdDSA = "EdDSA"
)

// minHMACSecret is the shortest HS256 secret accepted: 256 bits.
const minHMACSecret = 32

// maxTokenLen bounds the access tokens we bother to parse.
const maxTokenLen = 4096

// leeway is the clock skew tolerated on exp and iat.
const leeway = 30 * time.Second

// Keys sign and verify access tokens with exactly one algorithm: HS256 with
// a shared secret, or EdDSA with an Ed25519 key pair. Tokens signed with any
// other algorithm never verify.
type Keys struct {
	method    jwt.SigningMethod
	signKey   any
	verifyKey any
}

// NewHS256Keys returns HS256 keys; secret must be at least 32 bytes.
func NewHS256Keys(secret []byte) (*Keys, error) {
	if len(secret) < minHMACSecret {
		return nil, fmt.Errorf("jwt: HS256 secret must be at least %d bytes, got %d", minHMACSecret, len(secret))
	}
	s := append([]byte(nil), secret...)
	return &Keys{method: jwt.SigningMethodHS256, signKey: s, verifyKey: s}, nil
}

// NewEdDSAKeys returns EdDSA keys from an Ed25519 private key.
func NewEdDSAKeys(priv ed25519.PrivateKey) (*Keys, error) {
	if len(priv) != ed25519.PrivateKeySize {
		return nil, fmt.Errorf("jwt: Ed25519 private key must be %d bytes, got %d", ed25519.PrivateKeySize, len(priv))
	}
	return &Keys{method: jwt.SigningMethodEdDSA, signKey: priv, verifyKey: priv.Public()}, nil
}

// ParseEdDSAKeys returns EdDSA keys from a PEM "PRIVATE KEY" block holding a
// PKCS #8 Ed25519 key (as `openssl genpkey -algorithm ed25519` writes).
func ParseEdDSAKeys(privateKeyPEM []byte) (*Keys, error) {
	block, _ := pem.Decode(privateKeyPEM)
	if block == nil || block.Type != "PRIVATE KEY" {
		return nil, errors.New("jwt: EdDSA key must be a PEM PRIVATE KEY block (PKCS #8)")
	}
	k, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("jwt: parse EdDSA key: %w", err)
	}
	priv, ok := k.(ed25519.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("jwt: EdDSA key is a %T, not Ed25519", k)
	}
	return NewEdDSAKeys(priv)
}

// KeysFromConfig builds keys from configuration: alg "HS256" takes the
// secret in material, alg "EdDSA" a PEM private key.
func KeysFromConfig(alg string, material []byte) (*Keys, error) {
	switch alg {
	case AlgHS256:
		return NewHS256Keys(material)
	case AlgEdDSA:
		return ParseEdDSAKeys(material)
	default:
		return nil, fmt.Errorf("jwt: unsupported algorithm %q (want %s or %s)", alg, AlgHS256, AlgEdDSA)
	}
}

// Alg is the JWT "alg" the keys sign with and accept.
func (k *Keys) Alg() string { return k.method.Alg() }

// Claims are the claims of a Mutuo access token: sub is the user id in
// decimal, jti a random token id (for the denylist), sid the refresh-token
// family the token was issued with (for sign-out), roles the user's roles
// when it was issued.
type Claims struct {
	jwt.RegisteredClaims
	Roles     []lending.Role `json:"roles"`
	SessionID string         `json:"sid"`
}

// UserID is the user id in sub (0 if sub is not one).
func (c *Claims) UserID() int64 {
	id, err := strconv.ParseInt(c.Subject, 10, 64)
	if err != nil || id <= 0 || strconv.FormatInt(id, 10) != c.Subject {
		return 0
	}
	return id
}

// Family is the refresh-token family in sid (uuid.Nil if sid is not one).
func (c *Claims) Family() uuid.UUID {
	f, err := uuid.Parse(c.SessionID)
	if err != nil || f.String() != c.SessionID {
		return uuid.Nil
	}
	return f
}

// Viewer is who the claims say is asking.
func (c *Claims) Viewer() lending.Viewer {
	return lending.Viewer{UserID: c.UserID(), Roles: append([]lending.Role(nil), c.Roles...)}
}

// Retained is a copy of verified claims with what is used once the token
// has been verified: sub, jti, sid, roles and exp (the viewer, revocation
// checks, sign-out). Holders that keep claims for long (a websocket, for
// its life) keep this: the issuer, audience and issue times are checked by
// verification and never read again, sub, jti and sid share one string,
// and the roles are the package's constants (so the viewer built from the
// retained claims holds nothing of the decoded token).
func (c *Claims) Retained() *Claims {
	if c == nil {
		return nil
	}
	ids := c.Subject + c.ID + c.SessionID
	r := &Claims{SessionID: ids[len(c.Subject)+len(c.ID):]}
	r.Subject, r.ID = ids[:len(c.Subject)], ids[len(c.Subject):len(c.Subject)+len(c.ID)]
	r.ExpiresAt = c.ExpiresAt
	if len(c.Roles) > 0 {
		r.Roles = make([]lending.Role, len(c.Roles))
		for i, role := range c.Roles {
			switch role {
			case lending.RoleInvestor:
				role = lending.RoleInvestor
			case lending.RoleBorrower:
				role = lending.RoleBorrower
			case lending.RoleAdmin:
				role = lending.RoleAdmin
			} // Validate refuses any other role
			r.Roles[i] = role
		}
	}
	return r
}

// Validate checks Mutuo's own claims; golang-jwt calls it after the
// registered claims pass.
func (c *Claims) Validate() error {
	switch {
	case c.UserID() == 0:
		return errors.New("sub is not a user id")
	case c.ID == "":
		return errors.New("missing jti")
	case c.Family() == uuid.Nil:
		return errors.New("sid is not a session id")
	case c.IssuedAt == nil:
		return errors.New("missing iat")
	}
	for _, r := range c.Roles {
		if !lending.ValidEnum("Role", string(r)) {
			return fmt.Errorf("unknown role %q", string(r))
		}
	}
	return nil
}

// errInvalidAccess is the one answer for every access token that does not
// authenticate, whatever the reason (which is wrapped for logs only).
var errInvalidAccess = lending.Errorf(lending.CodeUnauthenticated, "invalid or expired access token")

func invalidAccess(format string, args ...any) error {
	return fmt.Errorf("%s: %w", fmt.Sprintf(format, args...), errInvalidAccess)
}

// tokenIssuer signs and verifies access tokens for one issuer and audience.
type tokenIssuer struct {
	keys     *Keys
	issuer   string
	audience string
	ttl      time.Duration
	now      func() time.Time
	parser   *jwt.Parser
}

func newTokenIssuer(keys *Keys, issuer, audience string, ttl time.Duration, now func() time.Time) *tokenIssuer {
	return &tokenIssuer{
		keys: keys, issuer: issuer, audience: audience, ttl: ttl, now: now,
		parser: jwt.NewParser(
			jwt.WithValidMethods([]string{keys.Alg()}),
			jwt.WithIssuer(issuer),
			jwt.WithAudience(audience),
			jwt.WithExpirationRequired(),
			jwt.WithIssuedAt(),
			jwt.WithLeeway(leeway),
			jwt.WithTimeFunc(now),
		),
	}
}

// issue signs an access token for user with roles in the refresh family.
func (t *tokenIssuer) issue(userID int64, roles []lending.Role, family uuid.UUID) (string, *Claims, error) {
	now := t.now().Truncate(time.Second)
	c := &Claims{
		RegisteredClaims: jwt.RegisteredClaims{
			Issuer:    t.issuer,
			Subject:   strconv.FormatInt(userID, 10),
			Audience:  jwt.ClaimStrings{t.audience},
			ExpiresAt: jwt.NewNumericDate(now.Add(t.ttl)),
			IssuedAt:  jwt.NewNumericDate(now),
			ID:        uuid.NewString(),
		},
		Roles:     append([]lending.Role(nil), roles...),
		SessionID: family.String(),
	}
	s, err := jwt.NewWithClaims(t.keys.method, c).SignedString(t.keys.signKey)
	if err != nil {
		return "", nil, fmt.Errorf("sign access token: %w", err)
	}
	return s, c, nil
}

// verify checks token's signature, algorithm, issuer, audience, expiry and
// issue time (30 s leeway) and Mutuo's claims. Any failure is
// UNAUTHENTICATED, with the reason wrapped for logs.
func (t *tokenIssuer) verify(token string) (*Claims, error) {
	if token == "" || len(token) > maxTokenLen || strings.Count(token, ".") != 2 {
		return nil, invalidAccess("malformed access token")
	}
	var c Claims
	if _, err := t.parser.ParseWithClaims(token, &c, func(*jwt.Token) (any, error) {
		return t.keys.verifyKey, nil
	}); err != nil {
		return nil, invalidAccess("verify access token: %v", err)
	}
	return &c, nil
}
