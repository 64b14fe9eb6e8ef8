package e2e

// The security suite: every limit and defence of issue 5, end to end over
// HTTP (and a websocket), each asserting the error code and that nothing
// changed (secState: every table's rows, by count and content hash).
//
// Covered elsewhere, not repeated here: bad, expired and revoked tokens
// (auth_test.go), INTERNAL errors that show nothing (http_test.go), a
// webhook with a bad signature is 401 and credits nothing
// (httpapi/pixwebhook_test.go), every limit's boundaries and messages
// (limits/*_test.go, ratelimit/*_test.go).

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"mutuo/app"
	"mutuo/auth"
	"mutuo/lending"
)

// secSignUpQ is byte for byte the text of fixture_test.go's signUp (the
// allow-list test lists it, so that apiWorld runs).
const secSignUpQ = `mutation($in: SignUpInput!) { signUp(input: $in) { accessToken user { id } } }`

func secSignUpVars(email string) map[string]any {
	return map[string]any{"in": map[string]any{"name": "Mallory", "email": email, "password": "password-123", "roles": []string{"INVESTOR"}}}
}

// secState is the database as a client could have changed it: each table's
// row count and a hash of its rows' contents.
func secState(t *testing.T, e *env) map[string]string {
	t.Helper()
	ctx := context.Background()
	rows, err := e.DB.Pool.Query(ctx, `SELECT table_name FROM information_schema.tables
		WHERE table_schema = 'public' AND table_type = 'BASE TABLE' AND table_name <> 'goose_db_version'`)
	if err != nil {
		t.Fatal(err)
	}
	var tables []string
	for rows.Next() {
		var n string
		if err := rows.Scan(&n); err != nil {
			t.Fatal(err)
		}
		tables = append(tables, n)
	}
	rows.Close()
	if len(tables) < 10 {
		t.Fatalf("only %d tables: %v", len(tables), tables)
	}
	out := map[string]string{}
	for _, tb := range tables {
		var n, h int64
		if err := e.DB.Pool.QueryRow(ctx, fmt.Sprintf(`SELECT count(*), coalesce(sum(hashtext(t::text)::bigint), 0) FROM %q t`, tb)).Scan(&n, &h); err != nil {
			t.Fatal(err)
		}
		out[tb] = fmt.Sprintf("%d rows, hash %d", n, h)
	}
	return out
}

// secUnchanged fails when the database differs from before.
func secUnchanged(t *testing.T, e *env, before map[string]string, what string) {
	t.Helper()
	after := secState(t, e)
	var diffs []string
	for tb, b := range before {
		if a := after[tb]; a != b {
			diffs = append(diffs, fmt.Sprintf("%s: %s → %s", tb, b, a))
		}
	}
	sort.Strings(diffs)
	if len(diffs) > 0 {
		t.Errorf("%s changed the database: %s", what, strings.Join(diffs, "; "))
	}
}

// secRefused fails unless r is a request refused before execution with
// code: no data entry at all, the code on the first error, msg in its
// message.
func secRefused(t *testing.T, r *gqlResponse, code, msg, what string) {
	t.Helper()
	if r.code(0) != code || !strings.Contains(r.Errors[0].Message, msg) {
		t.Fatalf("%s: want %s %q, got %d %s", what, code, msg, r.Status, trimSecBody(r.Body))
	}
	if strings.Contains(r.Body, `"data"`) {
		t.Errorf("%s: a refused request has a data entry: %s", what, trimSecBody(r.Body))
	}
}

func trimSecBody(s string) string {
	if len(s) > 600 {
		return s[:600] + "…"
	}
	return s
}

