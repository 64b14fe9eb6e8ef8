package ratelimit_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/99designs/gqlgen/graphql"
	"github.com/99designs/gqlgen/graphql/handler"
	"github.com/vektah/gqlparser/v2/ast"

	"mutuo/graph"
	"mutuo/httpapi"
	"mutuo/internal/testenv"
	"mutuo/lending"
	"mutuo/limits"
	"mutuo/ratelimit"
	"mutuo/resolvers"
)

// server is the GraphQL stack as app.routes builds it: ratelimit.Middleware
// outside, a viewer (here from X-Test-User instead of a token), then
// gqlgen with Mutuo's transport and error presenter and the extension.
func server(l *ratelimit.Limiter) http.Handler {
	es := graph.NewExecutableSchema(graph.Config{Resolvers: &resolvers.Resolver{}})
	srv := handler.New(es)
	srv.AddTransport(httpapi.Transport{MaxBodyBytes: httpapi.DefaultMaxBodyBytes})
	srv.SetErrorPresenter(resolvers.ErrorPresenter(quiet))
	srv.SetRecoverFunc(resolvers.RecoverFunc(quiet))
	srv.Use(l.Extension())
	viewer := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var v lending.Viewer
		if id := r.Header.Get("X-Test-User"); id != "" {
			v.UserID, _ = strconv.ParseInt(id, 10, 64)
		}
		srv.ServeHTTP(w, r.WithContext(lending.WithViewer(r.Context(), v)))
	})
	return l.Middleware(viewer)
}

type gqlResponse struct {
	Data   map[string]any `json:"data"`
	Errors []struct {
		Message    string         `json:"message"`
		Extensions map[string]any `json:"extensions"`
	} `json:"errors"`
}

