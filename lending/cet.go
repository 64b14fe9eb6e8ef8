package lending

import (
	"math"
	"time"
)

// LoanCET is a loan's CET: from its schedule once it has one; before
// disbursement, from the schedule it would get if disbursed at now (first
// installment a month later). NaN when undefined.
func LoanCET(l *Loan, schedule []*Installment, now time.Time) float64 {
	var sched []Installment
	if len(schedule) > 0 {
		sched = make([]Installment, len(schedule))
		for i, in := range schedule {
			sched[i] = *in
		}
	} else {
		first := time.Date(now.Year(), now.Month(), now.Day(), 0, 0, 0, 0, time.UTC).AddDate(0, 1, 0)
		sched = Schedule(l.Amount, l.AnnualRateBps, l.TermMonths, first)
	}
	if len(sched) == 0 {
		return math.NaN()
	}
	return CET(l.Amount, OriginationFee(l.Amount), sched)
}
