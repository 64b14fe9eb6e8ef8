package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
)

func rawRequest(t *testing.T, method, u string, body io.Reader, headers map[string]string) (*http.Response, string) {
	t.Helper()
	req, _ := http.NewRequest(method, u, body)
	for k, v := range headers {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b)
}

func TestGraphQLOverHTTP(t *testing.T) {
	e := newEnv(t)
	w := seedWorld(t, e)
	auth := "Bearer " + w.tokens["inv1"]
	gql := e.URL + "/graphql"
	post := func(body string, h map[string]string) (*http.Response, string) {
		if h == nil {
			h = map[string]string{}
		}
		if _, ok := h["Content-Type"]; !ok {
			h["Content-Type"] = "application/json"
		}
		h["Authorization"] = auth
		return rawRequest(t, http.MethodPost, gql, strings.NewReader(body), h)
	}
	// content negotiation
	resp, _ := post(`{"query":"{ me { name } }"}`, nil)
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") || resp.StatusCode != 200 {
		t.Fatalf("no Accept: %d %s", resp.StatusCode, ct)
	}
	resp, _ = post(`{"query":"{ me { name } }"}`, map[string]string{"Accept": "application/graphql-response+json, application/json;q=0.9"})
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/graphql-response+json") {
		t.Fatalf("graphql-response+json: %s", ct)
	}
	if resp.Header.Get("X-Request-Id") == "" {
		t.Fatal("no X-Request-Id")
	}
	resp, _ = post(`{"query":"{ me { name } }"}`, map[string]string{"Accept": "text/html"})
	if resp.StatusCode != http.StatusNotAcceptable {
		t.Fatalf("text/html: %d", resp.StatusCode)
	}
	// validation errors: 400 with graphql-response+json, 200 with application/json, never a data entry
	resp, body := post(`{"query":"{ nope }"}`, map[string]string{"Accept": "application/graphql-response+json"})
	if resp.StatusCode != 400 || strings.Contains(body, `"data"`) {
		t.Fatalf("validation error (graphql-response+json): %d %s", resp.StatusCode, body)
	}
	resp, body = post(`{"query":"{ nope }"}`, map[string]string{"Accept": "application/json"})
	if resp.StatusCode != 200 || strings.Contains(body, `"data"`) {
		t.Fatalf("validation error (json): %d %s", resp.StatusCode, body)
	}
	resp, body = post(`{"query":"{ me { name "}`, map[string]string{"Accept": "application/graphql-response+json"})
	if resp.StatusCode != 400 || !strings.Contains(body, "BAD_USER_INPUT") {
		t.Fatalf("parse error: %d %s", resp.StatusCode, body)
	}
	// malformed JSON, wrong content types, batches
	for name, c := range map[string]struct {
		body, ct string
		status   int
	}{
		"malformed json": {`{"query":`, "application/json", 400},
		"text/plain":     {`{"query":"{ me { name } }"}`, "text/plain", 415},
		"form":           {`query=%7B+me+%7B+name+%7D+%7D`, "application/x-www-form-urlencoded", 415},
		"multipart":      {`--x--`, "multipart/form-data; boundary=x", 415},
		"batch":          {`[{"query":"{ me { name } }"},{"query":"{ me { name } }"}]`, "application/json", 400},
		"no query":       {`{"variables":{}}`, "application/json", 400},
	} {
		resp, body := post(c.body, map[string]string{"Content-Type": c.ct})
		if resp.StatusCode != c.status {
			t.Errorf("%s: status %d, want %d (%s)", name, resp.StatusCode, c.status, body)
		}
		if name == "batch" && strings.Contains(body, "me { name }") {
			t.Errorf("batch error echoes the body: %s", body)
		}
	}
	// a body over 1 MiB is refused with 413 and not echoed
	big := `{"query":"{ me { name } }","variables":{"x":"` + strings.Repeat("A", 1<<20) + `"}}`
	resp, body = post(big, nil)
	if resp.StatusCode != http.StatusRequestEntityTooLarge || strings.Contains(body, "AAAA") || len(body) > 1000 {
		t.Fatalf("big body: %d (%d bytes)", resp.StatusCode, len(body))
	}
	// GET runs queries, never mutations
	resp, body = rawRequest(t, http.MethodGet, gql+"?query="+url.QueryEscape(`query($n: Int) { loans(first: $n) { totalCount } }`)+
		"&variables="+url.QueryEscape(`{"n": 1}`), nil, map[string]string{"Authorization": auth})
	if resp.StatusCode != 200 || !strings.Contains(body, `"totalCount":3`) {
		t.Fatalf("GET query: %d %s", resp.StatusCode, body)
	}
	resp, body = rawRequest(t, http.MethodGet, gql+"?query="+url.QueryEscape(`mutation { signOut }`), nil, map[string]string{"Authorization": auth})
	if resp.StatusCode != http.StatusMethodNotAllowed || resp.Header.Get("Allow") != "POST" {
		t.Fatalf("GET mutation: %d %s", resp.StatusCode, body)
	}
	e.ok(w.tokens["inv1"], `{ me { id } }`, nil) // the GET did not sign out
	resp, _ = rawRequest(t, http.MethodPut, gql, strings.NewReader(`{}`), nil)
	if resp.StatusCode != http.StatusMethodNotAllowed {
		t.Fatalf("PUT: %d", resp.StatusCode)
	}

	// health and readiness
	resp, body = rawRequest(t, http.MethodGet, e.URL+"/healthz", nil, nil)
	if resp.StatusCode != 200 || !strings.Contains(body, `"ok"`) {
		t.Fatalf("healthz: %d %s", resp.StatusCode, body)
	}
	resp, body = rawRequest(t, http.MethodGet, e.URL+"/readyz", nil, nil)
	var ready map[string]any
	_ = json.Unmarshal([]byte(body), &ready)
	if resp.StatusCode != 200 || ready["status"] != "ready" {
		t.Fatalf("readyz: %d %s", resp.StatusCode, body)
	}
}

// TestInternalErrorsShowNoInternals forces a database failure and checks that
// the client sees INTERNAL with a request id and nothing of the cause.
func TestInternalErrorsShowNoInternals(t *testing.T) {
	e := newEnv(t)
	w := seedWorld(t, e)
	if _, err := e.DB.Pool.Exec(context.Background(), `ALTER TABLE ledger_entries RENAME TO ledger_entries_gone`); err != nil {
		t.Fatal(err)
	}
	body, _ := json.Marshal(map[string]any{"query": `{ me { name wallet { balance entries { edges { cursor } } } } }`})
	req, _ := http.NewRequest(http.MethodPost, e.URL+"/graphql", bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+w.tokens["inv1"])
	req.Header.Set("X-Request-Id", "req-test-123")
	r := e.send(req)
	if r.code(0) != "INTERNAL" || !strings.Contains(r.Errors[0].Message, "req-test-123") {
		t.Fatalf("want INTERNAL with the request id: %s", r.Body)
	}
	for _, leak := range []string{"ledger", "relation", "SQLSTATE", "pgx", "goroutine", "42P01", ".go:"} {
		if strings.Contains(r.Body, leak) {
			t.Errorf("response leaks %q: %s", leak, r.Body)
		}
	}
	// entries is non-null, so the error nulls the wallet; the rest stands
	if str(r.Data, "me.name") != "Ana Investidora" || get(r.Data, "me.wallet") != nil || len(r.Errors) != 1 {
		t.Errorf("the rest of the response is intact: %s", r.Body)
	}
}
