package lending

import (
	"math"
	"time"
)

// CashFlow is one movement of money from an investor's point of view:
// negative is money invested, positive is money received.
type CashFlow struct {
	At     time.Time
	Amount Money
}

// MinReturnHistory is the shortest history for which NetAnnualizedReturn is
// defined; annualizing anything shorter says more about noise than returns.
const MinReturnHistory = 24 * time.Hour

// NetAnnualizedReturn is the investor's money-weighted return as an
// effective annual rate (0.1432 = 14.32% a year): the XIRR of flows, i.e. the
// x solving Σ amount / (1+x)^(years since the first flow) = 0, with 365-day
// years. The caller includes, as its last positive flow at now, the principal
// still outstanding (what the investor would get back if nothing else
// happened), and passes flows net of fees.
//
// It returns nil when the rate is undefined: no flows, less than
// MinReturnHistory between the first flow and now, no money invested, or no
// rate between -1+1e-13 and about 1e12 that solves the equation (a sign
// change is required; with several roots, one of them is returned). When
// money was invested and nothing at all came or is coming back (everything
// defaulted), it returns -1 (-100%). The result is a float (a rate, not
// money), accurate to about 1e-12 relative.
func NetAnnualizedReturn(flows []CashFlow, now time.Time) *float64 {
	if len(flows) == 0 {
		return nil
	}
	t0 := flows[0].At
	var in, out float64
	for _, f := range flows {
		if f.At.Before(t0) {
			t0 = f.At
		}
		if f.Amount < 0 {
			in -= float64(f.Amount)
		} else {
			out += float64(f.Amount)
		}
	}
	if now.Sub(t0) < MinReturnHistory || in == 0 {
		return nil
	}
	if out == 0 {
		r := -1.0
		return &r
	}
	years := make([]float64, len(flows))
	amts := make([]float64, len(flows))
	for k, f := range flows {
		years[k] = f.At.Sub(t0).Hours() / (365 * 24)
		amts[k] = float64(f.Amount) / in // scale-free
	}
	// Solve for y = ln(1+x): g(y) = Σ a_k·e^(-y·t_k) = 0. Each evaluation is
	// scaled by e^(-m), m the largest exponent, which keeps the sign and
	// never overflows, so the whole range y in [minLogRate, maxLogRate]
	// (x from -1+1e-13 to about 1e12) can be searched by bisection.
	g := func(y float64) float64 {
		m := math.Inf(-1)
		for _, t := range years {
			m = max(m, -y*t)
		}
		v := 0.0
		for k, a := range amts {
			v += a * math.Exp(-y*years[k]-m)
		}
		return v
	}
	const minLogRate, maxLogRate = -30.0, 27.6
	lo, hi := minLogRate, maxLogRate
	glo, ghi := g(lo), g(hi)
	if math.IsNaN(glo) || math.IsNaN(ghi) || (glo < 0) == (ghi < 0) && glo != 0 && ghi != 0 {
		return nil
	}
	for iter := 0; iter < 200; iter++ {
		mid := lo + (hi-lo)/2
		if mid <= lo || mid >= hi {
			break
		}
		gm := g(mid)
		if gm == 0 {
			lo, hi = mid, mid
			break
		}
		if (gm < 0) == (glo < 0) {
			lo, glo = mid, gm
		} else {
			hi = mid
		}
	}
	r := math.Expm1(lo + (hi-lo)/2)
	return &r
}