// secPost posts a raw body with headers.
func (e *env) secPost(body string, headers map[string]string) *gqlResponse {
	e.t.Helper()
	req, _ := http.NewRequest(http.MethodPost, e.URL+"/graphql", strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	for k, v := range headers {
		req.Header.Set(k, v)
	}
	return e.send(req)
}

func secJSON(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}

func secHash(q string) string {
	s := sha256.Sum256([]byte(q))
	return hex.EncodeToString(s[:])
}

// nestUser is `me { investor { user { investor … { id } } } }`, depth
// levels deep (me is 1, the leaf counts).
func nestUser(depth int) string {
	s := "id"
	for i := depth - 2; i >= 1; i-- {
		if i%2 == 1 {
			s = "investor { " + s + " }"
		} else {
			s = "user { " + s + " }"
		}
	}
	return "me { " + s + " }"
}

func TestSecurityDepthLimit(t *testing.T) {
	e := newEnv(t)
	w := apiWorld(t, e)
	tok := w.tokens["inv1"]
	e.ok(tok, "{ "+nestUser(12)+" }", nil) // at the limit
	before := secState(t, e)
	r := e.do(tok, "{ "+nestUser(13)+" }", nil)
	secRefused(t, r, "QUERY_TOO_COMPLEX", "query too deep: it nests fields 13 levels deep, the limit is 12", "depth 13")
	// a mutation with a selection too deep never runs: no loan
	deep := "id"
	for i := 0; i < 6; i++ {
		deep = "borrower { user { " + deep + " } }"
	}
	r = e.do(w.tokens["bor1"], `mutation { requestLoan(input: {amount: "1000.00", termMonths: 3, purpose: "Capital de giro"}, idempotencyKey: "deep") { `+deep+` } }`, nil)
	secRefused(t, r, "QUERY_TOO_COMPLEX", "query too deep", "deep requestLoan")
	// fragments are expanded: the same depth through a fragment
	r = e.do(tok, `query { me { ...I } } fragment I on User { investor { user { investor { user { investor { user { investor { user { investor { user { investor { user { id } } } } } } } } } } } } }`, nil)
	secRefused(t, r, "QUERY_TOO_COMPLEX", "query too deep", "depth through a fragment")
	secUnchanged(t, e, before, "refused deep operations")
}

func TestSecurityCostLimit(t *testing.T) {
	e := newEnv(t)
	w := seedWorld(t, e)
	tok := w.tokens["inv1"]
	// an accepted query reports its cost: a page of 10 loans with their
	// borrowers is 1 + 10 × (1 + 1)
	r := e.do(tok, `{ loans(first: 10) { edges { node { id borrower { displayName } } } } }`, nil)
	if len(r.Errors) > 0 || num(r.Extensions, "cost.requested") != 21 || num(r.Extensions, "cost.limit") != 5000 {
		t.Fatalf("extensions.cost of an accepted query: %v (%s)", r.Extensions, trimSecBody(r.Body))
	}
	before := secState(t, e)
	// 100 loans × 100 investments: 20,201
	r = e.do(tok, `{ loans(first: 100) { edges { node { investments(first: 100) { edges { node { investor { displayName } } } } } } } }`, nil)
	secRefused(t, r, "QUERY_TOO_COMPLEX", "query too complex: its cost is 20201, the limit is 5000", "costly query")
	// page sizes in variables count the same
	r = e.do(tok, `query($a: Int, $b: Int) { loans(first: $a) { edges { node { investments(first: $b) { edges { node { investor { displayName } } } } } } } }`,
		map[string]any{"a": 100, "b": 100})
	secRefused(t, r, "QUERY_TOO_COMPLEX", "its cost is 20201", "costly query with variables")
	// a costly mutation never runs: no loan, no idempotency key
	r = e.do(w.tokens["bor2"], `mutation { requestLoan(input: {amount: "1000.00", termMonths: 3, purpose: "Capital de giro"}, idempotencyKey: "costly") {
		investments(first: 100) { edges { node { loan { investments(first: 100) { edges { node { id } } } } } } } } }`, nil)
	secRefused(t, r, "QUERY_TOO_COMPLEX", "query too complex", "costly requestLoan")
	secUnchanged(t, e, before, "refused costly operations")
}

func TestSecurityAliasLimit(t *testing.T) {
	e := newEnv(t)
	w := apiWorld(t, e)
	rdb, prefix := e.App.Redis, e.App.Config.RedisPrefix
	failures := func() int {
		keys, err := rdb.Keys(context.Background(), prefix+"rl:si:pf:*").Result()
		if err != nil {
			t.Fatal(err)
		}
		return len(keys)
	}
	before := secState(t, e)
	// 50 password guesses in one request: refused before any is tried
	var b strings.Builder
	b.WriteString("mutation {")
	for i := 0; i < 50; i++ {
		fmt.Fprintf(&b, ` g%d: signIn(email: "ana@test.dev", password: "guess-%03d-password") { accessToken }`, i, i)
	}
	b.WriteString(" }")
	r := e.do("", b.String(), nil)
	secRefused(t, r, "QUERY_TOO_COMPLEX", "too many aliases: the operation has 50, the limit is 30", "50 aliased signIn")
	if n := failures(); n != 0 {
		t.Fatalf("the refused request recorded %d sign-in failures: its attempts ran", n)
	}
	// 31 aliased sign-ups: no account
	b.Reset()
	b.WriteString("mutation {")
	for i := 0; i < 31; i++ {
		fmt.Fprintf(&b, ` s%d: signUp(input: {name: "Bot", email: "bot%d@test.dev", password: "password-123", roles: [INVESTOR]}) { accessToken }`, i, i)
	}
	b.WriteString(" }")
	secRefused(t, e.do("", b.String(), nil), "QUERY_TOO_COMPLEX", "too many aliases: the operation has 31", "31 aliased signUp")
	// aliases inside a fragment count at each spread: 2 spreads × 16
	b.Reset()
	b.WriteString("query { a: me { ...F } b: me { ...F } } fragment F on User {")
	for i := 0; i < 15; i++ {
		fmt.Fprintf(&b, " n%d: name", i)
	}
	b.WriteString(" }")
	secRefused(t, e.do(w.tokens["inv1"], b.String(), nil), "QUERY_TOO_COMPLEX", "too many aliases: the operation has 32", "aliases through fragments")
	secUnchanged(t, e, before, "refused aliased operations")
	// the guesses never ran: one real failure is the first, and the right
	// password still works (10 failures would have locked the pair)
	if r := e.do("", `mutation { signIn(email: "ana@test.dev", password: "wrong-password-1") { accessToken } }`, nil); r.code(0) != "UNAUTHENTICATED" {
		t.Fatalf("one wrong password: %s", r.Body)
	}
	if n := failures(); n != 1 {
		t.Fatalf("a real failure recorded %d failure counters, want 1 (is the key layout rl:si:pf:* still right?)", n)
	}
	signIn(e, "ana@test.dev", "password-123")
	// at the limit, aliases run
	b.Reset()
	b.WriteString("{")
	for i := 0; i < 30; i++ {
		fmt.Fprintf(&b, " m%d: me { id }", i)
	}
	b.WriteString(" }")
	e.ok(w.tokens["inv1"], b.String(), nil)
}

func TestSecurityDirectivesPerField(t *testing.T) {
	e := newEnv(t)
	w := apiWorld(t, e)
	before := secState(t, e)
	five := strings.Repeat(" @include(if: true)", 5)
	secRefused(t, e.do(w.tokens["inv1"], `{ me { id`+five+` } }`, nil),
		"QUERY_TOO_COMPLEX", `too many directives on field "id": 5, the limit is 4 per field`, "5 directives on a field")
	secRefused(t, e.do("", `mutation($in: SignUpInput!) { signUp(input: $in)`+strings.Repeat(" @skip(if: false)", 5)+` { accessToken } }`, secSignUpVars("dir@test.dev")),
		"QUERY_TOO_COMPLEX", `too many directives on field "signUp"`, "5 directives on signUp")
	// hundreds of directives (an overloading attack: each repeat would be
	// another validation error to build) are refused as quickly
	start := time.Now()
	secRefused(t, e.do(w.tokens["inv1"], `{ me { id`+strings.Repeat(" @include(if: true)", 700)+` } }`, nil),
		"QUERY_TOO_COMPLEX", `too many directives on field "id": 700`, "700 directives")
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("700 directives took %v to refuse", d)
	}
	secUnchanged(t, e, before, "refused directive-heavy operations")
}

