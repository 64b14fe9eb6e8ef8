package httpapi_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"

	"mutuo/httpapi"
	"mutuo/internal/testenv"
	"mutuo/lending"
	"mutuo/pix"
	"mutuo/store"
)

func TestMain(m *testing.M) { testenv.Main(m) }

var webhookSecret = []byte("test-webhook-secret")

type webhookEnv struct {
	t     *testing.T
	db    *testenv.DB
	store *store.Store
	h     *httpapi.PixWebhook
	logs  *bytes.Buffer
	now   time.Time
}

func newWebhookEnv(t *testing.T) *webhookEnv {
	t.Helper()
	db := testenv.NewDB(t)
	s := store.New(db.Pool)
	e := &webhookEnv{t: t, db: db, store: s, logs: &bytes.Buffer{}, now: time.Now()}
	e.h = &httpapi.PixWebhook{
		Secret: webhookSecret,
		Store:  s,
		Clock:  func() time.Time { return e.now },
		Log:    slog.New(slog.NewTextHandler(&lockedWriter{w: e.logs}, nil)),
	}
	return e
}

type lockedWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

func (e *webhookEnv) user() int64 {
	e.t.Helper()
	u, err := e.store.CreateUser(context.Background(), "Pix User", uuid.NewString()[:8]+"@example.com", "h", []lending.Role{lending.RoleInvestor}, nil)
	if err != nil {
		e.t.Fatal(err)
	}
	return u.ID
}

func (e *webhookEnv) deposit(uid int64, amount lending.Money) *lending.Deposit {
	e.t.Helper()
	d, err := e.store.CreateDeposit(context.Background(), lending.Viewer{UserID: uid}, amount, "k"+uuid.NewString()[:8],
		store.PSPCharge(pix.Sandbox{}, time.Hour, func() time.Time { return e.now }))
	if err != nil {
		e.t.Fatal(err)
	}
	return d
}

type webhookResponse struct {
	Results []struct {
		EndToEndID string `json:"endToEndId"`
		Outcome    string `json:"outcome"`
		Duplicate  bool   `json:"duplicate"`
	} `json:"results"`
	Error string `json:"error"`
}

// post delivers body through the handler, signed with secret ("" header
// when secret is nil).
func (e *webhookEnv) post(body []byte, secret []byte) (int, webhookResponse) {
	e.t.Helper()
	r := httptest.NewRequest(http.MethodPost, "/webhooks/pix", bytes.NewReader(body))
	r.Header.Set("Content-Type", "application/json")
	if secret != nil {
		r.Header.Set(httpapi.PixSignatureHeader, pix.Sign(secret, body))
	}
	w := httptest.NewRecorder()
	e.h.ServeHTTP(w, r)
	var resp webhookResponse
	if ct := w.Header().Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		e.t.Fatalf("content type %q", ct)
	}
	if err := json.Unmarshal(w.Body.Bytes(), &resp); err != nil {
		e.t.Fatalf("response %q: %v", w.Body.String(), err)
	}
	return w.Code, resp
}

func (e *webhookEnv) pay(d *lending.Deposit, amount lending.Money, at time.Time) (int, webhookResponse) {
	e.t.Helper()
	return e.post(pix.Sandbox{}.PaymentWebhook(d.Txid, amount, at), webhookSecret)
}

func (e *webhookEnv) count(sql string, args ...any) int {
	e.t.Helper()
	var n int
	if err := e.db.Pool.QueryRow(context.Background(), sql, args...).Scan(&n); err != nil {
		e.t.Fatalf("%s: %v", sql, err)
	}
	return n
}

func (e *webhookEnv) balance(uid int64) lending.Money {
	e.t.Helper()
	var b lending.Money
	if err := e.db.Pool.QueryRow(context.Background(), `SELECT balance FROM wallets WHERE user_id = $1`, uid).Scan(&b); err != nil {
		e.t.Fatal(err)
	}
	return b
}

func (e *webhookEnv) checkMoney() {
	e.t.Helper()
	if n := e.count(`SELECT count(*) FROM wallets w
		WHERE w.balance <> (SELECT coalesce(sum(amount), 0) FROM ledger_entries e WHERE e.wallet_id = w.id)`); n != 0 {
		e.t.Fatalf("%d wallets disagree with their entries", n)
	}
	if err := e.store.CheckInvariants(context.Background()); err != nil {
		e.t.Fatal(err)
	}
}

func oneResult(t *testing.T, resp webhookResponse, outcome string, dup bool) {
	t.Helper()
	if len(resp.Results) != 1 || resp.Results[0].Outcome != outcome || resp.Results[0].Duplicate != dup || len(resp.Results[0].EndToEndID) != 32 {
		t.Fatalf("results = %+v, want one %s (duplicate %v)", resp.Results, outcome, dup)
	}
}

