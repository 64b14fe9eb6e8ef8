package lending

import (
	"fmt"
	"time"
)

// The loan lifecycle rules the store applies inside its transactions.

// CheckInvestment decides whether amount may be committed to loan at now:
// INVALID_STATE unless the loan is FUNDING and now is before its funding
// deadline; BAD_USER_INPUT if amount is below MinInvestment or exceeds what
// remains to fund (Amount - FundedAmount). When less than MinInvestment
// remains, exactly the remainder may be invested, so no loan is left
// unfundable a few centavos short. The state is checked first, so
// investing in a funded or cancelled loan is INVALID_STATE whatever the
// amount.
func CheckInvestment(loan *Loan, amount Money, now time.Time) error {
	if loan.Status != LoanFunding {
		return Errorf(CodeInvalidState, "loan is %s, not open for investment", loan.Status)
	}
	if !now.Before(loan.FundingDeadline) {
		return Errorf(CodeInvalidState, "loan's funding deadline has passed")
	}
	remaining := loan.Amount - loan.FundedAmount
	if amount <= 0 || (amount < MinInvestment && amount != remaining) {
		return BadInput("the minimum investment is %v (or exactly what remains, when less), got %v", MinInvestment, amount)
	}
	if amount > remaining {
		return BadInput("investment of %v exceeds what remains to fund (%v)", amount, remaining)
	}
	return nil
}

// CheckRepayable decides whether a loan in status may be repaid: ACTIVE
// loans, and DEFAULTED ones too (a defaulted borrower paying late is a
// recovery that goes to the investors like any repayment). Anything else is
// INVALID_STATE.
func CheckRepayable(status LoanStatus) error {
	if status == LoanActive || status == LoanDefaulted {
		return nil
	}
	return Errorf(CodeInvalidState, "loan is %s and cannot be repaid", status)
}

// OriginationFee is the platform's fee on a loan's disbursement: OriginationFeeBps
// of the amount, half-even. The borrower receives amount minus it.
func OriginationFee(amount Money) Money { return FeeBps(amount, OriginationFeeBps) }

// RepaymentShare is what one investment receives from one repayment.
type RepaymentShare struct {
	InvestmentID int64
	Principal    Money
	Interest     Money
}

// Total is what the investment receives.
func (r RepaymentShare) Total() Money { return r.Principal + r.Interest }

// RepaymentSplit is how one borrower payment is divided between the platform
// and the loan's investors.
type RepaymentSplit struct {
	// Fee is the servicing fee: ServicingFeeBps of the whole payment,
	// half-even; FeeInterest + FeePrincipal = Fee.
	Fee          Money
	FeeInterest  Money
	FeePrincipal Money
	// Shares has one entry per investment, in the order given.
	Shares []RepaymentShare
}

// SplitRepayment divides a payment of interest and principal (as
// AllocatePayment allocated it) among a loan's investments.
//
// The servicing fee (ServicingFeeBps of interest + principal) is taken from
// the interest first and only the part of it that the interest cannot cover
// from the principal (which happens only for a payment that is mostly
// principal, e.g. the rest of an installment whose interest an earlier
// partial payment already covered). What is left of each is split by the
// largest remainder method, ties to the smaller investment id:
//   - interest pro rata to the amounts invested;
//   - principal pro rata to the principal each investment still has to
//     receive (Amount - ReceivedPrincipal). That is pro rata to the amounts
//     invested up to the centavos of earlier roundings, which it corrects:
//     an investment never receives more principal than it lent, and when the
//     last principal is paid every investment has received back its amount
//     (less its share of any fee taken from principal).
//
// Guarantees: Fee + Σ shares = interest + principal exactly; Σ share
// principal = principal - FeePrincipal and Σ share interest = interest -
// FeeInterest; every share >= 0; ReceivedPrincipal + share principal <=
// Amount. It returns an error (a programming error, not a user's) for
// negative amounts, no investments, or investments whose outstanding
// principal is less than the principal to split.
func SplitRepayment(interest, principal Money, investments []Investment) (RepaymentSplit, error) {
	if interest < 0 || principal < 0 {
		return RepaymentSplit{}, fmt.Errorf("split repayment: negative interest %v or principal %v", interest, principal)
	}
	if len(investments) == 0 {
		return RepaymentSplit{}, fmt.Errorf("split repayment: no investments to pay")
	}
	ids := make([]int64, len(investments))
	amounts := make([]Money, len(investments))
	outstanding := make([]Money, len(investments))
	var totalOutstanding Money
	for k, inv := range investments {
		o := inv.Amount - inv.ReceivedPrincipal
		if inv.Amount <= 0 || o < 0 {
			return RepaymentSplit{}, fmt.Errorf("split repayment: investment %d has amount %v and received principal %v",
				inv.ID, inv.Amount, inv.ReceivedPrincipal)
		}
		ids[k], amounts[k], outstanding[k] = inv.ID, inv.Amount, o
		totalOutstanding += o
	}
	sp := RepaymentSplit{Fee: FeeBps(interest+principal, ServicingFeeBps)}
	sp.FeeInterest = min(sp.Fee, interest)
	sp.FeePrincipal = sp.Fee - sp.FeeInterest
	netInterest, netPrincipal := interest-sp.FeeInterest, principal-sp.FeePrincipal
	if netPrincipal > totalOutstanding {
		return RepaymentSplit{}, fmt.Errorf("split repayment: principal %v exceeds the %v the investments are owed",
			netPrincipal, totalOutstanding)
	}
	var pShares []Money
	if netPrincipal > 0 {
		pShares = SplitProRata(netPrincipal, outstanding, ids)
	} else {
		pShares = make([]Money, len(investments))
	}
	iShares := SplitProRata(netInterest, amounts, ids) // every amount > 0: no panic
	sp.Shares = make([]RepaymentShare, len(investments))
	for k := range investments {
		sp.Shares[k] = RepaymentShare{InvestmentID: ids[k], Principal: pShares[k], Interest: iShares[k]}
	}
	return sp, nil
}
