package observe

// Tracing with OpenTelemetry: spans for the HTTP request, the GraphQL
// operation, each resolver and each SQL statement, children of each other
// through the context:
//
//	POST /graphql                      (Middleware)
//	└─ mutation invest                 (Extension: OperationInterceptor)
//	   └─ Mutation.invest              (Extension: FieldInterceptor, resolvers only)
//	      └─ UPDATE                    (QueryTracer: one span per statement)
//
// It is on only when OTEL_EXPORTER_OTLP_ENDPOINT (or
// OTEL_EXPORTER_OTLP_TRACES_ENDPOINT) is set: SetupTracing then installs an
// OTLP/HTTP exporter, a batch span processor and a TracerProvider. When it is
// not set nothing is installed, InstalledTracing returns nil, and the app
// wraps nothing (no middleware, no extension, no pgx tracer: zero overhead).
//
// What spans never carry: SQL arguments, GraphQL variables and documents
// (inline arguments may hold passwords, tokens or Pix keys), request and
// response bodies and headers. Error messages are recorded only for errors
// that are not a lending.Error (those carry client input; their code is
// recorded instead).

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"

	"github.com/99designs/gqlgen/graphql"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/multitracer"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/vektah/gqlparser/v2/ast"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"

	"mutuo/internal/httpx"
	"mutuo/lending"
)

// TracerName is the instrumentation scope of Mutuo's spans.
const TracerName = "mutuo"

// DefaultServiceName is service.name when OTEL_SERVICE_NAME is not set.
const DefaultServiceName = "mutuo"

// MaxSQLLength bounds the SQL text recorded on a span (db.statement).
const MaxSQLLength = 2048

// Tracing makes Mutuo's spans from one TracerProvider. A nil *Tracing is
// tracing off: Middleware and QueryTracer then return what they are given.
type Tracing struct {
	tracer     trace.Tracer
	propagator propagation.TextMapPropagator
}

// NewTracing makes spans with tp (tests pass an SDK provider with an
// in-memory exporter). Incoming W3C trace context (traceparent) is honoured.
func NewTracing(tp trace.TracerProvider) *Tracing {
	return &Tracing{tracer: tp.Tracer(TracerName),
		propagator: propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{})}
}

var installed atomic.Pointer[Tracing]

// InstalledTracing is the Tracing that SetupTracing installed, or nil when
// tracing is off.
func InstalledTracing() *Tracing { return installed.Load() }

