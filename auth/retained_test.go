package auth

import (
	"reflect"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"mutuo/lending"
)

// Retained keeps exactly what is read after verification (sub, jti, sid,
// roles, exp) and drops the rest.
func TestClaimsRetained(t *testing.T) {
	exp := jwt.NewNumericDate(time.Now().Add(time.Minute).Truncate(time.Second))
	c := &Claims{
		RegisteredClaims: jwt.RegisteredClaims{Subject: "42", ID: "jti-1", ExpiresAt: exp, Issuer: "mutuo",
			Audience: jwt.ClaimStrings{"mutuo-api"}, IssuedAt: jwt.NewNumericDate(time.Now())},
		Roles:     []lending.Role{lending.RoleInvestor, lending.RoleAdmin, "OTHER"},
		SessionID: "7f4b6c1e-0000-4000-8000-000000000000",
	}
	r := c.Retained()
	if r.Subject != "42" || r.ID != "jti-1" || r.SessionID != c.SessionID || !r.ExpiresAt.Equal(exp.Time) ||
		!reflect.DeepEqual(r.Roles, c.Roles) {
		t.Fatalf("retained %+v from %+v", r, c)
	}
	if r.Issuer != "" || r.Audience != nil || r.IssuedAt != nil {
		t.Fatalf("kept more than needed: %+v", r)
	}
	if r.UserID() != 42 || r.Family() != c.Family() || !reflect.DeepEqual(r.Viewer(), c.Viewer()) {
		t.Fatalf("derived values differ: %v %v %+v", r.UserID(), r.Family(), r.Viewer())
	}
	c.Roles[0] = lending.RoleBorrower // no sharing with the original
	if r.Roles[0] != lending.RoleInvestor {
		t.Fatal("roles shared with the original claims")
	}
	if (*Claims)(nil).Retained() != nil {
		t.Fatal("nil claims")
	}
}
