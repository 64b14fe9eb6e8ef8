package store

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sort"
	"time"

	"github.com/jackc/pgx/v5"

	"mutuo/lending"
)

// Leg is one side of a transfer: a signed amount on one wallet (positive
// credits it). ReleaseHeld also lowers the wallet's held money by that much in
// the same update: posting a hold is a debit leg that releases what it held.
type Leg struct {
	WalletID    int64
	Amount      lending.Money
	ReleaseHeld lending.Money
	Kind        lending.EntryKind
	Description string
	LoanID      *int64
}

// Transfer is a set of legs that sum to zero. At is when it happened (the
// use case's clock); zero means the database's now().
type Transfer struct {
	Kind string
	Legs []Leg
	At   time.Time
}

// PostedLeg is a leg as written: the entry id and the balance after it.
type PostedLeg struct {
	Leg
	EntryID      int64
	BalanceAfter lending.Money
	Version      int
}

// lockWallets takes row locks on the wallets in ascending id order, the one
// order every use case follows, so concurrent transfers never deadlock.
func lockWallets(ctx context.Context, tx pgx.Tx, ids ...int64) error {
	ids = uniqueSorted(ids)
	rows, err := tx.Query(ctx, `SELECT id FROM wallets WHERE id = ANY($1) ORDER BY id FOR UPDATE`, ids)
	if err != nil {
		return fmt.Errorf("lock wallets %v: %w", ids, err)
	}
	n := 0
	for rows.Next() {
		n++
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return fmt.Errorf("lock wallets %v: %w", ids, err)
	}
	if n != len(ids) {
		return fmt.Errorf("lock wallets %v: found %d of %d", ids, n, len(ids))
	}
	return nil
}

func uniqueSorted(ids []int64) []int64 {
	out := append([]int64(nil), ids...)
	sort.Slice(out, func(i, j int) bool { return out[i] < out[j] })
	j := 0
	for i, id := range out {
		if i == 0 || id != out[j-1] {
			out[j] = id
			j++
		}
	}
	return out[:j]
}

// post writes a balanced transfer inside tx: it locks the legs' wallets in id
// order, applies each leg (a user wallet may never go below its holds:
// INSUFFICIENT_FUNDS), writes one immutable ledger entry per leg with the
// balance after it, and emits a wallet event per user wallet touched. The
// deferred trigger on ledger_entries re-checks the balance at COMMIT.
func post(ctx context.Context, tx pgx.Tx, t Transfer) ([]PostedLeg, error) {
	out, err := postAll(ctx, tx, []Transfer{t})
	if err != nil {
		return nil, err
	}
	return out[0], nil
}

// postAll is post for several transfers at once, applied in order: one
// wallet lock statement, one insert of the transfers and one round trip for
// every leg of all of them (a disbursement posts one transfer per
// investment).
func postAll(ctx context.Context, tx pgx.Tx, ts []Transfer) ([][]PostedLeg, error) {
	var ids []int64
	kinds := make([]string, len(ts))
	ats := make([]*time.Time, len(ts))
	for i, t := range ts {
		var sum lending.Money
		for _, l := range t.Legs {
			if l.Amount == 0 {
				return nil, fmt.Errorf("transfer %s: zero leg on wallet %d", t.Kind, l.WalletID)
			}
			sum += l.Amount
			ids = append(ids, l.WalletID)
		}
		if sum != 0 {
			return nil, fmt.Errorf("transfer %s: legs sum to %s, not zero", t.Kind, sum)
		}
		kinds[i] = t.Kind
		if !t.At.IsZero() {
			at := t.At
			ats[i] = &at
		}
	}
	if err := lockWallets(ctx, tx, ids...); err != nil {
		return nil, err
	}
	// identity values are taken as the rows are inserted, in ord order
	rows, err := tx.Query(ctx, `INSERT INTO transfers (kind, created_at)
		SELECT u.kind, coalesce(u.at, now()) FROM unnest($1::text[], $2::timestamptz[]) WITH ORDINALITY AS u(kind, at, ord)
		ORDER BY u.ord RETURNING id`, kinds, ats)
	if err != nil {
		return nil, fmt.Errorf("insert transfers: %w", err)
	}
	transferIDs, err := pgx.CollectRows(rows, pgx.RowTo[int64])
	if err != nil {
		return nil, fmt.Errorf("insert transfers: %w", err)
	}
	if len(transferIDs) != len(ts) {
		return nil, fmt.Errorf("insert transfers: %d of %d", len(transferIDs), len(ts))
	}
	slices.Sort(transferIDs)
	// One statement per leg (apply it, write its entry, and its wallet
	// event for a user wallet), all legs in one round trip. The statements
	// run in order, so a wallet that two legs touch sees the first leg's
	// effect in the second's.
	b := &pgx.Batch{}
	for i, t := range ts {
		for _, l := range t.Legs {
			b.Queue(postLegSQL, l.WalletID, l.Amount, l.ReleaseHeld, transferIDs[i], l.Kind, l.Description, l.LoanID, ats[i])
		}
	}
	br := tx.SendBatch(ctx, b)
	out := make([][]PostedLeg, len(ts))
	var first error
	for i, t := range ts {
		out[i] = make([]PostedLeg, len(t.Legs))
		for j, l := range t.Legs {
			p := PostedLeg{Leg: l}
			err := br.QueryRow().Scan(&p.BalanceAfter, &p.Version, &p.EntryID)
			switch {
			case first != nil:
			case errors.Is(err, pgx.ErrNoRows):
				first = lending.Errorf(lending.CodeInsufficientFunds, "insufficient available funds")
			case err != nil:
				first = fmt.Errorf("apply leg on wallet %d: %w", l.WalletID, err)
			}
			out[i][j] = p
		}
	}
	if err := br.Close(); err != nil && first == nil {
		first = fmt.Errorf("post transfers: %w", err)
	}
	if first != nil {
		return nil, first
	}
	return out, nil
}

