package limits

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/99designs/gqlgen/graphql"
	"github.com/99designs/gqlgen/graphql/handler"
	"github.com/99designs/gqlgen/graphql/handler/lru"
	"github.com/redis/go-redis/v9"
	"github.com/vektah/gqlparser/v2/ast"
	"github.com/vektah/gqlparser/v2/gqlerror"

	"mutuo/graph"
	"mutuo/httpapi"
	"mutuo/internal/testenv"
	"mutuo/lending"
	"mutuo/resolvers"
)

func TestMain(m *testing.M) { testenv.Main(m) }

// server is the real schema behind the project's HTTP transport and error
// presenter, with Install applied. Resolvers have no store and requests no
// token, so an operation that gets through every limit runs and fails with
// UNAUTHENTICATED; rootCalls counts the root resolvers that ran, to show
// that a refused operation ran nothing.
type server struct {
	t         *testing.T
	url       string
	rootCalls atomic.Int64
	redis     *redis.Client
	prefix    string
}

type serverOpt struct {
	redis *testenv.Redis
	hook  func(*handler.Server)
}

func newServer(t *testing.T, cfg Config, opts ...serverOpt) *server {
	t.Helper()
	var o serverOpt
	if len(opts) > 0 {
		o = opts[0]
	}
	s := &server{t: t}
	es := graph.NewExecutableSchema(graph.Config{Resolvers: &resolvers.Resolver{}})
	srv := handler.New(es)
	srv.AddTransport(httpapi.Transport{MaxBodyBytes: httpapi.DefaultMaxBodyBytes})
	srv.SetQueryCache(lru.New[*ast.QueryDocument](100))
	srv.SetErrorPresenter(resolvers.ErrorPresenter(slog.Default()))
	srv.SetRecoverFunc(resolvers.RecoverFunc(slog.Default()))
	srv.AroundRootFields(func(ctx context.Context, next graphql.RootResolver) graphql.Marshaler {
		s.rootCalls.Add(1)
		return next(ctx)
	})
	if o.hook != nil {
		o.hook(srv)
	}
	if o.redis != nil {
		s.redis, s.prefix = o.redis.Client, o.redis.Prefix
	} else if !cfg.DisableAPQ && cfg.AllowList == nil && cfg.AllowListFile == "" {
		cfg.DisableAPQ = true
	}
	if err := Install(srv, cfg, s.redis, s.prefix); err != nil {
		t.Fatalf("Install: %v", err)
	}
	ts := httptest.NewServer(srv)
	t.Cleanup(ts.Close)
	s.url = ts.URL
	return s
}

type gqlError struct {
	Message    string         `json:"message"`
	Path       []any          `json:"path"`
	Extensions map[string]any `json:"extensions"`
}

type response struct {
	Status     int
	Data       json.RawMessage `json:"data"`
	HasData    bool            `json:"-"`
	Errors     []gqlError      `json:"errors"`
	Extensions map[string]any  `json:"extensions"`
	Raw        string          `json:"-"`
}

func (s *server) post(body map[string]any) response {
	s.t.Helper()
	b, _ := json.Marshal(body)
	req, _ := http.NewRequest(http.MethodPost, s.url, bytes.NewReader(b))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/graphql-response+json")
	return s.do(req)
}

func (s *server) get(params url.Values) response {
	s.t.Helper()
	req, _ := http.NewRequest(http.MethodGet, s.url+"?"+params.Encode(), nil)
	req.Header.Set("Accept", "application/graphql-response+json")
	return s.do(req)
}

func (s *server) do(req *http.Request) response {
	s.t.Helper()
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		s.t.Fatal(err)
	}
	defer res.Body.Close()
	raw, _ := io.ReadAll(res.Body)
	var r response
	if err := json.Unmarshal(raw, &r); err != nil {
		s.t.Fatalf("response is not JSON: %v: %s", err, raw)
	}
	var probe map[string]json.RawMessage
	_ = json.Unmarshal(raw, &probe)
	_, r.HasData = probe["data"]
	r.Status, r.Raw = res.StatusCode, string(raw)
	return r
}

