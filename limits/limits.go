// Package limits bounds everything a GraphQL client controls, as gqlgen
// handler extensions: document size, parser tokens, directives per field and
// repeated fields (before parsing and validation), depth, aliases and cost
// (after validation, before execution, variables resolved), a time limit per
// operation, introspection and "Did you mean" suggestions, and persisted
// operations (automatic persisted queries in Redis, or an allow-list from a
// manifest).
//
// Every refusal but the time limit's happens before any resolver runs, so it
// changes nothing; the time limit cancels the operation's context, so its
// SQL is cancelled and its open transaction rolled back. Each carries a clear
// message and extensions.code QUERY_TOO_COMPLEX (a limit on the document, its
// cost or its running time), BAD_USER_INPUT (a malformed request, or
// introspection when it is off) or FORBIDDEN (an operation outside the
// allow-list); the APQ protocol's PersistedQueryNotFound and
// PersistedQueryNotSupported are the only other codes (see persisted.go).
//
// Install applies everything to a gqlgen server in one call.
package limits

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"time"

	"github.com/99designs/gqlgen/graphql"
	"github.com/99designs/gqlgen/graphql/handler"
	"github.com/redis/go-redis/v9"
	"github.com/vektah/gqlparser/v2/ast"
	"github.com/vektah/gqlparser/v2/gqlerror"

	"mutuo/lending"
)

// Defaults. The reasoning behind each is in the Config field's comment.
const (
	DefaultMaxDepth              = 12
	DefaultMaxCost               = 5000
	DefaultMaxAliases            = 30
	DefaultMaxDirectivesPerField = 4
	DefaultMaxTokens             = 5000
	DefaultMaxDocumentBytes      = 32 << 10
	DefaultMaxFieldOverlaps      = 2000
	DefaultOperationTimeout      = 10 * time.Second
	DefaultAPQTTL                = 24 * time.Hour
)

// Config sets the limits. In every numeric field 0 means the default and a
// negative value turns the limit off; DefaultConfig fills in the defaults.
type Config struct {
	// MaxDepth bounds field nesting (a root field is depth 1, leaves count,
	// fragments expanded). 12: the deepest path a screen of the app needs is
	// 8 (the investor dashboard: me → investor → investments → edges → node
	// → loan → installments → total) and a Relay hop costs two levels
	// (edges, node), so 12 leaves two more hops; 13 and more only come from
	// walking the graph's cycles (loan → borrower → loans → investments →
	// investor → …).
	MaxDepth int
	// MaxCost bounds the operation's cost (see CostModel: about the number of
	// objects it may return). 5000: the app's screens cost well under 1000
	// (a marketplace page of 20 loans with their borrowers: 42; an
	// investor's dashboard with wallet, 10 entries, 20 investments with
	// their loans' schedules and 10 notifications: 819; 20 loans × 20
	// investments with their investors: 841); a 100-item page inside a
	// 100-item page is the most a client can ask for, and it is the thing
	// refused: 100 loans × 20 investments (4201) passes, 100 × 100 (20,201
	// objects, a multi-megabyte response) does not. Shopify allows 1000 per
	// query; GitHub far more against an hourly budget.
	MaxCost int
	// MaxAliases bounds aliased fields per operation (fragments counted at
	// each spread). 30: aliases are rare in real clients (a few side-by-side
	// lists); the limit stops batching attacks (hundreds of signIn or invest
	// calls in one request, each counted once by per-request rate limits).
	MaxAliases int
	// MaxDirectivesPerField bounds the directives at one location (field,
	// fragment, operation, variable), as written. 4: the schema has two
	// executable directives (@skip, @include), so 4 leaves room for @defer
	// and one more; 5 or more only come from directive-overloading attacks
	// (each repeat is another validation error to build and send).
	MaxDirectivesPerField int
	// MaxTokens is the parser's token limit (comments count, as in
	// gqlparser). 5000: GraphiQL's introspection query has about 150-300
	// tokens, the app's largest screen (the investor dashboard) under 600;
	// 5000 leaves 8× that, and keeps a document's parse and validation
	// bounded (with MaxFieldOverlaps) to a few milliseconds.
	MaxTokens int
	// MaxDocumentBytes bounds the query string, before anything else.
	// 32 KiB: 5000 tokens of normal GraphQL fit in about 20 KiB; the limit
	// also bounds comments and whitespace, which cost bytes but few tokens.
	// (The HTTP body, variables included, is bounded separately: 1 MiB.)
	MaxDocumentBytes int
	// MaxFieldOverlaps bounds the pairs of same-named fields (and of
	// fragment spreads) that share a response path, which gqlparser's
	// OverlappingFieldsCanBeMerged validation compares pairwise: without it
	// a 15 KiB `{ me { id id id … } }` (under every other limit) takes
	// seconds of CPU to validate, and so do nested repeats and hundreds of
	// fragments spread side by side. 2000: real documents have a handful
	// (the same id in a few fragments); the worst documents just under 2000
	// validate in under 10 ms.
	MaxFieldOverlaps int
	// OperationTimeout cancels a query or mutation that runs longer (its
	// context is cancelled, so its SQL is cancelled and its transaction
	// rolled back). Subscriptions are exempt. 10s: GitHub's limit; every
	// operation of the app runs in well under a second, and it equals the
	// server's shutdown grace period, so a drain does not cut an operation
	// that is within its limit.
	OperationTimeout time.Duration

	// Introspection allows __schema and __type (development: on;
	// production: off unless enabled).
	Introspection bool
	// Suggestions keeps gqlparser's "Did you mean …?" hints in error
	// messages (development: on; production: off unless enabled, since they
	// disclose the schema piece by piece).
	Suggestions bool

	// Cost is the cost model (zero fields take DefaultCostModel's values).
	Cost CostModel

	// DisableAPQ turns automatic persisted queries off (a hash-only request
	// is then answered PersistedQueryNotSupported).
	DisableAPQ bool
	// APQTTL is how long a persisted query stays in Redis after its last
	// use (24 h).
	APQTTL time.Duration
	// AllowList, when not nil, switches to allow-list mode: only these
	// operations (sha256 hex of the query → query) may run, APQ
	// registration is off. AllowListFile is read by Install when AllowList
	// is nil (see LoadManifest for the format).
	AllowList     map[string]string
	AllowListFile string

	// Logger logs Redis failures of the APQ cache (slog.Default when nil).
	Logger *slog.Logger
}

