package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"testing"
	"time"

	"mutuo/pix"
)

// payDeposit pays a charge the way the PSP does: a signed webhook.
func (e *env) payDeposit(txid, amount string, secret []byte) map[string]any {
	e.t.Helper()
	body := fmt.Sprintf(`{"pix":[{"endToEndId":"E%031s","txid":%q,"valor":%q,"horario":%q}]}`,
		txid[:31], txid, amount, time.Now().UTC().Format(time.RFC3339))
	req, _ := http.NewRequest(http.MethodPost, e.URL+"/webhooks/pix", bytes.NewReader([]byte(body)))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-Mutuo-Signature", pix.Sign(secret, []byte(body)))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	var out map[string]any
	_ = json.NewDecoder(resp.Body).Decode(&out)
	if resp.StatusCode != 200 {
		e.t.Fatalf("webhook: %d %v", resp.StatusCode, out)
	}
	return out
}

func (e *env) deposit(tok, amount, key string) {
	e.t.Helper()
	d := e.ok(tok, `mutation($a: Money!, $k: String!) { createDeposit(amount: $a, idempotencyKey: $k) { txid brCode status amount expiresAt } }`,
		map[string]any{"a": amount, "k": key})
	if str(d, "createDeposit.status") != "PENDING" {
		e.t.Fatalf("deposit: %v", d)
	}
	if _, err := pix.Decode(str(d, "createDeposit.brCode")); err != nil {
		e.t.Fatalf("brCode does not decode: %v", err)
	}
	out := e.payDeposit(str(d, "createDeposit.txid"), amount, e.App.Config.PixWebhookSecret)
	if str(out, "results.0.outcome") != "CREDITED" {
		e.t.Fatalf("webhook outcome: %v", out)
	}
}

// apiWorld signs up two investors and two borrowers through the API, with
// nothing else: every row after this comes from the API too.
func apiWorld(t *testing.T, e *env) *world {
	t.Helper()
	w := &world{tokens: map[string]string{}, users: map[string]int64{}, ids: map[string]int64{}}
	for _, u := range []struct {
		key, name, email, income string
		roles                    []string
	}{
		{"inv1", "Ana Investidora", "ana@test.dev", "", []string{"INVESTOR"}},
		{"inv2", "Bruno Investidor", "bruno@test.dev", "", []string{"INVESTOR"}},
		{"bor1", "Carla Tomadora", "carla@test.dev", "8000.00", []string{"BORROWER"}},
		{"bor2", "Diego Tomador", "diego@test.dev", "5000", []string{"BORROWER"}},
	} {
		w.tokens[u.key], w.users[u.key] = signUp(e, u.name, u.email, u.roles, u.income)
	}
	return w
}

func balance(e *env, tok string) (string, string, string) {
	d := e.ok(tok, `{ me { wallet { balance available held } } }`, nil)
	return str(d, "me.wallet.balance"), str(d, "me.wallet.available"), str(d, "me.wallet.held")
}

