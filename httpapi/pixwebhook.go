package httpapi

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"time"

	"mutuo/lending"
	"mutuo/pix"
	"mutuo/store"
)

// DefaultPixWebhookMaxBody is the largest webhook body PixWebhook reads when
// MaxBody is 0: 256 KiB, far more than a PSP batch of payments needs.
const DefaultPixWebhookMaxBody = 256 << 10

// PixSignatureHeader carries the webhook body's HMAC: "sha256=<hex>".
const PixSignatureHeader = "X-Mutuo-Signature"

// PixPaymentApplier applies one received Pix payment exactly once per
// endToEndId (store.Store implements it). An error means nothing was
// decided for that payment and the delivery should be retried.
type PixPaymentApplier interface {
	ApplyPixPayment(ctx context.Context, p pix.Payment, now time.Time) (store.PaymentOutcome, error)
}

// PixWebhook serves POST /webhooks/pix, the PSP's notification of received
// Pix payments (API Pix v2.9.0 webhook body, {"pix":[...]}).
//
// It reads at most MaxBody bytes (413 beyond), checks the X-Mutuo-Signature
// header (HMAC-SHA256 of the exact body under Secret, pix.VerifySignature)
// before looking at the body (401 and no change when it is missing or
// wrong; an empty Secret refuses everything), parses it strictly
// (pix.ParseWebhook: 400 when malformed, nothing applied) and applies each
// payment in order. It answers 200 with
// {"results":[{"endToEndId","outcome","duplicate"}]}, one per payment, when
// every payment was applied or found already applied; a database error is a
// 500 without details, so the PSP retries the delivery, which is safe
// because a payment already applied is reported as a duplicate and changes
// nothing. Other methods are 405.
//
// Logs carry endToEndIds, txids, amounts and outcomes, never the body (it
// holds the payer's name and CPF/CNPJ), the signature or the secret.
type PixWebhook struct {
	Secret  []byte
	Store   PixPaymentApplier
	Clock   func() time.Time // time.Now when nil
	MaxBody int64            // DefaultPixWebhookMaxBody when 0
	Log     *slog.Logger     // slog.Default() when nil
}

// PixWebhookResult is one payment's line in the webhook's answer.
type PixWebhookResult struct {
	EndToEndID string           `json:"endToEndId"`
	Outcome    store.PixOutcome `json:"outcome"`
	Duplicate  bool             `json:"duplicate"`
}

type pixWebhookError struct {
	Error string `json:"error"`
}

// ServeHTTP implements http.Handler.
func (h *PixWebhook) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	log := h.Log
	if log == nil {
		log = slog.Default()
	}
	log = log.With("handler", "pix-webhook", "remote", r.RemoteAddr)
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		writeWebhookJSON(w, http.StatusMethodNotAllowed, pixWebhookError{"method not allowed: POST the webhook body"})
		return
	}
	limit := h.MaxBody
	if limit <= 0 {
		limit = DefaultPixWebhookMaxBody
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, limit))
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			log.WarnContext(r.Context(), "pix webhook body too large", "limit", limit)
			writeWebhookJSON(w, http.StatusRequestEntityTooLarge, pixWebhookError{"body too large"})
			return
		}
		log.WarnContext(r.Context(), "pix webhook body unreadable", "err", err)
		writeWebhookJSON(w, http.StatusBadRequest, pixWebhookError{"body could not be read"})
		return
	}
	if !pix.VerifySignature(h.Secret, body, r.Header.Get(PixSignatureHeader)) {
		log.WarnContext(r.Context(), "pix webhook signature invalid", "bytes", len(body), "signed", r.Header.Get(PixSignatureHeader) != "")
		writeWebhookJSON(w, http.StatusUnauthorized, pixWebhookError{"invalid or missing " + PixSignatureHeader})
		return
	}
	payments, err := pix.ParseWebhook(body)
	if err != nil {
		msg := "malformed webhook body"
		if e, ok := lending.AsError(err); ok {
			msg = e.Message
		}
		log.WarnContext(r.Context(), "pix webhook malformed", "err", msg)
		writeWebhookJSON(w, http.StatusBadRequest, pixWebhookError{msg})
		return
	}
	clock := h.Clock
	if clock == nil {
		clock = time.Now
	}
	results := make([]PixWebhookResult, 0, len(payments))
	for _, p := range payments {
		out, err := h.Store.ApplyPixPayment(r.Context(), p, clock())
		if err != nil {
			log.ErrorContext(r.Context(), "pix webhook: applying payment failed; the PSP will retry",
				"endToEndId", p.EndToEndID, "txid", p.Txid, "applied_before", len(results), "err", err)
			writeWebhookJSON(w, http.StatusInternalServerError, pixWebhookError{"internal error; retry the delivery"})
			return
		}
		lvl := slog.LevelInfo
		if out.Outcome != store.PixCredited && !out.Duplicate {
			lvl = slog.LevelWarn // money arrived that we did not credit: reconcile / refund
		}
		log.Log(r.Context(), lvl, "pix payment", "endToEndId", p.EndToEndID, "txid", p.Txid,
			"amount", p.Amount.String(), "outcome", string(out.Outcome), "duplicate", out.Duplicate)
		results = append(results, PixWebhookResult{EndToEndID: p.EndToEndID, Outcome: out.Outcome, Duplicate: out.Duplicate})
	}
	writeWebhookJSON(w, http.StatusOK, struct {
		Results []PixWebhookResult `json:"results"`
	}{results})
}

func writeWebhookJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}