// DefaultConfig is the configuration for an environment: everything on,
// introspection and suggestions only outside production.
func DefaultConfig(production bool) Config {
	return Config{
		MaxDepth: DefaultMaxDepth, MaxCost: DefaultMaxCost, MaxAliases: DefaultMaxAliases,
		MaxDirectivesPerField: DefaultMaxDirectivesPerField, MaxTokens: DefaultMaxTokens,
		MaxDocumentBytes: DefaultMaxDocumentBytes, MaxFieldOverlaps: DefaultMaxFieldOverlaps,
		OperationTimeout: DefaultOperationTimeout,
		Introspection:    !production, Suggestions: !production,
		Cost: DefaultCostModel(), APQTTL: DefaultAPQTTL,
	}
}

// normalized fills zero fields with defaults and turns negative ones into 0
// (off).
func (c Config) normalized() Config {
	n := func(v *int, def int) {
		switch {
		case *v == 0:
			*v = def
		case *v < 0:
			*v = 0
		}
	}
	n(&c.MaxDepth, DefaultMaxDepth)
	n(&c.MaxCost, DefaultMaxCost)
	n(&c.MaxAliases, DefaultMaxAliases)
	n(&c.MaxDirectivesPerField, DefaultMaxDirectivesPerField)
	n(&c.MaxTokens, DefaultMaxTokens)
	n(&c.MaxDocumentBytes, DefaultMaxDocumentBytes)
	n(&c.MaxFieldOverlaps, DefaultMaxFieldOverlaps)
	switch {
	case c.OperationTimeout == 0:
		c.OperationTimeout = DefaultOperationTimeout
	case c.OperationTimeout < 0:
		c.OperationTimeout = 0
	}
	if c.APQTTL <= 0 {
		c.APQTTL = DefaultAPQTTL
	}
	c.Cost = c.Cost.withDefaults()
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return c
}

// ParserTokenLimit is the token limit Install gives gqlgen's parser
// (srv.SetParserTokenLimit): MaxTokens with its default applied, 0 when off.
func (c Config) ParserTokenLimit() int { return c.normalized().MaxTokens }