func TestSecurityParserTokensAndDocumentSize(t *testing.T) {
	e := newEnv(t)
	before := secState(t, e)
	// 5000+ tokens in about 10 KB (under the byte limit): a list default
	pad := "[" + strings.Repeat("1 ", 5001) + "]"
	q := `mutation($in: SignUpInput!, $pad: [Int] = ` + pad + `) { signUp(input: $in) { accessToken } }`
	if len(q) >= 32<<10 {
		t.Fatalf("the token test's document is %d bytes", len(q))
	}
	secRefused(t, e.do("", q, secSignUpVars("tokens@test.dev")), "QUERY_TOO_COMPLEX", "more than 5000 tokens", "5000+ tokens")
	// comments count as tokens (gqlparser's rule)
	q = secSignUpQ + strings.Repeat("\n#", 5001)
	secRefused(t, e.do("", q, secSignUpVars("comments@test.dev")), "QUERY_TOO_COMPLEX", "more than 5000 tokens", "5000+ comments")
	// over 32 KiB, whatever it is made of (here whitespace)
	q = secSignUpQ + strings.Repeat(" ", 32<<10)
	secRefused(t, e.do("", q, secSignUpVars("big@test.dev")), "QUERY_TOO_COMPLEX",
		fmt.Sprintf("query too large: the document is %d bytes, the limit is 32768 bytes", len(q)), "33 KiB document")
	secUnchanged(t, e, before, "refused large documents")
}

func TestSecurityRequestBodyAndBatches(t *testing.T) {
	e := newEnv(t)
	before := secState(t, e)
	// a body over 1 MiB (the variables, not the document): 413, not echoed
	vars := secSignUpVars("huge@test.dev")
	vars["in"].(map[string]any)["name"] = strings.Repeat("A", 1<<20)
	r := e.secPost(secJSON(map[string]any{"query": secSignUpQ, "variables": vars}), nil)
	if r.Status != http.StatusRequestEntityTooLarge || r.code(0) != "BAD_USER_INPUT" || strings.Contains(r.Body, "AAAA") || len(r.Body) > 500 {
		t.Fatalf("1 MiB body: %d %s", r.Status, trimSecBody(r.Body))
	}
	// a JSON array batch: 400, with a message that does not echo the body
	batch := secJSON([]any{
		map[string]any{"query": secSignUpQ, "variables": secSignUpVars("batch1@test.dev")},
		map[string]any{"query": secSignUpQ, "variables": secSignUpVars("batch2@test.dev")},
	})
	for _, accept := range []string{"application/json", "application/graphql-response+json"} {
		r = e.secPost("  \n"+batch, map[string]string{"Accept": accept})
		if r.Status != http.StatusBadRequest || r.code(0) != "BAD_USER_INPUT" || !strings.Contains(r.Errors[0].Message, "batched requests") {
			t.Fatalf("batch (%s): %d %s", accept, r.Status, r.Body)
		}
		for _, echo := range []string{"signUp", "batch1@test.dev", "SignUpInput", "password"} {
			if strings.Contains(r.Body, echo) {
				t.Errorf("the batch refusal echoes %q: %s", echo, r.Body)
			}
		}
	}
	secUnchanged(t, e, before, "a huge body and a batch")
}

