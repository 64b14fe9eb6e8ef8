package store

import (
	"github.com/jackc/pgx/v5"

	"mutuo/lending"
)

// Column lists and scanners, one per entity, so every query reads the same
// shape.

const userCols = `u.id, u.name, u.email, u.roles, u.created_at`

// scanUser is in accounts.go.

const investorCols = `iv.id, iv.user_id, iv.display_name`

func scanInvestor(row pgx.Row) (*lending.Investor, error) {
	var i lending.Investor
	return &i, row.Scan(&i.ID, &i.UserID, &i.DisplayName)
}

const borrowerCols = `b.id, b.user_id, b.display_name, b.grade, b.credit_score, b.monthly_income`

func scanBorrower(row pgx.Row) (*lending.Borrower, error) {
	var b lending.Borrower
	return &b, row.Scan(&b.ID, &b.UserID, &b.DisplayName, &b.Grade, &b.CreditScore, &b.MonthlyIncome)
}

const loanCols = `l.id, l.borrower_id, l.amount, l.funded_amount, l.term_months, l.annual_rate_bps, l.grade,
	l.purpose, l.status, l.funding_deadline, l.disbursed_at, l.created_at, l.version`

func scanLoan(row pgx.Row) (*lending.Loan, error) {
	var l lending.Loan
	return &l, row.Scan(&l.ID, &l.BorrowerID, &l.Amount, &l.FundedAmount, &l.TermMonths, &l.AnnualRateBps, &l.Grade,
		&l.Purpose, &l.Status, &l.FundingDeadline, &l.DisbursedAt, &l.CreatedAt, &l.Version)
}

const investmentCols = `i.id, i.loan_id, i.investor_id, i.amount, i.status, i.received_principal, i.received_interest, i.created_at`

func scanInvestment(row pgx.Row) (*lending.Investment, error) {
	var i lending.Investment
	return &i, row.Scan(&i.ID, &i.LoanID, &i.InvestorID, &i.Amount, &i.Status, &i.ReceivedPrincipal, &i.ReceivedInterest, &i.CreatedAt)
}

const installmentCols = `n.loan_id, n.number, n.due_date, n.principal, n.interest, n.paid, n.status`

func scanInstallment(row pgx.Row) (*lending.Installment, error) {
	var n lending.Installment
	return &n, row.Scan(&n.LoanID, &n.Number, &n.DueDate, &n.Principal, &n.Interest, &n.Paid, &n.Status)
}

const walletCols = `w.id, coalesce(w.user_id, 0), w.currency, w.balance, w.held, w.version`

func scanWallet(row pgx.Row) (*lending.Wallet, error) {
	var w lending.Wallet
	return &w, row.Scan(&w.ID, &w.UserID, &w.Currency, &w.Balance, &w.Held, &w.Version)
}

const entryCols = `e.id, e.wallet_id, e.kind, e.amount, e.balance_after, e.description, e.loan_id, e.created_at`

func scanEntry(row pgx.Row) (*lending.LedgerEntry, error) {
	var e lending.LedgerEntry
	return &e, row.Scan(&e.ID, &e.WalletID, &e.Kind, &e.Amount, &e.BalanceAfter, &e.Description, &e.LoanID, &e.CreatedAt)
}

const depositCols = `d.id, d.user_id, d.amount, d.status, d.txid, d.br_code, d.expires_at, d.created_at`

func scanDeposit(row pgx.Row) (*lending.Deposit, error) {
	var d lending.Deposit
	return &d, row.Scan(&d.ID, &d.UserID, &d.Amount, &d.Status, &d.Txid, &d.BrCode, &d.ExpiresAt, &d.CreatedAt)
}

const withdrawalCols = `wd.id, wd.user_id, wd.amount, wd.pix_key, wd.status, wd.created_at`

func scanWithdrawal(row pgx.Row) (*lending.Withdrawal, error) {
	var w lending.Withdrawal
	return &w, row.Scan(&w.ID, &w.UserID, &w.Amount, &w.PixKey, &w.Status, &w.CreatedAt)
}

const chatCols = `c.id, c.loan_id, c.user_low, c.user_high, c.last_message_at, c.created_at`

func scanChat(row pgx.Row) (*lending.Chat, error) {
	var c lending.Chat
	var lo, hi int64
	if err := row.Scan(&c.ID, &c.LoanID, &lo, &hi, &c.LastMessageAt, &c.CreatedAt); err != nil {
		return nil, err
	}
	c.UserIDs = []int64{lo, hi}
	return &c, nil
}

const messageCols = `m.id, m.chat_id, m.sender_id, m.body, m.client_message_id, m.created_at, coalesce(m.pub_seq, 0)`

func scanMessage(row pgx.Row) (*lending.Message, error) {
	var m lending.Message
	return &m, row.Scan(&m.ID, &m.ChatID, &m.SenderID, &m.Body, &m.ClientMessageID, &m.CreatedAt, &m.PubSeq)
}

const notificationCols = `nt.id, nt.user_id, nt.kind, nt.title, nt.body, nt.loan_id, nt.read_at, nt.created_at, coalesce(nt.pub_seq, 0)`

func scanNotification(row pgx.Row) (*lending.Notification, error) {
	var n lending.Notification
	return &n, row.Scan(&n.ID, &n.UserID, &n.Kind, &n.Title, &n.Body, &n.LoanID, &n.ReadAt, &n.CreatedAt, &n.PubSeq)
}

func scanUserRow(row pgx.Row) (*lending.User, error) { return scanUser(row) }