// TracingEnabled reports whether the environment asks for traces:
// OTEL_EXPORTER_OTLP_ENDPOINT or OTEL_EXPORTER_OTLP_TRACES_ENDPOINT is set
// and OTEL_SDK_DISABLED is not true.
func TracingEnabled(getenv func(string) string) bool {
	if v, _ := strconv.ParseBool(strings.TrimSpace(getenv("OTEL_SDK_DISABLED"))); v {
		return false
	}
	return strings.TrimSpace(getenv("OTEL_EXPORTER_OTLP_ENDPOINT")) != "" ||
		strings.TrimSpace(getenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")) != ""
}

// SetupTracing installs tracing when TracingEnabled(getenv): an OTLP/HTTP
// exporter (otlptracehttp, which reads the standard OTEL_EXPORTER_OTLP_*
// variables itself from the process environment: endpoint, headers,
// timeout, compression, certificates), a batch span processor (OTEL_BSP_*),
// the sampler of OTEL_TRACES_SAMPLER (default: parent-based, always), and a
// TracerProvider whose resource has service.name = OTEL_SERVICE_NAME
// (default "mutuo") plus OTEL_RESOURCE_ATTRIBUTES. The provider becomes
// otel's global one and InstalledTracing's, with the W3C trace-context and
// baggage propagators. Call shutdown before exiting: it flushes the spans
// still buffered and uninstalls the provider.
//
// When tracing is not enabled it does nothing at all and shutdown is a
// no-op. Only the http/protobuf protocol is built in: an
// OTEL_EXPORTER_OTLP_PROTOCOL of grpc is an error rather than silence.
func SetupTracing(ctx context.Context, getenv func(string) string) (shutdown func(context.Context) error, err error) {
	noShutdown := func(context.Context) error { return nil }
	if !TracingEnabled(getenv) {
		return noShutdown, nil
	}
	for _, name := range []string{"OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "OTEL_EXPORTER_OTLP_PROTOCOL"} {
		if p := strings.TrimSpace(getenv(name)); p != "" {
			if p != "http/protobuf" {
				return noShutdown, fmt.Errorf("%s=%s: only http/protobuf is supported", name, p)
			}
			break
		}
	}
	exp, err := otlptracehttp.New(ctx)
	if err != nil {
		return noShutdown, fmt.Errorf("OTLP trace exporter: %w", err)
	}
	service := strings.TrimSpace(getenv("OTEL_SERVICE_NAME"))
	opts := []resource.Option{resource.WithTelemetrySDK(),
		resource.WithAttributes(attribute.String("service.name", DefaultServiceName)),
		resource.WithFromEnv()} // OTEL_RESOURCE_ATTRIBUTES, OTEL_SERVICE_NAME
	if service != "" {
		opts = append(opts, resource.WithAttributes(attribute.String("service.name", service)))
	}
	res, err := resource.New(ctx, opts...)
	if err != nil && res == nil {
		_ = exp.Shutdown(ctx)
		return noShutdown, fmt.Errorf("trace resource: %w", err)
	}
	tp := sdktrace.NewTracerProvider(sdktrace.WithBatcher(exp), sdktrace.WithResource(res))
	t := NewTracing(tp)
	otel.SetTracerProvider(tp)
	otel.SetTextMapPropagator(t.propagator)
	otel.SetErrorHandler(otel.ErrorHandlerFunc(func(err error) {
		slog.Default().Warn("opentelemetry", "err", err)
	}))
	installed.Store(t)
	return func(ctx context.Context) error {
		installed.CompareAndSwap(t, nil)
		if otel.GetTracerProvider() == trace.TracerProvider(tp) {
			otel.SetTracerProvider(noop.NewTracerProvider())
		}
		return tp.Shutdown(ctx)
	}, nil
}

// Middleware starts the server span of each HTTP request: "METHOD route"
// (the ServeMux pattern, known once the mux has routed), with
// http.request.method, http.route, url.path and http.response.status_code;
// a 5xx marks it as an error. Websocket upgrades and the health, readiness
// and metrics probes are not traced (a socket's span would last its whole
// life; the probes are noise). Nil t returns next.
func (t *Tracing) Middleware(next http.Handler) http.Handler {
	if t == nil {
		return next
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if untraced(r) {
			next.ServeHTTP(w, r)
			return
		}
		ctx := t.propagator.Extract(r.Context(), propagation.HeaderCarrier(r.Header))
		ctx, span := t.tracer.Start(ctx, r.Method, trace.WithSpanKind(trace.SpanKindServer),
			trace.WithAttributes(attribute.String("http.request.method", r.Method), attribute.String("url.path", r.URL.Path)))
		defer span.End()
		if id := RequestID(ctx); id != "" {
			span.SetAttributes(attribute.String("mutuo.request_id", id))
		}
		sw := &statusWriter{ResponseWriter: w, status: http.StatusOK}
		r = r.WithContext(ctx)
		next.ServeHTTP(sw, r)
		if route := routeOf(r.Pattern); route != "" {
			span.SetName(r.Method + " " + route)
			span.SetAttributes(attribute.String("http.route", route))
		}
		span.SetAttributes(attribute.Int("http.response.status_code", sw.status))
		if sw.status >= 500 {
			span.SetStatus(codes.Error, http.StatusText(sw.status))
		}
	})
}

func untraced(r *http.Request) bool {
	if httpx.WebsocketUpgrade(r) {
		return true
	}
	switch r.URL.Path {
	case "/healthz", "/readyz", "/metrics":
		return true
	}
	return false
}

// routeOf is the path of a ServeMux pattern ("GET /metrics" → "/metrics").
func routeOf(pattern string) string {
	if i := strings.IndexByte(pattern, ' '); i >= 0 {
		pattern = pattern[i+1:]
	}
	return pattern
}

// Extension returns the gqlgen extension that makes the operation and
// resolver spans. Add it with srv.Use (t must not be nil).
func (t *Tracing) Extension() graphql.HandlerExtension { return tracingExtension{t} }

type tracingExtension struct{ t *Tracing }

var _ interface {
	graphql.HandlerExtension
	graphql.OperationInterceptor
	graphql.FieldInterceptor
} = tracingExtension{}

func (tracingExtension) ExtensionName() string                   { return "MutuoTracing" }
func (tracingExtension) Validate(graphql.ExecutableSchema) error { return nil }

