package store

import (
	"context"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5"

	"mutuo/lending"
)

// Batch loads for the dataloaders: each takes many keys, runs one statement
// and returns a map (the loader puts results in key order). Ownership is in
// the SQL: a wallet, chat or message the viewer may not see is simply absent.

func byKey[K comparable, T any](ctx context.Context, q querier, scan func(pgx.Row) (T, error), key func(T) K, sql string, args ...any) (map[K]T, error) {
	rows, err := collect(ctx, q, scan, sql, args...)
	if err != nil {
		return nil, err
	}
	m := make(map[K]T, len(rows))
	for _, r := range rows {
		m[key(r)] = r
	}
	return m, nil
}

// UsersByID loads users.
func (s *Store) UsersByID(ctx context.Context, ids []int64) (map[int64]*lending.User, error) {
	return byKey(ctx, s.pool, scanUserRow, func(u *lending.User) int64 { return u.ID },
		`SELECT `+userCols+` FROM users u WHERE u.id = ANY($1)`, ids)
}

// InvestorsByID loads investors.
func (s *Store) InvestorsByID(ctx context.Context, ids []int64) (map[int64]*lending.Investor, error) {
	return byKey(ctx, s.pool, scanInvestor, func(i *lending.Investor) int64 { return i.ID },
		`SELECT `+investorCols+` FROM investors iv WHERE iv.id = ANY($1)`, ids)
}

// InvestorsByUserID loads investors keyed by their user id.
func (s *Store) InvestorsByUserID(ctx context.Context, userIDs []int64) (map[int64]*lending.Investor, error) {
	return byKey(ctx, s.pool, scanInvestor, func(i *lending.Investor) int64 { return i.UserID },
		`SELECT `+investorCols+` FROM investors iv WHERE iv.user_id = ANY($1)`, userIDs)
}

// BorrowersByID loads borrowers.
func (s *Store) BorrowersByID(ctx context.Context, ids []int64) (map[int64]*lending.Borrower, error) {
	return byKey(ctx, s.pool, scanBorrower, func(b *lending.Borrower) int64 { return b.ID },
		`SELECT `+borrowerCols+` FROM borrowers b WHERE b.id = ANY($1)`, ids)
}

// BorrowersByUserID loads borrowers keyed by their user id.
func (s *Store) BorrowersByUserID(ctx context.Context, userIDs []int64) (map[int64]*lending.Borrower, error) {
	return byKey(ctx, s.pool, scanBorrower, func(b *lending.Borrower) int64 { return b.UserID },
		`SELECT `+borrowerCols+` FROM borrowers b WHERE b.user_id = ANY($1)`, userIDs)
}

// LoansByID loads loans.
func (s *Store) LoansByID(ctx context.Context, ids []int64) (map[int64]*lending.Loan, error) {
	return byKey(ctx, s.pool, scanLoan, func(l *lending.Loan) int64 { return l.ID },
		`SELECT `+loanCols+` FROM loans l WHERE l.id = ANY($1)`, ids)
}

// WalletsByUserID loads the wallets of the given users that the viewer may
// see (their own; every one for an admin).
func (s *Store) WalletsByUserID(ctx context.Context, v lending.Viewer, userIDs []int64) (map[int64]*lending.Wallet, error) {
	return byKey(ctx, s.pool, scanWallet, func(w *lending.Wallet) int64 { return w.UserID },
		`SELECT `+walletCols+` FROM wallets w WHERE w.user_id = ANY($1) AND w.kind = 'USER' AND (w.user_id = $2 OR $3)`,
		userIDs, v.UserID, v.IsAdmin())
}

// ChatsByID loads the chats the viewer takes part in.
func (s *Store) ChatsByID(ctx context.Context, v lending.Viewer, ids []int64) (map[int64]*lending.Chat, error) {
	return byKey(ctx, s.pool, scanChat, func(c *lending.Chat) int64 { return c.ID },
		`SELECT `+chatCols+` FROM chats c JOIN chat_members m ON m.chat_id = c.id AND m.user_id = $2 WHERE c.id = ANY($1)`,
		ids, v.UserID)
}

