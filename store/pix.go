package store

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"mutuo/lending"
	"mutuo/pix"
)

// MaxDepositAmount is the largest Pix deposit (one charge) a user may create:
// R$ 1.000.000,00. Larger amounts are BAD_USER_INPUT.
const MaxDepositAmount lending.Money = 1_000_000_00

// MaxWithdrawalAmount is the largest Pix withdrawal one request may ask for:
// R$ 1.000.000,00. Larger amounts are BAD_USER_INPUT.
const MaxWithdrawalAmount lending.Money = 1_000_000_00

// Idempotency operations of this file.
const (
	opCreateDeposit     = "createDeposit"
	opRequestWithdrawal = "requestWithdrawal"
)

// DepositCharge is a Pix charge registered with the PSP for a deposit.
type DepositCharge struct {
	Txid      string    // 26-35 [A-Za-z0-9] (pix.ValidTxid)
	BrCode    string    // the copia-e-cola payload
	ExpiresAt time.Time // after this the charge can no longer be paid
}

// ChargeFunc registers a Pix charge of amount with the PSP. CreateDeposit
// calls it only for a fresh idempotency key, and at most once per call, so a
// replayed request never creates a second (orphan) charge.
type ChargeFunc func(ctx context.Context, amount lending.Money) (DepositCharge, error)

// PSPCharge is the usual ChargeFunc: a fresh txid (pix.NewTxid) registered
// with psp, payable for expiry (lending.DefaultDepositExpiry when 0) from
// now(). PSP errors are returned as they are.
func PSPCharge(psp pix.PSP, expiry time.Duration, now func() time.Time) ChargeFunc {
	if expiry <= 0 {
		expiry = lending.DefaultDepositExpiry
	}
	return func(ctx context.Context, amount lending.Money) (DepositCharge, error) {
		at := now()
		res, err := psp.CreateCharge(ctx, pix.Charge{Txid: pix.NewTxid(), Amount: amount, Expiry: expiry, Description: "Mutuo deposit"})
		if err != nil {
			return DepositCharge{}, fmt.Errorf("create pix charge: %w", err)
		}
		return DepositCharge{Txid: res.Txid, BrCode: res.BRCode, ExpiresAt: at.Add(expiry)}, nil
	}
}

// CreateDeposit creates a Pix deposit (a charge) of amount for the signed-in
// viewer's wallet, in PENDING. It is idempotent on (viewer, idemKey): the
// same key with the same amount returns the first deposit and does not call
// newCharge; with another amount it is CONFLICT. newCharge is called inside
// the transaction that claims the key, so a concurrent request with the same
// key waits for it and then replays its result, and a failure of newCharge
// (or of the insert) leaves nothing behind. Errors: UNAUTHENTICATED,
// BAD_USER_INPUT (amount <= 0 or above MaxDepositAmount, bad key, a charge
// that newCharge built wrongly), CONFLICT, and newCharge's own errors.
func (s *Store) CreateDeposit(ctx context.Context, v lending.Viewer, amount lending.Money, idemKey string, newCharge ChargeFunc) (*lending.Deposit, error) {
	if !v.Authenticated() {
		return nil, lending.ErrUnauthenticated
	}
	if amount <= 0 || amount > MaxDepositAmount {
		return nil, lending.BadInput("deposit amount must be between 0.01 and %v, got %v", MaxDepositAmount, amount)
	}
	if err := lending.ValidateIdempotencyKey(idemKey); err != nil {
		return nil, err
	}
	// The charge survives a retried transaction: one PSP charge per call.
	var charge *DepositCharge
	var d *lending.Deposit
	err := s.inTx(ctx, func(tx pgx.Tx) error {
		rid, found, err := claimKey(ctx, tx, v.UserID, idemKey, opCreateDeposit, RequestHash(opCreateDeposit, amount))
		if err != nil {
			return err
		}
		if found {
			d, err = one(ctx, tx, "Deposit", scanDeposit, `SELECT `+depositCols+` FROM deposits d WHERE d.id = $1 AND d.user_id = $2`, rid, v.UserID)
			return err
		}
		walletID, err := userWallet(ctx, tx, v.UserID)
		if err != nil {
			return err
		}
		if charge == nil {
			ch, err := newCharge(ctx, amount)
			if err != nil {
				return err
			}
			if !pix.ValidTxid(ch.Txid) || ch.BrCode == "" || ch.ExpiresAt.IsZero() {
				return fmt.Errorf("create deposit: the charge function returned an invalid charge (txid %q)", ch.Txid)
			}
			charge = &ch
		}
		d, err = scanDeposit(tx.QueryRow(ctx, `
			INSERT INTO deposits AS d (user_id, wallet_id, amount, status, txid, br_code, expires_at)
			VALUES ($1, $2, $3, 'PENDING', $4, $5, $6)
			RETURNING `+depositCols, v.UserID, walletID, amount, charge.Txid, charge.BrCode, charge.ExpiresAt))
		if err != nil {
			return fmt.Errorf("insert deposit: %w", err)
		}
		return finishKey(ctx, tx, v.UserID, idemKey, d.ID)
	})
	if err != nil {
		return nil, err
	}
	return d, nil
}

