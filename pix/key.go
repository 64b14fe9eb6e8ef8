package pix

import (
	"strconv"
	"strings"

	"mutuo/lending"
)

// KeyType is the kind of a Pix key in the DICT (the central bank's key
// directory).
type KeyType string

// The Pix key types.
const (
	KeyCPF   KeyType = "CPF"   // a person's taxpayer number: 11 digits
	KeyCNPJ  KeyType = "CNPJ"  // a company's taxpayer number: 14 characters
	KeyEmail KeyType = "EMAIL" // an e-mail address, at most 77 characters
	KeyPhone KeyType = "PHONE" // a Brazilian phone number, +55DDNNNNNNNN(N)
	KeyEVP   KeyType = "EVP"   // a random key: a UUID v4
)

// MaxEmailKeyLen is the longest e-mail address the DICT accepts as a key.
const MaxEmailKeyLen = 77

// ParseKey recognizes and validates a Pix key typed by a user and returns
// its type and its DICT form:
//   - CPF: 11 digits, with or without the usual punctuation ("123.456.789-09"),
//     valid check digits, not all the same digit; normalized to digits only.
//   - CNPJ: 14 characters, with or without punctuation ("12.345.678/0001-95"),
//     12 letters or digits (the alphanumeric CNPJ from July 2026) and 2 check
//     digits, valid, not all the same; normalized to upper case without
//     punctuation.
//   - PHONE: "+55", a two-digit area code (11-99, no zero digit) and 8 or 9
//     digits (9 digits start with 9), spaces, dashes, dots and parentheses
//     allowed after the "+"; normalized to "+55DDNNNNNNNNN". A number without
//     "+55" is not a phone key (11 digits are read as a CPF), as in Pix.
//   - EMAIL: local@domain of at most 77 characters, a dot-atom local part of
//     at most 64 and a domain of letters, digits and hyphens with at least two
//     labels; normalized to lower case.
//   - EVP: a version-4 UUID (8-4-4-4-12 hex digits); normalized to lower case.
//
// Surrounding spaces are ignored. Anything else is BAD_USER_INPUT saying
// which rule failed; the error never echoes the key back.
func ParseKey(s string) (KeyType, string, error) {
	s = strings.TrimSpace(s)
	switch {
	case s == "":
		return "", "", lending.BadInput("pix key is empty")
	case len(s) > MaxEmailKeyLen:
		return "", "", lending.BadInput("pix key is too long")
	case strings.Contains(s, "@"):
		return typed(KeyEmail)(parseEmail(s))
	case strings.HasPrefix(s, "+"):
		return typed(KeyPhone)(parsePhone(s))
	case len(s) == 36 && strings.Count(s, "-") == 4:
		return typed(KeyEVP)(parseEVP(s))
	}
	doc := strings.Map(func(r rune) rune {
		if r == '.' || r == '-' || r == '/' || r == ' ' {
			return -1
		}
		return r
	}, s)
	switch len(doc) {
	case 11:
		if !digits(doc) || !validCPF(doc) {
			return "", "", lending.BadInput("invalid CPF pix key (phone keys start with +55)")
		}
		return KeyCPF, doc, nil
	case 14:
		doc = strings.ToUpper(doc)
		if !validCNPJ(doc) {
			return "", "", lending.BadInput("invalid CNPJ pix key")
		}
		return KeyCNPJ, doc, nil
	}
	return "", "", lending.BadInput("not a pix key: use a CPF, CNPJ, e-mail, phone (+55...) or random key")
}

// typed attaches t to a successful parse and drops it from a failed one.
func typed(t KeyType) func(string, error) (KeyType, string, error) {
	return func(v string, err error) (KeyType, string, error) {
		if err != nil {
			return "", "", err
		}
		return t, v, nil
	}
}

// validCPF checks an 11-digit CPF's two check digits.
func validCPF(d string) bool {
	if allSame(d) {
		return false
	}
	for _, n := range []int{9, 10} {
		sum := 0
		for i := 0; i < n; i++ {
			sum += int(d[i]-'0') * (n + 1 - i)
		}
		dv := sum * 10 % 11 % 10
		if int(d[n]-'0') != dv {
			return false
		}
	}
	return true
}