func TestSecurityOperationTimeout(t *testing.T) {
	// every query and mutation overruns a 1 ns time limit: none may change
	// anything
	e := newEnv(t, envOpts{vars: map[string]string{"GRAPHQL_OPERATION_TIMEOUT": "1ns"}})
	s, err := e.App.Auth.SignUp(context.Background(), auth.SignUpInput{Name: "Tim", Email: "tim@test.dev", Password: "password-123",
		Roles: []lending.Role{lending.RoleInvestor}})
	if err != nil {
		t.Fatal(err)
	}
	tok := s.AccessToken
	before := secState(t, e)
	var responses []*gqlResponse
	for _, c := range []struct{ tok, q string }{
		{tok, `{ me { name wallet { balance } } }`},
		{tok, `mutation { createDeposit(amount: "100.00", idempotencyKey: "t-1") { txid } }`},
		{tok, `mutation { requestWithdrawal(amount: "1.00", pixKey: "tim@test.dev", idempotencyKey: "t-2") { status } }`},
		{"", secSignUpQ},
	} {
		r := e.do(c.tok, c.q, secSignUpVars("late@test.dev"))
		if r.Data != nil {
			t.Fatalf("%s ran within 1ns: %s", c.q, r.Body)
		}
		responses = append(responses, r)
	}
	secUnchanged(t, e, before, "operations cancelled by the time limit")
	t.Run("a 1ns time limit is reported as such", func(t *testing.T) {
		for _, r := range responses {
			if strings.TrimSpace(r.Body) == "null" {
				t.Fatalf("an operation whose time limit passed before it ran was answered a bare null")
			}
			secTimedOut(t, r, "1ns")
		}
	})

	// the usual case: the limit passes while resolvers run (the dataloaders
	// wait 1s to batch, the limit is 100ms); their SQL is cancelled and the
	// client sees the time limit's error, not INTERNAL
	e2 := newEnv(t, envOpts{loaderWait: time.Second, vars: map[string]string{"GRAPHQL_OPERATION_TIMEOUT": "100ms"}})
	s2, err := e2.App.Auth.SignUp(context.Background(), auth.SignUpInput{Name: "Tam", Email: "tam@test.dev", Password: "password-123",
		Roles: []lending.Role{lending.RoleInvestor}}) // signUp itself (Argon2) may take 100ms under -race
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	r := e2.do(s2.AccessToken, `{ me { name wallet { balance } investor { investments(first: 5) { edges { node { id } } } } } }`, nil)
	secTimedOut(t, r, "100ms")
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("the timed-out query took %v", d)
	}
}

// secTimedOut fails unless every error of r is the time limit's.
func secTimedOut(t *testing.T, r *gqlResponse, limit string) {
	t.Helper()
	if len(r.Errors) == 0 {
		t.Fatalf("ran within %s: %s", limit, r.Body)
	}
	for i := range r.Errors {
		if r.code(i) != "QUERY_TOO_COMPLEX" || !strings.Contains(r.Errors[i].Message, "ran longer than the time limit of "+limit) {
			t.Fatalf("error %d is not the time limit's: %s", i, r.Body)
		}
	}
	if strings.Contains(r.Body, "INTERNAL") || strings.Contains(r.Body, "deadline") || strings.Contains(r.Body, "canceled") {
		t.Errorf("the cancellation shows through: %s", r.Body)
	}
}

func TestSecurityProductionMode(t *testing.T) {
	e := newEnv(t, envOpts{env: app.Production})
	if e.App.Config.Env != app.Production || e.App.Config.Limits.Introspection || e.App.Config.Limits.Suggestions {
		t.Fatalf("not a production configuration: %+v", e.App.Config.Limits)
	}
	w := apiWorld(t, e)
	tok := w.tokens["inv1"]
	before := secState(t, e)
	for _, q := range []string{
		`{ __schema { types { name } } }`,
		`{ __type(name: "User") { fields { name } } }`,
		`query { me { id } ...on Query { __schema { queryType { name } } } }`,
		`query { ...F } fragment F on Query { __type(name: "Wallet") { name } }`,
	} {
		secRefused(t, e.do(tok, q, nil), "BAD_USER_INPUT", "introspection is disabled", q)
	}
	// __typename is not introspection: it stays
	if d := e.ok(tok, `{ me { __typename } }`, nil); str(d, "me.__typename") != "User" {
		t.Fatalf("__typename: %v", d)
	}
	// no "Did you mean": misspelt fields, arguments, types, enum values
	for _, q := range []string{
		`{ me { nmae } }`,
		`{ loans(frist: 1) { totalCount } }`,
		`{ me { ... on Usr { id } } }`,
		`{ loans(filter: {status: [FUNDNG]}) { totalCount } }`,
		`mutation { signUpp(input: {name: "x"}) { accessToken } }`,
		`mutation($in: SignUpInput!) { signUp(input: $in) { acessToken } }`,
	} {
		r := e.do(tok, q, secSignUpVars("prod@test.dev"))
		if len(r.Errors) == 0 || r.code(0) != "BAD_USER_INPUT" {
			t.Fatalf("%s: %s", q, r.Body)
		}
		for _, leak := range []string{"Did you mean", "did you mean", `"name"`, `"signUp"`, `"FUNDING"`, `"first"`, `"accessToken"`} {
			if strings.Contains(r.Body, leak) {
				t.Errorf("%s: the error suggests %s: %s", q, leak, r.Body)
			}
		}
	}
	secUnchanged(t, e, before, "refused production requests")
	// no playground
	resp, body := rawRequest(t, http.MethodGet, e.URL+"/", nil, nil)
	if resp.StatusCode != http.StatusNotFound || strings.Contains(body, "graphiql") {
		t.Errorf("GET / in production: %d", resp.StatusCode)
	}
	// development suggests (so the checks above are not vacuous)
	dev := newEnv(t)
	if r := dev.do("", `{ loans(frist: 1) { totalCount } }`, nil); !strings.Contains(r.Body, "Did you mean") {
		t.Errorf("development gives no suggestion: %s", r.Body)
	}
	if r := dev.do("", `{ __type(name: "User") { name } }`, nil); len(r.Errors) > 0 {
		t.Errorf("development refuses introspection: %s", r.Body)
	}
}