func (s *server) query(q string, vars ...map[string]any) response {
	s.t.Helper()
	body := map[string]any{"query": q}
	if len(vars) > 0 {
		body["variables"] = vars[0]
	}
	return s.post(body)
}

// passed asserts that r's operation got through every limit and ran: its
// only errors are the resolvers' UNAUTHENTICATED.
func passed(t *testing.T, r response) {
	t.Helper()
	if !r.HasData {
		t.Fatalf("the operation did not run: %s", r.Raw)
	}
	for _, e := range r.Errors {
		if e.Extensions["code"] != string(lending.CodeUnauthenticated) {
			t.Fatalf("unexpected error %q (%v): %s", e.Message, e.Extensions["code"], r.Raw)
		}
	}
}

// refused asserts that r is a refusal before execution, with code and a
// message containing want; and that no resolver ran.
func (s *server) refused(r response, code lending.Code, want string) {
	s.t.Helper()
	if r.HasData {
		s.t.Fatalf("a refused request must have no data entry: %s", r.Raw)
	}
	if len(r.Errors) != 1 {
		s.t.Fatalf("want one error, got %s", r.Raw)
	}
	e := r.Errors[0]
	if e.Extensions["code"] != string(code) {
		s.t.Fatalf("code %v, want %s: %s", e.Extensions["code"], code, r.Raw)
	}
	if !strings.Contains(e.Message, want) {
		s.t.Fatalf("message %q does not contain %q", e.Message, want)
	}
	if r.Status != http.StatusBadRequest {
		s.t.Fatalf("status %d, want 400 (a request error, graphql-response+json)", r.Status)
	}
	if n := s.rootCalls.Load(); n != 0 {
		s.t.Fatalf("%d root resolvers ran for a refused operation", n)
	}
}

// nested builds me { borrower { user { borrower … { id } } } } with the
// given depth (me is 1, id the last).
func nested(depth int) string {
	var open, closeB strings.Builder
	open.WriteString("{ me {")
	closeB.WriteString(" } }")
	for i := 0; i < depth-2; i++ {
		fmt.Fprintf(&open, " %s {", []string{"borrower", "user"}[i%2])
		closeB.WriteString(" }")
	}
	return open.String() + " id" + closeB.String()
}

func TestDepth(t *testing.T) {
	s := newServer(t, DefaultConfig(false))
	passed(t, s.query(nested(12)))
	s.rootCalls.Store(0)
	s.refused(s.query(nested(13)), lending.CodeQueryTooComplex, "query too deep: it nests fields 13 levels deep, the limit is 12")

	// through fragments: a fragment's depth adds to its spread's
	// (me 1 + B's 2 + C's n + id)
	chain := func(n int) string {
		var open, closeB strings.Builder
		for i := 0; i < n; i++ {
			fmt.Fprintf(&open, "%s { ", []string{"borrower", "user"}[i%2])
			closeB.WriteString(" }")
		}
		return open.String() + "id" + closeB.String()
	}
	frag := func(n int) string {
		return "query { me { ...B } } fragment B on User { borrower { user { ...C } } } fragment C on User { " + chain(n) + " }"
	}
	s.refused(s.query(frag(9)), lending.CodeQueryTooComplex, "it nests fields 13 levels deep, the limit is 12")
	s.rootCalls.Store(0)
	passed(t, s.query(frag(8)))

	off := DefaultConfig(false)
	off.MaxDepth = -1
	passed(t, newServer(t, off).query(nested(20)))
}

func TestAliases(t *testing.T) {
	s := newServer(t, DefaultConfig(false))
	aliases := func(n int) string {
		var b strings.Builder
		b.WriteString("{ me {")
		for i := 0; i < n; i++ {
			fmt.Fprintf(&b, " a%d: id", i)
		}
		return b.String() + " } }"
	}
	passed(t, s.query(aliases(30)))
	s.rootCalls.Store(0)
	s.refused(s.query(aliases(31)), lending.CodeQueryTooComplex, "too many aliases: the operation has 31, the limit is 30")

	// a fragment's aliases count at each spread: 15 + 15 + the alias m2
	var f strings.Builder
	f.WriteString("query { me { ...F } m2: me { ...F } } fragment F on User {")
	for i := 0; i < 15; i++ {
		fmt.Fprintf(&f, " f%d: id", i)
	}
	f.WriteString(" }")
	s.refused(s.query(f.String()), lending.CodeQueryTooComplex, "the operation has 31, the limit is 30")
	s.rootCalls.Store(0)
	passed(t, s.query(strings.Replace(f.String(), " f14: id", "", 1)))
}

