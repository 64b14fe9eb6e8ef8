package limits

import (
	"encoding/json"
	"math"
	"strconv"

	"github.com/vektah/gqlparser/v2/ast"

	"mutuo/lending"
)

// CostModel prices an operation, in the manner of the public GraphQL APIs of
// GitHub and Shopify: roughly, the number of objects (rows) it may return.
//
//   - A field of object, interface or union type costs 1: it is one object to
//     load (batched by the dataloaders, but still a row).
//   - A scalar or enum field costs 0: it comes with its object's row. The
//     exception is a connection's totalCount, 1 (a COUNT query).
//   - A connection field (one whose type has edges and pageInfo) costs 1 for
//     the page query plus its page size times the cost of one item: what is
//     selected under edges (node and what hangs from it). The page size is
//     the first or last argument, a literal or a variable, and
//     DefaultPageSize (20, the contract's default) when absent or null;
//     above MaxPageSize (100) it counts as 100, since the resolver refuses
//     it with BAD_USER_INPUT, the clearer error.
//     pageInfo and the edge wrappers cost nothing. Nested connections
//     multiply: loans(first: 10) { edges { node { investments(first: 10) …
//     costs about 10 × 10.
//   - A list of objects without pagination costs its length times the cost
//     of one element; the length is ListFactors["Type.field"] when known
//     (Loan.installments: 36, the longest term; Chat.participants: 2), else
//     DefaultListFactor (20: an unknown list is assumed to be a page).
//   - A mutation field costs MutationCost (10) plus its selection (even a
//     scalar one such as signOut): a write
//     takes a transaction, row locks and an outbox event.
//   - Fields skipped by @skip(if: true) or @include(if: false) cost nothing;
//     every branch of an abstract type's inline fragments is counted (an
//     overestimate), as are repeated selections of the same field.
//   - Introspection (__schema, __type) costs nothing: it is served from
//     memory, gqlparser bounds its depth, and it is off in production.
type CostModel struct {
	DefaultPageSize int
	// MaxPageSize caps a page size (100, the contract's): the resolvers
	// refuse a larger one with BAD_USER_INPUT, which is the clearer error.
	MaxPageSize       int
	MutationCost      int
	DefaultListFactor int
	ListFactors       map[string]int
}

// DefaultCostModel is the cost model with the defaults above.
func DefaultCostModel() CostModel {
	return CostModel{DefaultPageSize: lending.DefaultPageSize, MaxPageSize: lending.MaxPageSize, MutationCost: 10, DefaultListFactor: 20,
		ListFactors: map[string]int{"Loan.installments": 36, "Repayment.installments": 36, "Chat.participants": 2}}
}

func (m CostModel) withDefaults() CostModel {
	d := DefaultCostModel()
	if m.DefaultPageSize <= 0 {
		m.DefaultPageSize = d.DefaultPageSize
	}
	if m.MaxPageSize <= 0 {
		m.MaxPageSize = d.MaxPageSize
	}
	if m.MutationCost <= 0 {
		m.MutationCost = d.MutationCost
	}
	if m.DefaultListFactor <= 0 {
		m.DefaultListFactor = d.DefaultListFactor
	}
	if m.ListFactors == nil {
		m.ListFactors = d.ListFactors
	}
	return m
}

// Analysis is what the limits measure on one operation, fragments expanded.
type Analysis struct {
	// Depth is the deepest field nesting; a root field is at depth 1, and
	// leaves count (introspection subtrees do not).
	Depth int
	// Aliases is the number of aliased fields, each fragment counted as
	// often as it is spread.
	Aliases int
	// Cost is the operation's cost in the CostModel.
	Cost int
	// Introspection reports a __schema or __type field.
	Introspection bool
}

// capValue saturates the counters, so that a fragment spread 2^40 times
// cannot overflow them.
const capValue = math.MaxInt32

func sat(n int) int {
	if n > capValue || n < 0 {
		return capValue
	}
	return n
}

func add(a, b int) int { return sat(a + b) }

func mul(a, b int) int {
	if a == 0 || b == 0 {
		return 0
	}
	if a > capValue/b {
		return capValue
	}
	return a * b
}

// Analyze measures a validated operation (gqlparser has set the field and
// fragment definitions) with its coerced variables. Each fragment is
// measured once and reused at each spread; a fragment spread inside itself
// (which validation refuses anyway) counts as empty.
func Analyze(schema *ast.Schema, op *ast.OperationDefinition, vars map[string]any, m CostModel) Analysis {
	if op == nil {
		return Analysis{}
	}
	w := &analyzer{schema: schema, vars: vars, model: m.withDefaults(), memo: map[string]*measure{}, visiting: map[string]bool{}}
	r := w.selectionSet(op.SelectionSet)
	return Analysis{Depth: r.depth, Aliases: r.aliases, Cost: add(r.once, r.perItem), Introspection: r.introspection}
}

// measure is a selection set's measure. Its cost is split: perItem is the
// cost of a connection's edges (multiplied by the page size by the
// connection field), once the rest.
type measure struct {
	once, perItem  int
	depth, aliases int
	introspection  bool
}

func (r *measure) merge(o measure) {
	r.once = add(r.once, o.once)
	r.perItem = add(r.perItem, o.perItem)
	r.aliases = add(r.aliases, o.aliases)
	r.depth = max(r.depth, o.depth)
	r.introspection = r.introspection || o.introspection
}

type analyzer struct {
	schema   *ast.Schema
	vars     map[string]any
	model    CostModel
	memo     map[string]*measure
	visiting map[string]bool
}