func TestPixWebhookCreditsOnce(t *testing.T) {
	e := newWebhookEnv(t)
	uid := e.user()
	d := e.deposit(uid, 300_00)

	code, resp := e.pay(d, 300_00, e.now)
	if code != http.StatusOK {
		t.Fatalf("status %d: %+v", code, resp)
	}
	oneResult(t, resp, "CREDITED", false)
	if b := e.balance(uid); b != 300_00 {
		t.Fatalf("balance %v", b)
	}
	// The PSP delivers the same payment again.
	for range 3 {
		code, resp = e.pay(d, 300_00, e.now)
		if code != http.StatusOK {
			t.Fatalf("status %d", code)
		}
		oneResult(t, resp, "CREDITED", true)
	}
	// Another Pix for the same charge.
	body := strings.Replace(string(pix.Sandbox{}.PaymentWebhook(d.Txid, 300_00, e.now)), `"endToEndId":"E`, `"endToEndId":"X`, 1)
	code, resp = e.post([]byte(body), webhookSecret)
	if code != http.StatusOK {
		t.Fatalf("status %d", code)
	}
	oneResult(t, resp, "ALREADY_PAID", false)
	if b := e.balance(uid); b != 300_00 {
		t.Fatalf("balance %v, want 300.00", b)
	}
	if n := e.count(`SELECT count(*) FROM pix_payments`); n != 2 {
		t.Fatalf("pix_payments %d", n)
	}
	// The logs name the payment, never the payload's personal data.
	if logs := e.logs.String(); !strings.Contains(logs, resp.Results[0].EndToEndID) || strings.Contains(logs, string(webhookSecret)) {
		t.Fatalf("logs: %s", logs)
	}
	e.checkMoney()
}

// One delivery with several payments, each answered in order; none of the
// refused ones credits anything.
func TestPixWebhookBatchOutcomes(t *testing.T) {
	e := newWebhookEnv(t)
	uid := e.user()
	good, wrong, late := e.deposit(uid, 10_00), e.deposit(uid, 20_00), e.deposit(uid, 30_00)
	item := func(e2e, txid, valor string, at time.Time) string {
		return fmt.Sprintf(`{"endToEndId":%q,"txid":%q,"valor":%q,"horario":%q,"infoPagador":"pagamento","devolucoes":[]}`,
			e2e, txid, valor, at.UTC().Format(time.RFC3339Nano))
	}
	e2e := func(n int) string { return fmt.Sprintf("E12345678%023d", n) }
	body := `{"pix":[` + strings.Join([]string{
		item(e2e(1), pix.NewTxid(), "10.00", e.now),
		item(e2e(2), wrong.Txid, "20.01", e.now),
		item(e2e(3), late.Txid, "30.00", late.ExpiresAt.Add(time.Minute)),
		item(e2e(4), good.Txid, "10.00", e.now),
		item(e2e(4), good.Txid, "10.00", e.now), // the same Pix twice in one body
	}, ",") + `]}`
	code, resp := e.post([]byte(body), webhookSecret)
	if code != http.StatusOK {
		t.Fatalf("status %d: %+v", code, resp)
	}
	want := []struct {
		outcome string
		dup     bool
	}{{"UNKNOWN_TXID", false}, {"WRONG_AMOUNT", false}, {"EXPIRED", false}, {"CREDITED", false}, {"CREDITED", true}}
	if len(resp.Results) != len(want) {
		t.Fatalf("results = %+v", resp.Results)
	}
	for i, w := range want {
		if r := resp.Results[i]; r.EndToEndID != e2e(min(i+1, 4)) || r.Outcome != w.outcome || r.Duplicate != w.dup {
			t.Fatalf("result %d = %+v, want %+v", i, r, w)
		}
	}
	if b := e.balance(uid); b != 10_00 {
		t.Fatalf("balance %v, want 10.00", b)
	}
	if n := e.count(`SELECT count(*) FROM pix_payments WHERE outcome <> 'CREDITED'`); n != 3 {
		t.Fatalf("recorded refusals %d, want 3", n)
	}
	// An empty delivery is fine.
	code, resp = e.post([]byte(`{"pix":[]}`), webhookSecret)
	if code != http.StatusOK || resp.Results == nil || len(resp.Results) != 0 {
		t.Fatalf("empty: %d %+v", code, resp)
	}
	e.checkMoney()
}