// LastMessagesByChat loads the newest message of each of the viewer's chats.
func (s *Store) LastMessagesByChat(ctx context.Context, v lending.Viewer, chatIDs []int64) (map[int64]*lending.Message, error) {
	return byKey(ctx, s.pool, scanMessage, func(m *lending.Message) int64 { return m.ChatID }, `
		SELECT `+messageCols+` FROM chat_members cm
		CROSS JOIN LATERAL (SELECT * FROM messages m WHERE m.chat_id = cm.chat_id ORDER BY m.id DESC LIMIT 1) m
		WHERE cm.chat_id = ANY($1) AND cm.user_id = $2`, chatIDs, v.UserID)
}

// UnreadCountsByChat counts, per chat of the viewer's, the messages from
// others after the viewer's read position.
func (s *Store) UnreadCountsByChat(ctx context.Context, v lending.Viewer, chatIDs []int64) (map[int64]int, error) {
	return counts(ctx, s.pool, `
		SELECT cm.chat_id, (SELECT count(*) FROM messages m
			WHERE m.chat_id = cm.chat_id AND m.id > cm.last_read_message_id AND m.sender_id <> cm.user_id)
		FROM chat_members cm WHERE cm.chat_id = ANY($1) AND cm.user_id = $2`, chatIDs, v.UserID)
}

// InstallmentsByLoan loads each loan's schedule, in installment order.
func (s *Store) InstallmentsByLoan(ctx context.Context, loanIDs []int64) (map[int64][]*lending.Installment, error) {
	rows, err := collect(ctx, s.pool, scanInstallment,
		`SELECT `+installmentCols+` FROM installments n WHERE n.loan_id = ANY($1) ORDER BY n.loan_id, n.number`, loanIDs)
	if err != nil {
		return nil, fmt.Errorf("load installments: %w", err)
	}
	m := make(map[int64][]*lending.Installment)
	for _, r := range rows {
		m[r.LoanID] = append(m[r.LoanID], r)
	}
	return m, nil
}

// InvestorCountsByLoan counts the distinct investors of each loan.
func (s *Store) InvestorCountsByLoan(ctx context.Context, loanIDs []int64) (map[int64]int, error) {
	return counts(ctx, s.pool, `SELECT loan_id, count(DISTINCT investor_id) FROM investments
		WHERE loan_id = ANY($1) GROUP BY loan_id`, loanIDs)
}

func counts(ctx context.Context, q querier, sql string, args ...any) (map[int64]int, error) {
	rows, err := q.Query(ctx, sql, args...)
	if err != nil {
		return nil, fmt.Errorf("count: %w", err)
	}
	defer rows.Close()
	m := map[int64]int{}
	for rows.Next() {
		var k int64
		var n int
		if err := rows.Scan(&k, &n); err != nil {
			return nil, err
		}
		m[k] = n
	}
	return m, rows.Err()
}

// ---------------------------------------------------------------- nested pages

// PageKey asks for one page of a parent's child listing: Limit rows after
// the cursor After (empty for the first page). Filter narrows some
// listings (a borrower's loans by status: comma-separated).
type PageKey struct {
	Parent int64
	Limit  int
	After  string
	Filter string
}

// nestedTags name the nested listings (cursors of one don't fit another).
const (
	TagLoanInvestments     = "loan.investments"
	TagInvestorInvestments = "investor.investments"
	TagBorrowerLoans       = "borrower.loans"
	TagWalletEntries       = "wallet.entries"
	TagChatMessages        = "chat.messages"
	TagNotifications       = "notifications" // the top-level notifications listing
)

