package lending

import (
	"math/big"
	"slices"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"
)

// The platform's money rules.
const (
	// MinLoan and MaxLoan bound a loan request's amount (R$ 500,00 to
	// R$ 100.000,00), inclusive.
	MinLoan Money = 500_00
	MaxLoan Money = 100_000_00
	// MinTermMonths and MaxTermMonths bound a loan's term, inclusive.
	MinTermMonths = 3
	MaxTermMonths = 36
	// MinPurposeRunes and MaxPurposeRunes bound a loan's purpose, in
	// characters (runes) after trimming surrounding white space, inclusive.
	MinPurposeRunes = 3
	MaxPurposeRunes = 500
	// MinInvestment is the smallest amount an investor may commit to a loan.
	MinInvestment Money = 25_00
	// OriginationFeeBps is the platform's fee on disbursement, in basis points
	// of the loan amount (2%), deducted from what the borrower receives.
	OriginationFeeBps = 200
	// ServicingFeeBps is the platform's servicing fee on repayments
	// distributed to investors, in basis points (1%).
	ServicingFeeBps = 100
	// FundingWindow is how long a loan stays open for investment before it is
	// cancelled and the holds released.
	FundingWindow = 14 * 24 * time.Hour
	// DefaultDepositExpiry is how long a Pix charge can be paid.
	DefaultDepositExpiry = time.Hour
	// MaxIdempotencyKeyLen is the longest idempotency key accepted.
	MaxIdempotencyKeyLen = 64
)

// ValidateLoanRequest checks a borrower's loan request against the rules:
// amount within MinLoan..MaxLoan, term within MinTermMonths..MaxTermMonths
// and a purpose of MinPurposeRunes..MaxPurposeRunes characters after
// trimming, valid UTF-8, with no control characters other than newline and
// tab. It returns the trimmed purpose, or BAD_USER_INPUT naming the first
// rule broken.
func ValidateLoanRequest(amount Money, term int, purpose string) (string, error) {
	if amount < MinLoan || amount > MaxLoan {
		return "", BadInput("amount must be between %v and %v, got %v", MinLoan, MaxLoan, amount)
	}
	if term < MinTermMonths || term > MaxTermMonths {
		return "", BadInput("termMonths must be between %d and %d, got %d", MinTermMonths, MaxTermMonths, term)
	}
	if !utf8.ValidString(purpose) {
		return "", BadInput("purpose is not valid UTF-8 text")
	}
	p := strings.TrimSpace(purpose)
	if n := utf8.RuneCountInString(p); n < MinPurposeRunes || n > MaxPurposeRunes {
		return "", BadInput("purpose must be %d to %d characters, got %d", MinPurposeRunes, MaxPurposeRunes, n)
	}
	if strings.ContainsFunc(p, func(r rune) bool { return unicode.IsControl(r) && r != '\n' && r != '\t' }) {
		return "", BadInput("purpose must not contain control characters")
	}
	return p, nil
}

// ValidateIdempotencyKey accepts 1 to MaxIdempotencyKeyLen characters of
// [A-Za-z0-9_-] and returns BAD_USER_INPUT for anything else.
func ValidateIdempotencyKey(k string) error {
	if len(k) < 1 || len(k) > MaxIdempotencyKeyLen {
		return BadInput("idempotencyKey must be 1 to %d characters", MaxIdempotencyKeyLen)
	}
	for i := 0; i < len(k); i++ {
		c := k[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '_' || c == '-') {
			return BadInput("idempotencyKey may contain only letters, digits, '_' and '-'")
		}
	}
	return nil
}

// FeeBps is bps basis points of amount (amount·bps/10000), rounded half-even
// to the centavo. The arithmetic is exact; it panics only if the result does
// not fit in a Money.
func FeeBps(amount Money, bps int) Money {
	n := new(big.Int).Mul(big.NewInt(int64(amount)), big.NewInt(int64(bps)))
	return RoundHalfEven(new(big.Rat).SetFrac(n, big.NewInt(10_000)))
}

// InstallmentAllocation is how much of one payment went to one installment's
// interest and principal.
type InstallmentAllocation struct {
	Number    int
	Interest  Money
	Principal Money
}

// AllocatePayment distributes a borrower's payment over a loan's schedule:
// the oldest installment not fully paid first (lowest Number), and within an
// installment interest before principal. What an installment has already
// been paid (Paid) counts against its interest first. It does not modify
// installments.
//
// It returns one allocation per installment that receives money, in Number
// order, whose amounts are all positive and sum exactly to amount. BAD_USER_INPUT
// if amount <= 0 or exceeds what is still owed (so an overpayment is refused
// whole, never partly applied).
func AllocatePayment(installments []Installment, amount Money) ([]InstallmentAllocation, error) {
	if amount <= 0 {
		return nil, BadInput("payment must be positive, got %v", amount)
	}
	sorted := slices.Clone(installments)
	slices.SortStableFunc(sorted, func(a, b Installment) int { return a.Number - b.Number })

	type owed struct {
		number              int
		interest, principal Money
	}
	var dues []owed
	var total Money
	for _, in := range sorted {
		interest, principal, paid := max(in.Interest, 0), max(in.Principal, 0), max(in.Paid, 0)
		paidInterest := min(paid, interest)
		paidPrincipal := min(paid-paidInterest, principal)
		o := owed{in.Number, interest - paidInterest, principal - paidPrincipal}
		if o.interest > 0 || o.principal > 0 {
			dues = append(dues, o)
			total += o.interest + o.principal
		}
	}
	if amount > total {
		return nil, BadInput("payment of %v exceeds the %v still owed", amount, total)
	}
	var allocs []InstallmentAllocation
	left := amount
	for _, o := range dues {
		if left == 0 {
			break
		}
		a := InstallmentAllocation{Number: o.number}
		a.Interest = min(left, o.interest)
		left -= a.Interest
		a.Principal = min(left, o.principal)
		left -= a.Principal
		allocs = append(allocs, a)
	}
	return allocs, nil
}
