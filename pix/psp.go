package pix

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"math/big"
	"time"

	"mutuo/lending"
)

// PSP is the payment service provider that holds the platform's Pix account.
// Implementations do I/O and honour ctx; the deterministic Sandbox below is
// one. Every error that is not a *lending.Error means "outcome unknown":
// the caller retries with the same Txid / IdempotencyKey, which the PSP
// treats as the same operation.
type PSP interface {
	// CreateCharge registers a charge (cobrança imediata) of c.Amount
	// identified by c.Txid, payable for c.Expiry, and returns its BR Code.
	// The txid is the idempotency key: creating it again returns the same
	// charge. When it is paid, a webhook (see ParseWebhook) reports a Payment
	// with this Txid. Errors: BAD_USER_INPUT for an invalid charge (bad txid,
	// amount <= 0 or too large); anything else is an unknown outcome.
	CreateCharge(ctx context.Context, c Charge) (ChargeResult, error)

	// Pay sends a Pix of p.Amount to the key p.Key. The same IdempotencyKey
	// returns the original result and never sends a second Pix. The result's
	// Status says what happened: WithdrawalCompleted (the money left),
	// WithdrawalFailed (definitively rejected, nothing left: release the
	// hold) or WithdrawalPending (accepted; the outcome arrives later).
	// Errors: BAD_USER_INPUT for an invalid payout (bad key, amount <= 0,
	// bad idempotency key), nothing sent; anything else is an unknown
	// outcome: keep the hold and retry with the same IdempotencyKey.
	Pay(ctx context.Context, p Payout) (PayoutResult, error)
}

// Charge is a request for a Pix charge.
type Charge struct {
	Txid        string        // ValidTxid: 26-35 [a-zA-Z0-9], e.g. NewTxid()
	Amount      lending.Money // > 0
	Expiry      time.Duration // how long it can be paid; 0 means lending.DefaultDepositExpiry
	Description string        // optional, shown to the payer; at most 140 characters
}

// ChargeResult is a created charge.
type ChargeResult struct {
	Txid   string // the charge's txid, as requested
	BRCode string // the copia-e-cola payload; Decode accepts it
}

// Payout is a request to send a Pix.
type Payout struct {
	IdempotencyKey string        // 1-64 of [A-Za-z0-9_-]; one payout per key
	Key            string        // the receiver's Pix key (ParseKey accepts it)
	Amount         lending.Money // > 0
	Description    string        // optional message to the receiver
}

// PayoutResult is what the PSP did with a payout.
type PayoutResult struct {
	EndToEndID string                   // the Pix's id (32 [a-zA-Z0-9])
	Status     lending.WithdrawalStatus // COMPLETED, FAILED or PENDING
	Reason     string                   // why it failed, for FAILED
}

// Sandbox behaviour, for tests.
const (
	// SandboxFailingKey is a Pix key whose payouts the Sandbox always rejects.
	SandboxFailingKey = "falha@sandbox.mutuo.invalid"
	// SandboxFailingCentavos: a payout whose amount ends in .13 (amount % 100
	// == 13, e.g. "50.13") is rejected by the Sandbox.
	SandboxFailingCentavos = 13
	// SandboxISPB is the participant code in the Sandbox's EndToEndIDs.
	SandboxISPB = "00000000"
)

// Sandbox is a PSP that does no I/O and keeps no state: the same input
// always gives the same output, so retries are naturally idempotent and
// instances agree. The zero value is ready to use.
//
// CreateCharge returns a dynamic BR Code for MerchantName/MerchantCity whose
// payload location is Location + "/" + txid, with the amount. (A charge's txid
// is 26-35 characters, longer than the 25 a static code can carry, so charges
// are dynamic codes, as real PSPs issue them.) Nobody can pay it: tests
// simulate the payment with PaymentWebhook.
//
// Pay completes every valid payout except two designated failures, which it
// reports as WithdrawalFailed: amounts ending in .13 (SandboxFailingCentavos)
// and the key SandboxFailingKey.
type Sandbox struct {
	MerchantName string // default "MUTUO SANDBOX"
	MerchantCity string // default "SAO PAULO"
	Location     string // default "pix.sandbox.mutuo.invalid/v2/cob"
}

