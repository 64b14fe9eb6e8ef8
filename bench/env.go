package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"mutuo/app"
	"mutuo/store"
)

// adminURL is the server-level Postgres URL used to create and drop the
// benchmark's database.
func adminURL() string {
	if u := os.Getenv("BENCH_DATABASE_ADMIN_URL"); u != "" {
		return u
	}
	return "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable"
}

// redisURL is the Redis the in-process server uses.
func redisURL() string {
	for _, k := range []string{"BENCH_REDIS_URL", "REDIS_URL"} {
		if u := os.Getenv(k); u != "" {
			return u
		}
	}
	return "redis://127.0.0.1:6379/0"
}

func randHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// withDB returns u naming database db instead.
func withDB(u, db string) (string, error) {
	p, err := url.Parse(u)
	if err != nil {
		return "", fmt.Errorf("database URL: %w", err)
	}
	p.Path = "/" + db
	return p.String(), nil
}

// withPoolMax sets pgxpool's pool_max_conns in u (n <= 0 keeps pgx's
// default, max(4, NumCPU)).
func withPoolMax(u string, n int) string {
	if n <= 0 {
		return u
	}
	p, err := url.Parse(u)
	if err != nil {
		return u
	}
	q := p.Query()
	q.Set("pool_max_conns", strconv.Itoa(n))
	p.RawQuery = q.Encode()
	return p.String()
}

// benchDB is a benchmark's own database.
type benchDB struct {
	Name string
	URL  string
	Pool *pgxpool.Pool // for seeding and checks; not the server's
}

