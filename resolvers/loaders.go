package resolvers

import (
	"context"
	"net/http"
	"sync"
	"time"

	"github.com/graph-gophers/dataloader/v7"

	"mutuo/lending"
	"mutuo/store"
)

// Loaders batch every relation of one request (or one subscription event):
// each Load waits a moment for its siblings, then one statement serves them
// all, and results come back in key order. They are built for one viewer,
// whose identity is part of every ownership-scoped query.
type Loaders struct {
	User               *dataloader.Loader[int64, *lending.User]
	Investor           *dataloader.Loader[int64, *lending.Investor]
	InvestorByUser     *dataloader.Loader[int64, *lending.Investor]
	Borrower           *dataloader.Loader[int64, *lending.Borrower]
	BorrowerByUser     *dataloader.Loader[int64, *lending.Borrower]
	Loan               *dataloader.Loader[int64, *lending.Loan]
	WalletByUser       *dataloader.Loader[int64, *lending.Wallet]
	Chat               *dataloader.Loader[int64, *lending.Chat]
	LastMessage        *dataloader.Loader[int64, *lending.Message]
	UnreadCount        *dataloader.Loader[int64, int]
	Installments       *dataloader.Loader[int64, []*lending.Installment]
	InvestorCount      *dataloader.Loader[int64, int]
	LoanInvestments    *dataloader.Loader[store.PageKey, store.Page[*lending.Investment]]
	InvestorInvestment *dataloader.Loader[store.PageKey, store.Page[*lending.Investment]]
	BorrowerLoans      *dataloader.Loader[store.PageKey, store.Page[*lending.Loan]]
	WalletEntries      *dataloader.Loader[store.PageKey, store.Page[*lending.LedgerEntry]]
	ChatMessages       *dataloader.Loader[store.PageKey, store.Page[*lending.Message]]
	LoanInvestmentsN   *dataloader.Loader[int64, int]
	InvestorInvestN    *dataloader.Loader[int64, int]
	BorrowerLoansN     *dataloader.Loader[store.PageKey, int]
}

// NewLoaders builds a request's loaders; ownership-scoped loads use the
// viewer in the context of the Load (the request's). wait is how long a
// Load waits for siblings before its batch runs.
func NewLoaders(s *store.Store, wait time.Duration) *Loaders {
	return &Loaders{
		User:           byID(wait, s.UsersByID),
		Investor:       byID(wait, s.InvestorsByID),
		InvestorByUser: byID(wait, s.InvestorsByUserID),
		Borrower:       byID(wait, s.BorrowersByID),
		BorrowerByUser: byID(wait, s.BorrowersByUserID),
		Loan:           byID(wait, s.LoansByID),
		WalletByUser: byID(wait, func(ctx context.Context, ids []int64) (map[int64]*lending.Wallet, error) {
			return s.WalletsByUserID(ctx, lending.ViewerFrom(ctx), ids)
		}),
		Chat: byID(wait, func(ctx context.Context, ids []int64) (map[int64]*lending.Chat, error) {
			return s.ChatsByID(ctx, lending.ViewerFrom(ctx), ids)
		}),
		LastMessage: byID(wait, func(ctx context.Context, ids []int64) (map[int64]*lending.Message, error) {
			return s.LastMessagesByChat(ctx, lending.ViewerFrom(ctx), ids)
		}),
		UnreadCount: byID(wait, func(ctx context.Context, ids []int64) (map[int64]int, error) {
			return s.UnreadCountsByChat(ctx, lending.ViewerFrom(ctx), ids)
		}),
		Installments:       byID(wait, s.InstallmentsByLoan),
		InvestorCount:      byID(wait, s.InvestorCountsByLoan),
		LoanInvestments:    pages(wait, s.InvestmentsByLoan),
		InvestorInvestment: pages(wait, s.InvestmentsByInvestor),
		BorrowerLoans:      pages(wait, s.LoansByBorrower),
		WalletEntries: pages(wait, func(ctx context.Context, keys []store.PageKey) ([]store.Page[*lending.LedgerEntry], []error) {
			return s.EntriesByWallet(ctx, lending.ViewerFrom(ctx), keys)
		}),
		ChatMessages: pages(wait, func(ctx context.Context, keys []store.PageKey) ([]store.Page[*lending.Message], []error) {
			return s.MessagesByChat(ctx, lending.ViewerFrom(ctx), keys)
		}),
		LoanInvestmentsN: byID(wait, s.CountInvestmentsByLoan),
		InvestorInvestN:  byID(wait, s.CountInvestmentsByInvestor),
		BorrowerLoansN: dataloader.NewBatchedLoader(func(ctx context.Context, keys []store.PageKey) []*dataloader.Result[int] {
			// keys differ only in Filter within a request, almost always one
			byFilter := map[string][]int64{}
			for _, k := range keys {
				byFilter[k.Filter] = append(byFilter[k.Filter], k.Parent)
			}
			got := map[store.PageKey]int{}
			var firstErr error
			for f, ids := range byFilter {
				m, err := s.CountLoansByBorrower(ctx, ids, splitFilter(f))
				if err != nil {
					firstErr = err
					continue
				}
				for id, n := range m {
					got[store.PageKey{Parent: id, Filter: f}] = n
				}
			}
			out := make([]*dataloader.Result[int], len(keys))
			for i, k := range keys {
				out[i] = &dataloader.Result[int]{Data: got[store.PageKey{Parent: k.Parent, Filter: k.Filter}], Error: firstErr}
			}
			return out
		}, dataloader.WithWait[store.PageKey, int](wait)),
	}
}