func TestPixWebhookRejects(t *testing.T) {
	e := newWebhookEnv(t)
	uid := e.user()
	d := e.deposit(uid, 50_00)
	body := pix.Sandbox{}.PaymentWebhook(d.Txid, 50_00, e.now)

	for _, tc := range []struct {
		name   string
		header string
	}{
		{"missing", ""},
		{"other secret", pix.Sign([]byte("not-the-secret"), body)},
		{"other body", pix.Sign(webhookSecret, append([]byte(" "), body...))},
		{"not hex", "sha256=zz"},
		{"no prefix", strings.TrimPrefix(pix.Sign(webhookSecret, body), "sha256=")},
	} {
		r := httptest.NewRequest(http.MethodPost, "/webhooks/pix", bytes.NewReader(body))
		if tc.header != "" {
			r.Header.Set(httpapi.PixSignatureHeader, tc.header)
		}
		w := httptest.NewRecorder()
		e.h.ServeHTTP(w, r)
		if w.Code != http.StatusUnauthorized || !strings.Contains(w.Body.String(), `"error"`) {
			t.Fatalf("%s: %d %s", tc.name, w.Code, w.Body.String())
		}
	}
	// An unconfigured secret refuses even a body "signed" with it.
	empty := &httpapi.PixWebhook{Store: e.store}
	r := httptest.NewRequest(http.MethodPost, "/webhooks/pix", bytes.NewReader(body))
	r.Header.Set(httpapi.PixSignatureHeader, pix.Sign(nil, body))
	w := httptest.NewRecorder()
	empty.ServeHTTP(w, r)
	if w.Code != http.StatusUnauthorized {
		t.Fatalf("empty secret: %d", w.Code)
	}

	// Malformed (but signed) bodies.
	for _, bad := range []string{
		``, `not json`, `{}`, `{"pix":{}}`, `{"pix":[{"endToEndId":"short","txid":"x","valor":"1.00","horario":"2024-01-01T00:00:00Z"}]}`,
		`{"pix":[{"endToEndId":"E12345678901234567890123456789012","valor":"1.0","horario":"2024-01-01T00:00:00Z"}]}`,
		`{"pix":[]} {"pix":[]}`,
	} {
		code, resp := e.post([]byte(bad), webhookSecret)
		if code != http.StatusBadRequest || resp.Error == "" {
			t.Fatalf("%q: %d %+v", bad, code, resp)
		}
	}
	// A body over the limit is 413, before anything is checked.
	small := *e.h
	small.MaxBody = 64
	r = httptest.NewRequest(http.MethodPost, "/webhooks/pix", bytes.NewReader(body))
	r.Header.Set(httpapi.PixSignatureHeader, pix.Sign(webhookSecret, body))
	w = httptest.NewRecorder()
	small.ServeHTTP(w, r)
	if w.Code != http.StatusRequestEntityTooLarge {
		t.Fatalf("large body: %d", w.Code)
	}
	// Only POST.
	w = httptest.NewRecorder()
	e.h.ServeHTTP(w, httptest.NewRequest(http.MethodGet, "/webhooks/pix", nil))
	if w.Code != http.StatusMethodNotAllowed || w.Header().Get("Allow") != http.MethodPost {
		t.Fatalf("GET: %d", w.Code)
	}

	// Nothing changed.
	if n := e.count(`SELECT count(*) FROM pix_payments`); n != 0 {
		t.Fatalf("pix_payments %d", n)
	}
	if b := e.balance(uid); b != 0 {
		t.Fatalf("balance %v", b)
	}
	if n := e.count(`SELECT count(*) FROM deposits WHERE status = 'PENDING'`); n != 1 {
		t.Fatal("deposit changed")
	}
	// And the genuine delivery still works afterwards.
	code, resp := e.pay(d, 50_00, e.now)
	if code != http.StatusOK {
		t.Fatalf("status %d", code)
	}
	oneResult(t, resp, "CREDITED", false)
	e.checkMoney()
}

// A database failure is a 500 that says nothing about the database, so the
// PSP retries.
func TestPixWebhookDatabaseError(t *testing.T) {
	e := newWebhookEnv(t)
	uid := e.user()
	d := e.deposit(uid, 50_00)
	broken := testenv.NewDB(t)
	broken.Pool.Close()
	h := *e.h
	h.Store = store.New(broken.Pool)
	body := pix.Sandbox{}.PaymentWebhook(d.Txid, 50_00, e.now)
	r := httptest.NewRequest(http.MethodPost, "/webhooks/pix", bytes.NewReader(body))
	r.Header.Set(httpapi.PixSignatureHeader, pix.Sign(webhookSecret, body))
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	if w.Code != http.StatusInternalServerError {
		t.Fatalf("status %d: %s", w.Code, w.Body.String())
	}
	if b := strings.ToLower(w.Body.String()); strings.Contains(b, "pool") || strings.Contains(b, "sql") || strings.Contains(b, "closed") {
		t.Fatalf("500 leaks details: %s", w.Body.String())
	}
	// The retry, with the database back, credits it.
	code, resp := e.pay(d, 50_00, e.now)
	if code != http.StatusOK {
		t.Fatalf("retry: %d", code)
	}
	oneResult(t, resp, "CREDITED", false)
}

