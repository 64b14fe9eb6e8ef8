package auth

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/redis/go-redis/v9"

	"mutuo/lending"
)

type seen struct {
	called bool
	viewer lending.Viewer
	claims *Claims
}

func probe(s *seen) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.called = true
		s.viewer = lending.ViewerFrom(r.Context())
		s.claims = ClaimsFrom(r.Context())
		w.WriteHeader(http.StatusNoContent)
	})
}

func serve(h http.Handler, headers ...string) *httptest.ResponseRecorder {
	r := httptest.NewRequest(http.MethodPost, "/graphql", nil)
	for _, v := range headers {
		r.Header.Add("Authorization", v)
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	return w
}

const wantBody = `{"errors":[{"message":"invalid or expired access token","extensions":{"code":"UNAUTHENTICATED"}}]}`

func TestMiddleware(t *testing.T) {
	e := newEnv(t, edKeys(t))
	ctx := context.Background()
	s := e.signUp(t, "mw@example.com", lending.RoleBorrower)

	// No header: anonymous.
	var got seen
	w := serve(e.svc.Middleware(probe(&got)))
	if w.Code != http.StatusNoContent || !got.called || got.viewer.Authenticated() || got.claims != nil {
		t.Fatalf("anonymous: code %d, seen %+v", w.Code, got)
	}

	// A valid token: viewer and claims in the context.
	for _, h := range []string{"Bearer " + s.AccessToken, "bearer " + s.AccessToken} {
		got = seen{}
		w = serve(e.svc.Middleware(probe(&got)), h)
		if w.Code != http.StatusNoContent || got.viewer.UserID != s.User.ID || !got.viewer.Has(lending.RoleBorrower) ||
			got.claims == nil || got.claims.UserID() != s.User.ID || got.claims.SessionID == "" {
			t.Fatalf("%q: code %d, seen %+v", h[:7], w.Code, got)
		}
	}

	// Sign out through the claims the middleware put in the context.
	if err := e.svc.SignOut(ctx, got.claims); err != nil {
		t.Fatal(err)
	}

	other, err := e.svc.SignIn(ctx, "mw@example.com", pw)
	if err != nil {
		t.Fatal(err)
	}
	rejected := map[string][]string{
		"signed out":        {"Bearer " + s.AccessToken},
		"garbage token":     {"Bearer not.a.jwt"},
		"no token":          {"Bearer "},
		"empty header":      {""},
		"basic auth":        {"Basic dXNlcjpwYXNz"},
		"token only":        {other.AccessToken},
		"two tokens":        {"Bearer " + other.AccessToken + " " + other.AccessToken},
		"two headers":       {"Bearer " + other.AccessToken, "Bearer " + other.AccessToken},
		"tampered":          {"Bearer " + other.AccessToken + "x"},
		"bearer no space":   {"Bearer" + other.AccessToken},
		"other scheme name": {"Token " + other.AccessToken},
	}
	for name, hs := range rejected {
		got = seen{}
		w = serve(e.svc.Middleware(probe(&got)), hs...)
		if got.called {
			t.Errorf("%s: the request went on (viewer %+v)", name, got.viewer)
		}
		body, _ := io.ReadAll(w.Body)
		if w.Code != http.StatusUnauthorized || string(body) != wantBody ||
			w.Header().Get("WWW-Authenticate") != `Bearer error="invalid_token"` ||
			w.Header().Get("Content-Type") != "application/json" {
			t.Errorf("%s: %d %v %s", name, w.Code, w.Header(), body)
		}
	}
	// The other session still passes.
	got = seen{}
	if w = serve(e.svc.Middleware(probe(&got)), "Bearer "+other.AccessToken); w.Code != http.StatusNoContent {
		t.Fatalf("other session: %d", w.Code)
	}
}

// When the denylist cannot be read, a token is neither accepted nor called
// invalid: the server says it is unavailable.
func TestMiddlewareFailsClosedWithoutRedis(t *testing.T) {
	e := newEnv(t, hsKeys(t))
	s := e.signUp(t, "down@example.com", lending.RoleInvestor)
	dead := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1", MaxRetries: -1})
	defer dead.Close()
	cfg := e.cfg
	cfg.Redis = dead
	svc, err := New(cfg, e.store)
	if err != nil {
		t.Fatal(err)
	}
	_, _, err = svc.Authenticate(context.Background(), s.AccessToken)
	if err == nil || lending.IsCode(err, lending.CodeUnauthenticated) {
		t.Fatalf("Authenticate with Redis down: %v, want a non-UNAUTHENTICATED error", err)
	}
	var got seen
	w := serve(svc.Middleware(probe(&got)), "Bearer "+s.AccessToken)
	if got.called || w.Code != http.StatusServiceUnavailable {
		t.Fatalf("code %d, called %v", w.Code, got.called)
	}
}