// byID makes a loader over a map-returning batch load; a missing key yields
// the zero value (nil, 0) and no error: the resolver decides what absence means.
func byID[V any](wait time.Duration, fetch func(context.Context, []int64) (map[int64]V, error)) *dataloader.Loader[int64, V] {
	return dataloader.NewBatchedLoader(func(ctx context.Context, keys []int64) []*dataloader.Result[V] {
		m, err := fetch(ctx, keys)
		out := make([]*dataloader.Result[V], len(keys))
		for i, k := range keys {
			out[i] = &dataloader.Result[V]{Data: m[k], Error: err}
		}
		return out
	}, dataloader.WithWait[int64, V](wait))
}

func pages[T any](wait time.Duration, fetch func(context.Context, []store.PageKey) ([]store.Page[T], []error)) *dataloader.Loader[store.PageKey, store.Page[T]] {
	return dataloader.NewBatchedLoader(func(ctx context.Context, keys []store.PageKey) []*dataloader.Result[store.Page[T]] {
		ps, errs := fetch(ctx, keys)
		out := make([]*dataloader.Result[store.Page[T]], len(keys))
		for i := range keys {
			r := &dataloader.Result[store.Page[T]]{Error: errs[i]}
			if ps != nil {
				r.Data = ps[i]
			}
			out[i] = r
		}
		return out
	}, dataloader.WithWait[store.PageKey, store.Page[T]](wait))
}

type loadersKey struct{}

// loaderBox builds a context's loaders on first use: many operations (and
// most subscription events, and every idle subscription) never load a
// relation, and a full set of loaders is some twenty objects.
type loaderBox struct {
	once  sync.Once
	s     *store.Store
	wait  time.Duration
	built *Loaders
}

func (b *loaderBox) get() *Loaders {
	b.once.Do(func() {
		if b.built == nil {
			b.built = NewLoaders(b.s, b.wait)
		}
	})
	return b.built
}

// WithLoaders returns ctx carrying l.
func WithLoaders(ctx context.Context, l *Loaders) context.Context {
	return context.WithValue(ctx, loadersKey{}, &loaderBox{built: l})
}

// WithFreshLoaders returns ctx carrying loaders of its own, built on first
// use.
func WithFreshLoaders(ctx context.Context, s *store.Store, wait time.Duration) context.Context {
	return context.WithValue(ctx, loadersKey{}, &loaderBox{s: s, wait: wait})
}

// For returns the loaders in ctx.
func For(ctx context.Context) *Loaders {
	return ctx.Value(loadersKey{}).(*loaderBox).get()
}

// LoaderMiddleware gives every request fresh loaders for its viewer (set by
// the auth middleware before it).
func LoaderMiddleware(s *store.Store, wait time.Duration, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		next.ServeHTTP(w, r.WithContext(WithFreshLoaders(r.Context(), s, wait)))
	})
}