func post(t *testing.T, h http.Handler, ip, accept, user string) (*httptest.ResponseRecorder, gqlResponse) {
	t.Helper()
	r := httptest.NewRequest(http.MethodPost, "/graphql", strings.NewReader(`{"query":"{ __typename }"}`))
	r.RemoteAddr = ip + ":40000"
	r.Header.Set("Content-Type", "application/json")
	if accept != "" {
		r.Header.Set("Accept", accept)
	}
	if user != "" {
		r.Header.Set("X-Test-User", user)
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	var resp gqlResponse
	if err := json.Unmarshal(w.Body.Bytes(), &resp); err != nil {
		t.Fatalf("body %q: %v", w.Body.String(), err)
	}
	return w, resp
}

func TestExtensionOverHTTP(t *testing.T) {
	r := testenv.NewRedis(t)
	var costs []int
	l := newLimiter(t, r.Client, r.Prefix, func(c *ratelimit.Config) {
		// 5 points a second: a refused cost of 5 waits about 1 s.
		c.IP = ratelimit.Limit{Rate: 10, Period: 2 * time.Second, Burst: 10}
		c.User = ratelimit.Limit{Rate: 10, Period: 2 * time.Second, Burst: 5}
		c.CostOf = func(ctx context.Context, op *graphql.OperationContext) int {
			costs = append(costs, 5)
			return 5
		}
	})
	h := server(l)
	const ip = "198.51.100.20"

	for i := 0; i < 2; i++ {
		w, resp := post(t, h, ip, httpapi.MediaJSON, "")
		if w.Code != http.StatusOK || resp.Data["__typename"] != "Query" || len(resp.Errors) != 0 {
			t.Fatalf("request %d: %d %s", i, w.Code, w.Body.String())
		}
		if w.Header().Get("Retry-After") != "" {
			t.Fatalf("an allowed response has Retry-After %q", w.Header().Get("Retry-After"))
		}
	}
	if len(costs) != 2 {
		t.Fatalf("CostOf called %d times, want 2", len(costs))
	}

	check := func(w *httptest.ResponseRecorder, resp gqlResponse, status int) {
		t.Helper()
		if w.Code != status {
			t.Errorf("status = %d, want %d", w.Code, status)
		}
		if len(resp.Errors) != 1 || resp.Errors[0].Extensions["code"] != string(lending.CodeRateLimited) ||
			!strings.Contains(resp.Errors[0].Message, "retry in") {
			t.Fatalf("body = %s, want one RATE_LIMITED error with the delay", w.Body.String())
		}
		if resp.Data != nil || strings.Contains(w.Body.String(), `"data"`) {
			t.Errorf("a refused request has a data entry: %s", w.Body.String())
		}
		ra, err := strconv.Atoi(w.Header().Get("Retry-After"))
		if err != nil || ra < 1 || ra > 2 {
			t.Errorf("Retry-After = %q, want 1 or 2 (seconds)", w.Header().Get("Retry-After"))
		}
		if !strings.Contains(resp.Errors[0].Message, "retry in "+w.Header().Get("Retry-After")+"s") {
			t.Errorf("message %q disagrees with Retry-After %s", resp.Errors[0].Message, w.Header().Get("Retry-After"))
		}
	}
	// application/json: 200 (GraphQL-over-HTTP), with Retry-After.
	w, resp := post(t, h, ip, httpapi.MediaJSON, "")
	check(w, resp, http.StatusOK)
	// application/graphql-response+json: 429.
	w, resp = post(t, h, ip, httpapi.MediaGraphQLResponse, "")
	check(w, resp, http.StatusTooManyRequests)

	// A signed-in user elsewhere: its own budget of 5 fits one request.
	const other = "203.0.113.50"
	if w, resp := post(t, h, other, "", "9"); w.Code != http.StatusOK || len(resp.Errors) != 0 {
		t.Fatalf("user 9: %d %s", w.Code, w.Body.String())
	}
	w, resp = post(t, h, other, httpapi.MediaGraphQLResponse, "9")
	check(w, resp, http.StatusTooManyRequests)
	if !strings.Contains(resp.Errors[0].Message, "user") {
		t.Errorf("message %q should name the user budget", resp.Errors[0].Message)
	}
	// Anonymous from the same address still has IP budget.
	if w, resp := post(t, h, other, "", ""); w.Code != http.StatusOK || len(resp.Errors) != 0 {
		t.Fatalf("anonymous: %d %s", w.Code, w.Body.String())
	}
}

// A request error that is not a rate limit keeps its status and gets no
// Retry-After.
func TestMiddlewareLeavesOtherErrorsAlone(t *testing.T) {
	r := testenv.NewRedis(t)
	h := server(newLimiter(t, r.Client, r.Prefix, nil))
	req := httptest.NewRequest(http.MethodPost, "/graphql", strings.NewReader(`{"query":"{ nope }"}`))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", httpapi.MediaGraphQLResponse)
	w := httptest.NewRecorder()
	h.ServeHTTP(w, req)
	if w.Code != http.StatusBadRequest || w.Header().Get("Retry-After") != "" {
		t.Fatalf("got %d, Retry-After %q; want 400 without it", w.Code, w.Header().Get("Retry-After"))
	}
}

func TestExtensionRedisDown(t *testing.T) {
	rdb := deadRedis(t)
	open := server(newLimiter(t, rdb, "x:", func(c *ratelimit.Config) { c.Timeout = 100 * time.Millisecond }))
	start := time.Now()
	w, resp := post(t, open, "192.0.2.1", "", "")
	if w.Code != http.StatusOK || resp.Data["__typename"] != "Query" {
		t.Fatalf("fail open: %d %s", w.Code, w.Body.String())
	}
	closed := server(newLimiter(t, rdb, "x:", func(c *ratelimit.Config) {
		c.Timeout = 100 * time.Millisecond
		c.FailClosed = true
	}))
	w, resp = post(t, closed, "192.0.2.1", "", "")
	if len(resp.Errors) != 1 || resp.Errors[0].Extensions["code"] != string(lending.CodeInternal) || w.Header().Get("Retry-After") != "" {
		t.Fatalf("fail closed: %d %s", w.Code, w.Body.String())
	}
	if el := time.Since(start); el > 2*time.Second {
		t.Fatalf("two requests with Redis down took %v", el)
	}
}

// Websocket upgrades get the client IP but keep their own ResponseWriter
// (so hijacking works).
func TestMiddlewareWebsocketUpgrade(t *testing.T) {
	r := testenv.NewRedis(t)
	l := newLimiter(t, r.Client, r.Prefix, nil)
	rec := httptest.NewRecorder()
	var gotW http.ResponseWriter
	var gotIP string
	h := l.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		gotW, gotIP = w, ratelimit.ClientIPFrom(r.Context())
	}))
	req := httptest.NewRequest(http.MethodGet, "/graphql", nil)
	req.RemoteAddr = "192.0.2.9:1234"
	req.Header.Set("Upgrade", "WebSocket, h2c")
	h.ServeHTTP(rec, req)
	if gotW != rec || gotIP != "192.0.2.9" {
		t.Fatalf("upgrade: writer wrapped = %v, ip = %q", gotW != rec, gotIP)
	}
}

