// Package lending is Mutuo's domain: money, identifiers, errors, entities and
// the rules of lending. It is pure: it performs no I/O and imports none of the
// other Mutuo packages.
package lending

import (
	"fmt"
	"strconv"
	"strings"
)

// Money is an amount of BRL in integer centavos. No float ever touches it.
type Money int64

// MaxMoneyInput is the largest amount accepted from a client: 1e13 reais.
const MaxMoneyInput = Money(1_000_000_000_000_000) // 1e13 * 100 centavos

// String formats m as a decimal with exactly two fraction digits ("1500.00",
// "-3.05").
func (m Money) String() string {
	sign := ""
	v := int64(m)
	if v < 0 {
		sign = "-"
		if v == -v { // math.MinInt64 has no positive counterpart
			return "-92233720368547758.08"
		}
		v = -v
	}
	return fmt.Sprintf("%s%d.%02d", sign, v/100, v%100)
}

// ParseMoney parses a client-supplied amount: digits with an optional '.'
// followed by one or two digits ("1500", "1500.5", "1500.50"). Negative
// numbers, signs, exponents, spaces, more than two decimals and amounts above
// 1e13 are refused with BAD_USER_INPUT.
func ParseMoney(s string) (Money, error) {
	bad := func() (Money, error) {
		return 0, Errorf(CodeBadUserInput, "invalid amount %q: use a positive decimal with at most two fraction digits, e.g. \"1500.50\"", truncate(s, 32))
	}
	if s == "" || len(s) > 20 {
		return bad()
	}
	intPart, frac, hasDot := strings.Cut(s, ".")
	if intPart == "" || !allDigits(intPart) || (hasDot && (len(frac) < 1 || len(frac) > 2 || !allDigits(frac))) {
		return bad()
	}
	if len(intPart) > 14 {
		return bad()
	}
	whole, err := strconv.ParseInt(intPart, 10, 64)
	if err != nil {
		return bad()
	}
	cents := int64(0)
	if hasDot {
		if len(frac) == 1 {
			frac += "0"
		}
		cents, _ = strconv.ParseInt(frac, 10, 64)
	}
	m := Money(whole*100 + cents)
	if m > MaxMoneyInput {
		return bad()
	}
	return m, nil
}

func allDigits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}
