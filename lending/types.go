package lending

import "time"

// Viewer is who is asking: the authenticated user and their roles. The zero
// Viewer is anonymous.
type Viewer struct {
	UserID int64
	Roles  []Role
}

// Authenticated reports whether the viewer is a signed-in user.
func (v Viewer) Authenticated() bool { return v.UserID > 0 }

// Has reports whether the viewer has role r.
func (v Viewer) Has(r Role) bool {
	for _, x := range v.Roles {
		if x == r {
			return true
		}
	}
	return false
}

// IsAdmin reports whether the viewer is an admin.
func (v Viewer) IsAdmin() bool { return v.Has(RoleAdmin) }

// CanSeePrivate reports whether the viewer may see the private fields of the
// user with id owner: the user themself or an admin.
func (v Viewer) CanSeePrivate(owner int64) bool {
	return v.Authenticated() && (v.UserID == owner || v.IsAdmin())
}

// User is a person with an account.
type User struct {
	ID        int64
	Name      string
	Email     string
	Roles     []Role
	CreatedAt time.Time
}

// GID is the user's global ID.
func (u *User) GID() string { return GlobalID(KindUser, u.ID) }

// Investor is the investing side of a user.
type Investor struct {
	ID          int64
	UserID      int64
	DisplayName string
}

// GID is the investor's global ID.
func (i *Investor) GID() string { return GlobalID(KindInvestor, i.ID) }

// Borrower is the borrowing side of a user.
type Borrower struct {
	ID            int64
	UserID        int64
	DisplayName   string
	Grade         RiskGrade
	CreditScore   int
	MonthlyIncome Money
}

// GID is the borrower's global ID.
func (b *Borrower) GID() string { return GlobalID(KindBorrower, b.ID) }

// Loan is a borrower's request for money and, once funded, the debt.
type Loan struct {
	ID              int64
	BorrowerID      int64
	Amount          Money
	FundedAmount    Money
	TermMonths      int
	AnnualRateBps   int // 2400 = 0.2400 a year
	Grade           RiskGrade
	Purpose         string
	Status          LoanStatus
	FundingDeadline time.Time
	DisbursedAt     *time.Time
	CreatedAt       time.Time
	Version         int64
}

// GID is the loan's global ID.
func (l *Loan) GID() string { return GlobalID(KindLoan, l.ID) }

// AnnualRate is the nominal annual rate as a fraction (0.24 = 24%).
func (l *Loan) AnnualRate() float64 { return float64(l.AnnualRateBps) / 10000 }

// Investment is one investor's commitment to one loan.
type Investment struct {
	ID                int64
	LoanID            int64
	InvestorID        int64
	Amount            Money
	Status            InvestmentStatus
	ReceivedPrincipal Money
	ReceivedInterest  Money
	CreatedAt         time.Time
}

// GID is the investment's global ID.
func (i *Investment) GID() string { return GlobalID(KindInvestment, i.ID) }

// Installment is one line of a loan's schedule.
type Installment struct {
	LoanID    int64
	Number    int
	DueDate   time.Time // a date, at midnight UTC
	Principal Money
	Interest  Money
	Paid      Money
	Status    InstallmentStatus
}

// Total is what the installment is worth: principal plus interest.
func (i *Installment) Total() Money { return i.Principal + i.Interest }

// Wallet is a BRL account: a user's wallet, or one of the platform's.
type Wallet struct {
	ID       int64
	UserID   int64
	Currency string
	Balance  Money
	Held     Money
	Version  int
}

// GID is the wallet's global ID.
func (w *Wallet) GID() string { return GlobalID(KindWallet, w.ID) }

// Available is the balance minus holds.
func (w *Wallet) Available() Money { return w.Balance - w.Held }

// LedgerEntry is one immutable line of a wallet's history.
type LedgerEntry struct {
	ID           int64
	WalletID     int64
	Kind         EntryKind
	Amount       Money
	BalanceAfter Money
	Description  string
	LoanID       *int64
	CreatedAt    time.Time
}

// GID is the entry's global ID.
func (e *LedgerEntry) GID() string { return GlobalID(KindLedgerEntry, e.ID) }

// Deposit is a Pix charge that credits a wallet when paid.
type Deposit struct {
	ID        int64
	UserID    int64
	Amount    Money
	Status    DepositStatus
	Txid      string
	BrCode    string
	ExpiresAt time.Time
	CreatedAt time.Time
}

// GID is the deposit's global ID.
func (d *Deposit) GID() string { return GlobalID(KindDeposit, d.ID) }

// Withdrawal is a Pix payout from a wallet.
type Withdrawal struct {
	ID        int64
	UserID    int64
	Amount    Money
	PixKey    string
	Status    WithdrawalStatus
	CreatedAt time.Time
}

// GID is the withdrawal's global ID.
func (w *Withdrawal) GID() string { return GlobalID(KindWithdrawal, w.ID) }

// Chat is a conversation between two users, optionally about a loan.
type Chat struct {
	ID            int64
	LoanID        *int64
	UserIDs       []int64
	LastMessageAt time.Time
	CreatedAt     time.Time
}

// GID is the chat's global ID.
func (c *Chat) GID() string { return GlobalID(KindChat, c.ID) }

// Message is one chat message.
type Message struct {
	ID              int64
	ChatID          int64
	SenderID        int64
	Body            string
	ClientMessageID *string
	CreatedAt       time.Time
	// PubSeq is the message's place in the publication sequence (the
	// order the outbox relay published it in; 0 until it is numbered).
	PubSeq int64
}

// GID is the message's global ID.
func (m *Message) GID() string { return GlobalID(KindMessage, m.ID) }

// Notification tells a user something happened to their money or chats.
type Notification struct {
	ID        int64
	UserID    int64
	Kind      NotificationKind
	Title     string
	Body      string
	LoanID    *int64
	ReadAt    *time.Time
	CreatedAt time.Time
	// PubSeq: see Message.PubSeq.
	PubSeq int64
}

// GID is the notification's global ID.
func (n *Notification) GID() string { return GlobalID(KindNotification, n.ID) }

// Portfolio is an investor's figures.
type Portfolio struct {
	Invested             Money
	OutstandingPrincipal Money
	ReceivedPrincipal    Money
	ReceivedInterest     Money
	ActiveInvestments    int
	NetAnnualizedReturn  *float64
}
