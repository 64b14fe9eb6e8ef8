package observe

import (
	"context"
	"log/slog"
	"time"

	"github.com/99designs/gqlgen/graphql"

	"mutuo/lending"
)

type requestIDKey struct{}

// WithRequestID returns ctx carrying the request id that logs and INTERNAL
// errors name.
func WithRequestID(ctx context.Context, id string) context.Context {
	return context.WithValue(ctx, requestIDKey{}, id)
}

// RequestID returns the request id in ctx ("" if none).
func RequestID(ctx context.Context) string {
	id, _ := ctx.Value(requestIDKey{}).(string)
	return id
}

// Operations is a gqlgen extension that records every operation's count,
// latency and error codes, and logs one JSON line per query or mutation
// (user id, operation, type, duration, error codes, and the request id that
// the app's log handler (WithRequestIDs) adds from the context; never
// variables, which may hold passwords, tokens or Pix keys).
type Operations struct {
	Metrics *Metrics
	Log     *slog.Logger
}

var _ interface {
	graphql.HandlerExtension
	graphql.OperationInterceptor
} = Operations{}

// ExtensionName implements graphql.HandlerExtension.
func (Operations) ExtensionName() string { return "MutuoOperations" }

// Validate implements graphql.HandlerExtension.
func (Operations) Validate(graphql.ExecutableSchema) error { return nil }

// InterceptOperation implements graphql.OperationInterceptor.
func (o Operations) InterceptOperation(ctx context.Context, next graphql.OperationHandler) graphql.ResponseHandler {
	oc := graphql.GetOperationContext(ctx)
	name, typ := OperationName(oc.Operation), operationTypeName(oc.Operation)
	start := time.Now()
	h := next(ctx)
	first := true
	return func(ctx context.Context) *graphql.Response {
		resp := h(ctx)
		if resp == nil {
			return nil
		}
		if typ == "subscription" {
			o.Metrics.EventsDelivered.WithLabelValues(name).Inc()
		}
		codes := errorCodes(resp)
		for _, c := range codes {
			o.Metrics.Errors.WithLabelValues(name, c).Inc()
		}
		if !first {
			return resp
		}
		first = false
		d := time.Since(start)
		outcome := "ok"
		if len(codes) > 0 {
			outcome = "error"
		}
		o.Metrics.Operations.WithLabelValues(name, typ, outcome).Inc()
		o.Metrics.OperationSeconds.WithLabelValues(name, typ).Observe(d.Seconds())
		if o.Log != nil {
			attrs := []any{"user_id", lending.ViewerFrom(ctx).UserID,
				"operation", name, "type", typ, "duration_ms", float64(d.Microseconds()) / 1000}
			if len(codes) > 0 {
				attrs = append(attrs, "error_codes", codes)
			}
			o.Log.InfoContext(ctx, "graphql operation", attrs...)
		}
		return resp
	}
}
