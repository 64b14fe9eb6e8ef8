package lending

import (
	"encoding/base64"
	"strconv"
	"testing"
)

var fuzzKinds = []Kind{KindUser, KindInvestor, KindBorrower, KindLoan, KindInvestment, KindWallet, KindLedgerEntry,
	KindDeposit, KindWithdrawal, KindChat, KindMessage, KindNotification}

// FuzzParseGlobalID checks that ParseGlobalID never panics, refuses with
// BAD_USER_INPUT, and accepts only a known kind with a positive id written
// canonically, which GlobalID encodes back to an ID that parses the same.
//
//	go test -run '^$' -fuzz FuzzParseGlobalID -fuzztime 20s ./lending
func FuzzParseGlobalID(f *testing.F) {
	for _, k := range fuzzKinds {
		f.Add(GlobalID(k, 1))
	}
	for _, s := range []string{
		"", "x", "VXNlcjox", "VXNlcjox=", "VXNlcjowMQ", "VXNlcjotMQ", "VXNlcjor1", "Tm9wZToxMg", "OjE", "VXNlcjo",
		GlobalID(KindLoan, 1<<63-1), base64.RawURLEncoding.EncodeToString([]byte("Loan:9223372036854775808")),
		base64.RawURLEncoding.EncodeToString([]byte("Loan:+1")), base64.RawURLEncoding.EncodeToString([]byte("Loan: 1")),
		base64.RawURLEncoding.EncodeToString([]byte("Loan:1:2")), base64.StdEncoding.EncodeToString([]byte("Loan:1")),
		"////////", "________", string(make([]byte, 65)),
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		k, id, err := ParseGlobalID(s)
		if err != nil {
			if !IsCode(err, CodeBadUserInput) {
				t.Fatalf("ParseGlobalID(%q): %v is not BAD_USER_INPUT", s, err)
			}
			return
		}
		if id <= 0 || !kinds[k] || len(s) > 64 {
			t.Fatalf("ParseGlobalID(%q) = %q, %d: accepted something invalid", s, k, id)
		}
		b, _ := base64.RawURLEncoding.DecodeString(s)
		if string(b) != string(k)+":"+strconv.FormatInt(id, 10) {
			t.Fatalf("ParseGlobalID(%q) = %q, %d but the ID decodes to %q", s, k, id, b)
		}
		k2, id2, err := ParseGlobalID(GlobalID(k, id))
		if err != nil || k2 != k || id2 != id {
			t.Fatalf("round trip of %q, %d: %q, %d, %v", k, id, k2, id2, err)
		}
		if id3, err := ParseIDOf(k, s); err != nil || id3 != id {
			t.Fatalf("ParseIDOf(%q, %q) = %d, %v", k, s, id3, err)
		}
	})
}

// FuzzGlobalIDRoundTrip encodes any kind and id and checks the decoding:
// positive ids of known kinds round trip, anything else is refused.
func FuzzGlobalIDRoundTrip(f *testing.F) {
	f.Add(uint8(0), int64(1))
	f.Add(uint8(3), int64(1<<63-1))
	f.Add(uint8(11), int64(0))
	f.Add(uint8(5), int64(-7))
	f.Fuzz(func(t *testing.T, ki uint8, id int64) {
		k := fuzzKinds[int(ki)%len(fuzzKinds)]
		s := GlobalID(k, id)
		k2, id2, err := ParseGlobalID(s)
		if id <= 0 {
			if err == nil {
				t.Fatalf("GlobalID(%q, %d) = %q was accepted", k, id, s)
			}
			return
		}
		if err != nil || k2 != k || id2 != id {
			t.Fatalf("GlobalID(%q, %d) = %q parses to %q, %d, %v", k, id, s, k2, id2, err)
		}
		if _, err := ParseIDOf(KindUser, s); (k == KindUser) != (err == nil) {
			t.Fatalf("ParseIDOf(User, %q): %v", s, err)
		} else if err != nil && !IsCode(err, CodeNotFound) {
			t.Fatalf("ParseIDOf(User, ID of a %s): %v, want NOT_FOUND", k, err)
		}
	})
}