// InterceptOperation spans one operation, "type name" with name as
// OperationName (its root fields), and graphql.operation.type,
// graphql.operation.name (the client's name for it, if any),
// mutuo.operation and the error codes of the response. The span of a query
// or mutation ends with its first response; a subscription's once it is
// set up (its events are not one unit of work).
func (x tracingExtension) InterceptOperation(ctx context.Context, next graphql.OperationHandler) graphql.ResponseHandler {
	oc := graphql.GetOperationContext(ctx)
	name, typ := OperationName(oc.Operation), operationTypeName(oc.Operation)
	attrs := []attribute.KeyValue{attribute.String("graphql.operation.type", typ), attribute.String("mutuo.operation", name)}
	if oc.Operation != nil && oc.Operation.Name != "" {
		attrs = append(attrs, attribute.String("graphql.operation.name", truncate(oc.Operation.Name, 100)))
	}
	ctx, span := x.t.tracer.Start(ctx, typ+" "+name, trace.WithAttributes(attrs...))
	h := next(ctx)
	if oc.Operation != nil && oc.Operation.Operation == ast.Subscription {
		span.End()
		return h
	}
	var ended atomic.Bool
	return func(rctx context.Context) *graphql.Response {
		if !trace.SpanFromContext(rctx).SpanContext().Equal(span.SpanContext()) {
			rctx = trace.ContextWithSpan(rctx, span)
		}
		resp := h(rctx)
		if ended.CompareAndSwap(false, true) {
			if resp != nil && len(resp.Errors) > 0 {
				list := errorCodes(resp)
				span.SetAttributes(attribute.StringSlice("graphql.error_codes", list))
				span.SetStatus(errorStatus(list))
			}
			span.End()
		}
		return resp
	}
}

// errorStatus marks an operation's span as an error only for server-side
// failures: INTERNAL, or the time limit (QUERY_TOO_COMPLEX, which, once an
// operation runs, only the time limit reports: the other limits refuse it
// before). A client's mistake (BAD_USER_INPUT, FORBIDDEN, …) is not an
// error of the server.
func errorStatus(codeList []string) (codes.Code, string) {
	for _, c := range codeList {
		if c == string(lending.CodeInternal) || c == string(lending.CodeQueryTooComplex) || c == "UNKNOWN" {
			return codes.Error, c
		}
	}
	return codes.Unset, ""
}

// InterceptField spans each field that has a resolver (fc.IsResolver):
// "Object.field", with graphql.field.path. Fields read from their parent's
// struct are not spanned: they do no work of their own.
func (x tracingExtension) InterceptField(ctx context.Context, next graphql.Resolver) (any, error) {
	fc := graphql.GetFieldContext(ctx)
	if fc == nil || !fc.IsResolver {
		return next(ctx)
	}
	ctx, span := x.t.tracer.Start(ctx, fc.Object+"."+fc.Field.Name, trace.WithAttributes(
		attribute.String("graphql.field.name", fc.Field.Name), attribute.String("graphql.field.path", fc.Path().String())))
	defer span.End()
	res, err := next(ctx)
	if err != nil {
		recordError(span, err)
	}
	return res, err
}

// recordError records err on span: a lending.Error by its code only (its
// message may quote the client's input), anything else (a server failure)
// in full, as the logs do.
func recordError(span trace.Span, err error) {
	if e, ok := lending.AsError(err); ok {
		span.SetAttributes(attribute.String("mutuo.error_code", string(e.Code)))
		if e.Code == lending.CodeInternal {
			span.SetStatus(codes.Error, string(e.Code))
		}
		return
	}
	if errors.Is(err, context.Canceled) {
		span.SetStatus(codes.Error, "cancelled")
		return
	}
	span.RecordError(err)
	span.SetStatus(codes.Error, truncate(err.Error(), 200))
}

// QueryTracer returns the pgx tracer to put in ConnConfig.Tracer: one span
// per SQL statement, composed with next (the pool's existing tracer, may be
// nil), which keeps seeing every call it saw before. Nil t returns next.
func (t *Tracing) QueryTracer(next pgx.QueryTracer) pgx.QueryTracer {
	if t == nil {
		return next
	}
	mine := &sqlTracer{t: t}
	if next == nil {
		return mine
	}
	return multitracer.New(mine, next)
}

// sqlTracer makes a client span per statement ("SELECT", "INSERT", …), with
// db.system=postgresql, db.statement (the SQL text, truncated to
// MaxSQLLength, never the arguments), db.rows_affected, and the SQLSTATE of a
// failure; and one span per batch with its statements as events. Only
// statements run within a trace are spanned: the outbox relay's polling and
// the scheduler (no parent span) would otherwise fill the backend with
// one-span traces.
type sqlTracer struct{ t *Tracing }

type sqlSpanKey struct{}

var (
	_ pgx.QueryTracer = (*sqlTracer)(nil)
	_ pgx.BatchTracer = (*sqlTracer)(nil)
)

