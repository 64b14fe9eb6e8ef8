package limits

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/vektah/gqlparser/v2"
	"github.com/vektah/gqlparser/v2/ast"
	"github.com/vektah/gqlparser/v2/parser"
	"github.com/vektah/gqlparser/v2/validator"

	"mutuo/graph"
	"mutuo/resolvers"
)

var schema = graph.NewExecutableSchema(graph.Config{Resolvers: &resolvers.Resolver{}}).Schema()

func analyze(t *testing.T, q string, vars map[string]any) Analysis {
	t.Helper()
	doc, errs := gqlparser.LoadQuery(schema, q)
	if len(errs) > 0 {
		t.Fatalf("%s: %v", q, errs)
	}
	return Analyze(schema, doc.Operations[0], vars, DefaultCostModel())
}

func TestCostModel(t *testing.T) {
	for _, c := range []struct {
		name string
		q    string
		vars map[string]any
		cost int
	}{
		{"scalars are free, objects 1", `{ me { id name email createdAt roles } }`, nil, 1},
		{"nested objects", `{ me { wallet { owner { id } } investor { displayName } } }`, nil, 4},
		{"default page of 20; edges and pageInfo free", `{ loans { edges { cursor node { id } } pageInfo { hasNextPage } } }`, nil, 21},
		{"totalCount is a COUNT query", `{ loans(first: 10) { totalCount } }`, nil, 2},
		{"first literal", `{ loans(first: 50) { edges { node { id borrower { id } } } } }`, nil, 101},
		{"first variable", `query ($n: Int) { loans(first: $n) { edges { node { id } } } }`, map[string]any{"n": 7}, 8},
		{"first variable absent", `query ($n: Int) { loans(first: $n) { edges { node { id } } } }`, nil, 21},
		{"last", `{ chats(first: 2) { edges { node { messages(last: 30) { edges { node { body } } } } } } }`, nil, 1 + 2*(1+1+30)},
		{"nested connections multiply",
			`{ loans(first: 20) { edges { node { investments(first: 20) { edges { node { investor { displayName } } } } } } } }`, nil,
			1 + 20*(1+1+20*2)},
		{"connection under an object under a connection",
			`{ borrowers(first: 10) { edges { node { user { id } loans(first: 5) { totalCount edges { node { id } } } } } } }`, nil,
			1 + 10*(1+1+(1+1+5))},
		{"a list of known length", `{ loan(id: "x") { installments { number total } } }`, nil, 1 + 36},
		{"a short list", `{ chats { edges { node { participants { name } } } } }`, nil, 1 + 20*(1+2)},
		{"a mutation costs 10", `mutation { signIn(email: "a", password: "b") { accessToken user { id } } }`, nil, 11},
		{"a scalar mutation costs 10 too", `mutation { signOut a: signOut }`, nil, 20},
		{"@skip and @include", `query ($no: Boolean!) { me { id } loans @skip(if: true) { totalCount } chats @include(if: $no) { pageInfo { hasNextPage } } }`,
			map[string]any{"no": false}, 1},
		{"fragments at each spread",
			`query { a: loans(first: 2) { ...L } b: loans(first: 3) { ...L } } fragment L on LoanConnection { edges { node { borrower { id } } } }`, nil,
			(1 + 2*2) + (1 + 3*2)},
		{"abstract types: every branch counts",
			`{ node(id: "x") { ... on Loan { investments(first: 10) { edges { node { id } } } } ... on Investor { investments(first: 5) { edges { node { id } } } } } }`, nil,
			1 + 11 + 6},
		{"introspection is free", `{ __schema { types { name fields { name } } } __typename }`, nil, 0},
	} {
		t.Run(c.name, func(t *testing.T) {
			if got := analyze(t, c.q, c.vars).Cost; got != c.cost {
				t.Fatalf("cost %d, want %d", got, c.cost)
			}
		})
	}
}