func TestSecurityCSRF(t *testing.T) {
	e := newEnv(t)
	apiWorld(t, e)
	before := secState(t, e)
	gql := e.URL + "/graphql"
	mutation := `mutation { signUp(input: {name: "CSRF", email: "csrf@test.dev", password: "password-123", roles: [INVESTOR]}) { accessToken } }`
	// what a cross-site form or a no-preflight fetch can send
	for name, c := range map[string]struct{ ct, body string }{
		"text/plain":               {"text/plain", secJSON(map[string]any{"query": mutation})},
		"text/plain;charset=UTF-8": {"text/plain;charset=UTF-8", secJSON(map[string]any{"query": mutation})},
		"form":                     {"application/x-www-form-urlencoded", "query=" + url.QueryEscape(mutation)},
		"multipart":                {"multipart/form-data; boundary=X", "--X\r\nContent-Disposition: form-data; name=\"query\"\r\n\r\n" + mutation + "\r\n--X--\r\n"},
		"none":                     {"", secJSON(map[string]any{"query": mutation})},
		"json latin1":              {"application/json; charset=iso-8859-1", secJSON(map[string]any{"query": mutation})},
	} {
		h := map[string]string{"Content-Type": c.ct}
		resp, body := rawRequest(t, http.MethodPost, gql, strings.NewReader(c.body), h)
		if resp.StatusCode != http.StatusUnsupportedMediaType || !strings.Contains(body, "BAD_USER_INPUT") || strings.Contains(body, `"data"`) {
			t.Errorf("%s: %d %s", name, resp.StatusCode, body)
		}
	}
	// mutations never run over GET (a link, an <img>): 405, nothing written
	for _, q := range []string{mutation, "  mutation M { signOut }", `query Q { me { id } } mutation M { signOut }`} {
		u := gql + "?query=" + url.QueryEscape(q)
		if strings.Contains(q, "mutation M") {
			u += "&operationName=M"
		}
		resp, body := rawRequest(t, http.MethodGet, u, nil, nil)
		if resp.StatusCode != http.StatusMethodNotAllowed || resp.Header.Get("Allow") != "POST" || strings.Contains(body, `"data"`) {
			t.Errorf("GET %s: %d %s", q, resp.StatusCode, body)
		}
	}
	secUnchanged(t, e, before, "cross-site requests")
	// not even a persisted mutation: registered by POST (which runs it) …
	h := secHash(secSignUpQ)
	ext := map[string]any{"persistedQuery": map[string]any{"version": 1, "sha256Hash": h}}
	if r := e.secPost(secJSON(map[string]any{"query": secSignUpQ, "variables": secSignUpVars("apq@test.dev"), "extensions": ext}), nil); len(r.Errors) > 0 {
		t.Fatalf("APQ registration of signUp: %s", r.Body)
	}
	before = secState(t, e)
	// … then named by its hash over GET: still 405
	resp, body := rawRequest(t, http.MethodGet, gql+"?extensions="+url.QueryEscape(secJSON(ext))+"&variables="+url.QueryEscape(secJSON(secSignUpVars("apq-get@test.dev"))), nil, nil)
	if resp.StatusCode != http.StatusMethodNotAllowed || strings.Contains(body, `"data"`) {
		t.Errorf("persisted mutation over GET: %d %s", resp.StatusCode, body)
	}
	secUnchanged(t, e, before, "a persisted mutation over GET")
}

func TestSecurityRateLimitsByCost(t *testing.T) {
	e := newEnv(t, envOpts{vars: map[string]string{"RATE_LIMIT_USER": "50/1m burst 50"}})
	w := apiWorld(t, e) // anonymous sign-ups: no user budget, and the IP budget is off
	tok := w.tokens["inv1"]
	// 41 of 50 points
	r := e.do(tok, `{ loans(first: 40) { edges { node { id } } } }`, nil)
	if len(r.Errors) > 0 || num(r.Extensions, "cost.requested") != 41 {
		t.Fatalf("first query: %s", r.Body)
	}
	before := secState(t, e)
	// a deposit costs 10 + 1: refused, with Retry-After, nothing written
	r = e.do(tok, `mutation { createDeposit(amount: "100.00", idempotencyKey: "rl-1") { txid } }`, nil)
	secRefused(t, r, "RATE_LIMITED", "rate limit exceeded for this user: retry in", "over budget (application/json)")
	if r.Status != http.StatusOK {
		t.Errorf("application/json refusal: status %d, want 200", r.Status)
	}
	if s, err := strconv.Atoi(r.Header.Get("Retry-After")); err != nil || s < 1 || s > 60 {
		t.Errorf("Retry-After %q", r.Header.Get("Retry-After"))
	}
	r = e.secPost(secJSON(map[string]any{"query": `mutation { createDeposit(amount: "100.00", idempotencyKey: "rl-2") { txid } }`}),
		map[string]string{"Authorization": "Bearer " + tok, "Accept": "application/graphql-response+json"})
	if r.Status != http.StatusTooManyRequests || r.code(0) != "RATE_LIMITED" || r.Header.Get("Retry-After") == "" {
		t.Errorf("graphql-response+json refusal: %d %q %s", r.Status, r.Header.Get("Retry-After"), r.Body)
	}
	secUnchanged(t, e, before, "refused over-budget mutations")
	// refusals are not charged: a 1-point query still fits
	if r := e.do(tok, `{ me { id } }`, nil); len(r.Errors) > 0 || r.Header.Get("Retry-After") != "" {
		t.Fatalf("cheap query after refusals: %s", r.Body)
	}
	// budgets are per user: another user is untouched
	e.ok(w.tokens["inv2"], `mutation { createDeposit(amount: "100.00", idempotencyKey: "rl-3") { txid } }`, nil)

	// one budget for HTTP and websockets: inv1's spent budget refuses a
	// subscription over the socket (1 + 1 + 1 + 20 = 23 points) …
	sub := `subscription { walletUpdated { id owner { id } entries(first: 20) { edges { node { id } } } } }`
	ws := secWSConnect(t, e, tok)
	if errs := ws.subscribeErrors("s1", sub); len(errs) == 0 || errs[0].Extensions["code"] != "RATE_LIMITED" {
		t.Fatalf("websocket subscription over budget: %v", errs)
	}
	// … and subscriptions spend it for HTTP: inv2 (39 left after the
	// deposit) opens one (23) and HTTP cannot have 20
	ws2 := secWSConnect(t, e, w.tokens["inv2"])
	if errs := ws2.subscribeErrors("s1", sub); len(errs) > 0 {
		t.Fatalf("websocket subscription within budget: %v", errs)
	}
	r = e.do(w.tokens["inv2"], `{ loans(first: 19) { edges { node { id } } } }`, nil)
	secRefused(t, r, "RATE_LIMITED", "rate limit exceeded for this user", "HTTP after a websocket subscription")
}

