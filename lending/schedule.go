package lending

import (
	"fmt"
	"math"
	"math/big"
	"time"
)

// RoundHalfEven rounds r, an amount in centavos, to the nearest centavo,
// ties to the even centavo (banker's rounding), for positive and negative r
// alike. It panics if the result does not fit in a Money (int64): callers pass
// amounts that come from Money values, so that is a programming error.
func RoundHalfEven(r *big.Rat) Money {
	num, den := r.Num(), r.Denom()                      // den > 0
	q, m := new(big.Int).DivMod(num, den, new(big.Int)) // Euclidean: q = floor(r), 0 <= m < den
	switch new(big.Int).Lsh(m, 1).Cmp(den) {
	case 1:
		q.Add(q, big.NewInt(1))
	case 0:
		if q.Bit(0) == 1 {
			q.Add(q, big.NewInt(1))
		}
	}
	if !q.IsInt64() {
		panic(fmt.Sprintf("lending.RoundHalfEven: %s centavos overflows Money", r.FloatString(2)))
	}
	return Money(q.Int64())
}

// monthlyRate is the exact monthly rate of a nominal annual rate in basis
// points: bps / 10000 / 12.
func monthlyRate(annualRateBps int) *big.Rat {
	return big.NewRat(int64(annualRateBps), 120_000)
}

// Schedule is the Tabela Price (French amortization) of a loan of principal
// at annualRateBps nominal a year (2400 = 24%, monthly rate = annual / 12),
// repaid in n monthly installments, the first due on first.
//
// Guarantees, for principal > 0, annualRateBps >= 0 and n >= 1:
//   - n installments numbered 1..n, Status PENDING, Paid 0, DueDate = the
//     calendar date of first plus k months (k = 0..n-1) at midnight UTC
//     (time.AddDate normalization: Jan 31 + 1 month is Mar 3 or 2);
//   - the fixed payment PMT = P·i / (1 - (1+i)^-n) is computed exactly
//     (math/big) and rounded half-even to the centavo; each month's interest is
//     the outstanding balance times i, rounded half-even, and the principal is
//     PMT minus that interest; at zero rate PMT = P/n rounded half-even;
//   - the last installment's principal is whatever is still outstanding, so
//     the principals sum exactly to principal; its total may therefore differ
//     from PMT by the compounded rounding (at most Σ(1+i)^k centavos, k < n:
//     a few centavos at low rates, tens of centavos at 50% a year over 36
//     months), while all the others total exactly PMT;
//   - every Principal and Interest is >= 0. (For absurdly small loans, e.g. a
//     few centavos over many months, a month's principal is capped at what is
//     outstanding; then not all totals are equal. Loans within MinLoan..MaxLoan
//     never hit this.)
//
// Otherwise (principal <= 0, annualRateBps < 0 or n < 1) it returns nil.
func Schedule(principal Money, annualRateBps int, n int, first time.Time) []Installment {
	if principal <= 0 || annualRateBps < 0 || n < 1 {
		return nil
	}
	p := new(big.Rat).SetInt64(int64(principal))
	i := monthlyRate(annualRateBps)

	var pmt Money
	if i.Sign() == 0 {
		pmt = RoundHalfEven(new(big.Rat).Quo(p, new(big.Rat).SetInt64(int64(n))))
	} else {
		// PMT = P·i·(1+i)^n / ((1+i)^n - 1)
		onePlusI := new(big.Rat).Add(big.NewRat(1, 1), i)
		pow := big.NewRat(1, 1)
		for k := 0; k < n; k++ {
			pow.Mul(pow, onePlusI)
		}
		num := new(big.Rat).Mul(p, i)
		num.Mul(num, pow)
		den := new(big.Rat).Sub(pow, big.NewRat(1, 1))
		pmt = RoundHalfEven(num.Quo(num, den))
	}

	y, m, d := first.Date()
	start := time.Date(y, m, d, 0, 0, 0, 0, time.UTC)
	out := make([]Installment, n)
	outstanding := principal
	for k := 0; k < n; k++ {
		interest := RoundHalfEven(new(big.Rat).Mul(new(big.Rat).SetInt64(int64(outstanding)), i))
		var pr Money
		if k == n-1 {
			pr = outstanding
		} else {
			pr = min(max(pmt-interest, 0), outstanding)
		}
		outstanding -= pr
		out[k] = Installment{
			Number:    k + 1,
			DueDate:   start.AddDate(0, k, 0),
			Principal: pr,
			Interest:  interest,
			Status:    InstallmentPending,
		}
	}
	return out
}

// CET is the custo efetivo total of a loan as an effective annual rate (0.30
// = 30% a year): the monthly internal rate of return r of the borrower's cash
// flows (amount - upfrontFee received at month 0, then schedule[k].Total()
// paid at month k+1) compounded as (1+r)^12 - 1. It is a float64 because it is
// a rate shown to people, never money; it is accurate to about 1e-10.
//
// It returns NaN when the rate is undefined: an empty schedule, nothing
// received (amount - upfrontFee <= 0) or nothing repaid.
func CET(amount, upfrontFee Money, schedule []Installment) float64 {
	net := float64(amount - upfrontFee)
	if len(schedule) == 0 || net <= 0 {
		return math.NaN()
	}
	flows := make([]float64, len(schedule))
	var paid float64
	for k := range schedule {
		flows[k] = float64(schedule[k].Total())
		paid += flows[k]
	}
	if paid <= 0 {
		return math.NaN()
	}
	// npv(r) = net - Σ flow_k / (1+r)^(k+1) is increasing in r (flows >= 0).
	npv := func(r float64) float64 {
		v, lg := net, math.Log1p(r)
		for k, f := range flows {
			v -= f * math.Exp(-lg*float64(k+1))
		}
		return v
	}
	lo, hi := -0.99, 1.0
	if npv(lo) > 0 { // repaying less than a hundredth of what was received
		return math.NaN()
	}
	for npv(hi) < 0 {
		hi *= 2
		if hi > 1e6 {
			return math.NaN()
		}
	}
	for iter := 0; iter < 200 && hi-lo > 1e-15; iter++ {
		mid := (lo + hi) / 2
		if npv(mid) < 0 {
			lo = mid
		} else {
			hi = mid
		}
	}
	r := (lo + hi) / 2
	return math.Pow(1+r, 12) - 1
}
