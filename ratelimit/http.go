package ratelimit

import (
	"bufio"
	"context"
	"errors"
	"net"
	"net/http"
	"strconv"
	"sync"

	"github.com/99designs/gqlgen/graphql"
	"github.com/vektah/gqlparser/v2/ast"
	"github.com/vektah/gqlparser/v2/gqlerror"

	"mutuo/internal/httpx"
	"mutuo/lending"
	"mutuo/limits"
)

// holder carries a request's Decision from the Extension, which runs inside
// the executor, out to Middleware's ResponseWriter, which sets Retry-After
// before the transport writes the status.
type holder struct {
	mu      sync.Mutex
	refused bool
	d       Decision
}

func (h *holder) set(d Decision) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if !d.Allowed && d.err == nil {
		h.refused, h.d = true, d
	}
}

func (h *holder) get() (Decision, bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.d, h.refused
}

type holderKey struct{}

// Middleware puts the client IP (ClientIPFrom) in each request's context.
// When an operation of the request is refused by a budget, it also sets the
// Retry-After header and, when the transport answers a request error with
// 400 (Accept: application/graphql-response+json), changes the status to
// 429. Put it outside auth so that it sees every request:
//
//	mux.Handle("/graphql", limiter.Middleware(auth.Middleware(...)))
//
// Websocket upgrades only get the client IP. Their ResponseWriter is not
// wrapped, so hijacking works as before.
func (l *Limiter) Middleware(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ctx := WithClientIP(r.Context(), l.ClientIP(r))
		if httpx.WebsocketUpgrade(r) {
			next.ServeHTTP(w, r.WithContext(ctx))
			return
		}
		h := &holder{}
		ctx = context.WithValue(ctx, holderKey{}, h)
		next.ServeHTTP(&retryAfterWriter{ResponseWriter: w, h: h}, r.WithContext(ctx))
	})
}

// retryAfterWriter adds Retry-After (and 429) to the response's header when
// the holder says the request was refused. Headers must be set before
// WriteHeader, so it does this on the first WriteHeader or Write.
type retryAfterWriter struct {
	http.ResponseWriter
	h     *holder
	wrote bool
}

func (w *retryAfterWriter) WriteHeader(status int) {
	if !w.wrote {
		w.wrote = true
		if d, refused := w.h.get(); refused {
			w.Header().Set("Retry-After", strconv.Itoa(RetryAfterSeconds(d.RetryAfter)))
			if status == http.StatusBadRequest {
				status = http.StatusTooManyRequests
			}
		}
	}
	w.ResponseWriter.WriteHeader(status)
}

func (w *retryAfterWriter) Write(b []byte) (int, error) {
	if !w.wrote {
		w.WriteHeader(http.StatusOK)
	}
	return w.ResponseWriter.Write(b)
}

// Flush passes through, for streaming responses.
func (w *retryAfterWriter) Flush() {
	if !w.wrote {
		w.WriteHeader(http.StatusOK)
	}
	_ = http.NewResponseController(w.ResponseWriter).Flush()
}

// Hijack passes through, so a wrapped writer can still be upgraded.
func (w *retryAfterWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	return http.NewResponseController(w.ResponseWriter).Hijack()
}

// Unwrap lets http.ResponseController reach the underlying writer.
func (w *retryAfterWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// Extension is the gqlgen handler extension that charges each operation its
// cost when the operation context is created, before execution. Add it with
// srv.Use after limits.Install. gqlgen runs OperationContextMutators in the
// order they were added, so the cost is known by then. An operation that
// limits refuses (too deep, too costly) never reaches the Extension and is
// not charged.
type Extension struct{ l *Limiter }

// Extension returns the gqlgen extension that enforces l's query budgets.
func (l *Limiter) Extension() Extension { return Extension{l: l} }

var (
	_ graphql.HandlerExtension        = Extension{}
	_ graphql.OperationContextMutator = Extension{}
)

// ExtensionName implements graphql.HandlerExtension.
func (Extension) ExtensionName() string { return "RateLimit" }

// Validate implements graphql.HandlerExtension.
func (Extension) Validate(graphql.ExecutableSchema) error { return nil }

// MutateOperationContext charges the operation. It refuses with
// RATE_LIMITED when a budget is exhausted (or INTERNAL when Redis is down and
// the limiter fails closed).
func (e Extension) MutateOperationContext(ctx context.Context, op *graphql.OperationContext) *gqlerror.Error {
	if e.l.cfg.SkipSubscriptions && op.Operation != nil && op.Operation.Operation == ast.Subscription {
		return nil
	}
	cost := e.cost(ctx, op)
	s := SubjectFrom(ctx)
	if s.IP == "" && e.l.warnNoIP.CompareAndSwap(false, true) {
		e.l.cfg.Logger.WarnContext(ctx, "ratelimit: no client IP in the context; is ratelimit.Middleware installed?")
	}
	d, _ := e.l.Allow(ctx, s, cost)
	if h, _ := ctx.Value(holderKey{}).(*holder); h != nil {
		h.set(d)
	}
	if d.Allowed {
		return nil
	}
	return refusal(d)
}

func (e Extension) cost(ctx context.Context, op *graphql.OperationContext) int {
	if e.l.cfg.CostOf != nil {
		return e.l.cfg.CostOf(ctx, op)
	}
	if c, ok := limits.CostOf(ctx); ok {
		return c.Requested
	}
	return 1
}

// refusal is d's error as a GraphQL error. It carries the code itself, for
// servers without Mutuo's error presenter, and wraps the lending.Error (or
// the Redis failure) for the presenter.
func refusal(d Decision) *gqlerror.Error {
	err := d.Err()
	if e, ok := lending.AsError(err); ok {
		return &gqlerror.Error{Message: e.Message, Err: err, Extensions: map[string]any{"code": string(e.Code)}}
	}
	msg := "rate limiter unavailable"
	if !errors.Is(err, ErrUnavailable) {
		msg = "internal error"
	}
	return &gqlerror.Error{Message: msg, Err: err, Extensions: map[string]any{"code": string(lending.CodeInternal)}}
}