// TestSecurityIPBudgetCoversWebsockets: the per-IP budget is one budget for
// HTTP and websocket operations too.
func TestSecurityIPBudgetCoversWebsockets(t *testing.T) {
	e := newEnv(t, envOpts{vars: map[string]string{"RATE_LIMIT_IP": "30/1m burst 30"}})
	s, err := e.App.Auth.SignUp(context.Background(), auth.SignUpInput{Name: "Ivy", Email: "ivy@test.dev", Password: "password-123",
		Roles: []lending.Role{lending.RoleInvestor}}) // not through the API: a signUp costs the IP 11
	if err != nil {
		t.Fatal(err)
	}
	sub := `subscription { walletUpdated { id owner { id } entries(first: 20) { edges { node { id } } } } }` // 23
	if errs := secWSConnect(t, e, s.AccessToken).subscribeErrors("s1", sub); len(errs) > 0 {
		t.Fatalf("first subscription (23 of 30): %v", errs)
	}
	errs := secWSConnect(t, e, s.AccessToken).subscribeErrors("s1", sub)
	if len(errs) == 0 {
		// (a websocket upgrade that skips ratelimit.Middleware has no
		// client IP: only the user budget would apply)
		t.Fatal("a second subscription (46 of 30 points) ran: websocket operations are not charged to the IP budget")
	}
	if errs[0].Extensions["code"] != "RATE_LIMITED" {
		t.Fatalf("second subscription (46 of 30): %v", errs)
	}
	secRefused(t, e.do(s.AccessToken, `{ loans(first: 20) { edges { node { id } } } }`, nil), "RATE_LIMITED",
		"rate limit exceeded for this IP address", "HTTP after websocket subscriptions")
}

func TestSecuritySignInLockout(t *testing.T) {
	e := newEnv(t) // budgets off: the (email, IP) lockout stands alone
	signUp(e, "Victim", "victim@test.dev", []string{"INVESTOR"}, "")
	signUp(e, "Other", "other@test.dev", []string{"INVESTOR"}, "")
	q := `mutation($e: String!, $p: String!) { signIn(email: $e, password: $p) { accessToken } }`
	for i := 0; i < 10; i++ {
		if r := e.do("", q, map[string]any{"e": "victim@test.dev", "p": fmt.Sprintf("guess-%02d-password", i)}); r.code(0) != "UNAUTHENTICATED" {
			t.Fatalf("guess %d: %s", i, r.Body)
		}
	}
	before := secState(t, e)
	// locked for this address: even the right password is not checked
	r := e.do("", q, map[string]any{"e": "Victim@Test.dev ", "p": "password-123"})
	if r.code(0) != "RATE_LIMITED" || !strings.Contains(r.Errors[0].Message, "too many sign-in attempts") || r.Data != nil {
		t.Fatalf("locked pair: %s", r.Body)
	}
	if s, err := strconv.Atoi(r.Header.Get("Retry-After")); err != nil || s < 60 || s > 15*60 {
		t.Errorf("Retry-After %q, want the lockout (at most 15 min)", r.Header.Get("Retry-After"))
	}
	secUnchanged(t, e, before, "a locked-out signIn") // no session, no refresh token
	// an unknown email looks the same
	if r := e.do("", q, map[string]any{"e": "nobody@test.dev", "p": "x-password-1"}); r.code(0) != "UNAUTHENTICATED" {
		t.Fatalf("unknown email: %s", r.Body)
	}
	// the lock is per email and address: another account signs in from here
	signIn(e, "other@test.dev", "password-123")
	// it ends: the lock's TTL is at most 15 minutes, and attempts while it
	// holds do not extend it
	ctx := context.Background()
	keys, err := e.App.Redis.Keys(ctx, e.App.Config.RedisPrefix+"rl:si:pl:*").Result()
	if err != nil || len(keys) != 1 {
		t.Fatalf("pair lock keys: %v %v", keys, err)
	}
	ttl1 := e.App.Redis.PTTL(ctx, keys[0]).Val()
	if ttl1 <= 0 || ttl1 > 15*time.Minute {
		t.Fatalf("lock TTL %v", ttl1)
	}
	for i := 0; i < 3; i++ {
		e.do("", q, map[string]any{"e": "victim@test.dev", "p": "more-guesses-1"})
	}
	if ttl2 := e.App.Redis.PTTL(ctx, keys[0]).Val(); ttl2 > ttl1 {
		t.Errorf("attempts during the lock extended it: %v → %v", ttl1, ttl2)
	}
}

