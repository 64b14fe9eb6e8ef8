package auth

import (
	"context"
	"net/http"
	"strings"

	"mutuo/lending"
)

type claimsKey struct{}

// WithClaims returns ctx carrying the verified access-token claims.
func WithClaims(ctx context.Context, c *Claims) context.Context {
	return context.WithValue(ctx, claimsKey{}, c)
}

// ClaimsFrom returns the verified claims of the request's access token, or
// nil when the request is anonymous.
func ClaimsFrom(ctx context.Context) *Claims {
	c, _ := ctx.Value(claimsKey{}).(*Claims)
	return c
}

// BearerToken extracts the token from an Authorization header value
// ("Bearer <token>", scheme in any case). ok is false when the value is not
// of that form.
func BearerToken(header string) (token string, ok bool) {
	scheme, token, found := strings.Cut(header, " ")
	if !found || !strings.EqualFold(scheme, "Bearer") {
		return "", false
	}
	token = strings.TrimSpace(token)
	if token == "" || strings.ContainsAny(token, " \t") {
		return "", false
	}
	return token, true
}

const (
	invalidTokenBody = `{"errors":[{"message":"invalid or expired access token","extensions":{"code":"UNAUTHENTICATED"}}]}`
	unavailableBody  = `{"errors":[{"message":"authentication is temporarily unavailable","extensions":{"code":"INTERNAL"}}]}`
)

// Middleware authenticates each request by its Authorization header. With
// no header the request goes on anonymously (the zero lending.Viewer). With
// a valid bearer token it goes on with the viewer (lending.ViewerFrom) and
// the claims (ClaimsFrom) in its context. Any other header (not Bearer,
// several of them, malformed, badly signed, expired or signed-out token) is
// answered 401 with WWW-Authenticate: Bearer error="invalid_token" and a
// GraphQL error body with code UNAUTHENTICATED; it never goes on
// anonymously. When the denylist cannot be checked it answers 503 (INTERNAL)
// rather than let a possibly revoked token through.
func (s *Service) Middleware(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		values := r.Header.Values("Authorization")
		if len(values) == 0 {
			next.ServeHTTP(w, r.WithContext(lending.WithViewer(r.Context(), lending.Viewer{})))
			return
		}
		token, ok := "", len(values) == 1
		if ok {
			token, ok = BearerToken(values[0])
		}
		if !ok {
			s.log.DebugContext(r.Context(), "auth: malformed Authorization header")
			writeAuthError(w, http.StatusUnauthorized, invalidTokenBody)
			return
		}
		viewer, claims, err := s.Authenticate(r.Context(), token)
		if err != nil {
			if lending.IsCode(err, lending.CodeUnauthenticated) {
				s.log.DebugContext(r.Context(), "auth: rejected access token", "err", err)
				writeAuthError(w, http.StatusUnauthorized, invalidTokenBody)
				return
			}
			s.log.ErrorContext(r.Context(), "auth: cannot authenticate", "err", err)
			writeAuthError(w, http.StatusServiceUnavailable, unavailableBody)
			return
		}
		ctx := WithClaims(lending.WithViewer(r.Context(), viewer), claims)
		next.ServeHTTP(w, r.WithContext(ctx))
	})
}

func writeAuthError(w http.ResponseWriter, status int, body string) {
	h := w.Header()
	if status == http.StatusUnauthorized {
		h.Set("WWW-Authenticate", `Bearer error="invalid_token"`)
	}
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_, _ = w.Write([]byte(body))
}
