package e2e

import (
	"fmt"
	"testing"

	"mutuo/lending"
)

// TestAuthorizationMatrix walks (caller × object × field) and asserts each
// outcome: objects that are not the caller's are NOT_FOUND; private fields of
// another user are null with FORBIDDEN at their path, the rest intact.
func TestAuthorizationMatrix(t *testing.T) {
	e := newEnv(t)
	w := seedWorld(t, e)
	const ok, notFound = "ok", "NOT_FOUND"
	objects := []struct {
		name string
		id   string
		want map[string]string // caller → outcome
	}{
		{"wallet", gid(lending.KindWallet, w.ids["wallet:inv1"]), map[string]string{"inv1": ok, "inv2": notFound, "bor1": notFound, "admin": ok}},
		{"ledger entry", gid(lending.KindLedgerEntry, w.ids["entry:inv1"]), map[string]string{"inv1": ok, "inv2": notFound, "bor1": notFound, "admin": ok}},
		{"deposit", gid(lending.KindDeposit, w.ids["deposit:inv1"]), map[string]string{"inv1": ok, "inv2": notFound, "bor1": notFound, "admin": ok}},
		{"withdrawal", gid(lending.KindWithdrawal, w.ids["withdrawal:inv2"]), map[string]string{"inv2": ok, "inv1": notFound, "bor1": notFound, "admin": ok}},
		{"chat", gid(lending.KindChat, w.ids["chat"]), map[string]string{"inv1": ok, "bor1": ok, "inv2": notFound, "bor2": notFound, "admin": notFound}},
		{"message", gid(lending.KindMessage, w.ids["msg2"]), map[string]string{"inv1": ok, "bor1": ok, "inv2": notFound, "admin": notFound}},
		{"notification", gid(lending.KindNotification, w.ids["notif:inv1:b"]), map[string]string{"inv1": ok, "inv2": notFound, "bor1": notFound, "admin": notFound}},
		{"platform wallet", gid(lending.KindWallet, w.ids["clearing"]), map[string]string{"inv1": notFound, "admin": notFound}},
	}
	for _, o := range objects {
		for caller, want := range o.want {
			r := e.do(w.tokens[caller], `query($id: ID!) { node(id: $id) { id } }`, map[string]any{"id": o.id})
			got := ok
			if len(r.Errors) > 0 {
				got = r.code(0)
			}
			if got != want {
				t.Errorf("%s as %s: got %s, want %s (%s)", o.name, caller, got, want, r.Body)
			}
			if want == notFound && get(r.Data, "node") != nil {
				t.Errorf("%s as %s: data leaked: %s", o.name, caller, r.Body)
			}
		}
	}

	fields := []struct {
		name, query, path string
		id                string
		owner             string
	}{
		{"User.email", `query($id: ID!) { node(id: $id) { ... on User { name email } } }`, "node.email", gid(lending.KindUser, w.users["inv1"]), "inv1"},
		{"User.wallet", `query($id: ID!) { node(id: $id) { ... on User { name wallet { balance } } } }`, "node.wallet", gid(lending.KindUser, w.users["inv1"]), "inv1"},
		{"Investor.portfolio", `query($id: ID!) { node(id: $id) { ... on Investor { displayName portfolio { invested } } } }`, "node.portfolio", gid(lending.KindInvestor, w.ids["investor:inv1"]), "inv1"},
		{"Borrower.creditScore", `query($id: ID!) { node(id: $id) { ... on Borrower { displayName creditScore } } }`, "node.creditScore", gid(lending.KindBorrower, w.ids["borrower:bor1"]), "bor1"},
		{"Borrower.monthlyIncome", `query($id: ID!) { node(id: $id) { ... on Borrower { displayName monthlyIncome } } }`, "node.monthlyIncome", gid(lending.KindBorrower, w.ids["borrower:bor1"]), "bor1"},
	}
	for _, f := range fields {
		for _, caller := range []string{"inv1", "inv2", "bor1", "bor2", "admin"} {
			r := e.do(w.tokens[caller], f.query, map[string]any{"id": f.id})
			allowed := caller == f.owner || caller == "admin"
			if allowed {
				if len(r.Errors) > 0 || get(r.Data, f.path) == nil {
					t.Errorf("%s as %s: want the value, got %s", f.name, caller, r.Body)
				}
				continue
			}
			if get(r.Data, f.path) != nil || len(r.Errors) != 1 || r.code(0) != "FORBIDDEN" {
				t.Errorf("%s as %s: want null + FORBIDDEN, got %s", f.name, caller, r.Body)
				continue
			}
			if got := fmt.Sprint(r.Errors[0].Path); got != fmt.Sprintf("[node %s]", f.path[len("node."):]) {
				t.Errorf("%s as %s: error path %s", f.name, caller, got)
			}
			if get(r.Data, "node") == nil {
				t.Errorf("%s as %s: the rest of the response is gone: %s", f.name, caller, r.Body)
			}
		}
	}

	// through relations too: another borrower's wallet via a loan
	r := e.do(w.tokens["inv1"], `query($id: ID!) { loan(id: $id) { purpose borrower { user { name wallet { balance } email } } } }`,
		map[string]any{"id": gid(lending.KindLoan, w.ids["loan:L1"])})
	if str(r.Data, "loan.purpose") == "" || get(r.Data, "loan.borrower.user.wallet") != nil || get(r.Data, "loan.borrower.user.email") != nil ||
		len(r.Errors) != 2 || r.code(0) != "FORBIDDEN" || r.code(1) != "FORBIDDEN" {
		t.Errorf("relation path: %s", r.Body)
	}
	// another user's wallet entries cannot be reached even as admin's own view of a wallet
	d := e.ok(w.tokens["admin"], `query($id: ID!) { node(id: $id) { ... on Wallet { balance entries { edges { node { amount } } } } } }`,
		map[string]any{"id": gid(lending.KindWallet, w.ids["wallet:inv1"])})
	if len(list(d, "node.entries.edges")) != 1 {
		t.Errorf("admin sees the wallet's entries: %v", d)
	}
}
