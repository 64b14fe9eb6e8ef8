package store

// An internal test (package store) importing nothing that imports store, so
// it can live beside the store_test files that use internal/testenv.

import (
	"encoding/base64"
	"strings"
	"testing"

	"mutuo/lending"
)

// FuzzDecodeCursor feeds DecodeCursor arbitrary strings: it must never
// panic, must refuse with BAD_USER_INPUT, and whatever it accepts must be of
// the listing asked for, with a positive id, and survive Encode → Decode.
//
//	go test -run '^$' -fuzz FuzzDecodeCursor -fuzztime 20s ./store
func FuzzDecodeCursor(f *testing.F) {
	enc := func(s string) string { return base64.RawURLEncoding.EncodeToString([]byte(s)) }
	for _, c := range []struct{ s, tag string }{
		{Cursor{Tag: "loans", Key: "2026-01-02T03:04:05Z", ID: 7}.Encode(), "loans"},
		{Cursor{Tag: "entries", Key: "", ID: 1}.Encode(), "entries"},
		{Cursor{Tag: "loans", Key: "x", ID: 1<<63 - 1}.Encode(), "loans"},
		{Cursor{Tag: "loans", Key: "x", ID: 7}.Encode(), "chats"},
		{enc("v1\x1floans\x1fk\x1f0"), "loans"},
		{enc("v1\x1floans\x1fk\x1f-1"), "loans"},
		{enc("v1\x1floans\x1fk\x1f+1"), "loans"},
		{enc("v1\x1floans\x1fk\x1f99999999999999999999"), "loans"},
		{enc("v2\x1floans\x1fk\x1f1"), "loans"},
		{enc("v1\x1floans\x1fk\x1f1\x1f"), "loans"},
		{enc("v1\x1floans\x1fk"), "loans"},
		{"", "loans"}, {"!!!", "loans"}, {"dg", "loans"}, {strings.Repeat("A", 513), "loans"},
		{enc("v1\x1floans\x1fk\x1f1") + "=", "loans"},
	} {
		f.Add(c.s, c.tag)
	}
	f.Fuzz(func(t *testing.T, s, tag string) {
		c, err := DecodeCursor(s, tag)
		if err != nil {
			if !lending.IsCode(err, lending.CodeBadUserInput) {
				t.Fatalf("DecodeCursor(%q, %q): %v is not BAD_USER_INPUT", s, tag, err)
			}
			return
		}
		if c.Tag != tag || c.ID <= 0 || strings.Contains(c.Key, "\x1f") || len(s) > 512 {
			t.Fatalf("DecodeCursor(%q, %q) accepted %+v", s, tag, c)
		}
		c2, err := DecodeCursor(c.Encode(), tag)
		if err != nil || c2 != c {
			t.Fatalf("Encode → Decode of %+v: %+v, %v", c, c2, err)
		}
		if _, err := DecodeCursor(s, tag+"x"); err == nil {
			t.Fatalf("DecodeCursor(%q) was accepted for listing %q too", s, tag+"x")
		}
	})
}

// FuzzCursorRoundTrip encodes arbitrary cursors: each one that can be
// represented (no separator in tag or key, a positive id, at most 512
// characters encoded) decodes to itself; the others are refused, never
// misread.
func FuzzCursorRoundTrip(f *testing.F) {
	f.Add("loans", "2026-01-02T03:04:05.123456Z", int64(42))
	f.Add("entries", "", int64(1))
	f.Add("a\x1fb", "k", int64(3))
	f.Add("loans", "k\x1f9", int64(3))
	f.Add("loans", strings.Repeat("k", 400), int64(3))
	f.Add("loans", "k", int64(0))
	f.Add("loans", "k", int64(-5))
	f.Fuzz(func(t *testing.T, tag, key string, id int64) {
		c := Cursor{Tag: tag, Key: key, ID: id}
		s := c.Encode()
		got, err := DecodeCursor(s, tag)
		representable := id > 0 && !strings.Contains(tag, "\x1f") && !strings.Contains(key, "\x1f") && len(s) <= 512
		if representable {
			if err != nil || got != c {
				t.Fatalf("%+v encodes as %q and decodes to %+v, %v", c, s, got, err)
			}
			return
		}
		if err == nil && got != c {
			t.Fatalf("%+v encodes as %q and is misread as %+v", c, s, got)
		}
		if err == nil {
			t.Fatalf("%+v (not representable) encodes as %q and was accepted", c, s)
		}
	})
}
