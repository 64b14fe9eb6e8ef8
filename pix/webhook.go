package pix

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"strings"
	"time"

	"mutuo/lending"
)

// Limits of a webhook body ParseWebhook accepts.
const (
	MaxWebhookPayments = 1000
	MaxWebhookBody     = 4 << 20 // bytes
)

// Payment is one received Pix from a PSP webhook (the API Pix "Pix" object).
type Payment struct {
	EndToEndID string          // the payment's unique id across Pix: the idempotency key for crediting it
	Txid       string          // the charge it pays; "" for a Pix without txid
	Amount     lending.Money   // > 0
	PaidAt     time.Time       // horario, in UTC
	Raw        json.RawMessage // the item as received, for the audit trail
}

// ParseWebhook parses the body the PSP POSTs to {webhookUrl}/pix:
// {"pix":[{"endToEndId":..., "txid":..., "valor":"110.00", "horario":..., ...}]}
// (API Pix v2.9.0, WebhookPixBody). It is strict, and all or nothing: the
// body is one JSON object of at most MaxWebhookBody bytes with a "pix" array
// of at most MaxWebhookPayments items, and each item has an endToEndId of
// exactly 32 [a-zA-Z0-9], an optional txid of 1-35 [a-zA-Z0-9] ("" or null
// mean none), a valor matching \d{1,10}\.\d{2} that is positive, and an
// RFC 3339 horario. Other fields (infoPagador, devolucoes, ...) are kept in Raw
// only. An empty "pix" array yields no payments and no error. Any violation
// is BAD_USER_INPUT naming the item; it never panics.
//
// Items are not deduplicated: the caller credits each EndToEndID at most once
// (a unique constraint), which also makes PSP retries harmless.
func ParseWebhook(body []byte) ([]Payment, error) {
	if len(body) > MaxWebhookBody {
		return nil, lending.BadInput("webhook body larger than %d bytes", MaxWebhookBody)
	}
	var env struct {
		Pix *[]json.RawMessage `json:"pix"`
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	if err := dec.Decode(&env); err != nil {
		return nil, lending.BadInput("webhook body is not the expected JSON object: %v", err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, lending.BadInput("webhook body has data after the JSON object")
	}
	if env.Pix == nil {
		return nil, lending.BadInput(`webhook body has no "pix" array`)
	}
	items := *env.Pix
	if len(items) > MaxWebhookPayments {
		return nil, lending.BadInput("webhook has %d payments, more than %d", len(items), MaxWebhookPayments)
	}
	out := make([]Payment, 0, len(items))
	for k, raw := range items {
		p, err := parsePayment(k, raw)
		if err != nil {
			return nil, err
		}
		out = append(out, p)
	}
	return out, nil
}

func parsePayment(k int, raw json.RawMessage) (Payment, error) {
	bad := func(msg string) (Payment, error) {
		return Payment{}, lending.BadInput("webhook pix[%d]: %s", k, msg)
	}
	var it struct {
		EndToEndID *string `json:"endToEndId"`
		Txid       *string `json:"txid"`
		Valor      *string `json:"valor"`
		Horario    *string `json:"horario"`
	}
	if err := json.Unmarshal(raw, &it); err != nil {
		return bad("not a pix object with string fields")
	}
	p := Payment{Raw: raw}
	if it.EndToEndID == nil || len(*it.EndToEndID) != 32 || !alnum(*it.EndToEndID) {
		return bad("endToEndId must be 32 letters and digits")
	}
	p.EndToEndID = *it.EndToEndID
	if it.Txid != nil && *it.Txid != "" {
		if len(*it.Txid) > 35 || !alnum(*it.Txid) {
			return bad("txid must be 1 to 35 letters and digits")
		}
		p.Txid = *it.Txid
	}
	if it.Valor == nil || !validValor(*it.Valor) {
		return bad(`valor must be a decimal string like "100.00"`)
	}
	amount, err := lending.ParseMoney(*it.Valor)
	if err != nil || amount <= 0 {
		return bad("valor must be positive")
	}
	p.Amount = amount
	if it.Horario == nil {
		return bad("horario is required")
	}
	at, err := time.Parse(time.RFC3339Nano, *it.Horario)
	if err != nil {
		return bad("horario must be an RFC 3339 date-time")
	}
	p.PaidAt = at.UTC()
	return p, nil
}

// validValor matches the API's pattern \d{1,10}\.\d{2}.
func validValor(s string) bool {
	whole, frac, ok := strings.Cut(s, ".")
	return ok && len(whole) >= 1 && len(whole) <= 10 && digits(whole) && len(frac) == 2 && digits(frac)
}

// SignaturePrefix starts every signature header value.
const SignaturePrefix = "sha256="

// Sign returns the signature of a webhook body: "sha256=" and the lowercase
// hex HMAC-SHA256 of body under secret. The API Pix itself authenticates
// webhooks with mutual TLS; this HMAC is Mutuo's own check for deliveries
// that pass through a relay (and for the sandbox).
func Sign(secret, body []byte) string {
	m := hmac.New(sha256.New, secret)
	m.Write(body)
	return SignaturePrefix + hex.EncodeToString(m.Sum(nil))
}

// VerifySignature reports whether header is Sign(secret, body), comparing
// the MACs in constant time (hex digits in either case, surrounding spaces
// ignored). It is false for an empty secret, so a missing configuration
// never accepts forged webhooks.
func VerifySignature(secret, body []byte, header string) bool {
	if len(secret) == 0 {
		return false
	}
	h, ok := strings.CutPrefix(strings.TrimSpace(header), SignaturePrefix)
	if !ok || len(h) != 2*sha256.Size {
		return false
	}
	got, err := hex.DecodeString(h)
	if err != nil {
		return false
	}
	m := hmac.New(sha256.New, secret)
	m.Write(body)
	return hmac.Equal(got, m.Sum(nil))
}
