package lending

import (
	"math"
	"math/big"
	"math/rand"
	"testing"
	"testing/quick"
	"time"
)

func TestRoundHalfEven(t *testing.T) {
	tests := []struct {
		num, den int64
		want     Money
	}{
		{0, 1, 0},
		{7, 1, 7},
		{5, 2, 2},   // 2.5 -> 2
		{7, 2, 4},   // 3.5 -> 4
		{-5, 2, -2}, // -2.5 -> -2
		{-7, 2, -4}, // -3.5 -> -4
		{251, 100, 3},
		{249, 100, 2},
		{-251, 100, -3},
		{-249, 100, -2},
		{1, 3, 0},
		{2, 3, 1},
		{-1, 3, 0},
		{-2, 3, -1},
		{1, 2, 0},
		{3, 2, 2},
		{-1, 2, 0},
		{math.MaxInt64, 1, math.MaxInt64},
	}
	for _, tt := range tests {
		if got := RoundHalfEven(big.NewRat(tt.num, tt.den)); got != tt.want {
			t.Errorf("RoundHalfEven(%d/%d) = %d, want %d", tt.num, tt.den, got, tt.want)
		}
	}
}

func TestRoundHalfEvenOverflowPanics(t *testing.T) {
	defer func() {
		if recover() == nil {
			t.Fatal("no panic")
		}
	}()
	r := new(big.Rat).SetInt64(math.MaxInt64)
	RoundHalfEven(r.Add(r, big.NewRat(1, 1)))
}

// Property: |RoundHalfEven(r) - r| <= 1/2, and an exact tie goes to the even
// neighbour. Together these define round-half-even.
func TestRoundHalfEvenProperty(t *testing.T) {
	f := func(num int64, den uint16) bool {
		r := big.NewRat(num/4, int64(den)+1) // /4 keeps clear of the int64 limits
		got := RoundHalfEven(r)
		dist := new(big.Rat).Sub(new(big.Rat).SetInt64(int64(got)), r)
		dist.Abs(dist)
		switch dist.Cmp(big.NewRat(1, 2)) {
		case 1:
			return false
		case 0:
			return got%2 == 0
		}
		return true
	}
	if err := quick.Check(f, &quick.Config{MaxCount: 5000}); err != nil {
		t.Error(err)
	}
	// Ties are rare among random inputs; check them directly.
	for v := int64(-1001); v <= 1001; v += 2 {
		got := RoundHalfEven(big.NewRat(v, 2))
		if got%2 != 0 || (Money(v)-2*got != 1 && Money(v)-2*got != -1) {
			t.Fatalf("RoundHalfEven(%d/2) = %d", v, got)
		}
	}
}

var day0 = time.Date(2025, 1, 15, 13, 45, 0, 0, time.FixedZone("BRT", -3*3600))

// A textbook Tabela Price: R$ 1.000,00 at 3% a month in 4 installments.
// PMT = 1000 · 0.03 / (1 - 1.03^-4) = 269.027... -> 269.03, worked by hand:
//
//	n  interest              principal  outstanding
//	1  1000.00·3% = 30.00    239.03     760.97
//	2   760.97·3% = 22.8291  246.20     514.77
//	3   514.77·3% = 15.4431  253.59     261.18
//	4   261.18·3% =  7.8354  261.18       0.00   (total 269.02: residue)
func TestScheduleTextbook(t *testing.T) {
	got := Schedule(100_000, 3600, 4, day0)
	want := []struct {
		principal, interest Money
		due                 string
	}{
		{23_903, 3_000, "2025-01-15"},
		{24_620, 2_283, "2025-02-15"},
		{25_359, 1_544, "2025-03-15"},
		{26_118, 784, "2025-04-15"},
	}
	if len(got) != len(want) {
		t.Fatalf("len = %d", len(got))
	}
	for k, w := range want {
		g := got[k]
		if g.Number != k+1 || g.Principal != w.principal || g.Interest != w.interest ||
			g.DueDate.Format(time.DateOnly) != w.due || g.DueDate.Location() != time.UTC ||
			g.DueDate.Hour() != 0 || g.Status != InstallmentPending || g.Paid != 0 {
			t.Errorf("installment %d = %+v, want %+v", k+1, g, w)
		}
	}
	if got[0].Total() != 26_903 || got[3].Total() != 26_902 {
		t.Errorf("totals %v %v", got[0].Total(), got[3].Total())
	}
}