// createDB creates and migrates a database named mutuo_bench_<random>.
func createDB(ctx context.Context) (*benchDB, error) {
	name := "mutuo_bench_" + randHex(5)
	conn, err := pgx.Connect(ctx, adminURL())
	if err != nil {
		return nil, fmt.Errorf("postgres unreachable at %s (BENCH_DATABASE_ADMIN_URL; `make services` starts it): %w", adminURL(), err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+name); err != nil {
		return nil, fmt.Errorf("create database %s: %w", name, err)
	}
	d := &benchDB{Name: name}
	if d.URL, err = withDB(adminURL(), name); err != nil {
		_ = d.Drop()
		return nil, err
	}
	if d.Pool, err = pgxpool.New(ctx, d.URL); err != nil {
		_ = d.Drop()
		return nil, err
	}
	if err := store.Migrate(ctx, d.Pool); err != nil {
		_ = d.Drop()
		return nil, fmt.Errorf("migrate: %w", err)
	}
	return d, nil
}

// Drop closes the pool and drops the database, whoever is connected.
func (d *benchDB) Drop() error {
	if d.Pool != nil {
		d.Pool.Close()
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, adminURL())
	if err != nil {
		return err
	}
	defer conn.Close(ctx)
	_, err = conn.Exec(ctx, "DROP DATABASE IF EXISTS "+d.Name+" WITH (FORCE)")
	return err
}

// stmtCounter is a pgx QueryTracer counting the statements a pool sends.
type stmtCounter struct{ n atomic.Int64 }

func (c *stmtCounter) TraceQueryStart(ctx context.Context, _ *pgx.Conn, _ pgx.TraceQueryStartData) context.Context {
	c.n.Add(1)
	return ctx
}
func (c *stmtCounter) TraceQueryEnd(context.Context, *pgx.Conn, pgx.TraceQueryEndData) {}

// Load is the count so far.
func (c *stmtCounter) Load() int64 { return c.n.Load() }

// server is the app running in-process behind an httptest server.
type server struct {
	App   *app.App
	URL   string // base URL; GraphQL is at URL + "/graphql"
	Stmts *stmtCounter
	http  *httptest.Server
}

// serverOpts tune startServer.
type serverOpts struct {
	LoaderWait time.Duration
	// Env adds or overrides configuration variables.
	Env map[string]string
	// Mount adds handlers next to the app's (path → handler), for baselines
	// served the same way.
	Mount map[string]http.Handler
}

// startServer starts the app on dbURL with a statement-counting pool, under
// its own Redis prefix.
func startServer(ctx context.Context, dbURL string, o serverOpts) (*server, error) {
	vars := map[string]string{
		"DATABASE_URL": dbURL, "REDIS_URL": redisURL(), "REDIS_PREFIX": "bench:" + randHex(6) + ":",
		"JWT_SECRET": "bench-secret-bench-secret-bench-secret", "DEMO_DATA": "false", "MUTUO_ENV": "development",
		"ADMIN_EMAIL": "admin@bench.mutuo.dev", "ADMIN_PASSWORD": "bench-admin-password",
		"LOADER_WAIT": o.LoaderWait.String(),
	}
	for k, v := range o.Env {
		vars[k] = v
	}
	cfg, err := app.ConfigFromEnv(func(k string) string { return vars[k] })
	if err != nil {
		return nil, err
	}
	counter := &stmtCounter{}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	a, err := app.New(ctx, cfg, app.Options{Logger: log, PoolConfig: func(c *pgxpool.Config) { c.ConnConfig.Tracer = counter }})
	if err != nil {
		return nil, err
	}
	mux := http.NewServeMux()
	mux.Handle("/", a.Handler())
	for p, h := range o.Mount {
		mux.Handle(p, h)
	}
	hs := httptest.NewServer(mux)
	return &server{App: a, URL: hs.URL, Stmts: counter, http: hs}, nil
}

// Close stops the server, deletes its Redis keys and closes its pools.
func (s *server) Close() {
	s.http.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	iter := s.App.Redis.Scan(ctx, 0, s.App.Config.RedisPrefix+"*", 1000).Iterator()
	for iter.Next(ctx) {
		s.App.Redis.Del(ctx, iter.Val())
	}
	s.App.Close()
}

// newHTTPClient keeps enough idle connections for c workers.
func newHTTPClient(c int) *http.Client {
	return &http.Client{
		Timeout: 30 * time.Second,
		Transport: &http.Transport{
			MaxIdleConns:        2 * c,
			MaxIdleConnsPerHost: 2 * c,
			IdleConnTimeout:     90 * time.Second,
			DisableCompression:  true,
		},
	}
}

// gql posts one GraphQL request (setup, not the measured loop) and returns
// its data; any error in the response is an error.
func gql(ctx context.Context, client *http.Client, baseURL, token, query string, vars map[string]any) (json.RawMessage, error) {
	body, err := json.Marshal(map[string]any{"query": query, "variables": vars})
	if err != nil {
		return nil, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, baseURL+"/graphql", bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	var r struct {
		Data   json.RawMessage   `json:"data"`
		Errors []json.RawMessage `json:"errors"`
	}
	if err := json.Unmarshal(b, &r); err != nil || resp.StatusCode != http.StatusOK || len(r.Errors) > 0 {
		return nil, fmt.Errorf("graphql %d: %.300s", resp.StatusCode, b)
	}
	return r.Data, nil
}

// signUp creates an account through the API and returns its access token.
func signUp(ctx context.Context, client *http.Client, baseURL, role string) (string, error) {
	data, err := gql(ctx, client, baseURL, "", `mutation($in: SignUpInput!) { signUp(input: $in) { accessToken } }`,
		map[string]any{"in": map[string]any{
			"name": "Bench " + role, "email": "bench-" + randHex(4) + "@bench.mutuo.dev",
			"password": "bench-password-123", "roles": []string{role},
		}})
	if err != nil {
		return "", fmt.Errorf("sign up: %w", err)
	}
	var r struct {
		SignUp struct {
			AccessToken string `json:"accessToken"`
		} `json:"signUp"`
	}
	if err := json.Unmarshal(data, &r); err != nil || r.SignUp.AccessToken == "" {
		return "", fmt.Errorf("sign up: no token in %s", data)
	}
	return r.SignUp.AccessToken, nil
}

// envFlag collects repeated -env KEY=VALUE flags: server configuration
// variables (as app.ConfigFromEnv reads them) for the in-process server.
type envFlag map[string]string

func (e envFlag) String() string {
	var parts []string
	for k, v := range e {
		parts = append(parts, k+"="+v)
	}
	slices.Sort(parts)
	return strings.Join(parts, " ")
}

func (e envFlag) Set(s string) error {
	k, v, ok := strings.Cut(s, "=")
	if !ok || strings.TrimSpace(k) == "" {
		return fmt.Errorf("want KEY=VALUE, got %q", s)
	}
	e[strings.TrimSpace(k)] = v
	return nil
}

// unlimitedRates keeps the rate limiter running (its Redis round trip is
// part of every request) with budgets a benchmark's single user never
// exhausts.
var unlimitedRates = map[string]string{
	"RATE_LIMIT_USER": "1000000000/1s",
	"RATE_LIMIT_IP":   "1000000000/1s",
}