// postLegSQL applies one leg of a transfer ($1 wallet, $2 amount, $3 held
// money released) unless it would take a user wallet below its holds (then
// it returns no row: INSUFFICIENT_FUNDS), writes its ledger entry ($4
// transfer, $5 kind, $6 description, $7 loan, $8 time or null for now())
// with the balance after it, and for a user wallet the wallet's event, as
// emitWallet writes it. It returns the balance after, the wallet's new
// version and the entry's id.
const postLegSQL = `
	WITH w AS (
		UPDATE wallets SET balance = balance + $2, held = held - $3, version = version + 1
		WHERE id = $1 AND (kind <> 'USER' OR balance + $2 >= held - $3) AND held - $3 >= 0
		RETURNING id, balance, version, user_id),
	e AS (
		INSERT INTO ledger_entries (transfer_id, wallet_id, kind, amount, balance_after, description, loan_id, created_at)
		SELECT $4, w.id, $5, $2, w.balance, $6, $7, coalesce($8, now()) FROM w
		RETURNING id),
	o AS (` + walletEventsSQL + `)
	SELECT w.balance, w.version, e.id FROM w, e`

// walletEventsSQL writes, in SQL, the event emitWallet writes for each user
// wallet of a CTE named w (id, version, user_id) that updated wallets.
const walletEventsSQL = `INSERT INTO outbox (stream, topic, payload)
		SELECT 'wallet:' || w.user_id, '` + topicWalletUpdated + `',
			jsonb_build_object('walletId', w.id, 'userId', w.user_id, 'version', w.version)
		FROM w WHERE w.user_id IS NOT NULL`

// hold reserves amount of a user wallet's available money. Errors:
// INSUFFICIENT_FUNDS.
func hold(ctx context.Context, tx pgx.Tx, walletID int64, amount lending.Money, investmentID, withdrawalID *int64) (int64, error) {
	var userID int64
	var version int
	err := tx.QueryRow(ctx, `
		UPDATE wallets SET held = held + $2, version = version + 1
		WHERE id = $1 AND kind = 'USER' AND balance - held >= $2
		RETURNING user_id, version`, walletID, amount).Scan(&userID, &version)
	if errors.Is(err, pgx.ErrNoRows) {
		return 0, lending.Errorf(lending.CodeInsufficientFunds, "insufficient available funds")
	}
	if err != nil {
		return 0, fmt.Errorf("hold on wallet %d: %w", walletID, err)
	}
	var id int64
	if err := tx.QueryRow(ctx, `INSERT INTO holds (wallet_id, investment_id, withdrawal_id, amount, status)
		VALUES ($1, $2, $3, $4, 'HELD') RETURNING id`, walletID, investmentID, withdrawalID, amount).Scan(&id); err != nil {
		return 0, fmt.Errorf("insert hold: %w", err)
	}
	return id, emitWallet(ctx, tx, walletID, userID, version)
}

// resolvedHold is a hold resolveHolds resolved: its wallet and amount.
type resolvedHold struct {
	WalletID int64
	Amount   lending.Money
}

