package observe_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"mutuo/app"
	"mutuo/httpapi"
	"mutuo/lending"
	"mutuo/pix"
)

// logBuffer collects the app's JSON log lines (written from many goroutines).
type logBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// lines decodes every log line; a line that is not a JSON object fails.
func (l *logBuffer) lines(t *testing.T) []map[string]any {
	t.Helper()
	var out []map[string]any
	for _, line := range strings.Split(strings.TrimSpace(l.String()), "\n") {
		if line == "" {
			continue
		}
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatalf("log line is not JSON: %s", line)
		}
		out = append(out, m)
	}
	return out
}

// TestLogsCarryIDsAndNoSecrets runs a sign-up, a failed and a good signIn, a
// token refresh, a deposit paid by a signed webhook (and one delivery with a
// bad signature), and withdrawals to two Pix keys, with every log line (Debug
// and up) in a buffer. The operations' lines must carry request_id, user_id
// and operation; no line may contain a password, an access or refresh
// token, the JWT or webhook secret, a webhook signature, the payer's data or
// a full Pix key: the whole output is searched for each literal value.
func TestLogsCarryIDsAndNoSecrets(t *testing.T) {
	const (
		password      = "Logs-Password-Secret-1"
		wrongPassword = "Logs-Wrong-Guess-Secret-2"
		webhookSecret = "whsec-logs-test-9f8e7d6c5b4a"
		jwtSecret     = "logs-test-jwt-secret-0123456789abcdefXYZ"
		evpKey        = "1b4e28ba-2fa1-41d2-883f-0016d3cca427"
		emailKey      = "ana.pix.key@banco.dev"
		payerCPF      = "52998224725"
		payerName     = "Fulano Pagador Secreto"
		email         = "logs@test.dev"
	)
	logs := &logBuffer{}
	log := slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	a := startApp(t, app.Options{Logger: log}, map[string]string{"PIX_WEBHOOK_SECRET": webhookSecret, "JWT_SECRET": jwtSecret})

	d := a.ok(t, "", `mutation($in: SignUpInput!) { signUp(input: $in) { accessToken refreshToken user { id } } }`,
		map[string]any{"in": map[string]any{"name": "Logs", "email": email, "password": password, "roles": []string{"INVESTOR"}}},
		map[string]string{"X-Request-Id": "logs-signup-1"})
	_, uid, err := lending.ParseGlobalID(str(d, "signUp.user.id"))
	if err != nil {
		t.Fatal(err)
	}
	secrets := map[string]string{"password": password, "wrong password": wrongPassword, "webhook secret": webhookSecret,
		"JWT secret": jwtSecret, "admin password": "admin-password-1", "EVP Pix key": evpKey, "EVP Pix key (upper case)": strings.ToUpper(evpKey),
		"e-mail Pix key": emailKey, "payer CPF": payerCPF, "payer name": payerName}
	token := func(name, tok string) {
		if tok == "" {
			t.Fatalf("no %s", name)
		}
		secrets[name] = tok
		if parts := strings.Split(tok, "."); len(parts) == 3 {
			secrets[name+" (signature)"] = parts[2]
		}
	}
	token("sign-up access token", str(d, "signUp.accessToken"))
	token("sign-up refresh token", str(d, "signUp.refreshToken"))

	signInQ := `mutation($e: String!, $p: String!) { signIn(email: $e, password: $p) { accessToken refreshToken } }`
	if r := a.post(t, "", signInQ, map[string]any{"e": email, "p": wrongPassword}, map[string]string{"X-Request-Id": "logs-signin-bad"}); len(r.Errors) == 0 {
		t.Fatalf("wrong password accepted: %s", r.Body)
	}
	d = a.ok(t, "", signInQ, map[string]any{"e": email, "p": password}, map[string]string{"X-Request-Id": "logs-signin-1"})
	access := str(d, "signIn.accessToken")
	token("sign-in access token", access)
	token("sign-in refresh token", str(d, "signIn.refreshToken"))
	d = a.ok(t, "", `mutation($t: String!) { refreshToken(refreshToken: $t) { accessToken refreshToken } }`,
		map[string]any{"t": str(d, "signIn.refreshToken")}, nil)
	token("refreshed access token", str(d, "refreshToken.accessToken"))
	token("refreshed refresh token", str(d, "refreshToken.refreshToken"))
	// a rejected token is logged at Debug: without the token
	a.post(t, access+"x", `{ me { id } }`, nil, nil)

	// a deposit, paid by the PSP's signed webhook (with the payer's data),
	// after a delivery with a bad signature
	d = a.ok(t, access, `mutation { createDeposit(amount: "500.00", idempotencyKey: "logs-dep-1") { txid } }`, nil,
		map[string]string{"X-Request-Id": "logs-deposit-1"})
	txid := str(d, "createDeposit.txid")
	body := fmt.Sprintf(`{"pix":[{"endToEndId":"E%031s","txid":%q,"valor":"500.00","horario":%q,"pagador":{"cpf":%q,"nome":%q},"infoPagador":"from %s"}]}`,
		txid[:31], txid, time.Now().UTC().Format(time.RFC3339), payerCPF, payerName, payerName)
	sig := pix.Sign([]byte(webhookSecret), []byte(body))
	secrets["webhook signature"] = sig
	secrets["webhook signature (hex)"] = strings.TrimPrefix(sig, pix.SignaturePrefix)
	badSig := pix.Sign([]byte("not-the-secret"), []byte(body))
	secrets["bad webhook signature (hex)"] = strings.TrimPrefix(badSig, pix.SignaturePrefix)
	webhook := func(sig, id string) int {
		req, _ := http.NewRequest(http.MethodPost, a.URL+"/webhooks/pix", strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set(httpapi.PixSignatureHeader, sig)
		req.Header.Set("X-Request-Id", id)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if s := webhook(badSig, "logs-webhook-bad"); s != http.StatusUnauthorized {
		t.Fatalf("bad signature: %d", s)
	}
	if s := webhook(sig, "logs-webhook-1"); s != http.StatusOK {
		t.Fatalf("webhook: %d", s)
	}

	// withdrawals to a random key and an e-mail key, and one refused
	wdQ := `mutation($k: String!, $i: String!, $a: Money!) { requestWithdrawal(amount: $a, pixKey: $k, idempotencyKey: $i) { status pixKey } }`
	d = a.ok(t, access, wdQ, map[string]any{"k": evpKey, "i": "logs-wd-1", "a": "10.00"}, map[string]string{"X-Request-Id": "logs-wd-1"})
	if shown := str(d, "requestWithdrawal.pixKey"); shown == evpKey {
		t.Logf("note: the API returns the full Pix key to its owner (%s)", shown)
	}
	a.ok(t, access, wdQ, map[string]any{"k": emailKey, "i": "logs-wd-2", "a": "10.00"}, map[string]string{"X-Request-Id": "logs-wd-2"})
	if r := a.post(t, access, wdQ, map[string]any{"k": evpKey, "i": "logs-wd-3", "a": "99999.00"}, map[string]string{"X-Request-Id": "logs-wd-3"}); len(r.Errors) == 0 {
		t.Fatalf("withdrawal over the balance: %s", r.Body)
	}
	time.Sleep(200 * time.Millisecond) // lines written after the responses

	// 1. no secret anywhere in the output
	out := logs.String()
	defer func() {
		if t.Failed() {
			t.Logf("log output:\n%s", out)
		}
	}()
	for name, v := range secrets {
		if i := strings.Index(out, v); i >= 0 {
			start := strings.LastIndexByte(out[:i], '\n') + 1
			end := strings.IndexByte(out[i:], '\n')
			if end < 0 {
				end = len(out) - i
			}
			t.Errorf("the logs contain the %s: %s", name, out[start:i+end])
		}
	}

	// 2. the operations' lines name the request, the user and the operation
	lines := logs.lines(t)
	find := func(requestID, operation string) map[string]any {
		t.Helper()
		for _, l := range lines {
			if l["msg"] == "graphql operation" && l["operation"] == operation && l["request_id"] == requestID {
				return l
			}
		}
		t.Fatalf("no \"graphql operation\" line for %s with request_id %s in:\n%s", operation, requestID, out)
		return nil
	}
	for _, c := range []struct {
		requestID, operation string
		user                 int64
	}{
		{"logs-signup-1", "signUp", uid}, {"logs-signin-1", "signIn", uid}, {"logs-signin-bad", "signIn", 0},
		{"logs-deposit-1", "createDeposit", uid}, {"logs-wd-1", "requestWithdrawal", uid}, {"logs-wd-3", "requestWithdrawal", uid},
	} {
		l := find(c.requestID, c.operation)
		u, ok := l["user_id"].(float64)
		if !ok || int64(u) != c.user {
			t.Errorf("%s (%s): user_id %v, want %d", c.operation, c.requestID, l["user_id"], c.user)
		}
		if l["level"] != "INFO" || l["type"] != "mutation" {
			t.Errorf("%s (%s): %v", c.operation, c.requestID, l)
		}
	}
	if l := find("logs-wd-3", "requestWithdrawal"); fmt.Sprint(l["error_codes"]) != "[INSUFFICIENT_FUNDS]" {
		t.Errorf("refused withdrawal: error_codes %v", l["error_codes"])
	}

	// 3. the webhook's lines: the payment's ids and outcome, and the
	// request id that X-Request-Id returned to the PSP
	var paid, refused map[string]any
	for _, l := range lines {
		switch l["msg"] {
		case "pix payment":
			paid = l
		case "pix webhook signature invalid":
			refused = l
		}
	}
	if paid == nil || refused == nil {
		t.Fatalf("no webhook lines (payment %v, refusal %v) in:\n%s", paid, refused, out)
	}
	if paid["txid"] != txid || paid["outcome"] != "CREDITED" || paid["amount"] != "500.00" {
		t.Errorf("webhook payment line: %v", paid)
	}
	t.Run("webhook lines carry the request id", func(t *testing.T) {
		for _, l := range []map[string]any{paid, refused} {
			if l["request_id"] == nil {
				t.Fatalf("webhook line %q has no request_id: %v", l["msg"], l)
			}
		}
		if paid["request_id"] != "logs-webhook-1" || refused["request_id"] != "logs-webhook-bad" {
			t.Errorf("request ids: %v, %v", paid["request_id"], refused["request_id"])
		}
	})
}