// nestedPages loads one page per key in one statement: sql must select the
// key's 1-based ordinal first and then the row, from
// unnest($1::bigint[], $2::bigint[], $3::int[]) WITH ORDINALITY AS p(parent, after_id, lim, ord),
// fetching lim+1 rows per parent. extra args follow as $4…
func nestedPages[T any](ctx context.Context, q querier, keys []PageKey, tag string, scan func(pgx.Row) (T, error),
	id func(T) int64, sql string, extra ...any) ([]Page[T], []error) {
	errs := make([]error, len(keys))
	parents := make([]int64, len(keys))
	afters := make([]int64, len(keys))
	limits := make([]int32, len(keys))
	for i, k := range keys {
		parents[i], limits[i] = k.Parent, int32(k.Limit)
		if k.After != "" {
			c, err := DecodeCursor(k.After, tag)
			if err != nil {
				errs[i] = err
				continue
			}
			afters[i] = c.ID
		}
	}
	rows, err := q.Query(ctx, sql, append([]any{parents, afters, limits}, extra...)...)
	if err != nil {
		return nil, fill(errs, fmt.Errorf("load %s: %w", tag, err))
	}
	defer rows.Close()
	grouped := make([][]T, len(keys))
	for rows.Next() {
		var ord int
		v, err := scan(prefixed{rows, &ord})
		if err != nil {
			return nil, fill(errs, fmt.Errorf("scan %s: %w", tag, err))
		}
		grouped[ord-1] = append(grouped[ord-1], v)
	}
	if err := rows.Err(); err != nil {
		return nil, fill(errs, fmt.Errorf("load %s: %w", tag, err))
	}
	pages := make([]Page[T], len(keys))
	for i, k := range keys {
		pages[i] = pageOf(grouped[i], k.Limit, k.After != "", func(v T) Cursor { return Cursor{Tag: tag, ID: id(v)} })
	}
	return pages, errs
}

func fill(errs []error, err error) []error {
	for i := range errs {
		if errs[i] == nil {
			errs[i] = err
		}
	}
	return errs
}

// prefixed scans a leading ordinal column before handing the rest to a scanner.
type prefixed struct {
	rows pgx.Rows
	ord  *int
}

func (p prefixed) Scan(dest ...any) error { return p.rows.Scan(append([]any{p.ord}, dest...)...) }

const unnestKeys = `unnest($1::bigint[], $2::bigint[], $3::int[]) WITH ORDINALITY AS p(parent, after_id, lim, ord)`

// InvestmentsByLoan pages each loan's investments, oldest first.
func (s *Store) InvestmentsByLoan(ctx context.Context, keys []PageKey) ([]Page[*lending.Investment], []error) {
	return nestedPages(ctx, s.pool, keys, TagLoanInvestments, scanInvestment, func(i *lending.Investment) int64 { return i.ID }, `
		SELECT p.ord, `+investmentCols+` FROM `+unnestKeys+`
		CROSS JOIN LATERAL (SELECT * FROM investments i WHERE i.loan_id = p.parent AND i.id > p.after_id
			ORDER BY i.id LIMIT p.lim + 1) i`)
}

// InvestmentsByInvestor pages each investor's investments, newest first.
func (s *Store) InvestmentsByInvestor(ctx context.Context, keys []PageKey) ([]Page[*lending.Investment], []error) {
	return nestedPages(ctx, s.pool, keys, TagInvestorInvestments, scanInvestment, func(i *lending.Investment) int64 { return i.ID }, `
		SELECT p.ord, `+investmentCols+` FROM `+unnestKeys+`
		CROSS JOIN LATERAL (SELECT * FROM investments i WHERE i.investor_id = p.parent AND (p.after_id = 0 OR i.id < p.after_id)
			ORDER BY i.id DESC LIMIT p.lim + 1) i`)
}

// LoansByBorrower pages each borrower's loans, newest first, narrowed by the
// key's Filter (comma-separated statuses; empty for all).
func (s *Store) LoansByBorrower(ctx context.Context, keys []PageKey) ([]Page[*lending.Loan], []error) {
	filters := make([]string, len(keys))
	for i, k := range keys {
		filters[i] = k.Filter
	}
	return nestedPages(ctx, s.pool, keys, TagBorrowerLoans, scanLoan, func(l *lending.Loan) int64 { return l.ID }, `
		SELECT p.ord, `+loanCols+` FROM `+unnestKeys+`
		CROSS JOIN LATERAL (SELECT * FROM loans l WHERE l.borrower_id = p.parent AND (p.after_id = 0 OR l.id < p.after_id)
			AND (($4::text[])[p.ord] = '' OR l.status = ANY(string_to_array(($4::text[])[p.ord], ',')))
			ORDER BY l.id DESC LIMIT p.lim + 1) l`, filters)
}

