package e2e

import (
	"testing"
)

func TestPaginationEdgeCases(t *testing.T) {
	e := newEnv(t)
	w := seedWorld(t, e)
	tok := w.tokens["inv1"]
	q := `query($f: Int, $a: String, $s: [LoanStatus!]) { loans(first: $f, after: $a, filter: {status: $s}) { totalCount
		edges { cursor node { id } } pageInfo { hasNextPage hasPreviousPage startCursor endCursor } } }`

	// empty
	d := e.ok(tok, q, map[string]any{"s": []string{"DEFAULTED"}})
	if len(list(d, "loans.edges")) != 0 || get(d, "loans.pageInfo.hasNextPage") != false || get(d, "loans.pageInfo.startCursor") != nil ||
		get(d, "loans.pageInfo.endCursor") != nil || num(d, "loans.totalCount") != 0 {
		t.Fatalf("empty: %v", d)
	}
	// exactly one page: 3 FUNDING loans, first 3
	d = e.ok(tok, q, map[string]any{"f": 3})
	if len(list(d, "loans.edges")) != 3 || get(d, "loans.pageInfo.hasNextPage") != false || get(d, "loans.pageInfo.hasPreviousPage") != false {
		t.Fatalf("exact page: %v", d)
	}
	if str(d, "loans.pageInfo.endCursor") != str(d, "loans.edges.2.cursor") || str(d, "loans.pageInfo.startCursor") != str(d, "loans.edges.0.cursor") {
		t.Fatalf("cursors: %v", d)
	}
	// walk pages of 2: 2 then the last page of 1
	d = e.ok(tok, q, map[string]any{"f": 2})
	if len(list(d, "loans.edges")) != 2 || get(d, "loans.pageInfo.hasNextPage") != true {
		t.Fatalf("page 1: %v", d)
	}
	first := str(d, "loans.edges.0.node.id")
	d = e.ok(tok, q, map[string]any{"f": 2, "a": str(d, "loans.pageInfo.endCursor")})
	if len(list(d, "loans.edges")) != 1 || get(d, "loans.pageInfo.hasNextPage") != false || get(d, "loans.pageInfo.hasPreviousPage") != true {
		t.Fatalf("last page: %v", d)
	}
	if str(d, "loans.edges.0.node.id") == first {
		t.Fatal("the last page repeated the first")
	}
	// after the last item: empty page
	d = e.ok(tok, q, map[string]any{"f": 2, "a": str(d, "loans.pageInfo.endCursor")})
	if len(list(d, "loans.edges")) != 0 || get(d, "loans.pageInfo.hasNextPage") != false {
		t.Fatalf("past the end: %v", d)
	}
	// invalid cursors and sizes are BAD_USER_INPUT, with no data for the field
	otherOrder := e.ok(tok, `{ loans(orderBy: {field: AMOUNT, direction: ASC}, first: 1) { pageInfo { endCursor } } }`, nil)
	for name, vars := range map[string]map[string]any{
		"garbage cursor":        {"a": "!!!"},
		"base64 garbage":        {"a": "aGVsbG8"},
		"cursor of other order": {"a": str(otherOrder, "loans.pageInfo.endCursor")},
		"first 0":               {"f": 0},
		"first 101":             {"f": 101},
		"first negative":        {"f": -5},
	} {
		r := e.do(tok, q, vars)
		if r.code(0) != "BAD_USER_INPUT" || get(r.Data, "loans") != nil {
			t.Errorf("%s: want BAD_USER_INPUT, got %s", name, r.Body)
		}
	}
	// a nested connection's cursor is not a top-level one
	d = e.ok(tok, `{ loans(first: 1) { edges { node { investments(first: 1) { pageInfo { endCursor } } } } } }`, nil)
	if r := e.do(tok, q, map[string]any{"a": str(d, "loans.edges.0.node.investments.pageInfo.endCursor")}); r.code(0) != "BAD_USER_INPUT" {
		t.Errorf("nested cursor at top level: %s", r.Body)
	}
	// first 100 is allowed; default is 20
	e.ok(tok, q, map[string]any{"f": 100})
	// nested first out of range
	if r := e.do(tok, `{ loans { edges { node { investments(first: 1000) { totalCount } } } } }`, nil); r.code(0) != "BAD_USER_INPUT" {
		t.Errorf("nested first 1000: %s", r.Body)
	}
}