// PixOutcome is what a received Pix payment did.
type PixOutcome string

// The outcomes of a Pix payment (pix_payments.outcome). Only CREDITED moves
// money; every other outcome is recorded for reconciliation (and a refund,
// "devolução", outside this system) and credits nothing.
const (
	PixCredited    PixOutcome = "CREDITED"     // the deposit's wallet was credited
	PixUnknownTxid PixOutcome = "UNKNOWN_TXID" // no deposit has this txid (or the Pix had none)
	PixWrongAmount PixOutcome = "WRONG_AMOUNT" // the amount differs from the deposit's
	PixExpired     PixOutcome = "EXPIRED"      // the deposit had expired when it was paid
	PixAlreadyPaid PixOutcome = "ALREADY_PAID" // another Pix (endToEndId) already paid the deposit
)

// PaymentOutcome is the result of applying one Pix payment.
type PaymentOutcome struct {
	EndToEndID string
	Outcome    PixOutcome
	DepositID  *int64 // the deposit the txid names, when there is one
	// Duplicate is true when this endToEndId had already been applied: the
	// Outcome is the recorded one and nothing changed now.
	Duplicate bool
}

// ApplyPixPayment applies a Pix payment reported by the PSP, exactly once per
// EndToEndID, in one transaction:
//
//   - a payment whose EndToEndID was already recorded changes nothing and
//     returns the recorded outcome with Duplicate set (concurrent deliveries
//     of one payment serialize on the pix_payments primary key: one applies
//     it, the others wait and then see it recorded);
//   - otherwise the deposit with p.Txid is locked (FOR UPDATE), and the
//     outcome is UNKNOWN_TXID (no such deposit), ALREADY_PAID (completed by
//     another EndToEndID), EXPIRED (status EXPIRED, or paid after expires_at),
//     WRONG_AMOUNT, or else CREDITED: PIX_CLEARING is debited and the user's
//     wallet credited (ledger kind DEPOSIT), the deposit becomes COMPLETED
//     with the EndToEndID and completed_at = now, and a DEPOSIT_CONFIRMED
//     notification is written.
//
// The payment is recorded (pix_payments, with its raw JSON) whatever the
// outcome. "Paid after expires_at" uses p.PaidAt (the PSP's horario), or now
// if it is zero: a payment made in time but delivered late still credits
// while the deposit is PENDING. Errors are only database errors: the caller
// should answer so that the PSP retries.
func (s *Store) ApplyPixPayment(ctx context.Context, p pix.Payment, now time.Time) (PaymentOutcome, error) {
	if p.EndToEndID == "" {
		return PaymentOutcome{}, lending.BadInput("pix payment without endToEndId")
	}
	raw := string(p.Raw)
	if len(p.Raw) == 0 {
		raw = "{}"
	}
	var txid *string
	if p.Txid != "" {
		txid = &p.Txid
	}
	var paidAt *time.Time
	if !p.PaidAt.IsZero() {
		paidAt = &p.PaidAt
	}
	var out PaymentOutcome
	err := s.inTx(ctx, func(tx pgx.Tx) error {
		out = PaymentOutcome{EndToEndID: p.EndToEndID}
		// Claim the endToEndId first. The outcome written here is provisional
		// and replaced below, in this same transaction.
		tag, err := tx.Exec(ctx, `
			INSERT INTO pix_payments (end_to_end_id, txid, amount, paid_at, outcome, payload)
			VALUES ($1, $2, $3, $4, 'UNKNOWN_TXID', $5::jsonb)
			ON CONFLICT (end_to_end_id) DO NOTHING`, p.EndToEndID, txid, p.Amount, paidAt, raw)
		if err != nil {
			return fmt.Errorf("record pix payment %s: %w", p.EndToEndID, err)
		}
		if tag.RowsAffected() == 0 {
			out.Duplicate = true
			if err := tx.QueryRow(ctx, `SELECT outcome, deposit_id FROM pix_payments WHERE end_to_end_id = $1`,
				p.EndToEndID).Scan(&out.Outcome, &out.DepositID); err != nil {
				return fmt.Errorf("read pix payment %s: %w", p.EndToEndID, err)
			}
			return nil
		}

		out.Outcome, out.DepositID, err = creditDeposit(ctx, tx, p, now)
		if err != nil {
			return err
		}
		tag, err = tx.Exec(ctx, `UPDATE pix_payments SET outcome = $2, deposit_id = $3 WHERE end_to_end_id = $1`,
			p.EndToEndID, out.Outcome, out.DepositID)
		if err != nil {
			return fmt.Errorf("record pix payment outcome: %w", err)
		}
		return mustOne(tag, "record pix payment outcome")
	})
	if err != nil {
		return PaymentOutcome{}, err
	}
	return out, nil
}