// resolveHold is resolveHolds for one hold.
func resolveHold(ctx context.Context, tx pgx.Tx, holdID int64, status string) (walletID int64, amount lending.Money, err error) {
	m, err := resolveHolds(ctx, tx, []int64{holdID}, status)
	if err != nil {
		return 0, 0, err
	}
	return m[holdID].WalletID, m[holdID].Amount, nil
}

// resolveHolds marks HELD holds POSTED or VOIDED, exactly once each: a hold
// that is already resolved (or missing) is an error. It returns each hold's
// wallet and amount. Voiding also gives the money back to available (one
// update and one wallet event per wallet); posting leaves that to the debit
// leg (Leg.ReleaseHeld). Two statements whatever the number of holds.
func resolveHolds(ctx context.Context, tx pgx.Tx, holdIDs []int64, status string) (map[int64]resolvedHold, error) {
	rows, err := tx.Query(ctx, `UPDATE holds SET status = $2, resolved_at = now()
		WHERE id = ANY($1) AND status = 'HELD' RETURNING id, wallet_id, amount`, holdIDs, status)
	if err != nil {
		return nil, fmt.Errorf("resolve holds: %w", err)
	}
	out := make(map[int64]resolvedHold, len(holdIDs))
	perWallet := map[int64]lending.Money{}
	for rows.Next() {
		var id int64
		var h resolvedHold
		if err := rows.Scan(&id, &h.WalletID, &h.Amount); err != nil {
			rows.Close()
			return nil, fmt.Errorf("resolve holds: %w", err)
		}
		out[id] = h
		perWallet[h.WalletID] += h.Amount
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("resolve holds: %w", err)
	}
	for _, id := range holdIDs {
		if _, ok := out[id]; !ok {
			return nil, fmt.Errorf("hold %d is not held", id)
		}
	}
	if status != "VOIDED" || len(perWallet) == 0 {
		return out, nil
	}
	wallets := make([]int64, 0, len(perWallet))
	for w := range perWallet {
		wallets = append(wallets, w)
	}
	// in the one lock order (a no-op for wallets the caller has locked)
	if err := lockWallets(ctx, tx, wallets...); err != nil {
		return nil, err
	}
	slices.Sort(wallets)
	amounts := make([]lending.Money, len(wallets))
	for i, w := range wallets {
		amounts[i] = perWallet[w]
	}
	var n int
	if err := tx.QueryRow(ctx, `
		WITH w AS (
			UPDATE wallets w SET held = w.held - r.amount, version = w.version + 1
			FROM unnest($1::bigint[], $2::bigint[]) AS r(id, amount)
			WHERE w.id = r.id AND w.held >= r.amount
			RETURNING w.id, w.version, w.user_id),
		o AS (`+walletEventsSQL+`)
		SELECT count(*) FROM w`, wallets, amounts).Scan(&n); err != nil {
		return nil, fmt.Errorf("release holds: %w", err)
	}
	if n != len(wallets) {
		return nil, fmt.Errorf("release holds: released on %d of %d wallets", n, len(wallets))
	}
	return out, nil
}

// platformWallet returns the id of a platform account (PIX_CLEARING or
// PLATFORM_FEES).
func platformWallet(ctx context.Context, q querier, kind string) (int64, error) {
	var id int64
	if err := q.QueryRow(ctx, `SELECT id FROM wallets WHERE kind = $1`, kind).Scan(&id); err != nil {
		return 0, fmt.Errorf("platform wallet %s: %w", kind, err)
	}
	return id, nil
}

// userWallet returns the id of a user's wallet.
func userWallet(ctx context.Context, q querier, userID int64) (int64, error) {
	var id int64
	if err := q.QueryRow(ctx, `SELECT id FROM wallets WHERE user_id = $1`, userID).Scan(&id); err != nil {
		return 0, fmt.Errorf("wallet of user %d: %w", userID, err)
	}
	return id, nil
}

// ---------------------------------------------------------------- events

// The outbox streams the use cases write and the subscriptions follow.
func WalletStream(userID int64) string       { return fmt.Sprintf("wallet:%d", userID) }
func LoanStream(loanID int64) string         { return fmt.Sprintf("loan:%d", loanID) }
func NotificationStream(userID int64) string { return fmt.Sprintf("notifications:%d", userID) }
func MessageStream(userID int64) string      { return fmt.Sprintf("messages:%d", userID) }