func TestClientIP(t *testing.T) {
	r := testenv.NewRedis(t)
	trusted, err := ratelimit.ParseTrustedProxies("10.0.0.0/8, 2001:db8:ffff::/48, 192.0.2.7")
	if err != nil {
		t.Fatal(err)
	}
	none := newLimiter(t, r.Client, r.Prefix, nil)
	some := newLimiter(t, r.Client, r.Prefix, func(c *ratelimit.Config) { c.TrustedProxies = trusted })
	cases := []struct {
		l          *ratelimit.Limiter
		remote     string
		xff        []string
		want, name string
	}{
		{none, "203.0.113.1:5000", []string{"1.2.3.4"}, "203.0.113.1", "no trusted proxies: XFF ignored"},
		{some, "203.0.113.1:5000", []string{"1.2.3.4"}, "203.0.113.1", "untrusted peer: XFF ignored"},
		{some, "10.1.2.3:5000", []string{"198.51.100.4"}, "198.51.100.4", "trusted proxy"},
		{some, "10.1.2.3:5000", []string{"6.6.6.6, 198.51.100.4, 10.9.9.9"}, "198.51.100.4", "spoofed left entry ignored"},
		{some, "10.1.2.3:5000", []string{"6.6.6.6", "198.51.100.4, 192.0.2.7"}, "198.51.100.4", "several headers"},
		{some, "10.1.2.3:5000", []string{"10.0.0.1, 10.0.0.2"}, "10.0.0.1", "all trusted: leftmost"},
		{some, "10.1.2.3:5000", []string{"garbage, 10.0.0.2"}, "10.0.0.2", "garbage stops at the last trusted hop"},
		{some, "10.1.2.3:5000", nil, "10.1.2.3", "trusted proxy without XFF"},
		{some, "[2001:db8:ffff::1]:443", []string{"[2001:db8::5]:1234"}, "2001:db8::5", "IPv6 with ports"},
		{some, "[::ffff:10.0.0.1]:443", []string{"::ffff:198.51.100.4"}, "198.51.100.4", "IPv4-mapped"},
		{none, "@", nil, "", "not an IP"},
	}
	for _, c := range cases {
		req := httptest.NewRequest(http.MethodGet, "/", nil)
		req.RemoteAddr = c.remote
		for _, v := range c.xff {
			req.Header.Add("X-Forwarded-For", v)
		}
		if got := c.l.ClientIP(req); got != c.want {
			t.Errorf("%s: ClientIP = %q, want %q", c.name, got, c.want)
		}
	}
	if got := trusted[2]; got != netip.MustParsePrefix("192.0.2.7/32") {
		t.Errorf("single address parsed as %v", got)
	}
}