// creditDeposit decides what a fresh payment does to its deposit and, when it
// is CREDITED, does it. The deposit row is locked for the rest of tx.
func creditDeposit(ctx context.Context, tx pgx.Tx, p pix.Payment, now time.Time) (PixOutcome, *int64, error) {
	if p.Txid == "" {
		return PixUnknownTxid, nil, nil
	}
	var (
		id, userID, walletID int64
		amount               lending.Money
		status               lending.DepositStatus
		expiresAt            time.Time
	)
	err := tx.QueryRow(ctx, `SELECT id, user_id, wallet_id, amount, status, expires_at FROM deposits WHERE txid = $1 FOR UPDATE`,
		p.Txid).Scan(&id, &userID, &walletID, &amount, &status, &expiresAt)
	if errors.Is(err, pgx.ErrNoRows) {
		return PixUnknownTxid, nil, nil
	}
	if err != nil {
		return "", nil, fmt.Errorf("lock deposit %s: %w", p.Txid, err)
	}
	paidAt := p.PaidAt
	if paidAt.IsZero() {
		paidAt = now
	}
	switch {
	case status == lending.DepositCompleted:
		return PixAlreadyPaid, &id, nil
	case status == lending.DepositExpired || paidAt.After(expiresAt):
		return PixExpired, &id, nil
	case p.Amount != amount:
		return PixWrongAmount, &id, nil
	}

	clearing, err := platformWallet(ctx, tx, "PIX_CLEARING")
	if err != nil {
		return "", nil, err
	}
	if _, err := post(ctx, tx, Transfer{Kind: "DEPOSIT", At: now, Legs: []Leg{
		{WalletID: clearing, Amount: -amount, Kind: lending.EntryDeposit, Description: "Pix deposit"},
		{WalletID: walletID, Amount: amount, Kind: lending.EntryDeposit, Description: "Pix deposit"},
	}}); err != nil {
		return "", nil, fmt.Errorf("credit deposit %d: %w", id, err)
	}
	tag, err := tx.Exec(ctx, `UPDATE deposits SET status = 'COMPLETED', end_to_end_id = $2, completed_at = $3
		WHERE id = $1 AND status = 'PENDING'`, id, p.EndToEndID, now)
	if err != nil {
		return "", nil, fmt.Errorf("complete deposit %d: %w", id, err)
	}
	if err := mustOne(tag, "complete deposit"); err != nil {
		return "", nil, err
	}
	if err := notify(ctx, tx, userID, lending.NotifDepositConfirmed, "Deposit confirmed",
		fmt.Sprintf("Your Pix deposit of R$ %s was credited to your wallet.", amount), nil); err != nil {
		return "", nil, err
	}
	return PixCredited, &id, nil
}