var _ PSP = Sandbox{}

// CreateCharge implements PSP; see Sandbox.
func (s Sandbox) CreateCharge(ctx context.Context, c Charge) (ChargeResult, error) {
	if err := ctx.Err(); err != nil {
		return ChargeResult{}, err
	}
	if !ValidTxid(c.Txid) {
		return ChargeResult{}, lending.BadInput("charge txid must be 26 to 35 letters and digits")
	}
	if c.Amount <= 0 || c.Amount > 9_999_999_999_99 {
		return ChargeResult{}, lending.BadInput("charge amount must be between 0.01 and 9999999999.99, got %v", c.Amount)
	}
	if c.Expiry < 0 || len(c.Description) > 140 {
		return ChargeResult{}, lending.BadInput("charge expiry must not be negative and description at most 140 characters")
	}
	code, err := Encode(BRCode{
		URL:          or(s.Location, "pix.sandbox.mutuo.invalid/v2/cob") + "/" + c.Txid,
		MerchantName: or(s.MerchantName, "MUTUO SANDBOX"),
		MerchantCity: or(s.MerchantCity, "SAO PAULO"),
		Amount:       c.Amount,
	})
	if err != nil { // the inputs were checked: the configuration is wrong
		return ChargeResult{}, fmt.Errorf("pix sandbox misconfigured: %s", err.Error())
	}
	return ChargeResult{Txid: c.Txid, BRCode: code}, nil
}

// Pay implements PSP; see Sandbox.
func (s Sandbox) Pay(ctx context.Context, p Payout) (PayoutResult, error) {
	if err := ctx.Err(); err != nil {
		return PayoutResult{}, err
	}
	if err := lending.ValidateIdempotencyKey(p.IdempotencyKey); err != nil {
		return PayoutResult{}, err
	}
	_, key, err := ParseKey(p.Key)
	if err != nil {
		return PayoutResult{}, err
	}
	if p.Amount <= 0 {
		return PayoutResult{}, lending.BadInput("payout amount must be positive, got %v", p.Amount)
	}
	res := PayoutResult{
		EndToEndID: sandboxEndToEndID("pay", p.IdempotencyKey),
		Status:     lending.WithdrawalCompleted,
	}
	switch {
	case p.Amount%100 == SandboxFailingCentavos:
		res.Status, res.Reason = lending.WithdrawalFailed, "sandbox: amounts ending in .13 are rejected"
	case key == SandboxFailingKey:
		res.Status, res.Reason = lending.WithdrawalFailed, "sandbox: the receiver's key rejects payments"
	}
	return res, nil
}

// PaymentWebhook is the webhook body (see ParseWebhook) the PSP would POST
// when the charge txid is paid amount at paidAt: what tests feed the webhook
// handler to simulate a payer. Its EndToEndID is derived from txid, so the
// same call gives the same body (a PSP retry). Sign it with Sign.
func (s Sandbox) PaymentWebhook(txid string, amount lending.Money, paidAt time.Time) []byte {
	type item struct {
		EndToEndID string `json:"endToEndId"`
		Txid       string `json:"txid"`
		Valor      string `json:"valor"`
		Horario    string `json:"horario"`
	}
	body, _ := json.Marshal(map[string][]item{"pix": {{
		EndToEndID: sandboxEndToEndID("charge", txid),
		Txid:       txid,
		Valor:      amount.String(),
		Horario:    paidAt.UTC().Format(time.RFC3339Nano),
	}}})
	return body
}

// sandboxEndToEndID is "E", the sandbox ISPB and 23 letters and digits
// derived from the inputs: 32 characters, like a real EndToEndId.
func sandboxEndToEndID(parts ...string) string {
	h := sha256.New()
	for _, p := range parts {
		fmt.Fprintf(h, "%d:%s;", len(p), p)
	}
	n := new(big.Int).SetBytes(h.Sum(nil))
	tail := []byte(n.Text(62))
	for len(tail) < 23 {
		tail = append(tail, '0')
	}
	return "E" + SandboxISPB + string(tail[:23])
}

func or(s, def string) string {
	if s == "" {
		return def
	}
	return s
}