// EntriesByWallet pages each wallet's ledger entries, newest first; wallets
// the viewer may not see have none.
func (s *Store) EntriesByWallet(ctx context.Context, v lending.Viewer, keys []PageKey) ([]Page[*lending.LedgerEntry], []error) {
	return nestedPages(ctx, s.pool, keys, TagWalletEntries, scanEntry, func(e *lending.LedgerEntry) int64 { return e.ID }, `
		SELECT p.ord, `+entryCols+` FROM `+unnestKeys+`
		JOIN wallets w ON w.id = p.parent AND w.kind = 'USER' AND (w.user_id = $4 OR $5)
		CROSS JOIN LATERAL (SELECT * FROM ledger_entries e WHERE e.wallet_id = p.parent AND (p.after_id = 0 OR e.id < p.after_id)
			ORDER BY e.id DESC LIMIT p.lim + 1) e`, v.UserID, v.IsAdmin())
}

// MessagesByChat pages each chat's messages backwards from the cursor
// (Limit newest before it), returned oldest first; chats the viewer is not
// in have none. In the page, HasPrevious means older messages exist.
func (s *Store) MessagesByChat(ctx context.Context, v lending.Viewer, keys []PageKey) ([]Page[*lending.Message], []error) {
	pages, errs := nestedPages(ctx, s.pool, keys, TagChatMessages, scanMessage, func(m *lending.Message) int64 { return m.ID }, `
		SELECT p.ord, `+messageCols+` FROM `+unnestKeys+`
		JOIN chat_members cm ON cm.chat_id = p.parent AND cm.user_id = $4
		CROSS JOIN LATERAL (SELECT * FROM messages m WHERE m.chat_id = p.parent AND (p.after_id = 0 OR m.id < p.after_id)
			ORDER BY m.id DESC LIMIT p.lim + 1) m`, v.UserID)
	for i := range pages {
		p := &pages[i]
		// fetched newest first: "next" in fetch order is older, i.e. previous
		p.HasNext, p.HasPrevious = p.HasPrevious, p.HasNext
		reverse(p.Items)
		reverse(p.Cursors)
	}
	return pages, errs
}

func reverse[T any](s []T) {
	for i, j := 0, len(s)-1; i < j; i, j = i+1, j-1 {
		s[i], s[j] = s[j], s[i]
	}
}

// CountInvestmentsByLoan counts each loan's investments.
func (s *Store) CountInvestmentsByLoan(ctx context.Context, loanIDs []int64) (map[int64]int, error) {
	return counts(ctx, s.pool, `SELECT loan_id, count(*) FROM investments WHERE loan_id = ANY($1) GROUP BY loan_id`, loanIDs)
}

// CountInvestmentsByInvestor counts each investor's investments.
func (s *Store) CountInvestmentsByInvestor(ctx context.Context, investorIDs []int64) (map[int64]int, error) {
	return counts(ctx, s.pool, `SELECT investor_id, count(*) FROM investments WHERE investor_id = ANY($1) GROUP BY investor_id`, investorIDs)
}

// CountLoansByBorrower counts each borrower's loans whose status is in
// statuses (all when empty).
func (s *Store) CountLoansByBorrower(ctx context.Context, borrowerIDs []int64, statuses []string) (map[int64]int, error) {
	return counts(ctx, s.pool, `SELECT borrower_id, count(*) FROM loans
		WHERE borrower_id = ANY($1) AND (cardinality($2::text[]) = 0 OR status = ANY($2)) GROUP BY borrower_id`, borrowerIDs, statuses)
}

// StatusFilter is the PageKey.Filter form of a status list.
func StatusFilter(statuses []lending.LoanStatus) string {
	return strings.Join(enumStrings(statuses), ",")
}