// ExpireDeposits marks PENDING deposits whose expires_at is before now as
// EXPIRED and returns how many it marked. Safe to run on many instances at
// once: each batch skips rows another instance (or a payment) has locked.
// A payment arriving later for an expired deposit is recorded as EXPIRED and
// not credited, so run it with some grace after the charges' expiry (e.g.
// now minus a few minutes) to let late webhook deliveries of payments made
// in time arrive first.
func (s *Store) ExpireDeposits(ctx context.Context, now time.Time) (int, error) {
	total := 0
	for {
		var n int64
		err := s.inTx(ctx, func(tx pgx.Tx) error {
			tag, err := tx.Exec(ctx, `
				UPDATE deposits SET status = 'EXPIRED'
				WHERE id IN (SELECT id FROM deposits WHERE status = 'PENDING' AND expires_at < $1
				             ORDER BY id LIMIT 1000 FOR UPDATE SKIP LOCKED)`, now)
			if err != nil {
				return fmt.Errorf("expire deposits: %w", err)
			}
			n = tag.RowsAffected()
			return nil
		})
		if err != nil {
			return total, err
		}
		total += int(n)
		if n < 1000 {
			return total, nil
		}
	}
}

// ---------------------------------------------------------------- withdrawals

// withdrawalPayoutKey is the PSP idempotency key of a withdrawal's payout:
// every attempt to pay one withdrawal uses it, so the PSP sends one Pix.
func withdrawalPayoutKey(id int64) string { return fmt.Sprintf("mutuo-withdrawal-%d", id) }

// RequestWithdrawal sends amount of the signed-in viewer's available money to
// the Pix key pixKey. It is idempotent on (viewer, idemKey): the same key with
// the same amount and (normalized) Pix key returns the withdrawal as it is
// now and does nothing more; with other arguments it is CONFLICT.
//
// In a first transaction it writes the withdrawal (PENDING) and holds the
// amount in the wallet. Then, outside any transaction, it asks psp to pay,
// with the withdrawal's own idempotency key (so retries never pay twice).
// Then, in a second transaction, either the payout COMPLETED: the hold is
// posted (the wallet is debited, ledger kind WITHDRAWAL, against
// PIX_CLEARING) and the withdrawal is COMPLETED; or it FAILED (or the PSP
// refused it as invalid): the hold is voided and the withdrawal is FAILED.
// Exactly one of the two ever happens. When the PSP's answer is unknown (an
// error) or PENDING, the withdrawal stays PENDING with its hold, and
// ResumePendingWithdrawals finishes it later; that is not an error.
//
// Errors: UNAUTHENTICATED, BAD_USER_INPUT (amount, Pix key, idempotency key),
// INSUFFICIENT_FUNDS (nothing is written), CONFLICT.
func (s *Store) RequestWithdrawal(ctx context.Context, v lending.Viewer, amount lending.Money, pixKey, idemKey string, psp pix.PSP) (*lending.Withdrawal, error) {
	if !v.Authenticated() {
		return nil, lending.ErrUnauthenticated
	}
	if amount <= 0 || amount > MaxWithdrawalAmount {
		return nil, lending.BadInput("withdrawal amount must be between 0.01 and %v, got %v", MaxWithdrawalAmount, amount)
	}
	keyType, key, err := pix.ParseKey(pixKey)
	if err != nil {
		return nil, err
	}
	if err := lending.ValidateIdempotencyKey(idemKey); err != nil {
		return nil, err
	}
	var wd *lending.Withdrawal
	replay := false
	err = s.inTx(ctx, func(tx pgx.Tx) error {
		rid, found, err := claimKey(ctx, tx, v.UserID, idemKey, opRequestWithdrawal, RequestHash(opRequestWithdrawal, amount, key))
		if err != nil {
			return err
		}
		if found {
			replay = true
			wd, err = one(ctx, tx, "Withdrawal", scanWithdrawal, `SELECT `+withdrawalCols+` FROM withdrawals wd WHERE wd.id = $1 AND wd.user_id = $2`, rid, v.UserID)
			return err
		}
		walletID, err := userWallet(ctx, tx, v.UserID)
		if err != nil {
			return err
		}
		wd, err = scanWithdrawal(tx.QueryRow(ctx, `
			INSERT INTO withdrawals AS wd (user_id, wallet_id, amount, pix_key, pix_key_type, status)
			VALUES ($1, $2, $3, $4, $5, 'PENDING')
			RETURNING `+withdrawalCols, v.UserID, walletID, amount, key, string(keyType)))
		if err != nil {
			return fmt.Errorf("insert withdrawal: %w", err)
		}
		if _, err := hold(ctx, tx, walletID, amount, nil, &wd.ID); err != nil {
			return err
		}
		return finishKey(ctx, tx, v.UserID, idemKey, wd.ID)
	})
	if err != nil {
		return nil, err
	}
	if replay {
		return wd, nil
	}
	return s.settleWithdrawal(ctx, psp, wd)
}

