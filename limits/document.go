package limits

import (
	"context"
	"fmt"
	"hash/maphash"
	"strconv"
	"strings"

	"github.com/99designs/gqlgen/graphql/handler/lru"
	"github.com/vektah/gqlparser/v2/ast"
	"github.com/vektah/gqlparser/v2/gqlerror"
	"github.com/vektah/gqlparser/v2/parser"

	"mutuo/lending"
)

// maxExpandedFields bounds the fields the overlap estimate visits with every
// fragment spread expanded in place. gqlparser's validator does not expand
// fragments like this, but a document that needs more is far beyond any
// real client's (and beyond MaxCost once executed), so it is refused rather
// than estimated further.
const maxExpandedFields = 50_000

// docChecker runs the checks that must happen before gqlgen parses and
// validates a document, because parsing and validating is itself the work a
// hostile document makes expensive: its size, its tokens, the directives at
// any one location, and the pairs of same-named fields the validator's
// OverlappingFieldsCanBeMerged rule would compare (quadratic in gqlparser:
// `{ me { id id id … } }` with 5000 tokens takes seconds to validate).
//
// It parses the document itself (parsing is linear and bounded by the token
// limit) and remembers documents that passed, so a repeated document (APQ,
// allow-listed or simply popular) is only hashed.
type docChecker struct {
	maxBytes, maxTokens, maxDirectives, maxOverlaps int

	seed maphash.Seed
	ok   *lru.LRU[struct{}]
}

func newDocChecker(c Config) *docChecker {
	return &docChecker{maxBytes: c.MaxDocumentBytes, maxTokens: c.MaxTokens, maxDirectives: c.MaxDirectivesPerField,
		maxOverlaps: c.MaxFieldOverlaps, seed: maphash.MakeSeed(), ok: lru.New[struct{}](4096)}
}

// check returns the error refusing query, or nil. A query that does not
// parse is not refused here: gqlgen reports the syntax error itself.
func (d *docChecker) check(ctx context.Context, query string) *gqlerror.Error {
	if d.maxBytes > 0 && len(query) > d.maxBytes {
		return refuse(lending.CodeQueryTooComplex, nil,
			"query too large: the document is %d bytes, the limit is %d bytes", len(query), d.maxBytes)
	}
	if d.maxTokens <= 0 && d.maxDirectives <= 0 && d.maxOverlaps <= 0 {
		return nil
	}
	key := strconv.FormatUint(maphash.String(d.seed, query), 36)
	if _, ok := d.ok.Get(ctx, key); ok {
		return nil
	}
	limit := d.maxTokens
	if limit < 0 {
		limit = 0
	}
	doc, err := parser.ParseQueryWithTokenLimit(&ast.Source{Input: query}, limit)
	if err != nil {
		if limit > 0 && strings.Contains(err.Error(), "exceeded token limit") {
			return refuse(lending.CodeQueryTooComplex, nil,
				"query too large: the document has more than %d tokens, the limit", limit)
		}
		return nil // a syntax error: gqlgen's parser reports it
	}
	if d.maxDirectives > 0 {
		if e := checkDirectives(doc, d.maxDirectives); e != nil {
			return e
		}
	}
	if d.maxOverlaps > 0 {
		est := overlapEstimate{frags: doc.Fragments, maxPairs: d.maxOverlaps, active: map[string]int{}}
		for _, op := range doc.Operations {
			est.group([]ast.SelectionSet{op.SelectionSet})
		}
		for _, f := range doc.Fragments {
			est.group([]ast.SelectionSet{f.SelectionSet})
		}
		switch {
		case est.visits > maxExpandedFields:
			return refuse(lending.CodeQueryTooComplex, nil,
				"query too complex: with its fragments expanded the document has more than %d fields", maxExpandedFields)
		case est.pairs > d.maxOverlaps:
			return refuse(lending.CodeQueryTooComplex, nil,
				"query too complex: the document repeats the same fields (or fragments) in one place too often: at least %d pairs of them, the limit is %d; select each field once",
				est.pairs, d.maxOverlaps)
		}
	}
	d.ok.Add(ctx, key, struct{}{})
	return nil
}

