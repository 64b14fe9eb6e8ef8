// Package e2e tests Mutuo end to end: a real server in-process over HTTP,
// each test with its own database (cloned from a migrated template) and its
// own Redis prefix.
package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"mutuo/app"
	"mutuo/internal/testenv"
	"mutuo/observe"
)

func TestMain(m *testing.M) { testenv.Main(m) }

// stmtCounter counts SQL statements sent by the server's pool on behalf of
// HTTP requests (those whose context has a request id; background work like
// the outbox relay has none).
type stmtCounter struct{ n atomic.Int64 }

func (c *stmtCounter) TraceQueryStart(ctx context.Context, _ *pgx.Conn, _ pgx.TraceQueryStartData) context.Context {
	if observe.RequestID(ctx) != "" {
		c.n.Add(1)
	}
	return ctx
}
func (c *stmtCounter) TraceQueryEnd(context.Context, *pgx.Conn, pgx.TraceQueryEndData) {}

type env struct {
	t     *testing.T
	App   *app.App
	URL   string
	Stmts *stmtCounter
	DB    *testenv.DB
}

type envOpts struct {
	loaderWait time.Duration
	env        app.Env
	vars       map[string]string // extra or overriding environment
}

func newEnv(t *testing.T, opts ...envOpts) *env {
	t.Helper()
	var o envOpts
	if len(opts) > 0 {
		o = opts[0]
	}
	db := testenv.NewDB(t)
	rd := testenv.NewRedis(t)
	vars := map[string]string{
		"DATABASE_URL": db.URL, "REDIS_URL": testenv.RedisURL(), "REDIS_PREFIX": rd.Prefix,
		"JWT_SECRET": "test-secret-test-secret-test-secret!", "DEMO_DATA": "false",
		"ADMIN_EMAIL": "admin@test.dev", "ADMIN_PASSWORD": "admin-password-1",
		// every test client is 127.0.0.1: budgets are tested on their own
		"RATE_LIMIT_USER": "off", "RATE_LIMIT_IP": "off", "SIGNIN_LIMIT_PER_IP": "off", "SIGNIN_LIMIT_PER_EMAIL": "off",
	}
	for k, v := range o.vars {
		vars[k] = v
	}
	if o.env != "" {
		vars["MUTUO_ENV"] = string(o.env)
		vars["PIX_WEBHOOK_SECRET"] = "webhook-secret"
	}
	cfg, err := app.ConfigFromEnv(func(k string) string { return vars[k] })
	if err != nil {
		t.Fatal(err)
	}
	if o.loaderWait > 0 {
		cfg.LoaderWait = o.loaderWait
	}
	counter := &stmtCounter{}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	a, err := app.New(ctx, cfg, app.Options{PoolConfig: func(c *pgxpool.Config) { c.ConnConfig.Tracer = counter }})
	if err != nil {
		t.Fatal(err)
	}
	rtCtx, stopRT := context.WithCancel(context.Background())
	a.RunRealtime(rtCtx)
	srv := httptest.NewServer(a.Handler())
	t.Cleanup(func() { stopRT(); srv.Close(); a.Close() })
	return &env{t: t, App: a, URL: srv.URL, Stmts: counter, DB: db}
}

// gqlResponse is a decoded GraphQL response.
type gqlResponse struct {
	Status     int
	Header     http.Header
	Data       map[string]any
	RawData    json.RawMessage `json:"data"`
	Errors     []gqlError      `json:"errors"`
	Extensions map[string]any  `json:"extensions"`
	Body       string
}

type gqlError struct {
	Message    string         `json:"message"`
	Path       []any          `json:"path"`
	Extensions map[string]any `json:"extensions"`
}

func (r *gqlResponse) code(i int) string {
	if i >= len(r.Errors) {
		return ""
	}
	c, _ := r.Errors[i].Extensions["code"].(string)
	return c
}

// codes lists every error's code.
func (r *gqlResponse) codes() []string {
	var out []string
	for i := range r.Errors {
		out = append(out, r.code(i))
	}
	return out
}

// do posts a GraphQL request with an optional bearer token.
func (e *env) do(token, query string, vars map[string]any) *gqlResponse {
	e.t.Helper()
	body, _ := json.Marshal(map[string]any{"query": query, "variables": vars})
	req, _ := http.NewRequest(http.MethodPost, e.URL+"/graphql", bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	return e.send(req)
}

func (e *env) send(req *http.Request) *gqlResponse {
	e.t.Helper()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	r := &gqlResponse{Status: resp.StatusCode, Header: resp.Header, Body: string(b)}
	if err := json.Unmarshal(b, r); err != nil {
		e.t.Fatalf("response is not JSON (%d): %s", resp.StatusCode, b)
	}
	if len(r.RawData) > 0 && string(r.RawData) != "null" {
		_ = json.Unmarshal(r.RawData, &r.Data)
	}
	return r
}

// ok fails the test unless the response has data and no errors.
func (e *env) ok(token, query string, vars map[string]any) map[string]any {
	e.t.Helper()
	r := e.do(token, query, vars)
	if len(r.Errors) > 0 || r.Data == nil {
		e.t.Fatalf("query failed (%d): %s", r.Status, r.Body)
	}
	return r.Data
}

// get walks a decoded JSON value by keys and indexes ("a.b.0.c").
func get(v any, path string) any {
	for _, p := range strings.Split(path, ".") {
		switch x := v.(type) {
		case map[string]any:
			v = x[p]
		case []any:
			i := 0
			for _, c := range p {
				i = i*10 + int(c-'0')
			}
			if i >= len(x) {
				return nil
			}
			v = x[i]
		default:
			return nil
		}
	}
	return v
}

func str(v any, path string) string { s, _ := get(v, path).(string); return s }
func num(v any, path string) int    { f, _ := get(v, path).(float64); return int(f) }
func list(v any, path string) []any { l, _ := get(v, path).([]any); return l }
