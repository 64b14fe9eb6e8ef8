package lending

import (
	"math"
	"math/big"
	"slices"
	"testing"
	"testing/quick"
)

func TestSplitProRata(t *testing.T) {
	tests := []struct {
		name    string
		total   Money
		weights []Money
		ids     []int64
		want    []Money
	}{
		{"exact", 1000, []Money{1, 1}, []int64{1, 2}, []Money{500, 500}},
		{"one centavo, tie to smaller id", 1, []Money{1, 1}, []int64{9, 3}, []Money{0, 1}},
		{"thirds", 100, []Money{1, 1, 1}, []int64{1, 2, 3}, []Money{34, 33, 33}},
		{"thirds, ids reversed", 100, []Money{1, 1, 1}, []int64{3, 2, 1}, []Money{33, 33, 34}},
		{"two left over", 200, []Money{1, 1, 1}, []int64{5, 6, 4}, []Money{67, 66, 67}},
		{"largest remainder wins over id", 10, []Money{3, 7}, []int64{1, 2}, []Money{3, 7}},
		// 101 * 1/6 = 16.83, 101 * 2/6 = 33.67, 101 * 3/6 = 50.5: floors 16+33+50 = 99,
		// remainders .83, .67, .5 -> +1 to the first two.
		{"remainders", 101, []Money{1, 2, 3}, []int64{1, 2, 3}, []Money{17, 34, 50}},
		{"zero weight gets zero", 5, []Money{0, 1, 1}, []int64{1, 2, 3}, []Money{0, 3, 2}},
		{"nil ids tie by position", 1, []Money{2, 2}, nil, []Money{1, 0}},
		{"zero total", 0, []Money{1, 2}, []int64{1, 2}, []Money{0, 0}},
		{"zero total, zero weights", 0, []Money{0, 0}, []int64{1, 2}, []Money{0, 0}},
		{"no parties, zero total", 0, nil, nil, []Money{}},
		{"single", 12345, []Money{7}, []int64{1}, []Money{12345}},
		{"huge values", math.MaxInt64, []Money{math.MaxInt64, math.MaxInt64}, []int64{1, 2},
			[]Money{math.MaxInt64/2 + 1, math.MaxInt64 / 2}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := SplitProRata(tt.total, tt.weights, tt.ids)
			if !slices.Equal(got, tt.want) {
				t.Errorf("SplitProRata(%v, %v, %v) = %v, want %v", tt.total, tt.weights, tt.ids, got, tt.want)
			}
		})
	}
}

func TestSplitProRataPanics(t *testing.T) {
	cases := []struct {
		name    string
		total   Money
		weights []Money
		ids     []int64
	}{
		{"no weights", 1, nil, nil},
		{"all zero", 1, []Money{0, 0}, []int64{1, 2}},
		{"negative total", -1, []Money{1}, []int64{1}},
		{"negative weight", 1, []Money{2, -1}, []int64{1, 2}},
		{"ids length", 1, []Money{1, 1}, []int64{1}},
		{"sum overflow", 1, []Money{math.MaxInt64, math.MaxInt64, math.MaxInt64}, nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			defer func() {
				if recover() == nil {
					t.Errorf("no panic")
				}
			}()
			SplitProRata(c.total, c.weights, c.ids)
		})
	}
}

// checkSplit verifies the guarantees against exact rational arithmetic.
func checkSplit(total Money, weights []Money, ids []int64, shares []Money) bool {
	if len(shares) != len(weights) {
		return false
	}
	sumW := new(big.Int)
	for _, w := range weights {
		sumW.Add(sumW, big.NewInt(int64(w)))
	}
	var sum Money
	for k, s := range shares {
		if s < 0 || (weights[k] == 0 && s != 0) {
			return false
		}
		sum += s
		exact := new(big.Rat).SetFrac(new(big.Int).Mul(big.NewInt(int64(total)), big.NewInt(int64(weights[k]))), sumW)
		d := new(big.Rat).Sub(new(big.Rat).SetInt64(int64(s)), exact)
		if d.Abs(d).Cmp(big.NewRat(1, 1)) >= 0 {
			return false
		}
	}
	return sum == total
}

// Property: shares sum exactly to total, each within a centavo of its exact
// value, and the result does not depend on the order the parties are listed.
func TestSplitProRataProperty(t *testing.T) {
	f := func(totalRaw uint32, raw []uint32, idSeed uint8) bool {
		if len(raw) == 0 {
			return true
		}
		total := Money(totalRaw)
		weights := make([]Money, len(raw))
		ids := make([]int64, len(raw))
		positive := false
		for k, r := range raw {
			weights[k] = Money(r % 1_000_000)
			if k%3 == 0 {
				weights[k] = Money(r % 7) // small weights, many ties and zeros
			}
			positive = positive || weights[k] > 0
			ids[k] = int64((k*7919 + int(idSeed)) % 1000) // duplicates possible
		}
		if !positive {
			weights[0] = 1
		}
		shares := SplitProRata(total, weights, ids)
		if !checkSplit(total, weights, ids, shares) {
			t.Logf("split(%v, %v, %v) = %v", total, weights, ids, shares)
			return false
		}
		// Order independence when ids are distinct.
		if len(raw) > 1 {
			distinct := make([]int64, len(raw))
			for k := range distinct {
				distinct[k] = int64(k * 3)
			}
			a := SplitProRata(total, weights, distinct)
			rw, ri := slices.Clone(weights), slices.Clone(distinct)
			slices.Reverse(rw)
			slices.Reverse(ri)
			b := SplitProRata(total, rw, ri)
			slices.Reverse(b)
			if !slices.Equal(a, b) {
				t.Logf("order dependent: %v vs %v", a, b)
				return false
			}
		}
		return true
	}
	if err := quick.Check(f, &quick.Config{MaxCount: 3000}); err != nil {
		t.Error(err)
	}
}

func FuzzSplitProRata(f *testing.F) {
	f.Add(int64(100), int64(1), int64(1), int64(1))
	f.Add(int64(math.MaxInt64), int64(math.MaxInt64), int64(1), int64(0))
	f.Add(int64(7), int64(0), int64(0), int64(3))
	f.Fuzz(func(t *testing.T, total, a, b, c int64) {
		total, a, b, c = abs64(total), abs64(a), abs64(b)/4, abs64(c)/4
		weights := []Money{Money(a / 2), Money(b), Money(c)}
		if weights[0]+weights[1]+weights[2] == 0 {
			weights[2] = 1
		}
		ids := []int64{3, 1, 2}
		if got := SplitProRata(Money(total), weights, ids); !checkSplit(Money(total), weights, ids, got) {
			t.Fatalf("split(%v, %v) = %v", total, weights, got)
		}
	})
}
