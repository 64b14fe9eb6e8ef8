package model

import (
	"bytes"
	"encoding/json"
	"strconv"
	"testing"

	"mutuo/lending"
)

// FuzzUnmarshalMoney checks the Money scalar as gqlgen calls it: a string is
// exactly ParseMoney's decision, anything that is not a string (numbers as
// JSON decodes them, json.Number, bools, nil) is BAD_USER_INPUT, it never
// panics, and an accepted value marshals to a JSON string that unmarshals
// back to itself.
//
//	go test -run '^$' -fuzz FuzzUnmarshalMoney -fuzztime 20s ./graph/model
func FuzzUnmarshalMoney(f *testing.F) {
	for _, s := range []string{"1500.50", "0", "0.01", "1.234", "-1", "1e3", "", "10000000000000.00", "10000000000000.01", " 1"} {
		f.Add(s, int64(150050), 1500.5)
	}
	f.Fuzz(func(t *testing.T, s string, i int64, fl float64) {
		m, err := UnmarshalMoney(s)
		pm, perr := lending.ParseMoney(s)
		if (err == nil) != (perr == nil) || m != pm {
			t.Fatalf("UnmarshalMoney(%q) = %d, %v; ParseMoney = %d, %v", s, m, err, pm, perr)
		}
		if err != nil && !lending.IsCode(err, lending.CodeBadUserInput) {
			t.Fatalf("UnmarshalMoney(%q): %v is not BAD_USER_INPUT", s, err)
		}
		if err == nil {
			var buf bytes.Buffer
			MarshalMoney(m).MarshalGQL(&buf)
			var wire string
			if e := json.Unmarshal(buf.Bytes(), &wire); e != nil {
				t.Fatalf("MarshalMoney(%d) wrote %q, not a JSON string: %v", m, buf.String(), e)
			}
			if m2, e := UnmarshalMoney(wire); e != nil || m2 != m {
				t.Fatalf("MarshalMoney(%d) = %s unmarshals to %d, %v", m, buf.String(), m2, e)
			}
		}
		for _, v := range []any{i, fl, int(i), json.Number(strconv.FormatInt(i, 10)), json.Number(s), []byte(s), &s, true, nil,
			map[string]any{"amount": s}, []any{s}} {
			if m, err := UnmarshalMoney(v); err == nil || !lending.IsCode(err, lending.CodeBadUserInput) {
				t.Fatalf("UnmarshalMoney(%T %v) = %d, %v: want BAD_USER_INPUT", v, v, m, err)
			}
		}
	})
}
