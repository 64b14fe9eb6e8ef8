package lending

import (
	"fmt"
	"io"
	"strconv"
)

// Role is what a user may do on the platform.
type Role string

// Roles.
const (
	RoleInvestor Role = "INVESTOR"
	RoleBorrower Role = "BORROWER"
	RoleAdmin    Role = "ADMIN"
)

// RiskGrade is a borrower's (and a loan's) risk class, A best.
type RiskGrade string

// Grades.
const (
	GradeA RiskGrade = "A"
	GradeB RiskGrade = "B"
	GradeC RiskGrade = "C"
	GradeD RiskGrade = "D"
	GradeE RiskGrade = "E"
)

// LoanStatus is where a loan is in its life.
type LoanStatus string

// Loan statuses.
const (
	LoanFunding   LoanStatus = "FUNDING"
	LoanFunded    LoanStatus = "FUNDED"
	LoanActive    LoanStatus = "ACTIVE"
	LoanRepaid    LoanStatus = "REPAID"
	LoanDefaulted LoanStatus = "DEFAULTED"
	LoanCancelled LoanStatus = "CANCELLED"
)

// InvestmentStatus is where an investment is in its life.
type InvestmentStatus string

// Investment statuses.
const (
	InvestmentCommitted InvestmentStatus = "COMMITTED"
	InvestmentActive    InvestmentStatus = "ACTIVE"
	InvestmentClosed    InvestmentStatus = "CLOSED"
	InvestmentRefunded  InvestmentStatus = "REFUNDED"
)

// InstallmentStatus says whether an installment is paid.
type InstallmentStatus string

// Installment statuses.
const (
	InstallmentPending InstallmentStatus = "PENDING"
	InstallmentPaid    InstallmentStatus = "PAID"
	InstallmentLate    InstallmentStatus = "LATE"
)

// EntryKind classifies a ledger entry.
type EntryKind string

// Entry kinds.
const (
	EntryDeposit      EntryKind = "DEPOSIT"
	EntryWithdrawal   EntryKind = "WITHDRAWAL"
	EntryInvestment   EntryKind = "INVESTMENT"
	EntryDisbursement EntryKind = "DISBURSEMENT"
	EntryRepayment    EntryKind = "REPAYMENT"
	EntryFee          EntryKind = "FEE"
	EntryRefund       EntryKind = "REFUND"
)

// DepositStatus is the state of a Pix charge.
type DepositStatus string

// Deposit statuses.
const (
	DepositPending   DepositStatus = "PENDING"
	DepositCompleted DepositStatus = "COMPLETED"
	DepositExpired   DepositStatus = "EXPIRED"
)

// WithdrawalStatus is the state of a Pix payout.
type WithdrawalStatus string

// Withdrawal statuses.
const (
	WithdrawalPending   WithdrawalStatus = "PENDING"
	WithdrawalCompleted WithdrawalStatus = "COMPLETED"
	WithdrawalFailed    WithdrawalStatus = "FAILED"
)

// NotificationKind says what a notification is about.
type NotificationKind string

// Notification kinds.
const (
	NotifDepositConfirmed    NotificationKind = "DEPOSIT_CONFIRMED"
	NotifInvestmentConfirmed NotificationKind = "INVESTMENT_CONFIRMED"
	NotifLoanFunded          NotificationKind = "LOAN_FUNDED"
	NotifLoanCancelled       NotificationKind = "LOAN_CANCELLED"
	NotifLoanDisbursed       NotificationKind = "LOAN_DISBURSED"
	NotifRepaymentReceived   NotificationKind = "REPAYMENT_RECEIVED"
	NotifInstallmentDue      NotificationKind = "INSTALLMENT_DUE"
	NotifInstallmentLate     NotificationKind = "INSTALLMENT_LATE"
	NotifNewMessage          NotificationKind = "NEW_MESSAGE"
)

