package resolvers

import (
	"context"
	"strings"

	"github.com/graph-gophers/dataloader/v7"

	"mutuo/graph/model"
	"mutuo/lending"
	"mutuo/store"
)

func pageInfo[T any](p store.Page[T]) *model.PageInfo {
	pi := &model.PageInfo{HasNextPage: p.HasNext, HasPreviousPage: p.HasPrevious}
	if n := len(p.Cursors); n > 0 {
		pi.StartCursor, pi.EndCursor = &p.Cursors[0], &p.Cursors[n-1]
	}
	return pi
}

func edges[T, E any](p store.Page[T], mk func(cursor string, node T) E) []E {
	out := make([]E, len(p.Items))
	for i, n := range p.Items {
		out[i] = mk(p.Cursors[i], n)
	}
	return out
}

func loanConnection(p store.Page[*lending.Loan], count model.CountFunc) *model.LoanConnection {
	return &model.LoanConnection{PageInfo: pageInfo(p), Count: count,
		Edges: edges(p, func(c string, n *lending.Loan) *model.LoanEdge { return &model.LoanEdge{Cursor: c, Node: n} })}
}

func investmentConnection(p store.Page[*lending.Investment], count model.CountFunc) *model.InvestmentConnection {
	return &model.InvestmentConnection{PageInfo: pageInfo(p), Count: count,
		Edges: edges(p, func(c string, n *lending.Investment) *model.InvestmentEdge {
			return &model.InvestmentEdge{Cursor: c, Node: n}
		})}
}

// pageKey validates first/after for a nested listing.
func pageKey(parent int64, first *int, after *string, filter string) (store.PageKey, error) {
	n, err := lending.PageSize(first)
	if err != nil {
		return store.PageKey{}, err
	}
	k := store.PageKey{Parent: parent, Limit: n, Filter: filter}
	if after != nil {
		k.After = *after
	}
	return k, nil
}

// countOf makes a connection's lazy totalCount from a counting loader.
func countOf[K comparable](l *dataloader.Loader[K, int], key K) model.CountFunc {
	return func(ctx context.Context) (int, error) { return l.Load(ctx, key)() }
}

// loadOne loads a required relation; absence is an internal error (a
// foreign key says it exists).
func loadOne[V any](ctx context.Context, l *dataloader.Loader[int64, *V], id int64, what string) (*V, error) {
	v, err := l.Load(ctx, id)()
	if err != nil {
		return nil, err
	}
	if v == nil {
		return nil, lending.NotFound(what)
	}
	return v, nil
}

// loadOptional loads an optional relation (nil id, nil result).
func loadOptional[V any](ctx context.Context, l *dataloader.Loader[int64, *V], id *int64) (*V, error) {
	if id == nil {
		return nil, nil
	}
	return l.Load(ctx, *id)()
}

func splitFilter(f string) []string {
	if f == "" {
		return []string{}
	}
	return strings.Split(f, ",")
}
