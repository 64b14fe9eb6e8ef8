package store

import (
	"context"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"mutuo/lending"
)

// collect runs q and scans every row with scan.
func collect[T any](ctx context.Context, q querier, scan func(pgx.Row) (T, error), sql string, args ...any) ([]T, error) {
	rows, err := q.Query(ctx, sql, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []T
	for rows.Next() {
		v, err := scan(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, v)
	}
	return out, rows.Err()
}

type querier interface {
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

// one returns the single row of a query, or NOT_FOUND naming what.
func one[T any](ctx context.Context, q querier, what string, scan func(pgx.Row) (T, error), sql string, args ...any) (T, error) {
	v, err := scan(q.QueryRow(ctx, sql, args...))
	if errors.Is(err, pgx.ErrNoRows) {
		var zero T
		return zero, lending.NotFound(what)
	}
	if err != nil {
		return v, fmt.Errorf("load %s: %w", what, err)
	}
	return v, nil
}

// ---------------------------------------------------------------- marketplace

// LoanFilter narrows the marketplace. A nil Statuses means FUNDING only; an
// empty one means every status.
type LoanFilter struct {
	Statuses      []lending.LoanStatus
	Grades        []lending.RiskGrade
	MinAnnualRate *float64
	MaxTermMonths *int
}

// LoanOrderField is a marketplace sort key.
type LoanOrderField string

// Sort keys.
const (
	OrderCreatedAt       LoanOrderField = "CREATED_AT"
	OrderAnnualRate      LoanOrderField = "ANNUAL_RATE"
	OrderAmount          LoanOrderField = "AMOUNT"
	OrderFundingDeadline LoanOrderField = "FUNDING_DEADLINE"
)

var loanOrderColumn = map[LoanOrderField]string{
	OrderCreatedAt:       "l.created_at",
	OrderAnnualRate:      "l.annual_rate_bps",
	OrderAmount:          "l.amount",
	OrderFundingDeadline: "l.funding_deadline",
}

// LoanOrder is a marketplace order; id in the same direction breaks ties.
type LoanOrder struct {
	Field LoanOrderField
	Desc  bool
}

// where builds the filter's SQL conditions, numbering parameters after args.
func (f LoanFilter) where(args []any) (string, []any, error) {
	conds := []string{"true"}
	statuses := f.Statuses
	if statuses == nil {
		statuses = []lending.LoanStatus{lending.LoanFunding}
	}
	if len(statuses) > 0 {
		args = append(args, enumStrings(statuses))
		conds = append(conds, fmt.Sprintf("l.status = ANY($%d)", len(args)))
	}
	if len(f.Grades) > 0 {
		args = append(args, enumStrings(f.Grades))
		conds = append(conds, fmt.Sprintf("l.grade = ANY($%d)", len(args)))
	}
	if f.MinAnnualRate != nil {
		r := *f.MinAnnualRate
		if math.IsNaN(r) || math.IsInf(r, 0) || r < 0 || r > 10 {
			return "", nil, lending.BadInput("minAnnualRate must be a fraction between 0 and 10")
		}
		args = append(args, int(math.Ceil(r*10000-1e-9)))
		conds = append(conds, fmt.Sprintf("l.annual_rate_bps >= $%d", len(args)))
	}
	if f.MaxTermMonths != nil {
		if *f.MaxTermMonths < 1 || *f.MaxTermMonths > 360 {
			return "", nil, lending.BadInput("maxTermMonths must be between 1 and 360")
		}
		args = append(args, *f.MaxTermMonths)
		conds = append(conds, fmt.Sprintf("l.term_months <= $%d", len(args)))
	}
	return strings.Join(conds, " AND "), args, nil
}

func enumStrings[T ~string](vs []T) []string {
	out := make([]string, len(vs))
	for i, v := range vs {
		out[i] = string(v)
	}
	return out
}

func (o LoanOrder) tag() string {
	d := "asc"
	if o.Desc {
		d = "desc"
	}
	return "loans:" + string(o.Field) + ":" + d
}

// loanSortKey is the text form of a loan's sort key for cursors.
func loanSortKey(l *lending.Loan, f LoanOrderField) string {
	switch f {
	case OrderAnnualRate:
		return strconv.Itoa(l.AnnualRateBps)
	case OrderAmount:
		return strconv.FormatInt(int64(l.Amount), 10)
	case OrderFundingDeadline:
		return strconv.FormatInt(l.FundingDeadline.UnixMicro(), 10)
	default:
		return strconv.FormatInt(l.CreatedAt.UnixMicro(), 10)
	}
}

// sortKeyParam turns a cursor's key back into a query parameter.
func sortKeyParam(f LoanOrderField, key string) (any, error) {
	n, err := strconv.ParseInt(key, 10, 64)
	if err != nil {
		return nil, lending.BadInput("invalid cursor")
	}
	switch f {
	case OrderCreatedAt, OrderFundingDeadline:
		return time.UnixMicro(n).UTC(), nil
	default:
		return n, nil
	}
}

// Loans is the marketplace listing: one page in the given order.
// Errors: BAD_USER_INPUT for a bad filter or a cursor of another listing.
func (s *Store) Loans(ctx context.Context, f LoanFilter, o LoanOrder, limit int, after *string) (Page[*lending.Loan], error) {
	col, ok := loanOrderColumn[o.Field]
	if !ok {
		return Page[*lending.Loan]{}, lending.BadInput("unknown order field %q", o.Field)
	}
	where, args, err := f.where(nil)
	if err != nil {
		return Page[*lending.Loan]{}, err
	}
	cmp, dir := ">", "ASC"
	if o.Desc {
		cmp, dir = "<", "DESC"
	}
	if after != nil {
		c, err := DecodeCursor(*after, o.tag())
		if err != nil {
			return Page[*lending.Loan]{}, err
		}
		key, err := sortKeyParam(o.Field, c.Key)
		if err != nil {
			return Page[*lending.Loan]{}, err
		}
		args = append(args, key, c.ID)
		where += fmt.Sprintf(" AND (%s, l.id) %s ($%d, $%d)", col, cmp, len(args)-1, len(args))
	}
	args = append(args, limit+1)
	sql := fmt.Sprintf(`SELECT %s FROM loans l WHERE %s ORDER BY %s %s, l.id %s LIMIT $%d`, loanCols, where, col, dir, dir, len(args))
	rows, err := collect(ctx, s.pool, scanLoan, sql, args...)
	if err != nil {
		return Page[*lending.Loan]{}, fmt.Errorf("list loans: %w", err)
	}
	tag := o.tag()
	return pageOf(rows, limit, after != nil, func(l *lending.Loan) Cursor {
		return Cursor{Tag: tag, Key: loanSortKey(l, o.Field), ID: l.ID}
	}), nil
}

// CountLoans counts the loans that match f.
func (s *Store) CountLoans(ctx context.Context, f LoanFilter) (int, error) {
	where, args, err := f.where(nil)
	if err != nil {
		return 0, err
	}
	var n int
	if err := s.pool.QueryRow(ctx, `SELECT count(*) FROM loans l WHERE `+where, args...).Scan(&n); err != nil {
		return 0, fmt.Errorf("count loans: %w", err)
	}
	return n, nil
}

// BorrowerFilter narrows the borrowers listing (borrowers with a loan on the
// marketplace).
type BorrowerFilter struct {
	Search string
	Grades []lending.RiskGrade
}

func (f BorrowerFilter) where(args []any) (string, []any, error) {
	conds := []string{"EXISTS (SELECT 1 FROM loans l WHERE l.borrower_id = b.id AND l.status = 'FUNDING')"}
	if q := strings.TrimSpace(f.Search); q != "" {
		if len([]rune(q)) > 100 {
			return "", nil, lending.BadInput("search must be at most 100 characters")
		}
		esc := strings.NewReplacer(`\`, `\\`, `%`, `\%`, `_`, `\_`).Replace(q)
		args = append(args, "%"+esc+"%")
		conds = append(conds, fmt.Sprintf("b.display_name ILIKE $%d", len(args)))
	}
	if len(f.Grades) > 0 {
		args = append(args, enumStrings(f.Grades))
		conds = append(conds, fmt.Sprintf("b.grade = ANY($%d)", len(args)))
	}
	return strings.Join(conds, " AND "), args, nil
}

// Borrowers lists borrowers with a FUNDING loan, by display name.
// Errors: BAD_USER_INPUT.
func (s *Store) Borrowers(ctx context.Context, f BorrowerFilter, limit int, after *string) (Page[*lending.Borrower], error) {
	where, args, err := f.where(nil)
	if err != nil {
		return Page[*lending.Borrower]{}, err
	}
	const tag = "borrowers"
	if after != nil {
		c, err := DecodeCursor(*after, tag)
		if err != nil {
			return Page[*lending.Borrower]{}, err
		}
		args = append(args, c.Key, c.ID)
		where += fmt.Sprintf(" AND (b.display_name, b.id) > ($%d, $%d)", len(args)-1, len(args))
	}
	args = append(args, limit+1)
	rows, err := collect(ctx, s.pool, scanBorrower, fmt.Sprintf(
		`SELECT %s FROM borrowers b WHERE %s ORDER BY b.display_name, b.id LIMIT $%d`, borrowerCols, where, len(args)), args...)
	if err != nil {
		return Page[*lending.Borrower]{}, fmt.Errorf("list borrowers: %w", err)
	}
	return pageOf(rows, limit, after != nil, func(b *lending.Borrower) Cursor {
		return Cursor{Tag: tag, Key: b.DisplayName, ID: b.ID}
	}), nil
}

// CountBorrowers counts the borrowers that match f.
func (s *Store) CountBorrowers(ctx context.Context, f BorrowerFilter) (int, error) {
	where, args, err := f.where(nil)
	if err != nil {
		return 0, err
	}
	var n int
	if err := s.pool.QueryRow(ctx, `SELECT count(*) FROM borrowers b WHERE `+where, args...).Scan(&n); err != nil {
		return 0, fmt.Errorf("count borrowers: %w", err)
	}
	return n, nil
}

// ---------------------------------------------------------------- the viewer's own

// Chats lists the viewer's chats, most recently active first.
func (s *Store) Chats(ctx context.Context, v lending.Viewer, limit int, after *string) (Page[*lending.Chat], error) {
	const tag = "chats"
	args := []any{v.UserID}
	where := "m.user_id = $1"
	if after != nil {
		c, err := DecodeCursor(*after, tag)
		if err != nil {
			return Page[*lending.Chat]{}, err
		}
		n, err := strconv.ParseInt(c.Key, 10, 64)
		if err != nil {
			return Page[*lending.Chat]{}, lending.BadInput("invalid cursor")
		}
		args = append(args, time.UnixMicro(n).UTC(), c.ID)
		where += " AND (c.last_message_at, c.id) < ($2, $3)"
	}
	args = append(args, limit+1)
	rows, err := collect(ctx, s.pool, scanChat, fmt.Sprintf(`
		SELECT %s FROM chat_members m JOIN chats c ON c.id = m.chat_id
		WHERE %s ORDER BY c.last_message_at DESC, c.id DESC LIMIT $%d`, chatCols, where, len(args)), args...)
	if err != nil {
		return Page[*lending.Chat]{}, fmt.Errorf("list chats: %w", err)
	}
	return pageOf(rows, limit, after != nil, func(c *lending.Chat) Cursor {
		return Cursor{Tag: tag, Key: strconv.FormatInt(c.LastMessageAt.UnixMicro(), 10), ID: c.ID}
	}), nil
}

// Notifications lists the viewer's notifications, newest first.
func (s *Store) Notifications(ctx context.Context, v lending.Viewer, unreadOnly bool, limit int, after *string) (Page[*lending.Notification], error) {
	const tag = TagNotifications
	id, err := afterID(after, tag)
	if err != nil {
		return Page[*lending.Notification]{}, err
	}
	rows, err := collect(ctx, s.pool, scanNotification, `
		SELECT `+notificationCols+` FROM notifications nt
		WHERE nt.user_id = $1 AND ($2 = 0 OR nt.id < $2) AND (NOT $3 OR nt.read_at IS NULL)
		ORDER BY nt.id DESC LIMIT $4`, v.UserID, id, unreadOnly, limit+1)
	if err != nil {
		return Page[*lending.Notification]{}, fmt.Errorf("list notifications: %w", err)
	}
	return pageOf(rows, limit, after != nil, func(n *lending.Notification) Cursor { return Cursor{Tag: tag, ID: n.ID} }), nil
}

// CountNotifications counts the viewer's (unread) notifications.
func (s *Store) CountNotifications(ctx context.Context, v lending.Viewer, unreadOnly bool) (int, error) {
	var n int
	err := s.pool.QueryRow(ctx, `SELECT count(*) FROM notifications nt WHERE nt.user_id = $1 AND (NOT $2 OR nt.read_at IS NULL)`,
		v.UserID, unreadOnly).Scan(&n)
	if err != nil {
		return 0, fmt.Errorf("count notifications: %w", err)
	}
	return n, nil
}

// ---------------------------------------------------------------- node(id:)

// Node loads the object of kind k and id that the viewer may see.
// Errors: NOT_FOUND when it does not exist or is not the viewer's to see.
// Public objects (users, investors, borrowers, loans, investments) are for
// every signed-in user; wallets, ledger entries, deposits and withdrawals for
// their owner and admins; chats and messages for their participants;
// notifications for their owner.
func (s *Store) Node(ctx context.Context, v lending.Viewer, k lending.Kind, id int64) (any, error) {
	q, admin := s.pool, v.IsAdmin()
	switch k {
	case lending.KindUser:
		return one(ctx, q, "User", scanUserRow, `SELECT `+userCols+` FROM users u WHERE u.id = $1`, id)
	case lending.KindInvestor:
		return one(ctx, q, "Investor", scanInvestor, `SELECT `+investorCols+` FROM investors iv WHERE iv.id = $1`, id)
	case lending.KindBorrower:
		return one(ctx, q, "Borrower", scanBorrower, `SELECT `+borrowerCols+` FROM borrowers b WHERE b.id = $1`, id)
	case lending.KindLoan:
		return one(ctx, q, "Loan", scanLoan, `SELECT `+loanCols+` FROM loans l WHERE l.id = $1`, id)
	case lending.KindInvestment:
		return one(ctx, q, "Investment", scanInvestment, `SELECT `+investmentCols+` FROM investments i WHERE i.id = $1`, id)
	case lending.KindWallet:
		return one(ctx, q, "Wallet", scanWallet, `SELECT `+walletCols+` FROM wallets w
			WHERE w.id = $1 AND w.kind = 'USER' AND (w.user_id = $2 OR $3)`, id, v.UserID, admin)
	case lending.KindLedgerEntry:
		return one(ctx, q, "LedgerEntry", scanEntry, `SELECT `+entryCols+` FROM ledger_entries e JOIN wallets w ON w.id = e.wallet_id
			WHERE e.id = $1 AND w.kind = 'USER' AND (w.user_id = $2 OR $3)`, id, v.UserID, admin)
	case lending.KindDeposit:
		return one(ctx, q, "Deposit", scanDeposit, `SELECT `+depositCols+` FROM deposits d WHERE d.id = $1 AND (d.user_id = $2 OR $3)`, id, v.UserID, admin)
	case lending.KindWithdrawal:
		return one(ctx, q, "Withdrawal", scanWithdrawal, `SELECT `+withdrawalCols+` FROM withdrawals wd WHERE wd.id = $1 AND (wd.user_id = $2 OR $3)`, id, v.UserID, admin)
	case lending.KindChat:
		return one(ctx, q, "Chat", scanChat, `SELECT `+chatCols+` FROM chats c
			WHERE c.id = $1 AND EXISTS (SELECT 1 FROM chat_members m WHERE m.chat_id = c.id AND m.user_id = $2)`, id, v.UserID)
	case lending.KindMessage:
		return one(ctx, q, "Message", scanMessage, `SELECT `+messageCols+` FROM messages m
			WHERE m.id = $1 AND EXISTS (SELECT 1 FROM chat_members cm WHERE cm.chat_id = m.chat_id AND cm.user_id = $2)`, id, v.UserID)
	case lending.KindNotification:
		return one(ctx, q, "Notification", scanNotification, `SELECT `+notificationCols+` FROM notifications nt
			WHERE nt.id = $1 AND nt.user_id = $2`, id, v.UserID)
	}
	return nil, lending.NotFound(string(k))
}