// TestLoanLifecycleThroughTheAPI is the README's walk-through: deposit by
// Pix, request a loan, invest until it funds and disburses, repay it all,
// withdraw; with the exact figures and the ledger invariants at the end.
func TestLoanLifecycleThroughTheAPI(t *testing.T) {
	e := newEnv(t)
	w := apiWorld(t, e)
	tokB := w.tokens["bor2"]
	e.deposit(w.tokens["inv1"], "10000.00", "dep-0")
	e.deposit(w.tokens["inv2"], "5000.00", "dep-1")
	e.deposit(w.tokens["inv2"], "1000.00", "dep-2")
	if b, a, h := balance(e, w.tokens["inv2"]); b != "6000.00" || a != "6000.00" || h != "0.00" {
		t.Fatalf("after deposit: %s %s %s", b, a, h)
	}

	d := e.ok(tokB, `mutation { requestLoan(input: {amount: "1000.00", termMonths: 3, purpose: "Capital de giro"}, idempotencyKey: "loan-1") {
		id status grade annualRate amount fundedAmount fundingDeadline cet } }`, nil)
	loanID := str(d, "requestLoan.id")
	if str(d, "requestLoan.status") != "FUNDING" || get(d, "requestLoan.cet") == nil {
		t.Fatalf("requestLoan: %v", d)
	}
	// replay: same loan
	if d2 := e.ok(tokB, `mutation { requestLoan(input: {amount: "1000.00", termMonths: 3, purpose: "Capital de giro"}, idempotencyKey: "loan-1") { id } }`, nil); str(d2, "requestLoan.id") != loanID {
		t.Fatalf("replay made another loan: %v", d2)
	}
	// roles and states
	if r := e.do(w.tokens["inv1"], `mutation { requestLoan(input: {amount: "1000.00", termMonths: 3, purpose: "x y z"}, idempotencyKey: "l") { id } }`, nil); r.code(0) != "FORBIDDEN" {
		t.Fatalf("investor requesting a loan: %s", r.Body)
	}
	invest := func(tok, amount, key string) *gqlResponse {
		return e.do(tok, `mutation($l: ID!, $a: Money!, $k: String!) { invest(loanId: $l, amount: $a, idempotencyKey: $k) { id status amount loan { status fundedAmount } } }`,
			map[string]any{"l": loanID, "a": amount, "k": key})
	}
	if r := invest(tokB, "100.00", "i0"); r.code(0) != "FORBIDDEN" {
		t.Fatalf("borrower investing: %s", r.Body)
	}
	if r := invest(w.tokens["inv1"], "10.00", "i-small"); r.code(0) != "BAD_USER_INPUT" {
		t.Fatalf("below minimum: %s", r.Body)
	}
	if r := invest(w.tokens["inv1"], "600.00", "i1"); len(r.Errors) > 0 || str(r.Data, "invest.status") != "COMMITTED" {
		t.Fatalf("invest 1: %s", r.Body)
	}
	if b, a, h := balance(e, w.tokens["inv1"]); b != "10000.00" || a != "9400.00" || h != "600.00" {
		t.Fatalf("hold: %s %s %s", b, a, h)
	}
	if r := invest(w.tokens["inv2"], "500.00", "i2"); r.code(0) != "BAD_USER_INPUT" {
		t.Fatalf("overfunding: %s", r.Body)
	}
	r := invest(w.tokens["inv2"], "400.00", "i2")
	if len(r.Errors) > 0 || str(r.Data, "invest.loan.status") != "ACTIVE" {
		t.Fatalf("funding invest: %s", r.Body)
	}
	if r := invest(w.tokens["inv2"], "25.00", "i3"); r.code(0) != "INVALID_STATE" {
		t.Fatalf("investing in an active loan: %s", r.Body)
	}
	// disbursed: the borrower got 1000.00 - 2% fee; the investors' holds were posted
	if b, _, _ := balance(e, tokB); b != "980.00" {
		t.Fatalf("borrower after disbursement: %s", b)
	}
	if b, a, h := balance(e, w.tokens["inv1"]); b != "9400.00" || a != "9400.00" || h != "0.00" {
		t.Fatalf("inv1 after disbursement: %s %s %s", b, a, h)
	}
	d = e.ok(tokB, `query($id: ID!) { loan(id: $id) { status installments { number total paid status } } }`, map[string]any{"id": loanID})
	var owed int64
	for _, in := range list(d, "loan.installments") {
		var reais, cents int64
		fmt.Sscanf(str(in, "total"), "%d.%d", &reais, &cents)
		owed += reais*100 + cents
	}
	if len(list(d, "loan.installments")) != 3 {
		t.Fatalf("schedule: %v", d)
	}
	// the borrower needs more money to repay than was disbursed: deposit
	e.deposit(tokB, "100.00", "dep-b")
	total := fmt.Sprintf("%d.%02d", owed/100, owed%100)
	if r := e.do(tokB, `mutation($l: ID!, $a: Money!) { repayLoan(loanId: $l, amount: $a, idempotencyKey: "over") { amount } }`,
		map[string]any{"l": loanID, "a": fmt.Sprintf("%d.%02d", (owed+1)/100, (owed+1)%100)}); r.code(0) != "BAD_USER_INPUT" {
		t.Fatalf("overpayment: %s", r.Body)
	}
	d = e.ok(tokB, `mutation($l: ID!, $a: Money!) { repayLoan(loanId: $l, amount: $a, idempotencyKey: "all") { amount loan { status } installments { status } } }`,
		map[string]any{"l": loanID, "a": total})
	if str(d, "repayLoan.loan.status") != "REPAID" {
		t.Fatalf("repaid: %v", d)
	}
	d = e.ok(w.tokens["inv1"], `{ me { investor { portfolio { receivedPrincipal receivedInterest activeInvestments } } } }`, nil)
	if str(d, "me.investor.portfolio.receivedPrincipal") != "600.00" {
		t.Fatalf("portfolio: %v", d)
	}
	// withdraw
	d = e.ok(w.tokens["inv1"], `mutation { requestWithdrawal(amount: "100.00", pixKey: "ana@test.dev", idempotencyKey: "wd-1") { status amount pixKey } }`, nil)
	if str(d, "requestWithdrawal.status") != "COMPLETED" {
		t.Fatalf("withdrawal: %v", d)
	}
	if r := e.do(w.tokens["inv1"], `mutation { requestWithdrawal(amount: "1000000.00", pixKey: "ana@test.dev", idempotencyKey: "wd-2") { status } }`, nil); r.code(0) != "INSUFFICIENT_FUNDS" {
		t.Fatalf("withdraw too much: %s", r.Body)
	}
	if r := e.do(w.tokens["inv1"], `mutation { requestWithdrawal(amount: "1.00", pixKey: "123.456.789-00", idempotencyKey: "wd-3") { status } }`, nil); r.code(0) != "BAD_USER_INPUT" {
		t.Fatalf("bad key: %s", r.Body)
	}
	if err := e.App.Store.CheckInvariants(context.Background()); err != nil {
		t.Fatal(err)
	}
}
