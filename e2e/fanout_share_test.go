package e2e

import (
	"fmt"
	"testing"
	"time"
)

// TestRealtimeLoanUpdatedSharedExecution: subscribers of loanUpdated with
// the same document and variables, selecting only the loan's own fields,
// share one execution on the instance (realtime/ws_share.go). Through the
// real app: each gets the current state first, then every change in order;
// the subscriber whose execution the group took over may leave abruptly and
// the others go on; a late joiner gets the current state first; a document
// with a resolver field (investorCount) is served on its own, with the same
// states; when everyone has left nothing is left running.
func TestRealtimeLoanUpdatedSharedExecution(t *testing.T) {
	e := newEnv(t)
	w := apiWorld(t, e)
	ana, bruno, carla := w.tokens["inv1"], w.tokens["inv2"], w.tokens["bor1"]
	e.deposit(ana, "1000.00", "a")
	e.deposit(bruno, "1000.00", "b")
	loan := str(e.ok(carla, `mutation { requestLoan(input: {amount: "1000.00", termMonths: 3, purpose: "Capital de giro"}, idempotencyKey: "l") { id } }`, nil), "requestLoan.id")
	const sharedQ = `subscription($l: ID!) { loanUpdated(loanId: $l) { id status fundedAmount amount } }`

	first := wsConnect(t, e.URL, ana) // the first: its execution becomes the group's
	first.subscribe("l", sharedQ, map[string]any{"l": loan})
	state := func(c *wsClient, id string) map[string]any {
		t.Helper()
		return c.expectNext(id, wsWait)["loanUpdated"].(map[string]any)
	}
	if got := state(first, "l"); str(got, "fundedAmount") != "0.00" || str(got, "status") != "FUNDING" {
		t.Fatalf("first: %v", got)
	}
	b := wsConnect(t, e.URL, bruno)
	b.subscribe("l", sharedQ, map[string]any{"l": loan})
	c := wsConnect(t, e.URL, carla)
	c.subscribe("1", sharedQ, map[string]any{"l": loan})
	// investorCount: not shared (on a socket of its own: two operations of
	// one socket may send in either order)
	own := wsConnect(t, e.URL, carla)
	own.subscribe("own", loanSubQ, map[string]any{"l": loan})
	for _, s := range []struct {
		c  *wsClient
		id string
	}{{b, "l"}, {c, "1"}, {own, "own"}} {
		if got := state(s.c, s.id); str(got, "id") != loan || str(got, "fundedAmount") != "0.00" {
			t.Fatalf("%s: current state first: %v", s.id, got)
		}
	}
	first.sync()
	first.abort() // leaves abruptly; the group goes on without it

	invest := func(tok, amount, key string) {
		t.Helper()
		if r := e.do(tok, investQ, map[string]any{"l": loan, "a": amount, "k": key}); len(r.Errors) > 0 {
			t.Fatal(r.Body)
		}
	}
	invest(bruno, "600.00", "i1")
	for _, s := range []struct {
		c  *wsClient
		id string
	}{{b, "l"}, {c, "1"}, {own, "own"}} {
		if got := state(s.c, s.id); str(got, "fundedAmount") != "600.00" || str(got, "status") != "FUNDING" {
			t.Fatalf("%s after the first investment: %v", s.id, got)
		}
	}

	// a late joiner gets the current state, then what follows
	late := wsConnect(t, e.URL, ana)
	late.subscribe("l", sharedQ, map[string]any{"l": loan})
	if got := state(late, "l"); str(got, "fundedAmount") != "600.00" {
		t.Fatalf("late joiner: %v", got)
	}
	invest(ana, "400.00", "i2") // funds it: disbursed, ACTIVE
	for _, s := range []struct {
		c  *wsClient
		id string
	}{{b, "l"}, {c, "1"}, {own, "own"}, {late, "l"}} {
		funded := 600.0
		for {
			got := state(s.c, s.id)
			var f float64
			fmt.Sscan(str(got, "fundedAmount"), &f)
			if f < funded {
				t.Fatalf("%s: fundedAmount went back: %v", s.id, got)
			}
			funded = f
			if str(got, "status") == "ACTIVE" {
				if f != 1000 {
					t.Fatalf("%s: active: %v", s.id, got)
				}
				break
			}
		}
	}
	for _, cl := range []*wsClient{b, c, own, late} {
		cl.quiet(200 * time.Millisecond)
	}

	// a client's complete ends only its own subscription
	b.complete("l")
	b.sync()
	c.sync()
	late.sync()
	// everyone leaves: the group, its execution and the loan's feed end
	for _, cl := range []*wsClient{b, c, own, late} {
		cl.abort()
	}
	waitHubSubs(t, e.App, 0)
}