func TestDirectivesPerField(t *testing.T) {
	cfg := DefaultConfig(false)
	cfg.MaxDirectivesPerField = 2
	s := newServer(t, cfg)
	passed(t, s.query(`{ me { id @include(if: true) @skip(if: false) } }`))
	s.rootCalls.Store(0)
	r := s.query(`{ me { id @include(if: true) @skip(if: false) @include(if: true) } }`)
	s.refused(r, lending.CodeQueryTooComplex, `too many directives on field "id": 3, the limit is 2 per field`)

	// the default, 4: five repeats are refused before gqlparser would
	// answer with an error per repeat
	d := newServer(t, DefaultConfig(false))
	r = d.query(`{ me { id` + strings.Repeat(` @include(if: true)`, 5) + ` } }`)
	d.refused(r, lending.CodeQueryTooComplex, "too many directives on field \"id\": 5, the limit is 4")
	r = d.query(`query ($v: Int` + strings.Repeat(` @skip(if: true)`, 5) + `) { me { id } }`)
	d.refused(r, lending.CodeQueryTooComplex, "too many directives on variable $v: 5")
	r = d.query(`{ me { ...F` + strings.Repeat(` @skip(if: false)`, 5) + ` } } fragment F on User { id }`)
	d.refused(r, lending.CodeQueryTooComplex, "too many directives on the spread of fragment \"F\"")
}

func TestTokens(t *testing.T) {
	s := newServer(t, DefaultConfig(false))
	// "{ me { id } }" is 6 tokens; a comment is one more (gqlparser counts
	// them), so the parser's own limit agrees with ours to the token
	q := func(tokens int) string { return "{ me { id } }" + strings.Repeat("\n#", tokens-6) }
	passed(t, s.query(q(5000)))
	s.rootCalls.Store(0)
	s.refused(s.query(q(5001)), lending.CodeQueryTooComplex, "query too large: the document has more than 5000 tokens, the limit")
}

func TestDocumentSize(t *testing.T) {
	s := newServer(t, DefaultConfig(false))
	q := func(n int) string { base := "{ me { id } }"; return base + strings.Repeat(" ", n-len(base)) }
	passed(t, s.query(q(32<<10)))
	s.rootCalls.Store(0)
	s.refused(s.query(q(32<<10+1)), lending.CodeQueryTooComplex, "query too large: the document is 32769 bytes, the limit is 32768 bytes")
}

func TestFieldOverlaps(t *testing.T) {
	s := newServer(t, DefaultConfig(false))
	// 63 ids: 63·62/2 = 1953 pairs, within 2000; 64: 2016
	passed(t, s.query("{ me {"+strings.Repeat(" id", 63)+" } }"))
	s.rootCalls.Store(0)
	s.refused(s.query("{ me {"+strings.Repeat(" id", 64)+" } }"), lending.CodeQueryTooComplex,
		"the document repeats the same fields (or fragments) in one place too often: at least 2016 pairs of them, the limit is 2000")

	// the shapes that take gqlparser seconds to validate (15 KiB each) are
	// refused before validation
	start := time.Now()
	s.refused(s.query("{ me {"+strings.Repeat(" id", 4990)+" } }"), lending.CodeQueryTooComplex, "repeats the same fields")
	s.refused(s.query("{"+strings.Repeat(" me { id name }", 990)+" }"), lending.CodeQueryTooComplex, "repeats the same fields")
	var b strings.Builder
	var nest func(level int)
	nest = func(level int) {
		if level == 4 {
			b.WriteString(strings.Repeat(" id", 4))
			return
		}
		for i := 0; i < 4; i++ {
			fmt.Fprintf(&b, " %s {", []string{"borrower", "user"}[level%2])
			nest(level + 1)
			b.WriteString(" }")
		}
	}
	b.WriteString("{ me {")
	nest(0)
	b.WriteString(" } }")
	s.refused(s.query(b.String()), lending.CodeQueryTooComplex, "repeats the same fields")
	b.Reset()
	b.WriteString("{ me {")
	for i := 0; i < 450; i++ {
		fmt.Fprintf(&b, " ...G%d", i)
	}
	b.WriteString(" } }")
	for i := 0; i < 450; i++ {
		fmt.Fprintf(&b, " fragment G%d on User { id }", i)
	}
	s.refused(s.query(b.String()), lending.CodeQueryTooComplex, "repeats the same fields (or fragments)")
	t.Logf("four validation bombs refused in %v", time.Since(start))

	// fragments spread inside themselves expand without end: refused by
	// the estimate, whose walk stops, or by validation
	r := s.query("{ me { ...A } } fragment A on User { borrower { user { ...A } } }")
	if r.HasData || len(r.Errors) == 0 {
		t.Fatalf("a fragment cycle must be refused: %s", r.Raw)
	}
}