// The topics of the events that announce a notification and a message: the
// relay numbers the item an event of these topics names (RelayOutbox).
const (
	topicWalletUpdated     = "wallet.updated"
	topicNotificationAdded = "notification.added"
	topicMessageAdded      = "message.added"
)

// emit writes an outbox row in tx: the event leaves the database only after
// COMMIT, through the relay.
func emit(ctx context.Context, tx pgx.Tx, stream, topic string, payload any) error {
	b, err := json.Marshal(payload)
	if err != nil {
		return fmt.Errorf("outbox payload: %w", err)
	}
	if _, err := tx.Exec(ctx, `INSERT INTO outbox (stream, topic, payload) VALUES ($1, $2, $3)`, stream, topic, b); err != nil {
		return fmt.Errorf("outbox insert: %w", err)
	}
	return nil
}

func emitWallet(ctx context.Context, tx pgx.Tx, walletID, userID int64, version int) error {
	return emit(ctx, tx, WalletStream(userID), topicWalletUpdated,
		map[string]any{"walletId": walletID, "userId": userID, "version": version})
}

func emitLoan(ctx context.Context, tx pgx.Tx, loanID int64, status lending.LoanStatus) error {
	return emit(ctx, tx, LoanStream(loanID), "loan.updated", map[string]any{"loanId": loanID, "status": status})
}

// notify writes a notification for a user and its outbox event, in tx.
func notify(ctx context.Context, tx pgx.Tx, userID int64, kind lending.NotificationKind, title, body string, loanID *int64) error {
	var id int64
	if err := tx.QueryRow(ctx, `INSERT INTO notifications (user_id, kind, title, body, loan_id) VALUES ($1, $2, $3, $4, $5) RETURNING id`,
		userID, kind, title, body, loanID).Scan(&id); err != nil {
		return fmt.Errorf("insert notification: %w", err)
	}
	return emit(ctx, tx, NotificationStream(userID), topicNotificationAdded,
		map[string]any{"notificationId": id, "userId": userID})
}

// ---------------------------------------------------------------- idempotency

// RequestHash fingerprints an operation's arguments for idempotency checks.
func RequestHash(op string, args ...any) []byte {
	b, _ := json.Marshal(append([]any{op}, args...))
	h := sha256.Sum256(b)
	return h[:]
}

// claimKey claims an idempotency key for the caller inside tx. If the key is
// new, it returns found=false and the caller performs the effect and then
// calls finishKey. If the key was used with the same operation and
// arguments, it returns the first result's id (found=true) and the caller
// returns that result unchanged. A key used with other arguments is
// CONFLICT. A concurrent request with the same key waits on the key's row
// until the first commits (then it sees the result) or rolls back (then it
// claims the key itself): one effect per key.
func claimKey(ctx context.Context, tx pgx.Tx, userID int64, key, op string, hash []byte) (resultID int64, found bool, err error) {
	if err := lending.ValidateIdempotencyKey(key); err != nil {
		return 0, false, err
	}
	tag, err := tx.Exec(ctx, `INSERT INTO idempotency_keys (user_id, key, operation, request_hash) VALUES ($1, $2, $3, $4)
		ON CONFLICT (user_id, key) DO NOTHING`, userID, key, op, hash)
	if err != nil {
		return 0, false, fmt.Errorf("claim idempotency key: %w", err)
	}
	if tag.RowsAffected() == 1 {
		return 0, false, nil
	}
	var gotOp string
	var gotHash []byte
	var rid *int64
	if err := tx.QueryRow(ctx, `SELECT operation, request_hash, result_id FROM idempotency_keys WHERE user_id = $1 AND key = $2`,
		userID, key).Scan(&gotOp, &gotHash, &rid); err != nil {
		return 0, false, fmt.Errorf("read idempotency key: %w", err)
	}
	if gotOp != op || string(gotHash) != string(hash) || rid == nil {
		return 0, false, lending.Errorf(lending.CodeConflict, "idempotency key %q was already used with different arguments", key)
	}
	return *rid, true, nil
}

// finishKey records the result of the effect a key claimed.
func finishKey(ctx context.Context, tx pgx.Tx, userID int64, key string, resultID int64) error {
	tag, err := tx.Exec(ctx, `UPDATE idempotency_keys SET result_id = $3 WHERE user_id = $1 AND key = $2`, userID, key, resultID)
	if err != nil {
		return fmt.Errorf("finish idempotency key: %w", err)
	}
	return mustOne(tag, "finish idempotency key")
}
