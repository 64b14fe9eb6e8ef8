package auth

import (
	"regexp"
	"strings"
	"testing"
)

func cheapParams() Argon2Params {
	return Argon2Params{Memory: 1024, Iterations: 1, Parallelism: 1, SaltLen: 16, KeyLen: 32}
}

func TestPasswordHashFormatAndVerify(t *testing.T) {
	h, err := NewPasswordHasher(cheapParams())
	if err != nil {
		t.Fatal(err)
	}
	enc, err := h.Hash("correct horse battery")
	if err != nil {
		t.Fatal(err)
	}
	phc := regexp.MustCompile(`^\$argon2id\$v=19\$m=1024,t=1,p=1\$[A-Za-z0-9+/]{22}\$[A-Za-z0-9+/]{43}$`)
	if !phc.MatchString(enc) {
		t.Fatalf("hash %q is not the expected PHC string", enc)
	}
	if again, _ := h.Hash("correct horse battery"); again == enc {
		t.Fatal("two hashes of one password are equal: salt not random")
	}
	if ok, err := h.Verify(enc, "correct horse battery"); err != nil || !ok {
		t.Fatalf("Verify(right) = %v, %v", ok, err)
	}
	if ok, err := h.Verify(enc, "correct horse batterY"); err != nil || ok {
		t.Fatalf("Verify(wrong) = %v, %v", ok, err)
	}
	// A hash made with other parameters verifies with its own.
	other, _ := NewPasswordHasher(Argon2Params{Memory: 2048, Iterations: 2, Parallelism: 2, SaltLen: 8, KeyLen: 16})
	enc2, _ := other.Hash("pw-1234567890")
	if !strings.HasPrefix(enc2, "$argon2id$v=19$m=2048,t=2,p=2$") {
		t.Fatalf("hash %q", enc2)
	}
	if ok, err := h.Verify(enc2, "pw-1234567890"); err != nil || !ok {
		t.Fatalf("Verify(other params) = %v, %v", ok, err)
	}
}

func TestPasswordVerifyRejectsMalformedHashes(t *testing.T) {
	h, _ := NewPasswordHasher(cheapParams())
	good, _ := h.Hash("secret-secret")
	parts := strings.Split(good, "$")
	bad := []string{
		"",
		"plaintext",
		"$argon2i$v=19$m=1024,t=1,p=1$" + parts[4] + "$" + parts[5],
		"$argon2id$v=16$m=1024,t=1,p=1$" + parts[4] + "$" + parts[5],
		"$argon2id$v=19$m=1024,t=1$" + parts[4] + "$" + parts[5],
		"$argon2id$v=19$m=1024,t=1,p=0$" + parts[4] + "$" + parts[5],
		"$argon2id$v=19$m=99999999,t=1,p=1$" + parts[4] + "$" + parts[5], // absurd memory
		"$argon2id$v=19$m=1024,t=1,p=1$" + parts[4] + "=$" + parts[5],    // padded salt
		"$argon2id$v=19$m=1024,t=1,p=1$!!$" + parts[5],
		"$argon2id$v=19$m=1024,t=1,p=1$" + parts[4] + "$" + parts[5][:10], // short key
		good + "$extra",
	}
	for _, enc := range bad {
		if ok, err := h.Verify(enc, "secret-secret"); err == nil || ok {
			t.Errorf("Verify(%q) = %v, %v; want an error", enc, ok, err)
		}
	}
}

func TestPasswordParamsValidated(t *testing.T) {
	for _, p := range []Argon2Params{
		{},
		{Memory: 4, Iterations: 1, Parallelism: 1, SaltLen: 16, KeyLen: 32},
		{Memory: 1024, Iterations: 0, Parallelism: 1, SaltLen: 16, KeyLen: 32},
		{Memory: 1024, Iterations: 1, Parallelism: 1, SaltLen: 4, KeyLen: 32},
		{Memory: 1024, Iterations: 1, Parallelism: 1, SaltLen: 16, KeyLen: 8},
	} {
		if _, err := NewPasswordHasher(p); err == nil {
			t.Errorf("NewPasswordHasher(%+v) succeeded", p)
		}
	}
	if _, err := NewPasswordHasher(DefaultArgon2Params()); err != nil {
		t.Fatal(err)
	}
}

func TestVerifyDummyNeverPanics(t *testing.T) {
	h, _ := NewPasswordHasher(cheapParams())
	h.VerifyDummy("")
	h.VerifyDummy(strings.Repeat("x", 10000))
	if ok, err := h.Verify(h.dummy, ""); err != nil || ok {
		t.Fatalf("dummy hash: %v %v", ok, err)
	}
}
