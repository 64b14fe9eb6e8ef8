package model

import (
	"context"

	"mutuo/lending"
)

// PageInfo is Relay's page information.
type PageInfo struct {
	HasNextPage     bool
	HasPreviousPage bool
	StartCursor     *string
	EndCursor       *string
}

// CountFunc computes a connection's totalCount when, and only when, a client
// asks for it.
type CountFunc func(ctx context.Context) (int, error)

func count(ctx context.Context, f CountFunc) (int, error) {
	if f == nil {
		return 0, nil
	}
	return f(ctx)
}

// LoanEdge is one Loan in a connection.
type LoanEdge struct {
	Cursor string
	Node   *lending.Loan
}

// LoanConnection is a page of Loans.
type LoanConnection struct {
	Edges    []*LoanEdge
	PageInfo *PageInfo
	Count    CountFunc
}

// TotalCount is the number of Loans across all pages.
func (c *LoanConnection) TotalCount(ctx context.Context) (int, error) { return count(ctx, c.Count) }

// BorrowerEdge is one Borrower in a connection.
type BorrowerEdge struct {
	Cursor string
	Node   *lending.Borrower
}

// BorrowerConnection is a page of Borrowers.
type BorrowerConnection struct {
	Edges    []*BorrowerEdge
	PageInfo *PageInfo
	Count    CountFunc
}

// TotalCount is the number of Borrowers across all pages.
func (c *BorrowerConnection) TotalCount(ctx context.Context) (int, error) { return count(ctx, c.Count) }

// InvestmentEdge is one Investment in a connection.
type InvestmentEdge struct {
	Cursor string
	Node   *lending.Investment
}

// InvestmentConnection is a page of Investments.
type InvestmentConnection struct {
	Edges    []*InvestmentEdge
	PageInfo *PageInfo
	Count    CountFunc
}

// TotalCount is the number of Investments across all pages.
func (c *InvestmentConnection) TotalCount(ctx context.Context) (int, error) {
	return count(ctx, c.Count)
}

// LedgerEntryEdge is one LedgerEntry in a connection.
type LedgerEntryEdge struct {
	Cursor string
	Node   *lending.LedgerEntry
}

// LedgerEntryConnection is a page of LedgerEntrys.
type LedgerEntryConnection struct {
	Edges    []*LedgerEntryEdge
	PageInfo *PageInfo
}

// ChatEdge is one Chat in a connection.
type ChatEdge struct {
	Cursor string
	Node   *lending.Chat
}

// ChatConnection is a page of Chats.
type ChatConnection struct {
	Edges    []*ChatEdge
	PageInfo *PageInfo
}

// MessageEdge is one Message in a connection.
type MessageEdge struct {
	Cursor string
	Node   *lending.Message
}

// MessageConnection is a page of Messages.
type MessageConnection struct {
	Edges    []*MessageEdge
	PageInfo *PageInfo
}

// NotificationEdge is one Notification in a connection.
type NotificationEdge struct {
	Cursor string
	Node   *lending.Notification
}

// NotificationConnection is a page of Notifications.
type NotificationConnection struct {
	Edges    []*NotificationEdge
	PageInfo *PageInfo
	Count    CountFunc
}

// TotalCount is the number of Notifications across all pages.
func (c *NotificationConnection) TotalCount(ctx context.Context) (int, error) {
	return count(ctx, c.Count)
}

// Node is anything with a global ID that node(id:) resolves.
type Node interface {
	GID() string
}
