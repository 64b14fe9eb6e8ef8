// Package model holds the GraphQL-facing types that are not domain types:
// scalars, connections, inputs and payloads.
package model

import (
	"fmt"
	"io"
	"strconv"
	"time"

	"github.com/99designs/gqlgen/graphql"

	"mutuo/lending"
)

// MarshalMoney writes m as a decimal string with two fraction digits.
func MarshalMoney(m lending.Money) graphql.Marshaler {
	return graphql.WriterFunc(func(w io.Writer) {
		_, _ = io.WriteString(w, strconv.Quote(m.String()))
	})
}

// UnmarshalMoney accepts only a decimal string ("1500", "1500.5",
// "1500.50"); anything else is BAD_USER_INPUT.
func UnmarshalMoney(v any) (lending.Money, error) {
	s, ok := v.(string)
	if !ok {
		return 0, lending.BadInput("Money must be a decimal string such as \"1500.50\"")
	}
	return lending.ParseMoney(s)
}

// DateLayout is the wire format of the Date scalar.
const DateLayout = "2006-01-02"

// MarshalDate writes t's calendar date ("2026-11-22").
func MarshalDate(t time.Time) graphql.Marshaler {
	return graphql.WriterFunc(func(w io.Writer) {
		_, _ = io.WriteString(w, strconv.Quote(t.Format(DateLayout)))
	})
}

// UnmarshalDate parses "YYYY-MM-DD" to midnight UTC.
func UnmarshalDate(v any) (time.Time, error) {
	s, ok := v.(string)
	if !ok {
		return time.Time{}, lending.BadInput("Date must be a string YYYY-MM-DD")
	}
	t, err := time.Parse(DateLayout, s)
	if err != nil {
		return time.Time{}, lending.BadInput("invalid Date %q", fmt.Sprint(s))
	}
	return t, nil
}