// FromEnv reads the configuration from the environment (getenv is
// os.Getenv, or a map in tests), starting from DefaultConfig(production).
// Numbers must be positive, or "off" to turn the limit off.
//
//	GRAPHQL_MAX_DEPTH            12
//	GRAPHQL_MAX_COST             5000
//	GRAPHQL_MAX_ALIASES          30
//	GRAPHQL_MAX_DIRECTIVES       4      (per field)
//	GRAPHQL_MAX_TOKENS           5000
//	GRAPHQL_MAX_DOCUMENT_BYTES   32768
//	GRAPHQL_MAX_FIELD_OVERLAPS   2000
//	GRAPHQL_OPERATION_TIMEOUT    10s
//	GRAPHQL_INTROSPECTION        true in development, false in production
//	GRAPHQL_SUGGESTIONS          true in development, false in production
//	GRAPHQL_APQ                  true   (automatic persisted queries)
//	GRAPHQL_APQ_TTL              24h
//	GRAPHQL_PERSISTED_OPERATIONS path of a manifest: allow-list mode
func FromEnv(getenv func(string) string, production bool) (Config, error) {
	c := DefaultConfig(production)
	for name, dst := range map[string]*int{
		"GRAPHQL_MAX_DEPTH": &c.MaxDepth, "GRAPHQL_MAX_COST": &c.MaxCost, "GRAPHQL_MAX_ALIASES": &c.MaxAliases,
		"GRAPHQL_MAX_DIRECTIVES": &c.MaxDirectivesPerField, "GRAPHQL_MAX_TOKENS": &c.MaxTokens,
		"GRAPHQL_MAX_DOCUMENT_BYTES": &c.MaxDocumentBytes, "GRAPHQL_MAX_FIELD_OVERLAPS": &c.MaxFieldOverlaps,
	} {
		v := strings.TrimSpace(getenv(name))
		if v == "" {
			continue
		}
		if strings.EqualFold(v, "off") {
			*dst = -1
			continue
		}
		i, err := strconv.Atoi(v)
		if err != nil || i <= 0 {
			return c, fmt.Errorf("%s must be a positive integer or off, got %q", name, v)
		}
		*dst = i
	}
	for name, dst := range map[string]*time.Duration{"GRAPHQL_OPERATION_TIMEOUT": &c.OperationTimeout, "GRAPHQL_APQ_TTL": &c.APQTTL} {
		v := strings.TrimSpace(getenv(name))
		if v == "" {
			continue
		}
		if strings.EqualFold(v, "off") && dst == &c.OperationTimeout {
			*dst = -1
			continue
		}
		d, err := time.ParseDuration(v)
		if err != nil || d <= 0 {
			return c, fmt.Errorf("%s must be a positive duration such as 10s, got %q", name, v)
		}
		*dst = d
	}
	apq := true
	for name, dst := range map[string]*bool{"GRAPHQL_INTROSPECTION": &c.Introspection, "GRAPHQL_SUGGESTIONS": &c.Suggestions, "GRAPHQL_APQ": &apq} {
		v := strings.TrimSpace(getenv(name))
		if v == "" {
			continue
		}
		b, err := strconv.ParseBool(v)
		if err != nil {
			return c, fmt.Errorf("%s must be true or false, got %q", name, v)
		}
		*dst = b
	}
	c.DisableAPQ = !apq
	if f := strings.TrimSpace(getenv("GRAPHQL_PERSISTED_OPERATIONS")); f != "" {
		m, err := LoadManifest(f)
		if err != nil {
			return c, fmt.Errorf("GRAPHQL_PERSISTED_OPERATIONS: %w", err)
		}
		c.AllowList, c.AllowListFile = m, f
	}
	return c, nil
}

// Install applies the configuration to srv: the parser token limit,
// suggestions, persisted operations (APQ in rdb under prefix+"apq:", or the
// allow-list) and the Extension. Use it once, after the transports and the
// error presenter are set. rdb may be nil when APQ is disabled or an
// allow-list is configured.
func Install(srv *handler.Server, cfg Config, rdb *redis.Client, prefix string) (err error) {
	cfg = cfg.normalized()
	if cfg.AllowList == nil && cfg.AllowListFile != "" {
		if cfg.AllowList, err = LoadManifest(cfg.AllowListFile); err != nil {
			return fmt.Errorf("persisted operations manifest: %w", err)
		}
	}
	ext := newExtension(cfg)
	p := &Persisted{check: ext.doc.check}
	switch {
	case cfg.AllowList != nil:
		p.AllowList = cfg.AllowList
	case !cfg.DisableAPQ:
		if rdb == nil {
			return errors.New("limits: automatic persisted queries need Redis (or set DisableAPQ)")
		}
		p.Cache = NewRedisCache(rdb, prefix+"apq:", cfg.APQTTL, cfg.Logger)
	}
	// gqlgen's Use panics when an extension's Validate fails (an allow-list
	// operation that does not validate against the schema): return it.
	defer func() {
		if r := recover(); r != nil {
			if e, ok := r.(error); ok {
				err = e
			} else {
				err = fmt.Errorf("%v", r)
			}
		}
	}()
	srv.SetParserTokenLimit(cfg.MaxTokens) // a backstop: the Extension counts first
	srv.SetDisableSuggestion(!cfg.Suggestions)
	srv.Use(p) // resolves the query from its hash before the document checks
	srv.Use(ext)
	return nil
}

