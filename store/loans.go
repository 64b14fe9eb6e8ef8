package store

// The loan lifecycle: requestLoan, invest (and, when the last centavo is
// committed, funding and disbursement in the same transaction) and repayLoan.
//
// Lock order, followed by every use case here and by the scheduler, so that
// concurrent transactions never deadlock: the idempotency key row (claimKey)
// first; then the borrower row (requestLoan only); then at most one loan row;
// then that loan's installments and investments; then wallets, all of them in
// one lockWallets call in ascending id order before any wallet is written.
// Loan rows are locked FOR NO KEY UPDATE rather than FOR UPDATE: writers of
// the loan still exclude each other exactly as with FOR UPDATE, but rows that
// merely reference the loan (notifications, ledger entries, chats) can be
// inserted meanwhile, since their foreign-key checks take KEY SHARE locks that
// NO KEY UPDATE does not block.
//
// Money during funding (TigerBeetle/Blnk-style holds): an investment holds
// its amount in the investor's own wallet (held rises, balance does not) and
// nothing moves to the loan's escrow until the loan is fully committed. Then,
// in one transaction, every hold is POSTED as an investor→escrow transfer and
// the escrow pays out at once (borrower, origination fee), so the escrow
// balance is zero at every commit. The issue's "escrow equals committed
// investments until disbursement" therefore reads, for this design: for a
// FUNDING loan, the HELD holds of its investments sum to loans.funded_amount,
// which equals the sum of its COMMITTED investments; and every escrow wallet's
// balance is 0 outside a disbursement or repayment transaction. CheckInvariants
// asserts exactly that.

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"mutuo/lending"
)

// The idempotency operations of this file.
const (
	opRequestLoan = "requestLoan"
	opInvest      = "invest"
	opRepayLoan   = "repayLoan"
)

// RequestLoanInput is a borrower's loan request as the client sent it.
type RequestLoanInput struct {
	Amount     lending.Money
	TermMonths int
	Purpose    string
}

// Repayment is the result of repayLoan: the loan after the payment, what was
// paid, and the installments the payment settled or reduced (in order).
type Repayment struct {
	Loan         *lending.Loan
	Amount       lending.Money
	Installments []*lending.Installment
}

