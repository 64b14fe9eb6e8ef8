package observe_test

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"go.opentelemetry.io/otel"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
	coltrace "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	"google.golang.org/protobuf/proto"

	"mutuo/app"
	"mutuo/internal/testenv"
	"mutuo/observe"
)

func TestMain(m *testing.M) { testenv.Main(m) }

// stmtCounter is a pgx tracer standing for one a test (or an operator)
// already had in app.Options.PoolConfig: tracing must chain with it.
type stmtCounter struct{ n atomic.Int64 }

func (c *stmtCounter) TraceQueryStart(ctx context.Context, _ *pgx.Conn, _ pgx.TraceQueryStartData) context.Context {
	c.n.Add(1)
	return ctx
}
func (c *stmtCounter) TraceQueryEnd(context.Context, *pgx.Conn, pgx.TraceQueryEndData) {}

type testApp struct {
	*app.App
	URL   string
	Stmts *stmtCounter
}

// startApp runs a Mutuo instance on its own database and Redis prefix, with
// the budgets off (every test client is 127.0.0.1) unless vars say
// otherwise.
func startApp(t *testing.T, opt app.Options, vars map[string]string) *testApp {
	t.Helper()
	db := testenv.NewDB(t)
	rd := testenv.NewRedis(t)
	env := map[string]string{
		"DATABASE_URL": db.URL, "REDIS_URL": testenv.RedisURL(), "REDIS_PREFIX": rd.Prefix,
		"JWT_SECRET": "observe-test-jwt-secret-0123456789abcdef", "DEMO_DATA": "false",
		"ADMIN_EMAIL": "admin@test.dev", "ADMIN_PASSWORD": "admin-password-1",
		"RATE_LIMIT_USER": "off", "RATE_LIMIT_IP": "off", "SIGNIN_LIMIT_PER_IP": "off", "SIGNIN_LIMIT_PER_EMAIL": "off",
	}
	for k, v := range vars {
		env[k] = v
	}
	cfg, err := app.ConfigFromEnv(func(k string) string { return env[k] })
	if err != nil {
		t.Fatal(err)
	}
	counter := &stmtCounter{}
	prev := opt.PoolConfig
	opt.PoolConfig = func(c *pgxpool.Config) {
		c.ConnConfig.Tracer = counter
		if prev != nil {
			prev(c)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	a, err := app.New(ctx, cfg, opt)
	if err != nil {
		t.Fatal(err)
	}
	rtCtx, stopRT := context.WithCancel(context.Background())
	a.RunRealtime(rtCtx)
	srv := httptest.NewServer(a.Handler())
	t.Cleanup(func() { stopRT(); srv.Close(); a.Close() })
	return &testApp{App: a, URL: srv.URL, Stmts: counter}
}

type gqlResult struct {
	Status int
	Data   map[string]any
	Errors []struct {
		Message    string         `json:"message"`
		Extensions map[string]any `json:"extensions"`
	}
	Body string
}

// post sends one GraphQL request with optional headers.
func (a *testApp) post(t *testing.T, token, query string, vars map[string]any, headers map[string]string) *gqlResult {
	t.Helper()
	body, _ := json.Marshal(map[string]any{"query": query, "variables": vars})
	req, _ := http.NewRequest(http.MethodPost, a.URL+"/graphql", bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	for k, v := range headers {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	r := &gqlResult{Status: resp.StatusCode, Body: string(b)}
	if err := json.Unmarshal(b, r); err != nil {
		t.Fatalf("response is not JSON (%d): %s", resp.StatusCode, b)
	}
	return r
}

func (a *testApp) ok(t *testing.T, token, query string, vars map[string]any, headers map[string]string) map[string]any {
	t.Helper()
	r := a.post(t, token, query, vars, headers)
	if len(r.Errors) > 0 || r.Data == nil {
		t.Fatalf("query failed (%d): %s", r.Status, r.Body)
	}
	return r.Data
}

func str(v any, path string) string {
	for _, p := range strings.Split(path, ".") {
		m, _ := v.(map[string]any)
		v = m[p]
	}
	s, _ := v.(string)
	return s
}

func attr(s sdktrace.ReadOnlySpan, key string) (string, bool) {
	for _, kv := range s.Attributes() {
		if string(kv.Key) == key {
			return kv.Value.Emit(), true
		}
	}
	return "", false
}

// TestTracingNestsHTTPOperationResolverSQL sends one GraphQL request through
// the app with an in-memory exporter and checks the span tree: the HTTP
// server span (continuing the caller's traceparent) → the operation →
// resolvers → SQL statements; and that no span carries a secret from the
// document, the variables or the SQL arguments.
func TestTracingNestsHTTPOperationResolverSQL(t *testing.T) {
	exp := tracetest.NewInMemoryExporter()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(exp))
	t.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
	a := startApp(t, app.Options{Tracing: observe.NewTracing(tp)}, nil)
	if a.Tracing == nil {
		t.Fatal("app.Options.Tracing was not used")
	}

	// a secret inline in the document, another in the variables
	const inlinePassword, varPassword = "Inline-Secret-Password-1", "Variable-Secret-Password-2"
	d := a.ok(t, "", `mutation { signUp(input: {name: "Tracy", email: "tracy@test.dev", password: "`+inlinePassword+`", roles: [INVESTOR]}) { accessToken refreshToken } }`, nil, nil)
	token, refresh := str(d, "signUp.accessToken"), str(d, "signUp.refreshToken")
	a.ok(t, "", `mutation($p: String!) { signIn(email: "tracy@test.dev", password: $p) { accessToken } }`,
		map[string]any{"p": inlinePassword}, nil)
	a.post(t, "", `mutation($in: SignUpInput!) { signUp(input: $in) { accessToken } }`,
		map[string]any{"in": map[string]any{"name": "Val", "email": "val@test.dev", "password": varPassword, "roles": []string{"INVESTOR"}}}, nil)
	waitSpans(t, exp, 3, "POST /graphql")
	for _, s := range exp.GetSpans().Snapshots() {
		blob := spanText(s)
		for _, secret := range []string{inlinePassword, varPassword, token, refresh, "tracy@test.dev", "val@test.dev"} {
			if strings.Contains(blob, secret) {
				t.Errorf("span %q carries a secret or personal value %q: %s", s.Name(), secret, blob)
			}
		}
	}

	exp.Reset()
	before := a.Stmts.n.Load()
	const traceID, parentID = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
	d = a.ok(t, token, `query Dashboard { me { name wallet { balance entries(first: 5) { edges { cursor } } } } }`, nil,
		map[string]string{"traceparent": "00-" + traceID + "-" + parentID + "-01", "X-Request-Id": "trace-req-1"})
	if str(d, "me.name") != "Tracy" {
		t.Fatalf("query: %v", d)
	}
	if a.Stmts.n.Load() == before {
		t.Error("the PoolConfig's own pgx tracer saw no statement: tracing did not chain with it")
	}
	spans := waitSpans(t, exp, 1, "POST /graphql")
	byID := map[trace.SpanID]sdktrace.ReadOnlySpan{}
	for _, s := range spans {
		byID[s.SpanContext().SpanID()] = s
	}
	for _, s := range spans {
		stmt, _ := attr(s, "db.statement")
		t.Logf("span %-22q parent %-22q %.60s", s.Name(), parentName(byID, s), stmt)
	}
	var httpSpan, opSpan sdktrace.ReadOnlySpan
	for _, s := range spans {
		switch {
		case s.SpanKind() == trace.SpanKindServer:
			if httpSpan != nil {
				t.Fatalf("two server spans: %s and %s", httpSpan.Name(), s.Name())
			}
			httpSpan = s
		case s.Name() == "query me":
			opSpan = s
		}
	}
	if httpSpan == nil || opSpan == nil {
		t.Fatalf("missing the HTTP or the operation span: %v", names(spans))
	}
	// HTTP: continues the caller's trace, named by the route
	if httpSpan.Name() != "POST /graphql" || httpSpan.SpanContext().TraceID().String() != traceID ||
		httpSpan.Parent().SpanID().String() != parentID || !httpSpan.Parent().IsRemote() {
		t.Errorf("HTTP span %q trace %s parent %s", httpSpan.Name(), httpSpan.SpanContext().TraceID(), httpSpan.Parent().SpanID())
	}
	for k, want := range map[string]string{"http.request.method": "POST", "http.route": "/graphql", "http.response.status_code": "200", "mutuo.request_id": "trace-req-1"} {
		if v, _ := attr(httpSpan, k); v != want {
			t.Errorf("HTTP span %s = %q, want %q", k, v, want)
		}
	}
	// operation: a child of the HTTP span
	if opSpan.Parent().SpanID() != httpSpan.SpanContext().SpanID() {
		t.Errorf("operation span's parent is %s, not the HTTP span", parentName(byID, opSpan))
	}
	for k, want := range map[string]string{"graphql.operation.type": "query", "graphql.operation.name": "Dashboard", "mutuo.operation": "me"} {
		if v, _ := attr(opSpan, k); v != want {
			t.Errorf("operation span %s = %q, want %q", k, v, want)
		}
	}
	// resolvers: children of the operation; only fields with resolvers
	resolvers := map[string]sdktrace.ReadOnlySpan{}
	for _, s := range spans {
		if s.Parent().SpanID() == opSpan.SpanContext().SpanID() {
			resolvers[s.Name()] = s
		}
		if s.Name() == "User.name" || s.Name() == "Wallet.balance" {
			t.Errorf("a span for %s, a field without a resolver", s.Name())
		}
	}
	if resolvers["Query.me"] == nil {
		t.Fatalf("no resolver span Query.me under the operation: %v", names(spans))
	}
	// SQL: children of resolvers, in the same trace, with the statement and
	// never the arguments
	chains := 0
	for _, s := range spans {
		if v, _ := attr(s, "db.system"); v != "postgresql" {
			continue
		}
		if s.SpanKind() != trace.SpanKindClient || s.SpanContext().TraceID() != httpSpan.SpanContext().TraceID() {
			t.Errorf("SQL span %q: kind %v, trace %s", s.Name(), s.SpanKind(), s.SpanContext().TraceID())
		}
		if stmt, _ := attr(s, "db.statement"); stmt == "" || len(stmt) > observe.MaxSQLLength+len("…") {
			t.Errorf("SQL span %q: db.statement %q", s.Name(), stmt)
		}
		if _, ok := attr(s, "db.statement.args"); ok {
			t.Errorf("SQL span %q records arguments", s.Name())
		}
		parent := byID[s.Parent().SpanID()]
		if parent != nil && strings.Contains(parent.Name(), ".") && parent.Parent().SpanID() == opSpan.SpanContext().SpanID() {
			chains++
		}
	}
	if chains == 0 {
		t.Fatal("no SQL span under a resolver span under the operation span under the HTTP span")
	}
	// every span is in the one trace: background SQL (the outbox relay)
	// makes no spans of its own
	for _, s := range spans {
		if s.SpanContext().TraceID() != httpSpan.SpanContext().TraceID() {
			t.Errorf("span %q (parent %q) is in another trace", s.Name(), parentName(byID, s))
		}
	}
	time.Sleep(300 * time.Millisecond) // the relay polls meanwhile
	for _, s := range exp.GetSpans().Snapshots() {
		if !s.Parent().IsValid() && s.SpanKind() != trace.SpanKindServer {
			t.Errorf("root span %q outside any request (background work should not be traced)", s.Name())
		}
	}
}

// TestTracingErrorsAreRecorded: a refused operation (a client's error) does
// not mark the trace as failed, but its code is on the span.
func TestTracingErrorsAreRecorded(t *testing.T) {
	exp := tracetest.NewInMemoryExporter()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(exp))
	t.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
	a := startApp(t, app.Options{Tracing: observe.NewTracing(tp)}, nil)
	r := a.post(t, "", `mutation { signIn(email: "nobody@test.dev", password: "wrong-password-1") { accessToken } }`, nil, nil)
	if len(r.Errors) == 0 {
		t.Fatalf("signIn of nobody: %s", r.Body)
	}
	spans := waitSpans(t, exp, 1, "POST /graphql")
	var op, field sdktrace.ReadOnlySpan
	for _, s := range spans {
		switch s.Name() {
		case "mutation signIn":
			op = s
		case "Mutation.signIn":
			field = s
		}
	}
	if op == nil || field == nil {
		t.Fatalf("spans: %v", names(spans))
	}
	if v, _ := attr(op, "graphql.error_codes"); !strings.Contains(v, "UNAUTHENTICATED") || op.Status().Code.String() == "Error" {
		t.Errorf("operation span: codes %q, status %v", v, op.Status())
	}
	if v, _ := attr(field, "mutuo.error_code"); v != "UNAUTHENTICATED" {
		t.Errorf("resolver span: error code %q", v)
	}
	for _, s := range spans {
		if strings.Contains(spanText(s), "wrong-password-1") || strings.Contains(spanText(s), "nobody@test.dev") {
			t.Errorf("span %q carries the client's input", s.Name())
		}
	}
}

// TestTracingOffInstallsNothing: without OTEL_EXPORTER_OTLP_ENDPOINT,
// SetupTracing installs no provider, and the app wraps nothing: its pool's
// tracer is exactly the one its PoolConfig set.
func TestTracingOffInstallsNothing(t *testing.T) {
	for name, env := range map[string]map[string]string{
		"unset":        {},
		"blank":        {"OTEL_EXPORTER_OTLP_ENDPOINT": "  "},
		"sdk disabled": {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318", "OTEL_SDK_DISABLED": "true"},
	} {
		shutdown, err := observe.SetupTracing(context.Background(), func(k string) string { return env[k] })
		if err != nil || shutdown == nil {
			t.Fatalf("%s: %v", name, err)
		}
		if observe.InstalledTracing() != nil {
			t.Errorf("%s: a Tracing was installed", name)
		}
		if _, sdk := otel.GetTracerProvider().(*sdktrace.TracerProvider); sdk {
			t.Errorf("%s: an SDK TracerProvider was installed globally", name)
		}
		if err := shutdown(context.Background()); err != nil {
			t.Errorf("%s: shutdown: %v", name, err)
		}
	}
	a := startApp(t, app.Options{}, nil)
	if a.Tracing != nil {
		t.Fatal("the app has a Tracing with tracing off")
	}
	if tr := a.Pool.Config().ConnConfig.Tracer; tr != pgx.QueryTracer(a.Stmts) {
		t.Fatalf("the pool's tracer is %T, not the PoolConfig's own", tr)
	}
	var nilTracing *observe.Tracing
	h := http.NewServeMux()
	if got := nilTracing.Middleware(h); got != http.Handler(h) {
		t.Error("a nil Tracing's Middleware wraps the handler")
	}
	if nilTracing.QueryTracer(a.Stmts) != pgx.QueryTracer(a.Stmts) || nilTracing.QueryTracer(nil) != nil {
		t.Error("a nil Tracing's QueryTracer wraps the tracer")
	}
}

// TestSetupTracingExportsOTLP points OTEL_EXPORTER_OTLP_ENDPOINT at a fake
// collector and checks that SetupTracing installs the provider and that
// shutdown flushes the spans to it over OTLP/HTTP, with service.name.
func TestSetupTracingExportsOTLP(t *testing.T) {
	var mu sync.Mutex
	var got []*coltrace.ExportTraceServiceRequest
	collector := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var body io.Reader = r.Body
		if r.Header.Get("Content-Encoding") == "gzip" {
			zr, err := gzip.NewReader(r.Body)
			if err != nil {
				http.Error(w, err.Error(), 400)
				return
			}
			body = zr
		}
		b, _ := io.ReadAll(body)
		req := &coltrace.ExportTraceServiceRequest{}
		if r.URL.Path != "/v1/traces" || proto.Unmarshal(b, req) != nil {
			http.Error(w, "bad export", 400)
			return
		}
		mu.Lock()
		got = append(got, req)
		mu.Unlock()
		w.Header().Set("Content-Type", "application/x-protobuf")
		_, _ = w.Write(nil)
	}))
	defer collector.Close()
	t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", collector.URL)
	t.Setenv("OTEL_SERVICE_NAME", "mutuo-otlp-test")

	if _, err := observe.SetupTracing(context.Background(), func(k string) string {
		return map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": collector.URL, "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"}[k]
	}); err == nil {
		t.Error("OTEL_EXPORTER_OTLP_PROTOCOL=grpc was accepted")
	}

	shutdown, err := observe.SetupTracing(context.Background(), os.Getenv)
	if err != nil {
		t.Fatal(err)
	}
	tr := observe.InstalledTracing()
	if tr == nil {
		t.Fatal("no Tracing installed")
	}
	if _, sdk := otel.GetTracerProvider().(*sdktrace.TracerProvider); !sdk {
		t.Fatalf("global provider is %T", otel.GetTracerProvider())
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /ping", func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusTeapot) })
	rec := httptest.NewRecorder()
	tr.Middleware(mux).ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/ping", nil))
	if rec.Code != http.StatusTeapot {
		t.Fatalf("status %d", rec.Code)
	}
	if err := shutdown(context.Background()); err != nil {
		t.Fatalf("shutdown: %v", err)
	}
	if observe.InstalledTracing() != nil {
		t.Error("shutdown left the Tracing installed")
	}
	if _, sdk := otel.GetTracerProvider().(*sdktrace.TracerProvider); sdk {
		t.Error("shutdown left the SDK provider installed globally")
	}
	mu.Lock()
	defer mu.Unlock()
	var found bool
	for _, req := range got {
		for _, rs := range req.ResourceSpans {
			service := ""
			for _, kv := range rs.GetResource().GetAttributes() {
				if kv.Key == "service.name" {
					service = kv.GetValue().GetStringValue()
				}
			}
			for _, ss := range rs.ScopeSpans {
				for _, s := range ss.Spans {
					if s.Name == "GET /ping" {
						found = true
						if service != "mutuo-otlp-test" {
							t.Errorf("service.name %q", service)
						}
					}
				}
			}
		}
	}
	if !found {
		t.Fatalf("the collector got no span GET /ping (%d exports)", len(got))
	}
}

// waitSpans waits until the exporter holds at least n ended spans named
// name (the HTTP span ends just after the response is written) and returns
// every span.
func waitSpans(t *testing.T, exp *tracetest.InMemoryExporter, n int, name string) []sdktrace.ReadOnlySpan {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		snaps := exp.GetSpans().Snapshots()
		c := 0
		for _, s := range snaps {
			if s.Name() == name {
				c++
			}
		}
		if c >= n {
			return snaps
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d spans %q after 5s (want %d): %v", c, name, n, names(snaps))
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func names(spans []sdktrace.ReadOnlySpan) []string {
	out := make([]string, len(spans))
	for i, s := range spans {
		out[i] = s.Name()
	}
	return out
}

func parentName(byID map[trace.SpanID]sdktrace.ReadOnlySpan, s sdktrace.ReadOnlySpan) string {
	if p := byID[s.Parent().SpanID()]; p != nil {
		return p.Name()
	}
	return "(none) " + s.Parent().SpanID().String()
}

// spanText is everything a span records: name, attributes, events, status.
func spanText(s sdktrace.ReadOnlySpan) string {
	var b strings.Builder
	b.WriteString(s.Name())
	for _, kv := range s.Attributes() {
		b.WriteString(" " + string(kv.Key) + "=" + kv.Value.Emit())
	}
	for _, e := range s.Events() {
		b.WriteString(" event " + e.Name)
		for _, kv := range e.Attributes {
			b.WriteString(" " + string(kv.Key) + "=" + kv.Value.Emit())
		}
	}
	b.WriteString(" status " + s.Status().Description)
	return b.String()
}