// settleWithdrawal asks psp to pay a PENDING withdrawal and records the
// answer. It returns the withdrawal as it is afterwards. It returns an error
// only when recording a definitive answer failed (the withdrawal then stays
// PENDING, to be resumed).
func (s *Store) settleWithdrawal(ctx context.Context, psp pix.PSP, wd *lending.Withdrawal) (*lending.Withdrawal, error) {
	res, err := psp.Pay(ctx, pix.Payout{
		IdempotencyKey: withdrawalPayoutKey(wd.ID),
		Key:            wd.PixKey,
		Amount:         wd.Amount,
		Description:    "Mutuo withdrawal",
	})
	var status lending.WithdrawalStatus
	var reason string
	switch {
	case err == nil:
		status, reason = res.Status, res.Reason
	case lending.IsCode(err, lending.CodeBadUserInput):
		// The PSP refused the payout as invalid: nothing was sent.
		e, _ := lending.AsError(err)
		status, reason = lending.WithdrawalFailed, "refused by the PSP: "+e.Message
	default:
		// Unknown outcome (timeout, network, PSP down): keep the hold; the
		// same idempotency key is retried by ResumePendingWithdrawals.
		return wd, nil
	}
	// The payout's outcome is known: record it even if the caller has gone.
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer cancel()
	switch status {
	case lending.WithdrawalCompleted:
		return s.finishWithdrawal(rctx, wd.ID, lending.WithdrawalCompleted, res.EndToEndID, "")
	case lending.WithdrawalFailed:
		if reason == "" {
			reason = "refused by the PSP"
		}
		return s.finishWithdrawal(rctx, wd.ID, lending.WithdrawalFailed, res.EndToEndID, reason)
	default: // PENDING at the PSP: remember its reference and wait
		if res.EndToEndID != "" {
			if _, err := s.pool.Exec(rctx, `UPDATE withdrawals SET psp_id = $2 WHERE id = $1 AND status = 'PENDING'`,
				wd.ID, res.EndToEndID); err != nil {
				return nil, fmt.Errorf("record withdrawal %d psp id: %w", wd.ID, err)
			}
		}
		return wd, nil
	}
}