func (s *sqlTracer) start(ctx context.Context, name string, attrs ...attribute.KeyValue) context.Context {
	if !trace.SpanContextFromContext(ctx).IsValid() {
		return ctx
	}
	attrs = append(attrs, attribute.String("db.system", "postgresql"), attribute.String("db.system.name", "postgresql"))
	ctx, span := s.t.tracer.Start(ctx, name, trace.WithSpanKind(trace.SpanKindClient), trace.WithAttributes(attrs...))
	return context.WithValue(ctx, sqlSpanKey{}, span)
}

func (s *sqlTracer) end(ctx context.Context, tag pgconn.CommandTag, err error) {
	span, ok := ctx.Value(sqlSpanKey{}).(trace.Span)
	if !ok {
		return
	}
	if tag.String() != "" {
		span.SetAttributes(attribute.Int64("db.rows_affected", tag.RowsAffected()))
	}
	if err != nil {
		sqlError(span, err)
	}
	span.End()
}

func sqlError(span trace.Span, err error) {
	var pgErr *pgconn.PgError
	switch {
	case errors.As(err, &pgErr):
		// the code and the constraint, not the message or detail, which
		// may quote the row's values
		span.SetAttributes(attribute.String("db.response.status_code", pgErr.Code))
		if pgErr.ConstraintName != "" {
			span.SetAttributes(attribute.String("db.constraint", pgErr.ConstraintName))
		}
		span.SetStatus(codes.Error, "SQLSTATE "+pgErr.Code)
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		span.SetStatus(codes.Error, err.Error())
	default:
		span.SetStatus(codes.Error, truncate(err.Error(), 200))
	}
}

// TraceQueryStart implements pgx.QueryTracer.
func (s *sqlTracer) TraceQueryStart(ctx context.Context, _ *pgx.Conn, data pgx.TraceQueryStartData) context.Context {
	return s.start(ctx, sqlOperation(data.SQL), attribute.String("db.statement", truncate(strings.TrimSpace(data.SQL), MaxSQLLength)))
}

// TraceQueryEnd implements pgx.QueryTracer.
func (s *sqlTracer) TraceQueryEnd(ctx context.Context, _ *pgx.Conn, data pgx.TraceQueryEndData) {
	s.end(ctx, data.CommandTag, data.Err)
}

// TraceBatchStart implements pgx.BatchTracer.
func (s *sqlTracer) TraceBatchStart(ctx context.Context, _ *pgx.Conn, data pgx.TraceBatchStartData) context.Context {
	n := 0
	if data.Batch != nil {
		n = data.Batch.Len()
	}
	return s.start(ctx, "BATCH", attribute.Int("db.batch.size", n))
}

// TraceBatchQuery implements pgx.BatchTracer.
func (s *sqlTracer) TraceBatchQuery(ctx context.Context, _ *pgx.Conn, data pgx.TraceBatchQueryData) {
	span, ok := ctx.Value(sqlSpanKey{}).(trace.Span)
	if !ok {
		return
	}
	attrs := []attribute.KeyValue{attribute.String("db.statement", truncate(strings.TrimSpace(data.SQL), MaxSQLLength))}
	if data.Err != nil {
		var pgErr *pgconn.PgError
		if errors.As(data.Err, &pgErr) {
			attrs = append(attrs, attribute.String("db.response.status_code", pgErr.Code))
		} else {
			attrs = append(attrs, attribute.String("error", truncate(data.Err.Error(), 200)))
		}
	}
	span.AddEvent("query", trace.WithAttributes(attrs...))
}

// TraceBatchEnd implements pgx.BatchTracer.
func (s *sqlTracer) TraceBatchEnd(ctx context.Context, _ *pgx.Conn, data pgx.TraceBatchEndData) {
	s.end(ctx, pgconn.CommandTag{}, data.Err)
}

// sqlOperation is the statement's first keyword, upper-cased ("SELECT",
// "WITH", "BEGIN"), or "SQL".
func sqlOperation(sql string) string {
	sql = strings.TrimLeft(sql, " \t\r\n(")
	for strings.HasPrefix(sql, "--") { // leading comment lines
		i := strings.IndexByte(sql, '\n')
		if i < 0 {
			return "SQL"
		}
		sql = strings.TrimLeft(sql[i+1:], " \t\r\n(")
	}
	end := 0
	for end < len(sql) && end < 16 && (sql[end] >= 'a' && sql[end] <= 'z' || sql[end] >= 'A' && sql[end] <= 'Z') {
		end++
	}
	if end == 0 {
		return "SQL"
	}
	return strings.ToUpper(sql[:end])
}

// truncate cuts s to at most n bytes, on a UTF-8 boundary, marking the cut.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && s[n]&0xC0 == 0x80 {
		n--
	}
	return s[:n] + "…"
}