// The figures quoted in Config's documentation.
func TestCostOfAppScreens(t *testing.T) {
	marketplace := `query Marketplace($after: String) {
	  loans(first: 20, after: $after) {
	    totalCount
	    pageInfo { hasNextPage endCursor }
	    edges { cursor node { id amount fundedAmount termMonths annualRate grade purpose status fundingDeadline investorCount cet
	      borrower { id displayName grade } } }
	  }
	}`
	investorDashboard := `query Dashboard {
	  me { id name roles
	    wallet { id balance available held version entries(first: 10) { edges { node { id kind amount balanceAfter description createdAt loan { id purpose } } } } }
	    investor { id displayName portfolio { invested outstandingPrincipal receivedPrincipal receivedInterest activeInvestments netAnnualizedReturn }
	      investments(first: 20) { totalCount edges { node { id amount status receivedPrincipal receivedInterest
	        loan { id purpose status grade annualRate termMonths borrower { displayName } installments { number dueDate total paid status } } } } } }
	  }
	  notifications(first: 10, unreadOnly: true) { totalCount edges { node { id kind title body readAt createdAt } } }
	}`
	loansByInvestors := `{ loans(first: 20) { edges { node { id investments(first: 20) { edges { node { amount investor { displayName } } } } } } } }`
	bigPageOfBigPages := `{ loans(first: 100) { edges { node { id investments(first: 20) { edges { node { amount investor { displayName } } } } } } } }`
	tooBig := `{ loans(first: 100) { edges { node { id investments(first: 100) { edges { node { amount investor { displayName } } } } } } } }`
	for _, c := range []struct {
		name  string
		q     string
		cost  int
		depth int
	}{
		{"marketplace page", marketplace, 42, 5},
		{"investor dashboard", investorDashboard, 819, 8},
		{"20 loans × 20 investments", loansByInvestors, 841, 8},
		{"100 loans × 20 investments", bigPageOfBigPages, 4201, 8},
		{"100 loans × 100 investments", tooBig, 20201, 8},
	} {
		a := analyze(t, c.q, nil)
		t.Logf("%-28s cost %5d depth %2d aliases %d", c.name, a.Cost, a.Depth, a.Aliases)
		if a.Cost != c.cost || a.Depth != c.depth {
			t.Errorf("%s: cost %d depth %d, want %d %d", c.name, a.Cost, a.Depth, c.cost, c.depth)
		}
		if within := a.Cost <= DefaultMaxCost && a.Depth <= DefaultMaxDepth; within != (c.name != "100 loans × 100 investments") {
			t.Errorf("%s: within the default limits: %v", c.name, within)
		}
	}
	intro := analyze(t, introspectionQuery, nil)
	if !intro.Introspection || intro.Cost != 0 || intro.Depth != 0 {
		t.Fatalf("introspection: %+v", intro)
	}
	for _, q := range []string{introspectionQuery, investorDashboard} {
		if _, err := parser.ParseQueryWithTokenLimit(&ast.Source{Input: q}, 600); err != nil {
			t.Errorf("more than 600 tokens (the defaults assume fewer): %.40q", q)
		}
	}
}

func TestDepthAndAliases(t *testing.T) {
	a := analyze(t, `query { me { ...F } x: me { id } } fragment F on User { n: name borrower { user { i: id } } }`, nil)
	if a.Depth != 4 || a.Aliases != 3 {
		t.Fatalf("%+v", a)
	}
	if a := analyze(t, `{ __typename me { __typename } }`, nil); a.Depth != 2 || a.Cost != 1 {
		t.Fatalf("%+v", a)
	}
}

// A fragment spread twice at each of 40 levels expands to 2^40 fields: each
// fragment is measured once, and the counters saturate.
func TestFragmentBomb(t *testing.T) {
	var b strings.Builder
	b.WriteString("query { me { ...F0 } }\n")
	for i := 0; i < 40; i++ {
		fmt.Fprintf(&b, "fragment F%d on User { a: borrower { user { ...F%d } } b: borrower { user { ...F%d } } }\n", i, i+1, i+1)
	}
	b.WriteString("fragment F40 on User { id }\n")
	start := time.Now()
	a := analyze(t, b.String(), nil)
	if time.Since(start) > time.Second || a.Cost != capValue || a.Aliases != capValue || a.Depth != 82 {
		t.Fatalf("%+v in %v", a, time.Since(start))
	}
}

// Validation refuses fragment cycles, but Analyze must end on them anyway.
func TestFragmentCycle(t *testing.T) {
	doc, err := parser.ParseQuery(&ast.Source{Input: `{ me { ...A } } fragment A on User { borrower { user { ...B } } } fragment B on User { id ...A }`})
	if err != nil {
		t.Fatal(err)
	}
	if errs := validator.Validate(schema, doc); len(errs) == 0 {
		t.Fatal("a cycle validates?")
	}
	a := Analyze(schema, doc.Operations[0], nil, DefaultCostModel())
	if a.Depth != 4 || a.Cost != 3 {
		t.Fatalf("%+v", a)
	}
}

func TestSaturation(t *testing.T) {
	if mul(capValue, 2) != capValue || add(capValue, capValue) != capValue || mul(0, capValue) != 0 {
		t.Fatal("saturation")
	}
	// page sizes beyond 100 count as 100: the resolver refuses them
	a := analyze(t, `query ($n: Int) { loans(first: $n) { edges { node { investments(first: $n) { edges { node { id } } } } } } }`,
		map[string]any{"n": 1 << 40})
	if a.Cost != 1+100*(1+1+100) {
		t.Fatalf("%+v", a)
	}
	m := DefaultCostModel()
	m.MaxPageSize = capValue
	doc, errs := gqlparser.LoadQuery(schema, `query ($n: Int) { loans(first: $n) { edges { node { investments(first: $n) { edges { node {
		investor { investments(first: $n) { edges { node { id } } } } } } } } } } }`)
	if errs != nil {
		t.Fatal(errs)
	}
	if a := Analyze(schema, doc.Operations[0], map[string]any{"n": 1 << 40}, m); a.Cost != capValue {
		t.Fatalf("%+v", a)
	}
}