var enumValues = map[string]map[string]bool{
	"Role":              set(RoleInvestor, RoleBorrower, RoleAdmin),
	"RiskGrade":         set(GradeA, GradeB, GradeC, GradeD, GradeE),
	"LoanStatus":        set(LoanFunding, LoanFunded, LoanActive, LoanRepaid, LoanDefaulted, LoanCancelled),
	"InvestmentStatus":  set(InvestmentCommitted, InvestmentActive, InvestmentClosed, InvestmentRefunded),
	"InstallmentStatus": set(InstallmentPending, InstallmentPaid, InstallmentLate),
	"EntryKind":         set(EntryDeposit, EntryWithdrawal, EntryInvestment, EntryDisbursement, EntryRepayment, EntryFee, EntryRefund),
	"DepositStatus":     set(DepositPending, DepositCompleted, DepositExpired),
	"WithdrawalStatus":  set(WithdrawalPending, WithdrawalCompleted, WithdrawalFailed),
	"NotificationKind": set(NotifDepositConfirmed, NotifInvestmentConfirmed, NotifLoanFunded, NotifLoanCancelled,
		NotifLoanDisbursed, NotifRepaymentReceived, NotifInstallmentDue, NotifInstallmentLate, NotifNewMessage),
}

func set[T ~string](vs ...T) map[string]bool {
	m := make(map[string]bool, len(vs))
	for _, v := range vs {
		m[string(v)] = true
	}
	return m
}

// ValidEnum reports whether v is a value of the named enum.
func ValidEnum(enum, v string) bool { return enumValues[enum][v] }

func unmarshalEnum(enum string, v any) (string, error) {
	s, ok := v.(string)
	if !ok || !ValidEnum(enum, s) {
		return "", fmt.Errorf("%v is not a valid %s", v, enum)
	}
	return s, nil
}

func writeQuoted(w io.Writer, s string) { _, _ = io.WriteString(w, strconv.Quote(s)) }

// The GraphQL enum marshalers (gqlgen binds these types directly).

func (e Role) MarshalGQL(w io.Writer)              { writeQuoted(w, string(e)) }
func (e RiskGrade) MarshalGQL(w io.Writer)         { writeQuoted(w, string(e)) }
func (e LoanStatus) MarshalGQL(w io.Writer)        { writeQuoted(w, string(e)) }
func (e InvestmentStatus) MarshalGQL(w io.Writer)  { writeQuoted(w, string(e)) }
func (e InstallmentStatus) MarshalGQL(w io.Writer) { writeQuoted(w, string(e)) }
func (e EntryKind) MarshalGQL(w io.Writer)         { writeQuoted(w, string(e)) }
func (e DepositStatus) MarshalGQL(w io.Writer)     { writeQuoted(w, string(e)) }
func (e WithdrawalStatus) MarshalGQL(w io.Writer)  { writeQuoted(w, string(e)) }
func (e NotificationKind) MarshalGQL(w io.Writer)  { writeQuoted(w, string(e)) }

func (e *Role) UnmarshalGQL(v any) error {
	s, err := unmarshalEnum("Role", v)
	*e = Role(s)
	return err
}
func (e *RiskGrade) UnmarshalGQL(v any) error {
	s, err := unmarshalEnum("RiskGrade", v)
	*e = RiskGrade(s)
	return err
}
func (e *LoanStatus) UnmarshalGQL(v any) error {
	s, err := unmarshalEnum("LoanStatus", v)
	*e = LoanStatus(s)
	return err
}
func (e *InvestmentStatus) UnmarshalGQL(v any) error {
	s, err := unmarshalEnum("InvestmentStatus", v)
	*e = InvestmentStatus(s)
	return err
}
func (e *InstallmentStatus) UnmarshalGQL(v any) error {
	s, err := unmarshalEnum("InstallmentStatus", v)
	*e = InstallmentStatus(s)
	return err
}
func (e *EntryKind) UnmarshalGQL(v any) error {
	s, err := unmarshalEnum("EntryKind", v)
	*e = EntryKind(s)
	return err
}
func (e *DepositStatus) UnmarshalGQL(v any) error {
	s, err := unmarshalEnum("DepositStatus", v)
	*e = DepositStatus(s)
	return err
}
func (e *WithdrawalStatus) UnmarshalGQL(v any) error {
	s, err := unmarshalEnum("WithdrawalStatus", v)
	*e = WithdrawalStatus(s)
	return err
}
func (e *NotificationKind) UnmarshalGQL(v any) error {
	s, err := unmarshalEnum("NotificationKind", v)
	*e = NotificationKind(s)
	return err
}