func TestScheduleTable(t *testing.T) {
	tests := []struct {
		name      string
		p         Money
		bps, n    int
		pmt       Money // expected total of every installment but the last
		lastPrinc Money
		lastInt   Money
	}{
		// 100,000.00 at 12%/yr (1%/mo) over 12: PMT = 8884.8788... -> 8884.88
		{"1pct-12", 10_000_000, 1200, 12, 888_488, -1, -1},
		// zero rate: 1000.00 / 3 = 333.33 (x2) + 333.34
		{"zero-rate", 100_000, 0, 3, 33_333, 33_334, 0},
		// zero rate, rounding up: 500.02 / 3 = 166.673 -> 166.67, last 166.68
		{"zero-rate-2", 50_002, 0, 3, 16_667, 16_668, 0},
		// one installment: principal plus one month's interest
		{"n1", 50_000, 2400, 1, -1, 50_000, 1_000},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := Schedule(tt.p, tt.bps, tt.n, day0)
			checkSchedule(t, s, tt.p, tt.n)
			for _, in := range s[:len(s)-1] {
				if in.Total() != tt.pmt {
					t.Errorf("installment %d total %v, want %v", in.Number, in.Total(), tt.pmt)
				}
			}
			last := s[len(s)-1]
			if tt.lastPrinc >= 0 && (last.Principal != tt.lastPrinc || last.Interest != tt.lastInt) {
				t.Errorf("last = %v + %v, want %v + %v", last.Principal, last.Interest, tt.lastPrinc, tt.lastInt)
			}
		})
	}
}

func TestScheduleInvalid(t *testing.T) {
	for _, c := range []struct {
		p      Money
		bps, n int
	}{{0, 100, 3}, {-1, 100, 3}, {100, -1, 3}, {100, 100, 0}, {100, 100, -2}} {
		if s := Schedule(c.p, c.bps, c.n, day0); s != nil {
			t.Errorf("Schedule(%v, %d, %d) = %v, want nil", c.p, c.bps, c.n, s)
		}
	}
}

func TestScheduleDueDatesMonthEnd(t *testing.T) {
	s := Schedule(100_000, 1200, 3, time.Date(2025, 1, 31, 0, 0, 0, 0, time.UTC))
	want := []string{"2025-01-31", "2025-03-03", "2025-03-31"} // AddDate normalization
	for k, w := range want {
		if got := s[k].DueDate.Format(time.DateOnly); got != w {
			t.Errorf("due %d = %s, want %s", k+1, got, w)
		}
	}
}

// Tiny loans cannot break the invariants even where equal totals are
// impossible.
func TestScheduleTinyLoans(t *testing.T) {
	for p := Money(1); p <= 40; p++ {
		for n := 1; n <= 12; n++ {
			for _, bps := range []int{0, 100, 5000, 10000} {
				checkSchedule(t, Schedule(p, bps, n, day0), p, n)
			}
		}
	}
}

func checkSchedule(t *testing.T, s []Installment, p Money, n int) bool {
	t.Helper()
	if len(s) != n {
		t.Errorf("P=%v n=%d: len %d", p, n, len(s))
		return false
	}
	var sum Money
	for k, in := range s {
		if in.Number != k+1 || in.Principal < 0 || in.Interest < 0 {
			t.Errorf("P=%v n=%d: bad installment %+v", p, n, in)
			return false
		}
		sum += in.Principal
	}
	if sum != p {
		t.Errorf("P=%v n=%d: principals sum to %v", p, n, sum)
		return false
	}
	return true
}