// RequestLoan lists a new loan for the viewer, a borrower, in one
// transaction: it re-scores the borrower from what the platform knows of
// them (income, principal still owed on ACTIVE, FUNDED and DEFAULTED loans,
// installments paid on time and late, defaults), stores the new score and
// grade, prices the loan from the grade (lending.RateBpsFor) and inserts it
// FUNDING with a funding deadline of now + lending.FundingWindow, together
// with its escrow wallet and a loan event in the outbox.
//
// Errors: FORBIDDEN unless the viewer is a borrower; BAD_USER_INPUT for an
// amount, term, purpose or idempotency key the rules refuse; CONFLICT for an
// idempotency key already used with other arguments. The same key with the
// same arguments returns the loan the first call created and creates nothing.
func (s *Store) RequestLoan(ctx context.Context, v lending.Viewer, in RequestLoanInput, idemKey string, now time.Time) (*lending.Loan, error) {
	if !v.Authenticated() {
		return nil, lending.ErrUnauthenticated
	}
	if !v.Has(lending.RoleBorrower) {
		return nil, lending.Forbidden("only borrowers may request loans")
	}
	purpose, err := lending.ValidateLoanRequest(in.Amount, in.TermMonths, in.Purpose)
	if err != nil {
		return nil, err
	}
	hash := RequestHash(opRequestLoan, in.Amount, in.TermMonths, in.Purpose)
	var out *lending.Loan
	err = s.inTx(ctx, func(tx pgx.Tx) error {
		rid, found, err := claimKey(ctx, tx, v.UserID, idemKey, opRequestLoan, hash)
		if err != nil {
			return err
		}
		if found {
			out, err = one(ctx, tx, "Loan", scanLoan, `SELECT `+loanCols+` FROM loans l WHERE l.id = $1`, rid)
			return err
		}
		var borrowerID int64
		var income lending.Money
		err = tx.QueryRow(ctx, `SELECT id, monthly_income FROM borrowers WHERE user_id = $1 FOR UPDATE`, v.UserID).Scan(&borrowerID, &income)
		if errors.Is(err, pgx.ErrNoRows) {
			return lending.Forbidden("only borrowers may request loans")
		}
		if err != nil {
			return fmt.Errorf("lock borrower of user %d: %w", v.UserID, err)
		}
		h, err := creditHistory(ctx, tx, borrowerID, income)
		if err != nil {
			return err
		}
		score := lending.Score(h)
		grade := lending.GradeFor(score)
		tag, err := tx.Exec(ctx, `UPDATE borrowers SET credit_score = $2, grade = $3 WHERE id = $1`, borrowerID, score, string(grade))
		if err != nil {
			return fmt.Errorf("update score of borrower %d: %w", borrowerID, err)
		}
		if err := mustOne(tag, "update borrower score"); err != nil {
			return err
		}
		out, err = scanLoan(tx.QueryRow(ctx, `
			INSERT INTO loans AS l (borrower_id, amount, term_months, annual_rate_bps, grade, purpose, status,
				funding_deadline, created_at, updated_at)
			VALUES ($1, $2, $3, $4, $5, $6, 'FUNDING', $7, $8, $8)
			RETURNING `+loanCols,
			borrowerID, in.Amount, in.TermMonths, lending.RateBpsFor(grade), string(grade), purpose,
			now.Add(lending.FundingWindow), now))
		if err != nil {
			return fmt.Errorf("insert loan: %w", err)
		}
		if _, err := tx.Exec(ctx, `INSERT INTO wallets (kind, loan_id) VALUES ('LOAN_ESCROW', $1)`, out.ID); err != nil {
			return fmt.Errorf("insert escrow wallet of loan %d: %w", out.ID, err)
		}
		if err := emitLoan(ctx, tx, out.ID, out.Status); err != nil {
			return err
		}
		return finishKey(ctx, tx, v.UserID, idemKey, out.ID)
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// creditHistory reads what the scorecard needs about a borrower. Principal
// still owed is each installment's principal less what was paid of it
// (payments cover interest first). An installment counts as paid on time if
// it was PAID by the end of its due date (UTC) and never marked late, and as
// late if it is LATE, was ever marked late, or was paid after its due date.
func creditHistory(ctx context.Context, q querier, borrowerID int64, income lending.Money) (lending.CreditHistory, error) {
	h := lending.CreditHistory{MonthlyIncome: income}
	err := q.QueryRow(ctx, `
		WITH n AS (
			SELECT n.*, l.status AS loan_status, (n.due_date + 1)::timestamp AT TIME ZONE 'UTC' AS due_end
			FROM installments n JOIN loans l ON l.id = n.loan_id
			WHERE l.borrower_id = $1
		)
		SELECT
			coalesce((SELECT sum(n.principal - least(n.principal, greatest(0, n.paid - n.interest)))
				FROM n WHERE n.loan_id IN (SELECT id FROM loans WHERE borrower_id = $1 AND status IN ('ACTIVE','FUNDED','DEFAULTED'))), 0)
			+ coalesce((SELECT sum(amount) FROM loans WHERE borrower_id = $1 AND status = 'FUNDED'), 0),
			(SELECT count(*) FROM n WHERE n.status = 'PAID' AND n.late_at IS NULL AND n.paid_at < n.due_end),
			(SELECT count(*) FROM n WHERE n.status = 'LATE' OR n.late_at IS NOT NULL OR (n.status = 'PAID' AND n.paid_at >= n.due_end)),
			(SELECT count(*) FROM loans WHERE borrower_id = $1 AND status = 'DEFAULTED')`,
		borrowerID).Scan(&h.OutstandingDebt, &h.InstallmentsPaid, &h.InstallmentsLate, &h.Defaults)
	if err != nil {
		return h, fmt.Errorf("credit history of borrower %d: %w", borrowerID, err)
	}
	return h, nil
}

// lockedLoan is a loan row locked by this transaction, with what the use
// cases need next to it.
type lockedLoan struct {
	*lending.Loan
	BorrowerUserID int64
	EscrowID       int64
}

// withExtra scans a scanner's columns and then extra trailing columns.
type withExtra struct {
	row   pgx.Row
	extra []any
}

func (w withExtra) Scan(dest ...any) error { return w.row.Scan(append(dest, w.extra...)...) }

// lockLoan locks the loan row FOR NO KEY UPDATE (see the file comment).
// NOT_FOUND if there is no such loan. With skipLocked, a loan another
// transaction holds is reported as (nil, nil).
func lockLoan(ctx context.Context, tx pgx.Tx, loanID int64, skipLocked bool) (*lockedLoan, error) {
	sql := `SELECT ` + loanCols + `, b.user_id, w.id FROM loans l
		JOIN borrowers b ON b.id = l.borrower_id
		JOIN wallets w ON w.loan_id = l.id
		WHERE l.id = $1 FOR NO KEY UPDATE OF l`
	if skipLocked {
		sql += ` SKIP LOCKED`
	}
	var ll lockedLoan
	var err error
	ll.Loan, err = scanLoan(withExtra{tx.QueryRow(ctx, sql, loanID), []any{&ll.BorrowerUserID, &ll.EscrowID}})
	if errors.Is(err, pgx.ErrNoRows) {
		if skipLocked {
			return nil, nil
		}
		return nil, lending.NotFound("Loan")
	}
	if err != nil {
		return nil, fmt.Errorf("lock loan %d: %w", loanID, err)
	}
	return &ll, nil
}

// setLoanStatus moves a locked loan from one status to another, bumping its
// version, and emits the loan event.
func setLoanStatus(ctx context.Context, tx pgx.Tx, loanID int64, from, to lending.LoanStatus, now time.Time) (*lending.Loan, error) {
	l, err := scanLoan(tx.QueryRow(ctx, `
		UPDATE loans AS l SET status = $3, version = l.version + 1, updated_at = $4,
			disbursed_at = CASE WHEN $3 = 'ACTIVE' AND l.disbursed_at IS NULL THEN $4 ELSE l.disbursed_at END
		WHERE l.id = $1 AND l.status = $2 RETURNING `+loanCols, loanID, string(from), string(to), now))
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, fmt.Errorf("loan %d: not %s", loanID, from)
	}
	if err != nil {
		return nil, fmt.Errorf("loan %d %s -> %s: %w", loanID, from, to, err)
	}
	return l, emitLoan(ctx, tx, loanID, to)
}

// Invest commits amount of the viewer's money to a FUNDING loan, in one
// transaction. The loan row is locked first, so investors racing for the same
// loan serialize and can never fund more than its amount. The amount is held
// in the investor's wallet (available drops, balance does not), the
// investment is COMMITTED, the loan's funded amount grows, and the investor
// gets an INVESTMENT_CONFIRMED notification. When this investment commits the
// last centavo, the same transaction funds and disburses the loan: every hold
// is posted (investor → escrow), the escrow pays the borrower the amount less
// the origination fee and the fee to the platform, the Tabela Price schedule
// is fixed from now (first installment one month later), the investments and
// the loan become ACTIVE, and investors are told LOAN_FUNDED and the borrower
// LOAN_DISBURSED. It returns the investment as it stands after the
// transaction (ACTIVE if it completed the funding).
//
// Errors: FORBIDDEN unless the viewer is an investor, or if the loan is their
// own; NOT_FOUND for an unknown loan; BAD_USER_INPUT for less than
// lending.MinInvestment, more than remains to fund, or a bad idempotency key;
// INVALID_STATE if the loan is not FUNDING or its deadline has passed;
// INSUFFICIENT_FUNDS if the wallet's available money is short; CONFLICT for
// a key already used with other arguments. The same key with the same
// arguments returns the first investment and moves nothing.
func (s *Store) Invest(ctx context.Context, v lending.Viewer, loanID int64, amount lending.Money, idemKey string, now time.Time) (*lending.Investment, error) {
	if !v.Authenticated() {
		return nil, lending.ErrUnauthenticated
	}
	if !v.Has(lending.RoleInvestor) {
		return nil, lending.Forbidden("only investors may invest")
	}
	if amount <= 0 {
		return nil, lending.BadInput("the amount must be positive, got %v", amount)
	}
	// the minimum (or the exact remainder, when less remains) is checked by
	// lending.CheckInvestment under the loan's lock
	hash := RequestHash(opInvest, loanID, amount)
	var out *lending.Investment
	err := s.inTx(ctx, func(tx pgx.Tx) error {
		rid, found, err := claimKey(ctx, tx, v.UserID, idemKey, opInvest, hash)
		if err != nil {
			return err
		}
		if found {
			out, err = investmentByID(ctx, tx, rid)
			return err
		}
		// the investor and their wallet in one round trip, before the loan's
		// lock (neither read locks anything)
		var investorID, walletID int64
		err = tx.QueryRow(ctx, `SELECT iv.id, w.id FROM investors iv JOIN wallets w ON w.user_id = iv.user_id
			WHERE iv.user_id = $1`, v.UserID).Scan(&investorID, &walletID)
		if errors.Is(err, pgx.ErrNoRows) {
			return lending.Forbidden("only investors may invest")
		}
		if err != nil {
			return fmt.Errorf("investor of user %d: %w", v.UserID, err)
		}
		loan, err := lockLoan(ctx, tx, loanID, false)
		if err != nil {
			return err
		}
		if loan.BorrowerUserID == v.UserID {
			return lending.Forbidden("you cannot invest in your own loan")
		}
		if err := lending.CheckInvestment(loan.Loan, amount, now); err != nil {
			return err
		}
		completes := loan.FundedAmount+amount == loan.Amount
		if completes {
			// Disbursement will write every investor's wallet, the escrow,
			// the borrower's and the fee account: lock them all now, in id
			// order, before hold() writes this investor's wallet.
			ids, err := disbursementWallets(ctx, tx, loan)
			if err != nil {
				return err
			}
			if err := lockWallets(ctx, tx, append(ids, walletID)...); err != nil {
				return err
			}
		}
		inv, err := scanInvestment(tx.QueryRow(ctx, `
			INSERT INTO investments AS i (loan_id, investor_id, amount, status, created_at, updated_at)
			VALUES ($1, $2, $3, 'COMMITTED', $4, $4) RETURNING `+investmentCols, loanID, investorID, amount, now))
		if err != nil {
			return fmt.Errorf("insert investment: %w", err)
		}
		if _, err := hold(ctx, tx, walletID, amount, &inv.ID, nil); err != nil {
			return err
		}
		tag, err := tx.Exec(ctx, `
			UPDATE loans SET funded_amount = funded_amount + $2, version = version + 1, updated_at = $3
			WHERE id = $1 AND status = 'FUNDING' AND funded_amount + $2 <= amount`, loanID, amount, now)
		if err != nil {
			return fmt.Errorf("fund loan %d: %w", loanID, err)
		}
		if err := mustOne(tag, "fund loan"); err != nil {
			return err
		}
		body := fmt.Sprintf("R$ %v is reserved for loan #%d until it is fully funded.", amount, loanID)
		if completes { // funded and disbursed in this transaction
			body = fmt.Sprintf("R$ %v completed the funding of loan #%d.", amount, loanID)
		}
		if err := notify(ctx, tx, v.UserID, lending.NotifInvestmentConfirmed, "Investment confirmed", body, &loanID); err != nil {
			return err
		}
		if !completes {
			// (a completing investment's loan changes again below, and
			// emits its own events)
			if err := emitLoan(ctx, tx, loanID, lending.LoanFunding); err != nil {
				return err
			}
		} else if err := disburse(ctx, tx, loan, now); err != nil {
			return err
		}
		if err := finishKey(ctx, tx, v.UserID, idemKey, inv.ID); err != nil {
			return err
		}
		if !completes {
			out = inv // nothing changed it since the insert
			return nil
		}
		out, err = investmentByID(ctx, tx, inv.ID) // now ACTIVE
		return err
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

func investmentByID(ctx context.Context, q querier, id int64) (*lending.Investment, error) {
	return one(ctx, q, "Investment", scanInvestment, `SELECT `+investmentCols+` FROM investments i WHERE i.id = $1`, id)
}

// disbursementWallets lists the wallets a disbursement of loan writes: the
// wallets of its COMMITTED investors, its escrow, the borrower's and the
// platform fee account.
func disbursementWallets(ctx context.Context, tx pgx.Tx, loan *lockedLoan) ([]int64, error) {
	rows, err := tx.Query(ctx, `
		SELECT DISTINCT w.id FROM investments i
		JOIN investors iv ON iv.id = i.investor_id
		JOIN wallets w ON w.user_id = iv.user_id
		WHERE i.loan_id = $1 AND i.status = 'COMMITTED'`, loan.ID)
	if err != nil {
		return nil, fmt.Errorf("investor wallets of loan %d: %w", loan.ID, err)
	}
	ids, err := pgx.CollectRows(rows, pgx.RowTo[int64])
	if err != nil {
		return nil, fmt.Errorf("investor wallets of loan %d: %w", loan.ID, err)
	}
	borrowerWallet, err := userWallet(ctx, tx, loan.BorrowerUserID)
	if err != nil {
		return nil, err
	}
	fees, err := platformWallet(ctx, tx, "PLATFORM_FEES")
	if err != nil {
		return nil, err
	}
	return append(ids, loan.EscrowID, borrowerWallet, fees), nil
}

// committedInvestment is a COMMITTED investment with its hold and investor.
type committedInvestment struct {
	ID, HoldID, UserID int64
	Amount             lending.Money
}

// disburse funds a fully committed loan (locked, FUNDING, funded_amount =
// amount, its wallets locked) and makes it ACTIVE: see Invest.
func disburse(ctx context.Context, tx pgx.Tx, loan *lockedLoan, now time.Time) error {
	funded, err := setLoanStatus(ctx, tx, loan.ID, lending.LoanFunding, lending.LoanFunded, now)
	if err != nil {
		return err
	}
	if funded.FundedAmount != funded.Amount {
		return fmt.Errorf("disburse loan %d: funded %v of %v", loan.ID, funded.FundedAmount, funded.Amount)
	}
	rows, err := tx.Query(ctx, `
		SELECT i.id, h.id, iv.user_id, i.amount FROM investments i
		JOIN investors iv ON iv.id = i.investor_id
		JOIN holds h ON h.investment_id = i.id
		WHERE i.loan_id = $1 AND i.status = 'COMMITTED' ORDER BY i.id`, loan.ID)
	if err != nil {
		return fmt.Errorf("investments of loan %d: %w", loan.ID, err)
	}
	invs, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (committedInvestment, error) {
		var c committedInvestment
		return c, r.Scan(&c.ID, &c.HoldID, &c.UserID, &c.Amount)
	})
	if err != nil {
		return fmt.Errorf("investments of loan %d: %w", loan.ID, err)
	}
	loanID := loan.ID
	// every hold posted in one statement, then one INVESTMENT transfer per
	// investment, the disbursement and the fee, all posted together
	// (postAll)
	holdIDs := make([]int64, len(invs))
	for i, c := range invs {
		holdIDs[i] = c.HoldID
	}
	holds, err := resolveHolds(ctx, tx, holdIDs, "POSTED")
	if err != nil {
		return err
	}
	var total lending.Money
	transfers := make([]Transfer, 0, len(invs))
	for _, c := range invs {
		h := holds[c.HoldID]
		if h.Amount != c.Amount {
			return fmt.Errorf("investment %d: hold of %v for %v", c.ID, h.Amount, c.Amount)
		}
		desc := fmt.Sprintf("Investment %d in loan #%d", c.ID, loanID)
		transfers = append(transfers, Transfer{Kind: "INVESTMENT", At: now, Legs: []Leg{
			{WalletID: h.WalletID, Amount: -h.Amount, ReleaseHeld: h.Amount, Kind: lending.EntryInvestment, Description: desc, LoanID: &loanID},
			{WalletID: loan.EscrowID, Amount: h.Amount, Kind: lending.EntryInvestment, Description: desc, LoanID: &loanID},
		}})
		total += h.Amount
	}
	if total != loan.Amount {
		return fmt.Errorf("disburse loan %d: investments total %v, not %v", loan.ID, total, loan.Amount)
	}
	borrowerWallet, err := userWallet(ctx, tx, loan.BorrowerUserID)
	if err != nil {
		return err
	}
	fee := lending.OriginationFee(loan.Amount)
	net := loan.Amount - fee
	transfers = append(transfers, Transfer{Kind: "DISBURSEMENT", At: now, Legs: []Leg{
		{WalletID: loan.EscrowID, Amount: -net, Kind: lending.EntryDisbursement, Description: fmt.Sprintf("Disbursement of loan #%d", loanID), LoanID: &loanID},
		{WalletID: borrowerWallet, Amount: net, Kind: lending.EntryDisbursement, Description: fmt.Sprintf("Loan #%d disbursed", loanID), LoanID: &loanID},
	}})
	if fee > 0 {
		fees, err := platformWallet(ctx, tx, "PLATFORM_FEES")
		if err != nil {
			return err
		}
		desc := fmt.Sprintf("Origination fee of loan #%d", loanID)
		transfers = append(transfers, Transfer{Kind: "ORIGINATION_FEE", At: now, Legs: []Leg{
			{WalletID: loan.EscrowID, Amount: -fee, Kind: lending.EntryFee, Description: desc, LoanID: &loanID},
			{WalletID: fees, Amount: fee, Kind: lending.EntryFee, Description: desc, LoanID: &loanID},
		}})
	}
	// into escrow, then out of it: applied in this order
	if _, err := postAll(ctx, tx, transfers); err != nil {
		return err
	}
	sched := lending.Schedule(loan.Amount, loan.AnnualRateBps, loan.TermMonths, now.UTC().AddDate(0, 1, 0))
	if err := insertSchedule(ctx, tx, loan.ID, sched); err != nil {
		return err
	}
	tag, err := tx.Exec(ctx, `UPDATE investments SET status = 'ACTIVE', updated_at = $2 WHERE loan_id = $1 AND status = 'COMMITTED'`, loan.ID, now)
	if err != nil {
		return fmt.Errorf("activate investments of loan %d: %w", loan.ID, err)
	}
	if tag.RowsAffected() != int64(len(invs)) {
		return fmt.Errorf("activate investments of loan %d: touched %d rows, want %d", loan.ID, tag.RowsAffected(), len(invs))
	}
	if _, err := setLoanStatus(ctx, tx, loan.ID, lending.LoanFunded, lending.LoanActive, now); err != nil {
		return err
	}
	notified := map[int64]bool{}
	for _, c := range invs {
		if notified[c.UserID] {
			continue
		}
		notified[c.UserID] = true
		if err := notify(ctx, tx, c.UserID, lending.NotifLoanFunded, "Loan funded",
			fmt.Sprintf("Loan #%d is fully funded and has been disbursed; your investment is now active.", loanID), &loanID); err != nil {
			return err
		}
	}
	return notify(ctx, tx, loan.BorrowerUserID, lending.NotifLoanDisbursed, "Loan disbursed",
		fmt.Sprintf("R$ %v of loan #%d is in your wallet (R$ %v origination fee). The first installment is due on %s.",
			net, loanID, fee, sched[0].DueDate.Format(time.DateOnly)), &loanID)
}

func insertSchedule(ctx context.Context, tx pgx.Tx, loanID int64, sched []lending.Installment) error {
	numbers := make([]int32, len(sched))
	dues := make([]time.Time, len(sched))
	principals := make([]int64, len(sched))
	interests := make([]int64, len(sched))
	for k, in := range sched {
		numbers[k], dues[k], principals[k], interests[k] = int32(in.Number), in.DueDate, int64(in.Principal), int64(in.Interest)
	}
	tag, err := tx.Exec(ctx, `
		INSERT INTO installments (loan_id, number, due_date, principal, interest, status)
		SELECT $1, u.number, u.due_date, u.principal, u.interest, 'PENDING'
		FROM unnest($2::int[], $3::date[], $4::bigint[], $5::bigint[]) AS u(number, due_date, principal, interest)`,
		loanID, numbers, dues, principals, interests)
	if err != nil {
		return fmt.Errorf("insert schedule of loan %d: %w", loanID, err)
	}
	if tag.RowsAffected() != int64(len(sched)) {
		return fmt.Errorf("insert schedule of loan %d: %d rows, want %d", loanID, tag.RowsAffected(), len(sched))
	}
	return nil
}

// activeInvestment is an ACTIVE investment with its investor's user and wallet.
type activeInvestment struct {
	*lending.Investment
	UserID   int64
	WalletID int64
}

// RepayLoan pays amount from the viewer's wallet towards their loan, in one
// transaction. The payment covers installments oldest first, interest before
// principal (lending.AllocatePayment), and is moved borrower → escrow →
// investors and platform: lending.SplitRepayment takes the 1% servicing fee
// from the payment's interest first (then principal) and splits the rest of
// the interest pro rata to the amounts invested and the rest of the principal
// pro rata to the principal each investment is still owed, largest remainder,
// ties to the smaller investment id. Each investment's received principal
// and interest grow by its share; each investor gets a REPAYMENT_RECEIVED
// notification. Installments record what was paid and become PAID (with
// paid_at = now) when fully paid; when all are, the loan is REPAID and its
// investments CLOSED.
//
// ACTIVE and DEFAULTED loans may be repaid (a defaulted loan's recoveries go
// to its investors the same way, and a defaulted loan that is paid in full
// becomes REPAID).
//
// Errors: FORBIDDEN unless the viewer is a borrower; NOT_FOUND for an
// unknown loan or another borrower's; INVALID_STATE for a loan in any other
// status; BAD_USER_INPUT for a non-positive amount, more than is still owed
// (refused whole) or a bad idempotency key; INSUFFICIENT_FUNDS if the
// wallet's available money is short; CONFLICT for a key already used with
// other arguments. The same key with the same arguments returns the first
// repayment (with the loan and those installments as they are now) and
// moves nothing.
func (s *Store) RepayLoan(ctx context.Context, v lending.Viewer, loanID int64, amount lending.Money, idemKey string, now time.Time) (*Repayment, error) {
	if !v.Authenticated() {
		return nil, lending.ErrUnauthenticated
	}
	if !v.Has(lending.RoleBorrower) {
		return nil, lending.Forbidden("only borrowers repay loans")
	}
	if amount <= 0 {
		return nil, lending.BadInput("payment must be positive, got %v", amount)
	}
	hash := RequestHash(opRepayLoan, loanID, amount)
	var out *Repayment
	err := s.inTx(ctx, func(tx pgx.Tx) error {
		rid, found, err := claimKey(ctx, tx, v.UserID, idemKey, opRepayLoan, hash)
		if err != nil {
			return err
		}
		if found {
			out, err = repaymentByID(ctx, tx, rid)
			return err
		}
		loan, err := lockLoan(ctx, tx, loanID, false)
		if err != nil {
			return err
		}
		if loan.BorrowerUserID != v.UserID {
			return lending.NotFound("Loan")
		}
		if err := lending.CheckRepayable(loan.Status); err != nil {
			return err
		}
		insts, err := collect(ctx, tx, scanInstallment,
			`SELECT `+installmentCols+` FROM installments n WHERE n.loan_id = $1 ORDER BY n.number FOR UPDATE`, loanID)
		if err != nil {
			return fmt.Errorf("installments of loan %d: %w", loanID, err)
		}
		sched := make([]lending.Installment, len(insts))
		for k, in := range insts {
			sched[k] = *in
		}
		allocs, err := lending.AllocatePayment(sched, amount)
		if err != nil {
			return err
		}
		var interest, principal lending.Money
		for _, a := range allocs {
			interest += a.Interest
			principal += a.Principal
		}
		invs, err := collect(ctx, tx, func(r pgx.Row) (activeInvestment, error) {
			var a activeInvestment
			var err error
			a.Investment, err = scanInvestment(withExtra{r, []any{&a.UserID, &a.WalletID}})
			return a, err
		}, `SELECT `+investmentCols+`, iv.user_id, w.id FROM investments i
			JOIN investors iv ON iv.id = i.investor_id
			JOIN wallets w ON w.user_id = iv.user_id
			WHERE i.loan_id = $1 AND i.status = 'ACTIVE' ORDER BY i.id FOR UPDATE OF i`, loanID)
		if err != nil {
			return fmt.Errorf("investments of loan %d: %w", loanID, err)
		}
		plain := make([]lending.Investment, len(invs))
		for k, a := range invs {
			plain[k] = *a.Investment
		}
		split, err := lending.SplitRepayment(interest, principal, plain)
		if err != nil {
			return fmt.Errorf("loan %d: %w", loanID, err)
		}

		borrowerWallet, err := userWallet(ctx, tx, v.UserID)
		if err != nil {
			return err
		}
		fees, err := platformWallet(ctx, tx, "PLATFORM_FEES")
		if err != nil {
			return err
		}
		desc := fmt.Sprintf("Repayment of loan #%d", loanID)
		repay := Transfer{Kind: "REPAYMENT", At: now, Legs: []Leg{
			{WalletID: borrowerWallet, Amount: -amount, Kind: lending.EntryRepayment, Description: desc, LoanID: &loanID},
			{WalletID: loan.EscrowID, Amount: amount, Kind: lending.EntryRepayment, Description: desc, LoanID: &loanID},
		}}
		legs := []Leg{{WalletID: loan.EscrowID, Amount: -amount, Kind: lending.EntryRepayment,
			Description: fmt.Sprintf("Distribution of a repayment of loan #%d", loanID), LoanID: &loanID}}
		if split.Fee > 0 {
			legs = append(legs, Leg{WalletID: fees, Amount: split.Fee, Kind: lending.EntryFee,
				Description: fmt.Sprintf("Servicing fee on loan #%d", loanID), LoanID: &loanID})
		}
		received := map[int64]lending.Money{} // by investor user
		var users []int64
		var credIDs []int64
		var credPrincipal, credInterest []lending.Money
		for k, sh := range split.Shares {
			a := invs[k]
			if sh.Total() == 0 {
				continue
			}
			legs = append(legs, Leg{WalletID: a.WalletID, Amount: sh.Total(), Kind: lending.EntryRepayment,
				Description: fmt.Sprintf("Repayment of loan #%d to investment %d", loanID, a.ID), LoanID: &loanID})
			credIDs = append(credIDs, a.ID)
			credPrincipal = append(credPrincipal, sh.Principal)
			credInterest = append(credInterest, sh.Interest)
			if _, seen := received[a.UserID]; !seen {
				users = append(users, a.UserID)
			}
			received[a.UserID] += sh.Total()
		}
		if len(credIDs) > 0 {
			// every share in one statement (a loan may have hundreds of
			// investors); the rows are locked above
			tag, err := tx.Exec(ctx, `
				UPDATE investments i SET received_principal = i.received_principal + c.principal,
					received_interest = i.received_interest + c.interest, updated_at = $4
				FROM unnest($1::bigint[], $2::bigint[], $3::bigint[]) AS c(id, principal, interest)
				WHERE i.id = c.id AND i.status = 'ACTIVE'`, credIDs, credPrincipal, credInterest, now)
			if err != nil {
				return fmt.Errorf("credit investments of loan %d: %w", loanID, err)
			}
			if tag.RowsAffected() != int64(len(credIDs)) {
				return fmt.Errorf("credit investments of loan %d: touched %d rows, want %d", loanID, tag.RowsAffected(), len(credIDs))
			}
		}
		// the payment into escrow, then its distribution: one postAll locks
		// every wallet once, in the one order, and applies them in turn
		if _, err := postAll(ctx, tx, []Transfer{repay, {Kind: "REPAYMENT_DISTRIBUTION", At: now, Legs: legs}}); err != nil {
			return err
		}

		numbers := make([]int32, 0, len(allocs))
		paidInsts := make([]*lending.Installment, 0, len(allocs))
		for _, a := range allocs {
			in, err := scanInstallment(tx.QueryRow(ctx, `
				UPDATE installments AS n SET
					paid = n.paid + $3,
					status = CASE WHEN n.paid + $3 = n.principal + n.interest THEN 'PAID' ELSE n.status END,
					paid_at = CASE WHEN n.paid + $3 = n.principal + n.interest THEN $4 ELSE n.paid_at END
				WHERE n.loan_id = $1 AND n.number = $2 AND n.status <> 'PAID' AND n.paid + $3 <= n.principal + n.interest
				RETURNING `+installmentCols, loanID, a.Number, a.Interest+a.Principal, now))
			if err != nil {
				return fmt.Errorf("pay installment %d of loan %d: %w", a.Number, loanID, err)
			}
			numbers = append(numbers, int32(a.Number))
			paidInsts = append(paidInsts, in)
		}
		var unpaid int
		if err := tx.QueryRow(ctx, `SELECT count(*) FROM installments WHERE loan_id = $1 AND status <> 'PAID'`, loanID).Scan(&unpaid); err != nil {
			return fmt.Errorf("unpaid installments of loan %d: %w", loanID, err)
		}
		var after *lending.Loan
		if unpaid == 0 {
			tag, err := tx.Exec(ctx, `UPDATE investments SET status = 'CLOSED', updated_at = $2 WHERE loan_id = $1 AND status = 'ACTIVE'`, loanID, now)
			if err != nil {
				return fmt.Errorf("close investments of loan %d: %w", loanID, err)
			}
			if tag.RowsAffected() != int64(len(invs)) {
				return fmt.Errorf("close investments of loan %d: touched %d rows, want %d", loanID, tag.RowsAffected(), len(invs))
			}
			if after, err = setLoanStatus(ctx, tx, loanID, loan.Status, lending.LoanRepaid, now); err != nil {
				return err
			}
		} else {
			after, err = scanLoan(tx.QueryRow(ctx, `UPDATE loans AS l SET version = l.version + 1, updated_at = $2
				WHERE l.id = $1 RETURNING `+loanCols, loanID, now))
			if err != nil {
				return fmt.Errorf("bump loan %d: %w", loanID, err)
			}
			if err := emitLoan(ctx, tx, loanID, after.Status); err != nil {
				return err
			}
		}
		for _, u := range users {
			if err := notify(ctx, tx, u, lending.NotifRepaymentReceived, "Repayment received",
				fmt.Sprintf("You received R$ %v from loan #%d.", received[u], loanID), &loanID); err != nil {
				return err
			}
		}
		var repaymentID int64
		if err := tx.QueryRow(ctx, `
			INSERT INTO loan_repayments (loan_id, user_id, amount, fee, installment_numbers, created_at)
			VALUES ($1, $2, $3, $4, $5, $6) RETURNING id`, loanID, v.UserID, amount, split.Fee, numbers, now).Scan(&repaymentID); err != nil {
			return fmt.Errorf("insert repayment: %w", err)
		}
		if err := finishKey(ctx, tx, v.UserID, idemKey, repaymentID); err != nil {
			return err
		}
		out = &Repayment{Loan: after, Amount: amount, Installments: paidInsts}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// repaymentByID rebuilds a recorded repayment: its loan and installments as
// they are now.
func repaymentByID(ctx context.Context, q querier, id int64) (*Repayment, error) {
	var loanID int64
	var r Repayment
	var numbers []int32
	if err := q.QueryRow(ctx, `SELECT loan_id, amount, installment_numbers FROM loan_repayments WHERE id = $1`, id).
		Scan(&loanID, &r.Amount, &numbers); err != nil {
		return nil, fmt.Errorf("repayment %d: %w", id, err)
	}
	var err error
	if r.Loan, err = one(ctx, q, "Loan", scanLoan, `SELECT `+loanCols+` FROM loans l WHERE l.id = $1`, loanID); err != nil {
		return nil, err
	}
	r.Installments, err = collect(ctx, q, scanInstallment, `SELECT `+installmentCols+` FROM installments n
		WHERE n.loan_id = $1 AND n.number = ANY($2) ORDER BY n.number`, loanID, numbers)
	if err != nil {
		return nil, fmt.Errorf("installments of repayment %d: %w", id, err)
	}
	return &r, nil
}