func TestCostLimitAndReport(t *testing.T) {
	cfg := DefaultConfig(false)
	cfg.MaxCost = 100
	s := newServer(t, cfg)
	// me 1 + investor 1 + investments (1 + n × node 1) = 3 + n
	q := `query ($n: Int) { me { investor { investments(first: $n) { edges { cursor node { id amount } } pageInfo { hasNextPage } } } } }`
	r := s.query(q, map[string]any{"n": 97})
	passed(t, r)
	if c, _ := r.Extensions["cost"].(map[string]any); c["requested"] != float64(100) || c["limit"] != float64(100) {
		t.Fatalf("extensions.cost = %v, want requested 100, limit 100", r.Extensions["cost"])
	}
	s.rootCalls.Store(0)
	r = s.query(q, map[string]any{"n": 98})
	s.refused(r, lending.CodeQueryTooComplex, "query too complex: its cost is 101, the limit is 100")
	if c, _ := r.Extensions["cost"].(map[string]any); c["requested"] != float64(101) {
		t.Fatalf("a refusal reports the cost too: %v", r.Extensions)
	}
	// literal; and the default page size (20) when first is absent or null
	s.refused(s.query(strings.Replace(strings.Replace(q, "($n: Int) ", "", 1), "$n", "98", 1)), lending.CodeQueryTooComplex, "its cost is 101")
	r = s.query(q, map[string]any{"n": nil})
	passed(t, r)
	if c, _ := r.Extensions["cost"].(map[string]any); c["requested"] != float64(23) {
		t.Fatalf("extensions.cost = %v, want 23", r.Extensions["cost"])
	}
	// nested connections multiply: 1 + 5 × (node 1 + borrower 1 + (1 + 10 × (node 1 + investor 1))) = 116
	s.rootCalls.Store(0)
	r = s.query(`{ loans(first: 5) { edges { node { borrower { id } investments(first: 10) { edges { node { investor { id } } } } } } } }`)
	s.refused(r, lending.CodeQueryTooComplex, "its cost is 116, the limit is 100")
}

func TestIntrospection(t *testing.T) {
	prod := newServer(t, DefaultConfig(true))
	for _, q := range []string{
		`{ __schema { queryType { name } } }`,
		`{ __type(name: "Loan") { name } }`,
		`query { ...F } fragment F on Query { __schema { types { name } } }`,
		introspectionQuery,
	} {
		prod.refused(prod.query(q), lending.CodeBadUserInput, "introspection is disabled on this server")
	}
	r := prod.query(`{ __typename }`)
	if string(r.Data) != `{"__typename":"Query"}` || len(r.Errors) != 0 {
		t.Fatalf("__typename stays available: %s", r.Raw)
	}

	enabled := DefaultConfig(true)
	enabled.Introspection = true
	for _, s := range []*server{newServer(t, DefaultConfig(false)), newServer(t, enabled)} {
		r := s.query(introspectionQuery)
		if len(r.Errors) != 0 || !strings.Contains(string(r.Data), `"queryType":{"name":"Query"}`) {
			t.Fatalf("GraphiQL's introspection query must pass every limit: %.500s", r.Raw)
		}
	}
}