// Extension is the gqlgen handler extension that enforces the limits.
type Extension struct {
	cfg Config
	doc *docChecker
	es  graphql.ExecutableSchema
}

var _ interface {
	graphql.HandlerExtension
	graphql.OperationParameterMutator
	graphql.OperationContextMutator
	graphql.OperationInterceptor
	graphql.ResponseInterceptor
} = (*Extension)(nil)

// NewExtension builds the Extension for cfg (zero fields take defaults).
// Install also sets the parser token limit and suggestions, which are
// server settings.
func NewExtension(cfg Config) *Extension { return newExtension(cfg.normalized()) }

func newExtension(normalized Config) *Extension {
	return &Extension{cfg: normalized, doc: newDocChecker(normalized)}
}

// ExtensionName implements graphql.HandlerExtension.
func (*Extension) ExtensionName() string { return "MutuoLimits" }

// Validate implements graphql.HandlerExtension.
func (x *Extension) Validate(es graphql.ExecutableSchema) error {
	x.es = es
	return nil
}

// MutateOperationParameters checks the document before it is parsed: its
// size, tokens, directives per location and repeated fields.
func (x *Extension) MutateOperationParameters(ctx context.Context, p *graphql.RawParams) *gqlerror.Error {
	if p.Query == "" {
		return nil
	}
	return x.doc.check(ctx, p.Query)
}

const costStatsKey = "mutuo.limits.cost"

// Cost is an operation's cost and the limit it was checked against.
type Cost struct {
	Requested int `json:"requested"`
	Limit     int `json:"limit"`
}

// CostOf returns the cost of the operation in ctx, once it has been
// measured (for rate limiting by cost, metrics and logs).
func CostOf(ctx context.Context) (Cost, bool) {
	if !graphql.HasOperationContext(ctx) {
		return Cost{}, false
	}
	c, ok := graphql.GetOperationContext(ctx).Stats.GetExtension(costStatsKey).(*Cost)
	if !ok {
		return Cost{}, false
	}
	return *c, true
}

// MutateOperationContext measures the validated operation, with its
// variables, and refuses it when it is too deep, has too many aliases, costs
// too much or introspects while introspection is off.
func (x *Extension) MutateOperationContext(ctx context.Context, opCtx *graphql.OperationContext) *gqlerror.Error {
	var schema *ast.Schema
	if x.es != nil {
		schema = x.es.Schema()
	}
	a := Analyze(schema, opCtx.Operation, opCtx.Variables, x.cfg.Cost)
	opCtx.Stats.SetExtension(costStatsKey, &Cost{Requested: a.Cost, Limit: x.cfg.MaxCost})
	opCtx.DisableIntrospection = !x.cfg.Introspection
	switch {
	case a.Introspection && !x.cfg.Introspection:
		return refuse(lending.CodeBadUserInput, nil, "introspection is disabled on this server")
	case x.cfg.MaxDepth > 0 && a.Depth > x.cfg.MaxDepth:
		return refuse(lending.CodeQueryTooComplex, nil,
			"query too deep: it nests fields %d levels deep, the limit is %d", a.Depth, x.cfg.MaxDepth)
	case x.cfg.MaxAliases > 0 && a.Aliases > x.cfg.MaxAliases:
		return refuse(lending.CodeQueryTooComplex, nil,
			"too many aliases: the operation has %d, the limit is %d", a.Aliases, x.cfg.MaxAliases)
	case x.cfg.MaxCost > 0 && a.Cost > x.cfg.MaxCost:
		return refuse(lending.CodeQueryTooComplex, nil,
			"query too complex: its cost is %d, the limit is %d (a connection's first/last multiplies the cost of its items: ask for smaller pages or fewer nested connections)",
			a.Cost, x.cfg.MaxCost)
	}
	return nil
}

// errTimeout is the cause of an operation context cancelled by
// OperationTimeout.
var errTimeout = errors.New("operation time limit exceeded")