// Property: for principal 500.00..100000.00, rate 0..10000 bps and n 1..36,
// principals sum exactly to the principal, nothing is negative and all but the
// last installment total the same.
func TestScheduleProperty(t *testing.T) {
	f := func(pRaw uint32, bpsRaw, nRaw uint16) bool {
		p := Money(50_000 + int64(pRaw)%(10_000_000-50_000+1))
		bps := int(bpsRaw) % 10_001
		n := 1 + int(nRaw)%36
		s := Schedule(p, bps, n, day0)
		if !checkSchedule(t, s, p, n) {
			return false
		}
		for _, in := range s[:n-1] {
			if in.Total() != s[0].Total() {
				t.Logf("P=%v bps=%d n=%d: totals differ: %v vs %v", p, bps, n, in.Total(), s[0].Total())
				return false
			}
		}
		// The residue on the last installment is the compounded rounding of
		// the payment and of each month's interest: at most 1 centavo a month,
		// carried at the loan's rate: Σ (1+i)^k, k < n.
		if n > 1 {
			i := float64(bps) / 120_000
			bound := Money(math.Ceil(float64(n)*math.Pow(1+i, float64(n)))) + 1
			if d := s[n-1].Total() - s[0].Total(); d < -bound || d > bound {
				t.Logf("P=%v bps=%d n=%d: last total off by %v", p, bps, n, d)
				return false
			}
		}
		return true
	}
	cfg := &quick.Config{MaxCount: 3000, Rand: rand.New(rand.NewSource(1))}
	if err := quick.Check(f, cfg); err != nil {
		t.Error(err)
	}
}

func FuzzSchedule(f *testing.F) {
	f.Add(int64(100_000), 3600, 4)
	f.Add(int64(50_000), 0, 36)
	f.Add(int64(10_000_000), 10_000, 36)
	f.Add(int64(1), 5, 7)
	f.Fuzz(func(t *testing.T, p int64, bps, n int) {
		p = 1 + abs64(p)%(10_000_000_000)
		bps = int(abs64(int64(bps)) % 100_000)
		n = 1 + int(abs64(int64(n))%120)
		checkSchedule(t, Schedule(Money(p), bps, n, day0), Money(p), n)
	})
}

func abs64(v int64) int64 {
	if v < 0 {
		if v == math.MinInt64 {
			return 0
		}
		return -v
	}
	return v
}

func TestCET(t *testing.T) {
	// No fee: the CET is the loan's own effective rate, (1+i)^12 - 1, up to
	// the centavo rounding of the schedule.
	s := Schedule(100_000, 3600, 4, day0)
	if got, want := CET(100_000, 0, s), math.Pow(1.03, 12)-1; math.Abs(got-want) > 1e-4 {
		t.Errorf("CET no fee = %v, want ~%v", got, want)
	}
	// Exact case: receive 1000, repay 1100 one month later: 10%/mo.
	one := []Installment{{Number: 1, Principal: 100_000, Interest: 10_000}}
	if got, want := CET(100_000, 0, one), math.Pow(1.1, 12)-1; math.Abs(got-want) > 1e-9 {
		t.Errorf("CET one month = %v, want %v", got, want)
	}
	// A fee makes it dearer.
	s2 := Schedule(1_000_000, 2400, 12, day0)
	base, withFee := CET(1_000_000, 0, s2), CET(1_000_000, FeeBps(1_000_000, OriginationFeeBps), s2)
	if math.Abs(base-(math.Pow(1.02, 12)-1)) > 1e-4 || withFee <= base {
		t.Errorf("CET base %v, with fee %v", base, withFee)
	}
	// Zero-rate loan without fee costs nothing.
	if got := CET(90_000, 0, Schedule(90_000, 0, 3, day0)); math.Abs(got) > 1e-9 {
		t.Errorf("CET zero rate = %v", got)
	}
	// Undefined.
	for _, c := range []struct {
		a, fee Money
		s      []Installment
	}{{100_000, 0, nil}, {100_000, 100_000, s}, {100_000, 0, []Installment{{Number: 1}}}} {
		if got := CET(c.a, c.fee, c.s); !math.IsNaN(got) {
			t.Errorf("CET(%v, %v, %d installments) = %v, want NaN", c.a, c.fee, len(c.s), got)
		}
	}
}

// Property: the CET grows with the rate and with the fee.
func TestCETMonotone(t *testing.T) {
	f := func(pRaw uint32, bpsRaw, nRaw uint8) bool {
		p := Money(50_000 + int64(pRaw)%9_950_000)
		bps := int(bpsRaw) * 30
		n := 1 + int(nRaw)%36
		a := CET(p, 0, Schedule(p, bps, n, day0))
		b := CET(p, 0, Schedule(p, bps+100, n, day0))
		c := CET(p, FeeBps(p, OriginationFeeBps), Schedule(p, bps, n, day0))
		return a < b && a < c && a > -1e-3
	}
	if err := quick.Check(f, &quick.Config{MaxCount: 500}); err != nil {
		t.Error(err)
	}
}