// checkDirectives refuses the first location (field, fragment spread, inline
// fragment, operation, fragment or variable definition) with more than max
// directives. Counted as written: gqlparser would otherwise produce one
// validation error per repeated directive.
func checkDirectives(doc *ast.QueryDocument, max int) *gqlerror.Error {
	over := func(dl ast.DirectiveList, pos *ast.Position, what string) *gqlerror.Error {
		if len(dl) <= max {
			return nil
		}
		e := refuse(lending.CodeQueryTooComplex, nil,
			"too many directives on %s: %d, the limit is %d per field", what, len(dl), max)
		if pos != nil {
			e.Locations = []gqlerror.Location{{Line: pos.Line, Column: pos.Column}}
		}
		return e
	}
	var set func(ss ast.SelectionSet) *gqlerror.Error
	set = func(ss ast.SelectionSet) *gqlerror.Error {
		for _, sel := range ss {
			switch s := sel.(type) {
			case *ast.Field:
				if e := over(s.Directives, s.Position, fmt.Sprintf("field %q", s.Alias)); e != nil {
					return e
				}
				if e := set(s.SelectionSet); e != nil {
					return e
				}
			case *ast.InlineFragment:
				if e := over(s.Directives, s.Position, "an inline fragment"); e != nil {
					return e
				}
				if e := set(s.SelectionSet); e != nil {
					return e
				}
			case *ast.FragmentSpread:
				if e := over(s.Directives, s.Position, fmt.Sprintf("the spread of fragment %q", s.Name)); e != nil {
					return e
				}
			}
		}
		return nil
	}
	for _, op := range doc.Operations {
		if e := over(op.Directives, op.Position, "the operation"); e != nil {
			return e
		}
		for _, v := range op.VariableDefinitions {
			if e := over(v.Directives, v.Position, "variable $"+v.Variable); e != nil {
				return e
			}
		}
		if e := set(op.SelectionSet); e != nil {
			return e
		}
	}
	for _, f := range doc.Fragments {
		if e := over(f.Directives, f.Position, fmt.Sprintf("fragment %q", f.Name)); e != nil {
			return e
		}
		if e := set(f.SelectionSet); e != nil {
			return e
		}
	}
	return nil
}

// overlapEstimate counts, over the merged response tree of a document, the
// pairs of fields that share a response path (and the pairs of fragment
// spreads in one selection), which is what the validator's
// OverlappingFieldsCanBeMerged rule compares pairwise. It stops as soon as
// either bound is passed.
type overlapEstimate struct {
	frags    ast.FragmentDefinitionList
	active   map[string]int // fragments expanded on the current path (cycles)
	maxPairs int
	pairs    int
	visits   int
}

func (o *overlapEstimate) done() bool {
	return o.pairs > o.maxPairs || o.visits > maxExpandedFields
}

// group merges the selection sets that share one response path.
func (o *overlapEstimate) group(sets []ast.SelectionSet) {
	if o.done() {
		return
	}
	var keys []string
	byKey := map[string][]*ast.Field{}
	spreads := 0
	var expanded []string
	var collect func(ss ast.SelectionSet)
	collect = func(ss ast.SelectionSet) {
		for _, sel := range ss {
			if o.visits++; o.done() {
				return
			}
			switch s := sel.(type) {
			case *ast.Field:
				if _, seen := byKey[s.Alias]; !seen {
					keys = append(keys, s.Alias)
				}
				byKey[s.Alias] = append(byKey[s.Alias], s)
			case *ast.InlineFragment:
				collect(s.SelectionSet)
			case *ast.FragmentSpread:
				spreads++
				def := o.frags.ForName(s.Name)
				if def == nil || o.active[s.Name] > 0 {
					continue // unknown or cyclic: the validator refuses it
				}
				o.active[s.Name]++
				expanded = append(expanded, s.Name)
				collect(def.SelectionSet)
			}
		}
	}
	for _, ss := range sets {
		collect(ss)
	}
	o.pairs += spreads * (spreads - 1) / 2
	for _, k := range keys {
		if o.done() {
			break
		}
		fs := byKey[k]
		o.pairs += len(fs) * (len(fs) - 1) / 2
		var children []ast.SelectionSet
		for _, f := range fs {
			if len(f.SelectionSet) > 0 {
				children = append(children, f.SelectionSet)
			}
		}
		if len(children) > 0 {
			o.group(children)
		}
	}
	for _, name := range expanded {
		o.active[name]--
	}
}
