package lending

import (
	"encoding/base64"
	"strconv"
	"strings"
)

// Kind names a type of object that has a global ID.
type Kind string

// The kinds of object that node(id:) resolves.
const (
	KindUser         Kind = "User"
	KindInvestor     Kind = "Investor"
	KindBorrower     Kind = "Borrower"
	KindLoan         Kind = "Loan"
	KindInvestment   Kind = "Investment"
	KindWallet       Kind = "Wallet"
	KindLedgerEntry  Kind = "LedgerEntry"
	KindDeposit      Kind = "Deposit"
	KindWithdrawal   Kind = "Withdrawal"
	KindChat         Kind = "Chat"
	KindMessage      Kind = "Message"
	KindNotification Kind = "Notification"
)

var kinds = map[Kind]bool{
	KindUser: true, KindInvestor: true, KindBorrower: true, KindLoan: true, KindInvestment: true,
	KindWallet: true, KindLedgerEntry: true, KindDeposit: true, KindWithdrawal: true,
	KindChat: true, KindMessage: true, KindNotification: true,
}

// GlobalID encodes a kind and a database id into an opaque ID that is unique
// across all types.
func GlobalID(k Kind, id int64) string {
	return base64.RawURLEncoding.EncodeToString([]byte(string(k) + ":" + strconv.FormatInt(id, 10)))
}

// ParseGlobalID decodes an ID made by GlobalID. Anything else is
// BAD_USER_INPUT... except that a well-formed ID of a kind we don't know is
// NOT_FOUND, as is a positive id that no row has (the caller's lookup says so).
func ParseGlobalID(s string) (Kind, int64, error) {
	if len(s) == 0 || len(s) > 64 {
		return "", 0, BadInput("invalid ID")
	}
	b, err := base64.RawURLEncoding.Strict().DecodeString(s)
	if err != nil {
		return "", 0, BadInput("invalid ID")
	}
	k, n, ok := strings.Cut(string(b), ":")
	if !ok {
		return "", 0, BadInput("invalid ID")
	}
	id, err := strconv.ParseInt(n, 10, 64)
	if err != nil || id <= 0 || strconv.FormatInt(id, 10) != n {
		return "", 0, BadInput("invalid ID")
	}
	if !kinds[Kind(k)] {
		return "", 0, BadInput("invalid ID")
	}
	return Kind(k), id, nil
}

// ParseIDOf decodes a global ID that must be of kind want; an ID of another
// kind is NOT_FOUND (there is no such object of that type).
func ParseIDOf(want Kind, s string) (int64, error) {
	k, id, err := ParseGlobalID(s)
	if err != nil {
		return 0, err
	}
	if k != want {
		return 0, NotFound(string(want))
	}
	return id, nil
}