func TestSuggestions(t *testing.T) {
	queries := []string{
		`{ mee { id } }`,
		`{ loans(frist: 1) { totalCount } }`,
		`{ borrowers(grade: [AA]) { totalCount } }`,
		`{ loans(filter: { grades: [A] }) { totalCount } }`,
	}
	prod := newServer(t, DefaultConfig(true))
	dev := newServer(t, DefaultConfig(false))
	for _, q := range queries {
		r := prod.query(q)
		prod.refused(r, lending.CodeBadUserInput, "")
		if strings.Contains(r.Raw, "Did you mean") {
			t.Fatalf("production must not suggest: %s", r.Raw)
		}
		if d := dev.query(q); !strings.Contains(d.Raw, "Did you mean") {
			t.Fatalf("development suggests: %s", d.Raw)
		}
	}
	if got := stripSuggestions(`Cannot query field "mee" on type "Query". Did you mean "me"?`); got != `Cannot query field "mee" on type "Query".` {
		t.Fatal(got)
	}
}

func TestTimeoutInterceptor(t *testing.T) {
	x := NewExtension(Config{OperationTimeout: 50 * time.Millisecond})
	opCtx := func(op ast.Operation) context.Context {
		return graphql.WithOperationContext(context.Background(),
			&graphql.OperationContext{Operation: &ast.OperationDefinition{Operation: op}})
	}
	// a query whose resolver blocks until its context ends
	start := time.Now()
	var sawDeadline bool
	h := x.InterceptOperation(opCtx(ast.Mutation), func(ctx context.Context) graphql.ResponseHandler {
		_, sawDeadline = ctx.Deadline()
		return func(ctx context.Context) *graphql.Response {
			<-ctx.Done()
			return &graphql.Response{Data: []byte(`{"invest":null}`), Errors: gqlerror.List{
				{Message: "internal error (request id x)", Path: ast.Path{ast.PathName("invest")}, Extensions: map[string]any{"code": "INTERNAL"}}}}
		}
	})
	resp := h(opCtx(ast.Mutation))
	if el := time.Since(start); el > 2*time.Second || !sawDeadline {
		t.Fatalf("not cancelled in time: %v (deadline seen: %v)", el, sawDeadline)
	}
	if len(resp.Errors) != 1 || resp.Errors[0].Extensions["code"] != string(lending.CodeQueryTooComplex) ||
		!strings.Contains(resp.Errors[0].Message, "ran longer than the time limit of 50ms") || resp.Errors[0].Path.String() != "invest" {
		t.Fatalf("timeout error: %+v", resp.Errors)
	}

	// the resolver's context says why it ended
	h = x.InterceptOperation(opCtx(ast.Query), func(ctx context.Context) graphql.ResponseHandler {
		return func(ctx context.Context) *graphql.Response {
			<-ctx.Done()
			if !TimedOut(ctx) {
				t.Error("TimedOut(ctx) = false after the deadline")
			}
			return &graphql.Response{Data: []byte(`null`)}
		}
	})
	h(context.Background()) // even when the transport passes another context

	// a fast operation is untouched
	h = x.InterceptOperation(opCtx(ast.Query), func(ctx context.Context) graphql.ResponseHandler {
		return func(ctx context.Context) *graphql.Response { return &graphql.Response{Data: []byte(`{"me":null}`)} }
	})
	if r := h(opCtx(ast.Query)); len(r.Errors) != 0 {
		t.Fatal(r.Errors)
	}

	// subscriptions have no deadline
	x.InterceptOperation(opCtx(ast.Subscription), func(ctx context.Context) graphql.ResponseHandler {
		if _, ok := ctx.Deadline(); ok {
			t.Error("a subscription got a deadline")
		}
		return nil
	})
}

