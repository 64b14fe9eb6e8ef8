package e2e

import (
	"net/http"
	"strings"
	"testing"
)

const authFields = `accessToken accessTokenExpiresAt refreshToken user { id name email roles }`

func TestAuthFlows(t *testing.T) {
	e := newEnv(t)
	signUpQ := `mutation($in: SignUpInput!) { signUp(input: $in) { ` + authFields + ` } }`
	d := e.ok("", signUpQ, map[string]any{"in": map[string]any{"name": "Eva", "email": "Eva@Test.dev", "password": "long-password-1",
		"roles": []string{"INVESTOR", "BORROWER"}, "monthlyIncome": "4500.50"}})
	access, refresh := str(d, "signUp.accessToken"), str(d, "signUp.refreshToken")
	if access == "" || refresh == "" || len(list(d, "signUp.user.roles")) != 2 {
		t.Fatalf("signUp: %v", d)
	}
	me := e.ok(access, `{ me { email borrower { monthlyIncome creditScore grade } investor { displayName } } }`, nil)
	if str(me, "me.borrower.monthlyIncome") != "4500.50" || str(me, "me.investor.displayName") != "Eva" {
		t.Fatalf("me: %v", me)
	}
	// the same email in another case is taken
	r := e.do("", signUpQ, map[string]any{"in": map[string]any{"name": "Eva 2", "email": "eva@test.DEV", "password": "long-password-1", "roles": []string{"INVESTOR"}}})
	if r.code(0) != "CONFLICT" {
		t.Fatalf("duplicate email: %s", r.Body)
	}
	// bad inputs
	for name, in := range map[string]map[string]any{
		"short password":      {"name": "X", "email": "x@test.dev", "password": "short", "roles": []string{"INVESTOR"}},
		"borrower no income":  {"name": "X", "email": "x@test.dev", "password": "long-password-1", "roles": []string{"BORROWER"}},
		"bad email":           {"name": "X", "email": "not-an-email", "password": "long-password-1", "roles": []string{"INVESTOR"}},
		"no roles":            {"name": "X", "email": "x@test.dev", "password": "long-password-1", "roles": []string{}},
		"money with 3 digits": {"name": "X", "email": "x@test.dev", "password": "long-password-1", "roles": []string{"BORROWER"}, "monthlyIncome": "1.234"},
	} {
		if r := e.do("", signUpQ, map[string]any{"in": in}); r.code(0) != "BAD_USER_INPUT" {
			t.Errorf("%s: %s", name, r.Body)
		}
	}
	if r := e.do("", signUpQ, map[string]any{"in": map[string]any{"name": "X", "email": "x@test.dev", "password": "long-password-1", "roles": []string{"ADMIN"}}}); r.code(0) != "FORBIDDEN" {
		t.Errorf("admin sign-up: %s", r.Body)
	}

	// sign-in: wrong password and unknown email look the same
	signInQ := `mutation($e: String!, $p: String!) { signIn(email: $e, password: $p) { ` + authFields + ` } }`
	wrong := e.do("", signInQ, map[string]any{"e": "eva@test.dev", "p": "wrong-password"})
	unknown := e.do("", signInQ, map[string]any{"e": "nobody@test.dev", "p": "wrong-password"})
	if wrong.code(0) != "UNAUTHENTICATED" || unknown.code(0) != "UNAUTHENTICATED" || wrong.Errors[0].Message != unknown.Errors[0].Message {
		t.Fatalf("sign-in failures differ: %s vs %s", wrong.Body, unknown.Body)
	}
	d = e.ok("", signInQ, map[string]any{"e": "EVA@test.dev", "p": "long-password-1"})
	access2, refresh2 := str(d, "signIn.accessToken"), str(d, "signIn.refreshToken")

	// refresh rotates; the old refresh token is single use
	refreshQ := `mutation($t: String!) { refreshToken(refreshToken: $t) { ` + authFields + ` } }`
	d = e.ok("", refreshQ, map[string]any{"t": refresh2})
	refresh3, access3 := str(d, "refreshToken.refreshToken"), str(d, "refreshToken.accessToken")
	if refresh3 == refresh2 || access3 == "" {
		t.Fatal("refresh did not rotate")
	}
	e.ok(access3, `{ me { id } }`, nil)
	// reuse of refresh2 revokes the family: refresh3 stops working too
	if r := e.do("", refreshQ, map[string]any{"t": refresh2}); r.code(0) != "UNAUTHENTICATED" {
		t.Fatalf("reuse: %s", r.Body)
	}
	if r := e.do("", refreshQ, map[string]any{"t": refresh3}); r.code(0) != "UNAUTHENTICATED" {
		t.Fatalf("family not revoked: %s", r.Body)
	}
	// the first session (sign-up) is another family and still works
	d = e.ok("", refreshQ, map[string]any{"t": refresh})
	access4, refresh4 := str(d, "refreshToken.accessToken"), str(d, "refreshToken.refreshToken")

	// sign-out revokes the access token and the session's refresh tokens
	if d := e.ok(access4, `mutation { signOut }`, nil); get(d, "signOut") != true {
		t.Fatalf("signOut: %v", d)
	}
	r = e.do(access4, `{ me { id } }`, nil)
	if r.Status != http.StatusUnauthorized || r.code(0) != "UNAUTHENTICATED" {
		t.Fatalf("revoked token: %d %s", r.Status, r.Body)
	}
	if r := e.do("", refreshQ, map[string]any{"t": refresh4}); r.code(0) != "UNAUTHENTICATED" {
		t.Fatalf("refresh after sign-out: %s", r.Body)
	}
	// other sessions' access tokens are untouched
	e.ok(access2, `{ me { id } }`, nil)
	if r := e.do("", `mutation { signOut }`, nil); r.code(0) != "UNAUTHENTICATED" {
		t.Fatalf("anonymous signOut: %s", r.Body)
	}
}

func TestBadTokensAreRejected(t *testing.T) {
	e := newEnv(t)
	w := seedWorld(t, e)
	tok := w.tokens["inv1"]
	parts := strings.Split(tok, ".")
	tampered := parts[0] + "." + parts[1] + "x." + parts[2]
	none := "eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0." + parts[1] + "."
	for name, h := range map[string]string{
		"garbage":   "Bearer garbage",
		"tampered":  "Bearer " + tampered,
		"alg none":  "Bearer " + none,
		"no scheme": tok,
		"basic":     "Basic dXNlcjpwYXNz",
	} {
		req, _ := http.NewRequest(http.MethodPost, e.URL+"/graphql", strings.NewReader(`{"query":"{ loans { totalCount } }"}`))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Authorization", h)
		r := e.send(req)
		if r.Status != http.StatusUnauthorized || r.code(0) != "UNAUTHENTICATED" || r.Data != nil {
			t.Errorf("%s: %d %s", name, r.Status, r.Body)
		}
		if !strings.Contains(r.Header.Get("WWW-Authenticate"), "Bearer") {
			t.Errorf("%s: no WWW-Authenticate", name)
		}
	}
}
