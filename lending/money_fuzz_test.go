package lending

import (
	"math/big"
	"regexp"
	"strings"
	"testing"
)

// moneyGrammar is what ParseMoney documents: digits, then optionally a '.'
// and one or two digits. Nothing else (no sign, exponent, space, comma).
var moneyGrammar = regexp.MustCompile(`^([0-9]+)(?:\.([0-9]{1,2}))?$`)

// FuzzParseMoney checks, for any input, that ParseMoney never panics, that
// it accepts exactly the documented grammar up to MaxMoneyInput (an oracle
// in math/big decides), that an accepted value re-formats and re-parses to
// itself, and that every refusal is BAD_USER_INPUT with a bounded message.
//
//	go test -run '^$' -fuzz FuzzParseMoney -fuzztime 20s ./lending
func FuzzParseMoney(f *testing.F) {
	for _, s := range []string{
		"0", "1", "1500", "1500.5", "1500.50", "0.01", "00001.10", "10000000000000", "10000000000000.00",
		"10000000000000.01", "99999999999999.99", "100000000000000", "9223372036854775807", "18446744073709551616",
		"", ".", "1.", ".5", "1.234", "1.2.3", "-1", "-0.01", "+1", "1e3", "1E3", "1e-2", "0x10", " 1", "1 ", "1,50",
		"1_000", "١٢", "NaN", "Inf", "1.5\x00", strings.Repeat("9", 25), "0.0", "0.00", strings.Repeat("\xfd", 40),
	} {
		f.Add(s)
	}
	max := big.NewInt(int64(MaxMoneyInput))
	f.Fuzz(func(t *testing.T, s string) {
		m, err := ParseMoney(s)

		// the oracle
		want, valid := (*big.Int)(nil), false
		if g := moneyGrammar.FindStringSubmatch(s); g != nil && len(g[1]) <= 14 {
			frac := g[2]
			for len(frac) < 2 {
				frac += "0"
			}
			v, _ := new(big.Int).SetString(g[1]+frac, 10)
			if v.Cmp(max) <= 0 {
				want, valid = v, true
			}
		}

		if err != nil {
			if valid {
				t.Fatalf("ParseMoney(%q) refused a valid amount (%s centavos): %v", s, want, err)
			}
			e, ok := AsError(err)
			if !ok || e.Code != CodeBadUserInput {
				t.Fatalf("ParseMoney(%q): error %v is not BAD_USER_INPUT", s, err)
			}
			// the message quotes at most 32 bytes of the input (%q: up to 4
			// characters a byte)
			if len(e.Message) > 300 {
				t.Fatalf("ParseMoney(%q): message of %d bytes echoes the input unbounded", s, len(e.Message))
			}
			return
		}
		if !valid {
			t.Fatalf("ParseMoney(%q) = %d, want a refusal (negative, exponent, >2 decimals, too large or malformed)", s, m)
		}
		if big.NewInt(int64(m)).Cmp(want) != 0 {
			t.Fatalf("ParseMoney(%q) = %d centavos, want %s", s, m, want)
		}
		if m < 0 || m > MaxMoneyInput {
			t.Fatalf("ParseMoney(%q) = %d: out of range", s, m)
		}
		if strings.ContainsAny(s, "-+eE ") {
			t.Fatalf("ParseMoney(%q) accepted a sign, exponent or space", s)
		}
		// round trip: the canonical form parses to the same value and is
		// itself canonical
		f := m.String()
		m2, err := ParseMoney(f)
		if err != nil || m2 != m {
			t.Fatalf("ParseMoney(%q) = %d, formatted %q, re-parsed %d, %v", s, m, f, m2, err)
		}
		if f2 := m2.String(); f2 != f {
			t.Fatalf("%q re-formats as %q", f, f2)
		}
		if i := strings.IndexByte(f, '.'); i < 0 || len(f)-i-1 != 2 {
			t.Fatalf("Money(%d).String() = %q: not two fraction digits", m, f)
		}
	})
}

// FuzzMoneyString checks that every Money value in the accepted range
// formats to a string that ParseMoney reads back, and that String never
// panics on any int64 (negative values and math.MinInt64 included).
func FuzzMoneyString(f *testing.F) {
	for _, v := range []int64{0, 1, 5, 99, 100, 150050, int64(MaxMoneyInput), int64(MaxMoneyInput) + 1, -1, -305, -1 << 63, 1<<63 - 1} {
		f.Add(v)
	}
	f.Fuzz(func(t *testing.T, v int64) {
		s := Money(v).String()
		m, err := ParseMoney(s)
		switch {
		case v >= 0 && v <= int64(MaxMoneyInput):
			if err != nil || int64(m) != v {
				t.Fatalf("Money(%d).String() = %q re-parses to %d, %v", v, s, m, err)
			}
		case err == nil:
			t.Fatalf("Money(%d).String() = %q was accepted as input (%d)", v, s, m)
		}
	})
}