func TestTimeoutEndToEnd(t *testing.T) {
	cfg := DefaultConfig(false)
	cfg.OperationTimeout = 100 * time.Millisecond
	// a root resolver as slow as a stuck SQL statement: it returns when its
	// context ends, with the context's error (as pgx does)
	s := newServer(t, cfg, serverOpt{hook: func(srv *handler.Server) {
		srv.AroundRootFields(func(ctx context.Context, next graphql.RootResolver) graphql.Marshaler {
			<-ctx.Done()
			graphql.AddError(ctx, fmt.Errorf("query: %w", ctx.Err()))
			return graphql.Null
		})
	}})
	start := time.Now()
	r := s.query(`{ me { id } }`)
	if el := time.Since(start); el > 5*time.Second {
		t.Fatalf("took %v", el)
	}
	if len(r.Errors) == 0 {
		t.Fatalf("want the timeout error: %s", r.Raw)
	}
	for _, e := range r.Errors {
		if e.Extensions["code"] != string(lending.CodeQueryTooComplex) ||
			!strings.Contains(e.Message, "operation cancelled: it ran longer than the time limit of 100ms") {
			t.Fatalf("want the timeout error: %s", r.Raw)
		}
	}
}

func TestFromEnv(t *testing.T) {
	env := map[string]string{}
	get := func(k string) string { return env[k] }
	c, err := FromEnv(get, true)
	if err != nil {
		t.Fatal(err)
	}
	if c.MaxDepth != 12 || c.MaxCost != 5000 || c.Introspection || c.Suggestions || c.DisableAPQ || c.OperationTimeout != 10*time.Second {
		t.Fatalf("production defaults: %+v", c)
	}
	if c, _ := FromEnv(get, false); !c.Introspection || !c.Suggestions {
		t.Fatal("development allows introspection and suggestions")
	}
	env = map[string]string{"GRAPHQL_MAX_DEPTH": "off", "GRAPHQL_MAX_COST": "900", "GRAPHQL_INTROSPECTION": "true",
		"GRAPHQL_OPERATION_TIMEOUT": "3s", "GRAPHQL_APQ": "false"}
	c, err = FromEnv(get, true)
	if err != nil || c.MaxDepth != -1 || c.MaxCost != 900 || !c.Introspection || c.OperationTimeout != 3*time.Second || !c.DisableAPQ {
		t.Fatalf("%+v %v", c, err)
	}
	if (Config{}).ParserTokenLimit() != 5000 || (Config{MaxTokens: -1}).ParserTokenLimit() != 0 {
		t.Fatal("ParserTokenLimit")
	}
	if n := c.normalized(); n.MaxDepth != 0 || n.MaxAliases != DefaultMaxAliases {
		t.Fatalf("normalized: off is 0, zero is the default: %+v", n)
	}
	for k, v := range map[string]string{"GRAPHQL_MAX_COST": "-1", "GRAPHQL_MAX_TOKENS": "lots", "GRAPHQL_OPERATION_TIMEOUT": "soon",
		"GRAPHQL_SUGGESTIONS": "maybe", "GRAPHQL_PERSISTED_OPERATIONS": "/nonexistent/manifest.json"} {
		env = map[string]string{k: v}
		if _, err := FromEnv(get, true); err == nil || !strings.Contains(err.Error(), k) {
			t.Fatalf("%s=%s: want an error naming it, got %v", k, v, err)
		}
	}
}

// introspectionQuery is GraphiQL's (graphql-js getIntrospectionQuery with
// descriptions).
const introspectionQuery = `query IntrospectionQuery {
  __schema {
    queryType { name }
    mutationType { name }
    subscriptionType { name }
    types { ...FullType }
    directives { name description locations args { ...InputValue } }
  }
}
fragment FullType on __Type {
  kind name description
  fields(includeDeprecated: true) { name description args { ...InputValue } type { ...TypeRef } isDeprecated deprecationReason }
  inputFields { ...InputValue }
  interfaces { ...TypeRef }
  enumValues(includeDeprecated: true) { name description isDeprecated deprecationReason }
  possibleTypes { ...TypeRef }
}
fragment InputValue on __InputValue { name description type { ...TypeRef } defaultValue }
fragment TypeRef on __Type {
  kind name
  ofType { kind name ofType { kind name ofType { kind name ofType { kind name ofType { kind name ofType { kind name ofType { kind name } } } } } } }
}`
