package lending

import (
	"fmt"
	"math/bits"
	"slices"
)

// SplitProRata divides total among parties in proportion to weights (e.g. a
// repayment among a loan's investors by amount invested) by the largest
// remainder method: each party first gets floor(total·w/Σw), then the
// centavos left over go one each to the parties with the largest fractional
// remainders, ties going to the smaller id (then to the earlier position).
// ids[k] identifies weights[k]; ids may be nil, in which case ties go to the
// earlier position.
//
// Guarantees: the result has len(weights) shares, they sum exactly to total,
// each is >= 0, each is within one centavo of its exact share total·w/Σw
// (floor or floor+1), a zero weight gets zero, and the result depends only on
// the inputs (not on map order or randomness). The arithmetic is exact (128-bit
// intermediates), so any Money values work.
//
// A total of 0 gives every party 0 (and no weights give an empty slice). It
// panics on inputs that are programming errors: a
// negative total or weight, len(ids) != len(weights) with ids non-nil, a
// positive total with no positive weight (nobody to give the money to: the
// caller must decide what happens to it), or weights summing past 2^64.
func SplitProRata(total Money, weights []Money, ids []int64) []Money {
	if ids != nil && len(ids) != len(weights) {
		panic(fmt.Sprintf("lending.SplitProRata: %d ids for %d weights", len(ids), len(weights)))
	}
	if total < 0 {
		panic(fmt.Sprintf("lending.SplitProRata: negative total %v", total))
	}
	var sum uint64
	for _, w := range weights {
		if w < 0 {
			panic(fmt.Sprintf("lending.SplitProRata: negative weight %v", w))
		}
		var carry uint64
		sum, carry = bits.Add64(sum, uint64(w), 0)
		if carry != 0 {
			panic("lending.SplitProRata: weights sum past 2^64")
		}
	}
	shares := make([]Money, len(weights))
	if total == 0 {
		return shares
	}
	if sum == 0 {
		panic(fmt.Sprintf("lending.SplitProRata: cannot split %v among zero weights", total))
	}
	rems := make([]uint64, len(weights))
	left := total
	for k, w := range weights {
		hi, lo := bits.Mul64(uint64(total), uint64(w))
		q, r := bits.Div64(hi, lo, sum) // q <= total because w <= sum: no overflow
		shares[k], rems[k] = Money(q), r
		left -= Money(q)
	}
	// 0 <= left < number of parties with a non-zero remainder.
	order := make([]int, len(weights))
	for k := range order {
		order[k] = k
	}
	slices.SortFunc(order, func(a, b int) int {
		if rems[a] != rems[b] {
			if rems[a] > rems[b] {
				return -1
			}
			return 1
		}
		if ids != nil && ids[a] != ids[b] {
			if ids[a] < ids[b] {
				return -1
			}
			return 1
		}
		return a - b
	})
	for _, k := range order[:left] {
		shares[k]++
	}
	return shares
}