func (w *analyzer) selectionSet(ss ast.SelectionSet) measure {
	var r measure
	for _, sel := range ss {
		switch s := sel.(type) {
		case *ast.Field:
			if w.skipped(s.Directives) {
				continue
			}
			w.field(s, &r)
		case *ast.InlineFragment:
			if w.skipped(s.Directives) {
				continue
			}
			r.merge(w.selectionSet(s.SelectionSet))
		case *ast.FragmentSpread:
			if w.skipped(s.Directives) {
				continue
			}
			r.merge(w.fragment(s))
		}
	}
	return r
}

func (w *analyzer) fragment(s *ast.FragmentSpread) measure {
	if m, ok := w.memo[s.Name]; ok {
		return *m
	}
	def := s.Definition
	if def == nil || w.visiting[s.Name] {
		return measure{}
	}
	w.visiting[s.Name] = true
	m := w.selectionSet(def.SelectionSet)
	delete(w.visiting, s.Name)
	w.memo[s.Name] = &m
	return m
}

// field adds f's measure to its parent's r.
func (w *analyzer) field(f *ast.Field, r *measure) {
	switch f.Name {
	case "__schema", "__type":
		r.introspection = true
		return
	case "__typename":
		r.depth = max(r.depth, 1)
		return
	}
	if f.Alias != "" && f.Alias != f.Name {
		r.aliases = add(r.aliases, 1)
	}
	child := w.selectionSet(f.SelectionSet)
	r.aliases = add(r.aliases, child.aliases)
	r.depth = max(r.depth, child.depth+1)
	r.introspection = r.introspection || child.introspection

	parent := f.ObjectDefinition
	inConnection := w.isConnection(parent)
	mutation := parent != nil && w.schema != nil && w.schema.Mutation != nil && parent.Name == w.schema.Mutation.Name
	var cost int
	switch {
	case len(f.SelectionSet) == 0:
		switch {
		case mutation:
			cost = w.model.MutationCost
		case inConnection && f.Name == "totalCount":
			cost = 1
		}
	default:
		base := 1
		switch {
		case mutation:
			base = w.model.MutationCost
		case inConnection && (f.Name == "edges" || f.Name == "pageInfo"):
			base = 0
		}
		var typ *ast.Type
		if f.Definition != nil {
			typ = f.Definition.Type
		}
		switch {
		case typ != nil && w.isConnection(w.typeDef(typ.Name())):
			n := w.pageSize(f)
			cost = add(add(base, child.once), mul(n, child.perItem))
		case typ != nil && typ.Elem != nil && !(inConnection && f.Name == "edges"):
			factor := w.model.DefaultListFactor
			if parent != nil {
				if v, ok := w.model.ListFactors[parent.Name+"."+f.Name]; ok {
					factor = v
				}
			}
			cost = mul(factor, add(add(base, child.once), child.perItem))
		default:
			cost = add(add(base, child.once), child.perItem)
		}
	}
	if inConnection && (f.Name == "edges" || f.Name == "nodes") {
		r.perItem = add(r.perItem, cost)
	} else {
		r.once = add(r.once, cost)
	}
}

func (w *analyzer) typeDef(name string) *ast.Definition {
	if w.schema == nil {
		return nil
	}
	return w.schema.Types[name]
}

// isConnection: a Relay connection type has edges and pageInfo.
func (w *analyzer) isConnection(d *ast.Definition) bool {
	return d != nil && d.Kind == ast.Object && d.Fields.ForName("edges") != nil && d.Fields.ForName("pageInfo") != nil
}

// pageSize is the larger of first and last, DefaultPageSize when neither is
// given (or both are null), within 0..MaxPageSize (the resolvers refuse
// anything outside 1..MaxPageSize anyway).
func (w *analyzer) pageSize(f *ast.Field) int {
	n, found := 0, false
	for _, name := range []string{"first", "last"} {
		if v, ok := toInt(w.argument(f, name)); ok {
			found = true
			n = max(n, v)
		}
	}
	if !found {
		return w.model.DefaultPageSize
	}
	return min(max(n, 0), w.model.MaxPageSize)
}

// argument is the value of f's argument name: the literal, the variable's
// (or its default's) value, else the argument's default; nil when absent. (ast.Field.ArgumentMap panics on an unparsable literal.)
func (w *analyzer) argument(f *ast.Field, name string) any {
	var v *ast.Value
	if a := f.Arguments.ForName(name); a != nil {
		v = a.Value
	} else if f.Definition != nil {
		if d := f.Definition.Arguments.ForName(name); d != nil {
			v = d.DefaultValue
		}
	}
	if v == nil {
		return nil
	}
	val, err := v.Value(w.vars)
	if err != nil {
		return capValue // an out-of-range literal: as large as can be
	}
	return val
}

// skipped evaluates @skip and @include.
func (w *analyzer) skipped(dl ast.DirectiveList) bool {
	for _, d := range dl {
		if d.Name != "skip" && d.Name != "include" {
			continue
		}
		a := d.Arguments.ForName("if")
		if a == nil || a.Value == nil {
			continue
		}
		v, err := a.Value.Value(w.vars)
		if err != nil {
			continue
		}
		b, ok := v.(bool)
		if !ok {
			continue
		}
		if (d.Name == "skip" && b) || (d.Name == "include" && !b) {
			return true
		}
	}
	return false
}

func toInt(v any) (int, bool) {
	switch n := v.(type) {
	case int:
		return n, true
	case int32:
		return int(n), true
	case int64:
		if n > capValue {
			return capValue, true
		}
		return int(n), true
	case float64:
		if n > capValue {
			return capValue, true
		}
		return int(n), true
	case json.Number:
		if i, err := n.Int64(); err == nil {
			return toInt(i)
		}
		if f, err := n.Float64(); err == nil {
			return toInt(f)
		}
	case string:
		if i, err := strconv.ParseInt(n, 10, 64); err == nil {
			return toInt(i)
		}
	}
	return 0, false
}