// 20 concurrent deliveries of one payment over real HTTP credit it once;
// deliveries for different deposits arrive in any order.
func TestPixWebhookConcurrentAndReordered(t *testing.T) {
	e := newWebhookEnv(t)
	srv := httptest.NewServer(e.h)
	defer srv.Close()
	u1, u2 := e.user(), e.user()
	a, b := e.deposit(u1, 12_34), e.deposit(u2, 56_78)

	deliver := func(d *lending.Deposit) (int, webhookResponse, error) {
		body := pix.Sandbox{}.PaymentWebhook(d.Txid, d.Amount, e.now)
		req, _ := http.NewRequest(http.MethodPost, srv.URL+"/webhooks/pix", bytes.NewReader(body))
		req.Header.Set(httpapi.PixSignatureHeader, pix.Sign(webhookSecret, body))
		res, err := srv.Client().Do(req)
		if err != nil {
			return 0, webhookResponse{}, err
		}
		defer res.Body.Close()
		var resp webhookResponse
		err = json.NewDecoder(res.Body).Decode(&resp)
		return res.StatusCode, resp, err
	}
	const n = 20
	var wg sync.WaitGroup
	var mu sync.Mutex
	fresh := map[int64]int{}
	for i := range 2 * n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			d := b // B's deliveries start first and interleave with A's
			if i%2 == 1 {
				d = a
			}
			code, resp, err := deliver(d)
			if err != nil || code != http.StatusOK || len(resp.Results) != 1 || resp.Results[0].Outcome != "CREDITED" {
				t.Errorf("delivery %d: %d %+v %v", i, code, resp, err)
				return
			}
			if !resp.Results[0].Duplicate {
				mu.Lock()
				fresh[d.ID]++
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if fresh[a.ID] != 1 || fresh[b.ID] != 1 {
		t.Fatalf("fresh credits per deposit = %v, want one each", fresh)
	}
	if e.balance(u1) != 12_34 || e.balance(u2) != 56_78 {
		t.Fatalf("balances %v, %v", e.balance(u1), e.balance(u2))
	}
	if n := e.count(`SELECT count(*) FROM notifications WHERE kind = 'DEPOSIT_CONFIRMED'`); n != 2 {
		t.Fatalf("notifications %d, want 2", n)
	}
	e.checkMoney()
}

// End to end: money in by a signed webhook, out by a withdrawal.
func TestPixDepositThenWithdraw(t *testing.T) {
	e := newWebhookEnv(t)
	ctx := context.Background()
	uid := e.user()
	v := lending.Viewer{UserID: uid}
	d := e.deposit(uid, 200_00)
	if code, resp := e.pay(d, 200_00, e.now); code != http.StatusOK {
		t.Fatalf("deposit: %d %+v", code, resp)
	}
	wd, err := e.store.RequestWithdrawal(ctx, v, 150_00, "pix@example.com", "w1", pix.Sandbox{})
	if err != nil || wd.Status != lending.WithdrawalCompleted {
		t.Fatalf("withdrawal %+v, %v", wd, err)
	}
	failed, err := e.store.RequestWithdrawal(ctx, v, 40_13, "pix@example.com", "w2", pix.Sandbox{})
	if err != nil || failed.Status != lending.WithdrawalFailed {
		t.Fatalf("withdrawal %+v, %v", failed, err)
	}
	_, err = e.store.RequestWithdrawal(ctx, v, 50_01, "pix@example.com", "w3", pix.Sandbox{})
	if !lending.IsCode(err, lending.CodeInsufficientFunds) {
		t.Fatalf("err = %v, want INSUFFICIENT_FUNDS", err)
	}
	if b := e.balance(uid); b != 50_00 {
		t.Fatalf("balance %v, want 50.00", b)
	}
	var clearing lending.Money
	if err := e.db.Pool.QueryRow(ctx, `SELECT balance FROM wallets WHERE kind = 'PIX_CLEARING'`).Scan(&clearing); err != nil {
		t.Fatal(err)
	}
	if clearing != -50_00 {
		t.Fatalf("clearing %v, want -50.00 (the money still on the platform)", clearing)
	}
	e.checkMoney()
}
