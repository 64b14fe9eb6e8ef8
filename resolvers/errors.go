package resolvers

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime/debug"

	"github.com/99designs/gqlgen/graphql"
	"github.com/vektah/gqlparser/v2/gqlerror"

	"mutuo/lending"
	"mutuo/observe"
)

// errInternal marks errors that already went through recovery.
var errPanic = errors.New("panic in resolver")

// ErrorPresenter maps errors to what clients see: a lending.Error keeps its
// message and code; errors that gqlgen itself raised about the request
// (parsing, validation, argument coercion) are BAD_USER_INPUT; anything else
// (SQL, driver, panics, bugs) becomes INTERNAL with the request id, and the
// real error is logged, never shown.
func ErrorPresenter(log *slog.Logger) graphql.ErrorPresenterFunc {
	return func(ctx context.Context, err error) *gqlerror.Error {
		gqlErr := graphql.DefaultErrorPresenter(ctx, err)
		if e, ok := lending.AsError(err); ok {
			gqlErr.Message = e.Message
			gqlErr.Extensions = map[string]any{"code": string(e.Code)}
			return gqlErr
		}
		var ge *gqlerror.Error
		if errors.As(err, &ge) && ge.Err == nil && !errors.Is(err, errPanic) {
			// raised by gqlgen/gqlparser about the request: safe to show
			gqlErr.Extensions = map[string]any{"code": string(lending.CodeBadUserInput)}
			return gqlErr
		}
		id := observe.RequestID(ctx)
		if errors.Is(err, context.Canceled) && ctx.Err() != nil {
			// the client went away (a closed socket, a cancelled request):
			// nobody will read this error, and it is no fault of ours
			log.DebugContext(ctx, "operation cancelled", "request_id", id, "path", gqlErr.Path.String())
		} else {
			log.ErrorContext(ctx, "internal error", "request_id", id, "path", gqlErr.Path.String(), "err", err)
		}
		return &gqlerror.Error{
			Message:    fmt.Sprintf("internal error (request id %s)", id),
			Path:       gqlErr.Path,
			Locations:  gqlErr.Locations,
			Extensions: map[string]any{"code": string(lending.CodeInternal), "requestId": id},
		}
	}
}

// RecoverFunc turns a panic in a resolver into an INTERNAL error, logging
// the panic and its stack.
func RecoverFunc(log *slog.Logger) graphql.RecoverFunc {
	return func(ctx context.Context, p any) error {
		log.ErrorContext(ctx, "panic", "request_id", observe.RequestID(ctx), "panic", fmt.Sprint(p), "stack", string(debug.Stack()))
		return fmt.Errorf("%w: %v", errPanic, p)
	}
}