// With limits installed first and no CostOf, each operation is charged the
// cost that limits measured.
func TestExtensionChargesLimitsCost(t *testing.T) {
	r := testenv.NewRedis(t)
	l := newLimiter(t, r.Client, r.Prefix, func(c *ratelimit.Config) {
		c.IP = ratelimit.PerMinute(1, 25)
	})
	es := graph.NewExecutableSchema(graph.Config{Resolvers: &resolvers.Resolver{}})
	srv := handler.New(es)
	srv.AddTransport(httpapi.Transport{MaxBodyBytes: httpapi.DefaultMaxBodyBytes})
	srv.SetErrorPresenter(resolvers.ErrorPresenter(quiet))
	srv.SetRecoverFunc(resolvers.RecoverFunc(quiet))
	if err := limits.Install(srv, limits.Config{DisableAPQ: true}, nil, ""); err != nil {
		t.Fatal(err)
	}
	srv.Use(l.Extension())
	h := l.Middleware(srv)

	const ip = "198.51.100.30"
	do := func() (*httptest.ResponseRecorder, map[string]any) {
		// loans(first: 10) { edges { node { id } } } costs 1 + 10 × 1 = 11.
		req := httptest.NewRequest(http.MethodPost, "/graphql",
			strings.NewReader(`{"query":"{ loans(first: 10) { edges { node { id } } } }"}`))
		req.RemoteAddr = ip + ":1"
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Accept", httpapi.MediaGraphQLResponse)
		w := httptest.NewRecorder()
		h.ServeHTTP(w, req)
		var body map[string]any
		if err := json.Unmarshal(w.Body.Bytes(), &body); err != nil {
			t.Fatal(err)
		}
		return w, body
	}
	for i := 0; i < 2; i++ {
		w, body := do()
		if w.Header().Get("Retry-After") != "" {
			t.Fatalf("request %d refused: %s", i, w.Body)
		}
		cost, _ := body["extensions"].(map[string]any)["cost"].(map[string]any)
		if cost["requested"] != float64(11) {
			t.Fatalf("extensions.cost = %v, want requested 11", body["extensions"])
		}
	}
	// 22 of 25 spent: the next 11 does not fit.
	if w, _ := do(); w.Code != http.StatusTooManyRequests || w.Header().Get("Retry-After") == "" {
		t.Fatalf("third request: %d %s", w.Code, w.Body)
	}
	if d := mustAllow(t, l, ratelimit.Subject{IP: ip}, 1); d.Remaining != 2 {
		t.Fatalf("remaining = %d, want 2 (charged 11 twice)", d.Remaining)
	}
}

// Subscriptions (over the websocket transport, which creates its operations
// through the executor) are charged once, when they start, unless
// SkipSubscriptions leaves them to a transport that calls Allow itself.
func TestExtensionSubscriptions(t *testing.T) {
	r := testenv.NewRedis(t)
	sub := &graphql.OperationContext{Operation: &ast.OperationDefinition{Operation: ast.Subscription}}
	ctx := lending.WithViewer(ratelimit.WithClientIP(context.Background(), "192.0.2.44"), lending.Viewer{UserID: 3})
	for _, skip := range []bool{false, true} {
		l := newLimiter(t, r.Client, r.Prefix+strconv.FormatBool(skip), func(c *ratelimit.Config) {
			c.User = ratelimit.PerMinute(1, 100)
			c.CostOf = func(context.Context, *graphql.OperationContext) int { return 100 }
			c.SkipSubscriptions = skip
		})
		ext := l.Extension()
		if err := ext.MutateOperationContext(ctx, sub); err != nil {
			t.Fatalf("skip=%v: first subscribe refused: %v", skip, err)
		}
		err := ext.MutateOperationContext(ctx, sub)
		if skip && err != nil {
			t.Fatalf("skip=%v: second subscribe refused: %v", skip, err)
		}
		if !skip && (err == nil || err.Extensions["code"] != string(lending.CodeRateLimited)) {
			t.Fatalf("skip=%v: second subscribe = %v, want RATE_LIMITED", skip, err)
		}
	}
}