// finishWithdrawal moves a PENDING withdrawal to COMPLETED (posting its hold:
// the wallet is debited against PIX_CLEARING) or FAILED (voiding its hold),
// in one transaction. If the withdrawal is no longer PENDING (another
// instance finished it), it changes nothing. It returns the withdrawal as it
// is afterwards.
func (s *Store) finishWithdrawal(ctx context.Context, id int64, status lending.WithdrawalStatus, pspID, reason string) (*lending.Withdrawal, error) {
	if len(reason) > 500 {
		reason = reason[:500]
	}
	var wd *lending.Withdrawal
	err := s.inTx(ctx, func(tx pgx.Tx) error {
		var psp, failure *string
		if pspID != "" {
			psp = &pspID
		}
		if status == lending.WithdrawalFailed {
			failure = &reason
		}
		var err error
		wd, err = scanWithdrawal(tx.QueryRow(ctx, `
			UPDATE withdrawals AS wd SET status = $2, psp_id = coalesce($3, psp_id), failure = $4, completed_at = now()
			WHERE id = $1 AND status = 'PENDING'
			RETURNING `+withdrawalCols, id, status, psp, failure))
		if errors.Is(err, pgx.ErrNoRows) {
			// Already finished: report it as it is, change nothing.
			wd, err = one(ctx, tx, "Withdrawal", scanWithdrawal, `SELECT `+withdrawalCols+` FROM withdrawals wd WHERE wd.id = $1`, id)
			return err
		}
		if err != nil {
			return fmt.Errorf("finish withdrawal %d: %w", id, err)
		}
		var holdID, walletID int64
		if err := tx.QueryRow(ctx, `SELECT id, wallet_id FROM holds WHERE withdrawal_id = $1`, id).Scan(&holdID, &walletID); err != nil {
			return fmt.Errorf("hold of withdrawal %d: %w", id, err)
		}
		if status == lending.WithdrawalFailed {
			_, _, err := resolveHold(ctx, tx, holdID, "VOIDED")
			return err
		}
		if _, _, err := resolveHold(ctx, tx, holdID, "POSTED"); err != nil {
			return err
		}
		clearing, err := platformWallet(ctx, tx, "PIX_CLEARING")
		if err != nil {
			return err
		}
		_, err = post(ctx, tx, Transfer{Kind: "WITHDRAWAL", Legs: []Leg{
			{WalletID: walletID, Amount: -wd.Amount, ReleaseHeld: wd.Amount, Kind: lending.EntryWithdrawal, Description: "Pix withdrawal"},
			{WalletID: clearing, Amount: wd.Amount, Kind: lending.EntryWithdrawal, Description: "Pix withdrawal"},
		}})
		if err != nil {
			return fmt.Errorf("post withdrawal %d: %w", id, err)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return wd, nil
}

// ResumePendingWithdrawals retries the payout of every withdrawal that has
// been PENDING for longer than olderThan (by the database clock): the
// process asking for it died before recording the PSP's answer, the answer
// was unknown, or the PSP said PENDING. Each retry uses the withdrawal's own
// PSP idempotency key, so the PSP pays it at most once, and finishing it is
// guarded by its PENDING status, so running this on many instances at once,
// or alongside the original request, completes or fails each withdrawal
// exactly once. It returns how many withdrawals it brought to COMPLETED or
// FAILED (at most 500 per call); an error stops it early.
func (s *Store) ResumePendingWithdrawals(ctx context.Context, psp pix.PSP, olderThan time.Duration) (int, error) {
	rows, err := collect(ctx, s.pool, scanWithdrawal, `SELECT `+withdrawalCols+` FROM withdrawals wd
		WHERE wd.status = 'PENDING' AND wd.created_at < now() - make_interval(secs => $1)
		ORDER BY wd.id LIMIT 500`, olderThan.Seconds())
	if err != nil {
		return 0, fmt.Errorf("pending withdrawals: %w", err)
	}
	done := 0
	for _, wd := range rows {
		if err := ctx.Err(); err != nil {
			return done, err
		}
		got, err := s.settleWithdrawal(ctx, psp, wd)
		if err != nil {
			return done, err
		}
		if got.Status != lending.WithdrawalPending {
			done++
		}
	}
	return done, nil
}
