package lending

// CreditHistory is what the platform knows of a borrower when scoring.
type CreditHistory struct {
	MonthlyIncome    Money
	OutstandingDebt  Money // principal still owed on the platform
	InstallmentsPaid int   // paid on time
	InstallmentsLate int   // ever late
	Defaults         int   // loans defaulted
}

// Score is the deterministic scorecard: 0..1000 from income, existing debt on
// the platform and payment history. Same history, same score.
func Score(h CreditHistory) int {
	s := 300
	// income: up to +400, saturating at R$ 20,000.00 a month
	inc := int64(h.MonthlyIncome)
	if inc > 2_000_000 {
		inc = 2_000_000
	}
	if inc > 0 {
		s += int(inc * 400 / 2_000_000)
	}
	// debt-to-income: up to -250 when debt is 12 months of income or more
	if h.MonthlyIncome > 0 && h.OutstandingDebt > 0 {
		ratio := int64(h.OutstandingDebt) * 250 / (int64(h.MonthlyIncome) * 12)
		if ratio > 250 {
			ratio = 250
		}
		s -= int(ratio)
	} else if h.OutstandingDebt > 0 {
		s -= 250
	}
	// history: +5 per on-time installment up to +300, -40 per late one, -300 per default
	paid := h.InstallmentsPaid * 5
	if paid > 300 {
		paid = 300
	}
	s += paid - 40*h.InstallmentsLate - 300*h.Defaults
	if s < 0 {
		s = 0
	}
	if s > 1000 {
		s = 1000
	}
	return s
}

// GradeFor maps a score to a risk grade.
func GradeFor(score int) RiskGrade {
	switch {
	case score >= 800:
		return GradeA
	case score >= 650:
		return GradeB
	case score >= 500:
		return GradeC
	case score >= 350:
		return GradeD
	default:
		return GradeE
	}
}

// RateBpsFor is the pricing table: the annual nominal rate, in basis points
// of a fraction (2400 = 24% a year), that a loan of each grade pays.
func RateBpsFor(g RiskGrade) int {
	switch g {
	case GradeA:
		return 1500
	case GradeB:
		return 2100
	case GradeC:
		return 2900
	case GradeD:
		return 3900
	default:
		return 5200
	}
}