// validCNPJ checks a 14-character CNPJ: 12 characters of [0-9A-Z], each worth
// its ASCII code minus 48 (so digits are worth themselves, as in the numeric
// CNPJ), and two check digits, modulo 11 with weights 2..9 from the right.
func validCNPJ(d string) bool {
	if len(d) != 14 || !digits(d[12:]) || allSame(d) {
		return false
	}
	for i := 0; i < 12; i++ {
		c := d[i]
		if !('0' <= c && c <= '9' || 'A' <= c && c <= 'Z') {
			return false
		}
	}
	for _, n := range []int{12, 13} {
		sum, w := 0, 2
		for i := n - 1; i >= 0; i-- {
			sum += int(d[i]-'0') * w
			if w++; w > 9 {
				w = 2
			}
		}
		dv := 0
		if r := sum % 11; r >= 2 {
			dv = 11 - r
		}
		if int(d[n]-'0') != dv {
			return false
		}
	}
	return true
}

func allSame(s string) bool {
	return strings.Count(s, s[:1]) == len(s)
}

func parsePhone(s string) (string, error) {
	d := strings.Map(func(r rune) rune {
		if r == ' ' || r == '-' || r == '.' || r == '(' || r == ')' {
			return -1
		}
		return r
	}, s[1:])
	bad := lending.BadInput("invalid phone pix key: use +55, the area code and the number, e.g. +5511987654321")
	if !digits(d) || !strings.HasPrefix(d, "55") {
		return "", bad
	}
	national := d[2:]
	if len(national) != 10 && len(national) != 11 {
		return "", bad
	}
	if national[0] == '0' || national[1] == '0' {
		return "", bad
	}
	if len(national) == 11 && national[2] != '9' {
		return "", bad
	}
	return "+55" + national, nil
}

func parseEVP(s string) (string, error) {
	u := strings.ToLower(s)
	bad := lending.BadInput("invalid random pix key: want a UUID v4 like 1b4e28ba-2fa1-41d2-883f-0016d3cca427")
	for i := 0; i < len(u); i++ {
		c := u[i]
		switch i {
		case 8, 13, 18, 23:
			if c != '-' {
				return "", bad
			}
		default:
			if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
				return "", bad
			}
		}
	}
	if u[14] != '4' || !strings.ContainsRune("89ab", rune(u[19])) {
		return "", bad
	}
	return u, nil
}

func parseEmail(s string) (string, error) {
	e := strings.ToLower(s)
	bad := lending.BadInput("invalid e-mail pix key")
	local, domain, ok := strings.Cut(e, "@")
	if !ok || len(e) > MaxEmailKeyLen || local == "" || len(local) > 64 || domain == "" {
		return "", bad
	}
	if local[0] == '.' || local[len(local)-1] == '.' || strings.Contains(local, "..") {
		return "", bad
	}
	for i := 0; i < len(local); i++ {
		c := local[i]
		if !('a' <= c && c <= 'z' || '0' <= c && c <= '9' || strings.IndexByte(".!#$%&'*+/=?^_`{|}~-", c) >= 0) {
			return "", bad
		}
	}
	labels := strings.Split(domain, ".")
	if len(labels) < 2 {
		return "", bad
	}
	for _, l := range labels {
		if l == "" || len(l) > 63 || l[0] == '-' || l[len(l)-1] == '-' {
			return "", bad
		}
		for i := 0; i < len(l); i++ {
			c := l[i]
			if !('a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-') {
				return "", bad
			}
		}
	}
	tld := labels[len(labels)-1]
	if len(tld) < 2 || digits(tld) {
		return "", bad
	}
	return e, nil
}

// MaskKey hides most of a Pix key for logs and messages; the full key must
// never be logged. It reveals at most a few characters and the key's shape:
// "***.456.789-**" for a CPF (the government's masking), "12.***.***/****-95"
// for a CNPJ, "+55 11 *****-4321" for a phone, "j***@e***.com" for an e-mail,
// "1b4e****-****-****-****-********a427" for a random key, and for anything it
// cannot parse a fixed "***" followed by the length. It never panics.
func MaskKey(s string) string {
	t, k, err := ParseKey(s)
	if err != nil {
		return "***(" + strconv.Itoa(len(s)) + " chars)"
	}
	switch t {
	case KeyCPF:
		return "***." + k[3:6] + "." + k[6:9] + "-**"
	case KeyCNPJ:
		return k[:2] + ".***.***/****-" + k[12:]
	case KeyPhone:
		n := k[3:]
		return "+55 " + n[:2] + " *****-" + n[len(n)-4:]
	case KeyEmail:
		local, domain, _ := strings.Cut(k, "@")
		tld := domain[strings.LastIndexByte(domain, '.'):]
		return local[:1] + "***@" + domain[:1] + "***" + tld
	default: // EVP
		return k[:4] + "****-****-****-****-********" + k[32:]
	}
}