func TestSecurityAutomaticPersistedQueries(t *testing.T) {
	e := newEnv(t)
	w := apiWorld(t, e)
	tok := w.tokens["inv1"]
	q := `query Me { me { name } }`
	h := secHash(q)
	ext := func(hash string) map[string]any {
		return map[string]any{"persistedQuery": map[string]any{"version": 1, "sha256Hash": hash}}
	}
	hashOnly := func(hash string) *gqlResponse {
		return e.secPost(secJSON(map[string]any{"extensions": ext(hash)}), map[string]string{"Authorization": "Bearer " + tok})
	}
	// unknown hash: the protocol's answer, upon which the client sends the text
	r := hashOnly(h)
	secRefused(t, r, "PERSISTED_QUERY_NOT_FOUND", "PersistedQueryNotFound", "unregistered hash")
	// register (hash + text), then the hash alone runs it, over POST and GET
	r = e.secPost(secJSON(map[string]any{"query": q, "extensions": ext(h)}), map[string]string{"Authorization": "Bearer " + tok})
	if len(r.Errors) > 0 || str(r.Data, "me.name") != "Ana Investidora" {
		t.Fatalf("registration: %s", r.Body)
	}
	if r := hashOnly(strings.ToUpper(h)); len(r.Errors) > 0 || str(r.Data, "me.name") != "Ana Investidora" {
		t.Fatalf("hash-only hit: %s", r.Body)
	}
	resp, body := rawRequest(t, http.MethodGet, e.URL+"/graphql?extensions="+url.QueryEscape(secJSON(ext(h))), nil, map[string]string{"Authorization": "Bearer " + tok})
	if resp.StatusCode != 200 || !strings.Contains(body, "Ana Investidora") {
		t.Fatalf("hash-only GET: %d %s", resp.StatusCode, body)
	}
	// a hash that is not the text's: refused and nothing stored under it
	other := `query { me { email } }`
	wrong := secHash("something else")
	secRefused(t, e.secPost(secJSON(map[string]any{"query": other, "extensions": ext(wrong)}), map[string]string{"Authorization": "Bearer " + tok}),
		"BAD_USER_INPUT", "not the SHA-256 of the query", "mismatched hash")
	secRefused(t, hashOnly(wrong), "PERSISTED_QUERY_NOT_FOUND", "PersistedQueryNotFound", "hash of a refused registration")
	// only operations that pass the limits are stored
	deep := "{ " + nestUser(13) + " }"
	secRefused(t, e.secPost(secJSON(map[string]any{"query": deep, "extensions": ext(secHash(deep))}), map[string]string{"Authorization": "Bearer " + tok}),
		"QUERY_TOO_COMPLEX", "too deep", "deep registration")
	secRefused(t, hashOnly(secHash(deep)), "PERSISTED_QUERY_NOT_FOUND", "PersistedQueryNotFound", "hash of a refused deep query")
	// malformed persistedQuery extensions
	for _, bad := range []map[string]any{
		{"persistedQuery": map[string]any{"version": 2, "sha256Hash": h}},
		{"persistedQuery": map[string]any{"version": 1, "sha256Hash": "abc"}},
		{"persistedQuery": "x"},
	} {
		r := e.secPost(secJSON(map[string]any{"extensions": bad}), map[string]string{"Authorization": "Bearer " + tok})
		if r.code(0) != "BAD_USER_INPUT" {
			t.Errorf("extensions %v: %s", bad, r.Body)
		}
	}
}