// TimedOut reports whether ctx (an operation's or one of its resolvers')
// was cancelled by the operation time limit.
func TimedOut(ctx context.Context) bool {
	return ctx.Err() != nil && errors.Is(context.Cause(ctx), errTimeout)
}

// TimeoutError is the error a timed-out operation reports.
func (x *Extension) TimeoutError() *lending.Error {
	return lending.Errorf(lending.CodeQueryTooComplex,
		"operation cancelled: it ran longer than the time limit of %s (work not yet committed was rolled back)", x.cfg.OperationTimeout)
}

// InterceptOperation gives queries and mutations a deadline: when it passes,
// their context is cancelled, so the SQL in flight is cancelled and an open
// transaction rolls back. Subscriptions run for as long as the client stays.
func (x *Extension) InterceptOperation(ctx context.Context, next graphql.OperationHandler) graphql.ResponseHandler {
	opCtx := graphql.GetOperationContext(ctx)
	if x.cfg.OperationTimeout <= 0 || opCtx.Operation == nil || opCtx.Operation.Operation == ast.Subscription {
		return next(ctx)
	}
	deadline := time.Now().Add(x.cfg.OperationTimeout)
	ctx, cancel := context.WithDeadlineCause(ctx, deadline, errTimeout)
	h := next(ctx)
	return func(rctx context.Context) *graphql.Response {
		// the transport passes back the context next got; bound it anyway
		rctx, rcancel := context.WithDeadlineCause(rctx, deadline, errTimeout)
		defer rcancel()
		resp := h(rctx)
		timedOut := TimedOut(rctx)
		if resp == nil || resp.HasNext == nil || !*resp.HasNext {
			cancel()
		}
		if resp == nil && timedOut {
			// the deadline passed before execution began: gqlgen's
			// executor answers nothing at all; answer the timeout
			te := x.TimeoutError()
			return &graphql.Response{Errors: gqlerror.List{{Message: te.Message,
				Extensions: map[string]any{"code": string(te.Code)}}}}
		}
		if resp != nil && timedOut {
			x.reportTimeout(resp)
		}
		return resp
	}
}

// reportTimeout replaces the INTERNAL errors of a timed-out response (the
// resolvers' "context deadline exceeded") with the timeout error.
func (x *Extension) reportTimeout(resp *graphql.Response) {
	te := x.TimeoutError()
	found := false
	for i, e := range resp.Errors {
		if e == nil || e.Extensions["code"] != string(lending.CodeInternal) {
			continue
		}
		resp.Errors[i] = &gqlerror.Error{Message: te.Message, Path: e.Path, Locations: e.Locations,
			Extensions: map[string]any{"code": string(te.Code)}}
		found = true
	}
	if !found && len(resp.Errors) > 0 {
		resp.Errors = append(resp.Errors, &gqlerror.Error{Message: te.Message, Extensions: map[string]any{"code": string(te.Code)}})
	}
}

// InterceptResponse reports the operation's cost in extensions.cost and, in
// production, takes gqlparser's "Did you mean …?" suggestions out of error
// messages (SetDisableSuggestion only covers two of the validation rules
// that make them).
func (x *Extension) InterceptResponse(ctx context.Context, next graphql.ResponseHandler) *graphql.Response {
	resp := next(ctx)
	if resp == nil {
		return nil
	}
	if c, ok := CostOf(ctx); ok {
		if resp.Extensions == nil {
			resp.Extensions = map[string]any{}
		}
		resp.Extensions["cost"] = c
	}
	if !x.cfg.Suggestions {
		for _, e := range resp.Errors {
			if e != nil {
				e.Message = stripSuggestions(e.Message)
			}
		}
	}
	return resp
}

// stripSuggestions cuts a "Did you mean …?" sentence from a message.
func stripSuggestions(msg string) string {
	i := strings.Index(msg, "Did you mean")
	if i < 0 {
		return msg
	}
	return strings.TrimRight(msg[:i], " ;,")
}

// refuse builds a request error that the error presenter shows with code
// (it carries a *lending.Error), and that shows it without the presenter
// too.
func refuse(code lending.Code, ext map[string]any, format string, args ...any) *gqlerror.Error {
	le := lending.Errorf(code, format, args...)
	extensions := map[string]any{"code": string(code)}
	for k, v := range ext {
		extensions[k] = v
	}
	return &gqlerror.Error{Message: le.Message, Err: le, Extensions: extensions}
}
