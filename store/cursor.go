package store

import (
	"encoding/base64"
	"strconv"
	"strings"

	"mutuo/lending"
)

// Cursor is a keyset position in one listing: the listing's tag (which also
// names its order), the sort key's value as text, and the row id that breaks
// ties. Cursors are opaque to clients.
type Cursor struct {
	Tag string
	Key string
	ID  int64
}

// Encode makes the opaque cursor string.
func (c Cursor) Encode() string {
	return base64.RawURLEncoding.EncodeToString([]byte("v1\x1f" + c.Tag + "\x1f" + c.Key + "\x1f" + strconv.FormatInt(c.ID, 10)))
}

// DecodeCursor parses s, which must have been made for the listing tag.
// Anything else is BAD_USER_INPUT; it never panics.
func DecodeCursor(s, tag string) (Cursor, error) {
	bad := lending.BadInput("invalid cursor")
	if len(s) == 0 || len(s) > 512 {
		return Cursor{}, bad
	}
	b, err := base64.RawURLEncoding.Strict().DecodeString(s)
	if err != nil {
		return Cursor{}, bad
	}
	parts := strings.Split(string(b), "\x1f")
	if len(parts) != 4 || parts[0] != "v1" || parts[1] != tag {
		return Cursor{}, bad
	}
	id, err := strconv.ParseInt(parts[3], 10, 64)
	if err != nil || id <= 0 {
		return Cursor{}, bad
	}
	return Cursor{Tag: parts[1], Key: parts[2], ID: id}, nil
}

// afterID decodes an optional id-only cursor (nested listings ordered by id).
func afterID(after *string, tag string) (int64, error) {
	if after == nil {
		return 0, nil
	}
	c, err := DecodeCursor(*after, tag)
	if err != nil {
		return 0, err
	}
	return c.ID, nil
}

// Page is one page of a listing.
type Page[T any] struct {
	Items       []T
	Cursors     []string
	HasNext     bool
	HasPrevious bool
}

// pageOf trims rows fetched with limit+1 to a page and makes the cursors.
func pageOf[T any](rows []T, limit int, hasPrev bool, cursor func(T) Cursor) Page[T] {
	p := Page[T]{HasPrevious: hasPrev}
	if len(rows) > limit {
		rows = rows[:limit]
		p.HasNext = true
	}
	p.Items = rows
	p.Cursors = make([]string, len(rows))
	for i, r := range rows {
		p.Cursors[i] = cursor(r).Encode()
	}
	return p
}