func TestSecurityAllowListMode(t *testing.T) {
	listedQuery := `query Me { me { name } }`
	listedMutation := `mutation Deposit($a: Money!, $k: String!) { createDeposit(amount: $a, idempotencyKey: $k) { status } }`
	manifest := map[string]string{}
	for _, q := range []string{secSignUpQ, listedQuery, listedMutation} {
		manifest[secHash(q)] = q
	}
	path := filepath.Join(t.TempDir(), "persisted-operations.json")
	if err := os.WriteFile(path, []byte(secJSON(manifest)), 0o600); err != nil {
		t.Fatal(err)
	}
	e := newEnv(t, envOpts{vars: map[string]string{"GRAPHQL_PERSISTED_OPERATIONS": path}})
	w := apiWorld(t, e) // runs the listed signUp
	tok := w.tokens["inv1"]
	authz := map[string]string{"Authorization": "Bearer " + tok}
	ext := func(hash string) map[string]any {
		return map[string]any{"persistedQuery": map[string]any{"version": 1, "sha256Hash": hash}}
	}
	// listed: by text and by hash
	if d := e.ok(tok, listedQuery, nil); str(d, "me.name") != "Ana Investidora" {
		t.Fatalf("listed query: %v", d)
	}
	if r := e.secPost(secJSON(map[string]any{"extensions": ext(secHash(listedQuery))}), authz); len(r.Errors) > 0 || str(r.Data, "me.name") != "Ana Investidora" {
		t.Fatalf("listed query by hash: %s", r.Body)
	}
	if r := e.secPost(secJSON(map[string]any{"extensions": ext(secHash(listedMutation)), "variables": map[string]any{"a": "10.00", "k": "al-1"}}), authz); str(r.Data, "createDeposit.status") != "PENDING" {
		t.Fatalf("listed mutation by hash: %s", r.Body)
	}
	before := secState(t, e)
	// anything else is refused before it is parsed: a stolen token cannot
	// run arbitrary operations
	for name, q := range map[string]string{
		"unlisted query":                     `{ me { id email } }`,
		"listed text with a changed space":   `query Me { me {  name } }`,
		"unlisted mutation":                  `mutation { createDeposit(amount: "10.00", idempotencyKey: "al-2") { status } }`,
		"unlisted signUp":                    `mutation { signUp(input: {name: "X", email: "x@test.dev", password: "password-123", roles: [INVESTOR]}) { accessToken } }`,
		"introspection":                      `{ __schema { types { name } } }`,
		"a mutation listed under a new name": strings.Replace(listedMutation, "Deposit(", "Deposit2(", 1),
	} {
		r := e.do(tok, q, map[string]any{"a": "10.00", "k": "al-3"})
		secRefused(t, r, "FORBIDDEN", "this server only runs registered persisted operations", name)
		// and sending the hash too does not register it
		e.secPost(secJSON(map[string]any{"query": q, "extensions": ext(secHash(q))}), authz)
		secRefused(t, e.secPost(secJSON(map[string]any{"extensions": ext(secHash(q))}), authz), "FORBIDDEN", "registered persisted operations", name+" by hash")
	}
	secRefused(t, e.secPost(secJSON(map[string]any{"query": listedQuery, "extensions": ext(secHash("other"))}), authz),
		"BAD_USER_INPUT", "not the SHA-256 of the query", "listed text with another hash")
	secUnchanged(t, e, before, "operations outside the allow-list")
}

// A minimal graphql-transport-ws client for the rate-limit test.
type secWS struct {
	t *testing.T
	c *websocket.Conn
}

func secWSConnect(t *testing.T, e *env, token string) *secWS {
	t.Helper()
	d := websocket.Dialer{Subprotocols: []string{"graphql-transport-ws"}, HandshakeTimeout: 5 * time.Second}
	c, _, err := d.Dial("ws"+strings.TrimPrefix(e.URL, "http")+"/graphql", nil)
	if err != nil {
		t.Fatalf("websocket: %v", err)
	}
	t.Cleanup(func() { _ = c.Close() })
	s := &secWS{t: t, c: c}
	s.send(map[string]any{"type": "connection_init", "payload": map[string]any{"authorization": "Bearer " + token}})
	if m, err := s.read(5 * time.Second); err != nil || m.Type != "connection_ack" {
		t.Fatalf("connection_init: %+v %v", m, err)
	}
	return s
}

func (s *secWS) send(v any) {
	s.t.Helper()
	if err := s.c.WriteJSON(v); err != nil {
		s.t.Fatalf("websocket write: %v", err)
	}
}

type secWSMsg struct {
	Type    string          `json:"type"`
	ID      string          `json:"id"`
	Payload json.RawMessage `json:"payload"`
}

func (s *secWS) read(d time.Duration) (secWSMsg, error) {
	for {
		_ = s.c.SetReadDeadline(time.Now().Add(d))
		var m secWSMsg
		if err := s.c.ReadJSON(&m); err != nil {
			return m, err
		}
		if m.Type == "ping" {
			s.send(map[string]any{"type": "pong"})
			continue
		}
		return m, nil
	}
}

// subscribeErrors starts a subscription and returns its errors, or nil when
// it runs: its first event (walletUpdated sends the current wallet) has
// data and no errors, or nothing but silence follows for half a second
// (the socket is unusable after that: gorilla's read deadlines are final).
func (s *secWS) subscribeErrors(id, query string) []gqlError {
	s.t.Helper()
	s.send(map[string]any{"type": "subscribe", "id": id, "payload": map[string]any{"query": query}})
	m, err := s.read(500 * time.Millisecond)
	if err != nil {
		if ne, ok := err.(interface{ Timeout() bool }); ok && ne.Timeout() {
			return nil
		}
		s.t.Fatalf("websocket read: %v", err)
	}
	var errs []gqlError
	switch m.Type {
	case "error":
		_ = json.Unmarshal(m.Payload, &errs)
	case "next":
		var p struct {
			Data   json.RawMessage `json:"data"`
			Errors []gqlError      `json:"errors"`
		}
		_ = json.Unmarshal(m.Payload, &p)
		if len(p.Errors) == 0 && len(p.Data) > 0 && string(p.Data) != "null" {
			return nil
		}
		errs = p.Errors
	default:
		s.t.Fatalf("websocket: unexpected %s %s", m.Type, m.Payload)
	}
	if len(errs) == 0 {
		s.t.Fatalf("websocket: %s without errors: %s", m.Type, m.Payload)
	}
	return errs
}
