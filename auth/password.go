// Package auth is Mutuo's authentication: password hashing (argon2id), JWT
// access tokens (HS256 or EdDSA), rotating single-use refresh tokens, a Redis
// denylist of signed-out access tokens, and the HTTP middleware that turns an
// Authorization header into a lending.Viewer. It does not import store: it
// talks to the database through the AccountStore interface.
package auth

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"

	"golang.org/x/crypto/argon2"
)

// Argon2Params are the argon2id cost parameters of new hashes. Hashes made
// with other parameters still verify: each hash carries its own.
type Argon2Params struct {
	Memory      uint32 // KiB
	Iterations  uint32
	Parallelism uint8
	SaltLen     uint32 // bytes
	KeyLen      uint32 // bytes
}

// DefaultArgon2Params are OWASP's minimum for argon2id: 19 MiB, 2 passes, 1
// lane, with a 16-byte salt and a 32-byte key.
func DefaultArgon2Params() Argon2Params {
	return Argon2Params{Memory: 19 * 1024, Iterations: 2, Parallelism: 1, SaltLen: 16, KeyLen: 32}
}

// Bounds on parameters, for our own configuration and for hashes we parse.
const (
	maxArgon2Memory     = 1 << 20 // 1 GiB in KiB
	maxArgon2Iterations = 64
	minSaltLen          = 8
	maxSaltLen          = 64
	minKeyLen           = 16
	maxKeyLen           = 128
)

func (p Argon2Params) validate() error {
	switch {
	case p.Parallelism < 1:
		return errors.New("argon2: parallelism must be at least 1")
	case p.Memory < 8*uint32(p.Parallelism) || p.Memory > maxArgon2Memory:
		return fmt.Errorf("argon2: memory %d KiB out of range [%d, %d]", p.Memory, 8*uint32(p.Parallelism), maxArgon2Memory)
	case p.Iterations < 1 || p.Iterations > maxArgon2Iterations:
		return fmt.Errorf("argon2: iterations %d out of range [1, %d]", p.Iterations, maxArgon2Iterations)
	case p.SaltLen < minSaltLen || p.SaltLen > maxSaltLen:
		return fmt.Errorf("argon2: salt length %d out of range [%d, %d]", p.SaltLen, minSaltLen, maxSaltLen)
	case p.KeyLen < minKeyLen || p.KeyLen > maxKeyLen:
		return fmt.Errorf("argon2: key length %d out of range [%d, %d]", p.KeyLen, minKeyLen, maxKeyLen)
	}
	return nil
}

// PasswordHasher hashes and verifies passwords with argon2id, encoded in the
// PHC string format: $argon2id$v=19$m=19456,t=2,p=1$<salt>$<key>, salt and
// key in unpadded standard base64. It is safe for concurrent use.
type PasswordHasher struct {
	params Argon2Params
	dummy  string // a hash of a random password, verified when there is no user
}

// NewPasswordHasher returns a hasher that makes new hashes with p.
func NewPasswordHasher(p Argon2Params) (*PasswordHasher, error) {
	if err := p.validate(); err != nil {
		return nil, err
	}
	h := &PasswordHasher{params: p}
	var secret [32]byte
	if _, err := rand.Read(secret[:]); err != nil {
		return nil, fmt.Errorf("dummy password: %w", err)
	}
	dummy, err := h.Hash(base64.RawStdEncoding.EncodeToString(secret[:]))
	if err != nil {
		return nil, err
	}
	h.dummy = dummy
	return h, nil
}

// Hash returns the PHC-encoded argon2id hash of password with a fresh salt.
func (h *PasswordHasher) Hash(password string) (string, error) {
	p := h.params
	salt := make([]byte, p.SaltLen)
	if _, err := rand.Read(salt); err != nil {
		return "", fmt.Errorf("password salt: %w", err)
	}
	key := argon2.IDKey([]byte(password), salt, p.Iterations, p.Memory, p.Parallelism, p.KeyLen)
	return fmt.Sprintf("$argon2id$v=%d$m=%d,t=%d,p=%d$%s$%s", argon2.Version, p.Memory, p.Iterations, p.Parallelism,
		base64.RawStdEncoding.EncodeToString(salt), base64.RawStdEncoding.EncodeToString(key)), nil
}

// Verify reports whether password matches encoded, comparing in constant
// time. A malformed or unsupported encoding is an error (and no match).
func (h *PasswordHasher) Verify(encoded, password string) (bool, error) {
	p, salt, key, err := decodeHash(encoded)
	if err != nil {
		return false, err
	}
	got := argon2.IDKey([]byte(password), salt, p.Iterations, p.Memory, p.Parallelism, p.KeyLen)
	return subtle.ConstantTimeCompare(got, key) == 1, nil
}

// VerifyDummy spends as long as verifying a password against a hash made
// with the hasher's parameters, and never matches. Call it when there is no
// account, so that an unknown email and a wrong password take the same time.
func (h *PasswordHasher) VerifyDummy(password string) {
	_, _ = h.Verify(h.dummy, password)
}

func decodeHash(encoded string) (p Argon2Params, salt, key []byte, err error) {
	bad := func(what string) (Argon2Params, []byte, []byte, error) {
		return Argon2Params{}, nil, nil, fmt.Errorf("password hash: %s", what)
	}
	// "", "argon2id", "v=19", "m=…,t=…,p=…", salt, key
	parts := strings.Split(encoded, "$")
	if len(parts) != 6 || parts[0] != "" {
		return bad("not a PHC string")
	}
	if parts[1] != "argon2id" {
		return bad("unsupported algorithm " + parts[1])
	}
	var version int
	if _, err := fmt.Sscanf(parts[2], "v=%d", &version); err != nil || fmt.Sprintf("v=%d", version) != parts[2] {
		return bad("malformed version")
	}
	if version != argon2.Version {
		return bad(fmt.Sprintf("unsupported version %d", version))
	}
	var par uint32
	if _, err := fmt.Sscanf(parts[3], "m=%d,t=%d,p=%d", &p.Memory, &p.Iterations, &par); err != nil ||
		fmt.Sprintf("m=%d,t=%d,p=%d", p.Memory, p.Iterations, par) != parts[3] || par < 1 || par > 255 {
		return bad("malformed parameters")
	}
	p.Parallelism = uint8(par)
	if salt, err = base64.RawStdEncoding.Strict().DecodeString(parts[4]); err != nil {
		return bad("malformed salt")
	}
	if key, err = base64.RawStdEncoding.Strict().DecodeString(parts[5]); err != nil {
		return bad("malformed key")
	}
	p.SaltLen, p.KeyLen = uint32(len(salt)), uint32(len(key))
	if err := p.validate(); err != nil {
		return bad(err.Error())
	}
	return p, salt, key, nil
}
