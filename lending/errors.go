package lending

import (
	"errors"
	"fmt"
)

// Code is a machine-readable error class that clients see as extensions.code.
type Code string

// The error codes of the API contract.
const (
	CodeUnauthenticated   Code = "UNAUTHENTICATED"
	CodeForbidden         Code = "FORBIDDEN"
	CodeNotFound          Code = "NOT_FOUND"
	CodeBadUserInput      Code = "BAD_USER_INPUT"
	CodeInsufficientFunds Code = "INSUFFICIENT_FUNDS"
	CodeConflict          Code = "CONFLICT"
	CodeInvalidState      Code = "INVALID_STATE"
	CodeRateLimited       Code = "RATE_LIMITED"
	CodeQueryTooComplex   Code = "QUERY_TOO_COMPLEX"
	CodeInternal          Code = "INTERNAL"
)

// Error is the one error type whose message a user may see. Anything that is
// not an *Error (or wraps one) is presented to clients as INTERNAL.
type Error struct {
	Code    Code
	Message string
}

func (e *Error) Error() string { return string(e.Code) + ": " + e.Message }

// Errorf builds a user-visible *Error.
func Errorf(code Code, format string, args ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...)}
}

// AsError returns the *Error in err's chain, if any.
func AsError(err error) (*Error, bool) {
	var e *Error
	if errors.As(err, &e) {
		return e, true
	}
	return nil, false
}

// IsCode reports whether err carries the given code.
func IsCode(err error, code Code) bool {
	e, ok := AsError(err)
	return ok && e.Code == code
}

// Common errors.
var (
	ErrUnauthenticated = &Error{Code: CodeUnauthenticated, Message: "sign in required"}
	ErrNotFound        = &Error{Code: CodeNotFound, Message: "not found"}
)

// NotFound is a NOT_FOUND error naming what was looked for.
func NotFound(what string) *Error { return Errorf(CodeNotFound, "%s not found", what) }

// Forbidden is a FORBIDDEN error.
func Forbidden(msg string) *Error { return &Error{Code: CodeForbidden, Message: msg} }

// BadInput is a BAD_USER_INPUT error.
func BadInput(format string, args ...any) *Error { return Errorf(CodeBadUserInput, format, args...) }
