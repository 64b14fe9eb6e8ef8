package lending

import "testing"

func TestParseGlobalIDIsCanonical(t *testing.T) {
	id := GlobalID(KindUser, 12) // "VXNlcjoxMg"
	if _, _, err := ParseGlobalID(id); err != nil {
		t.Fatal(err)
	}
	// the same bytes with non-zero trailing bits: one object, one ID string
	if _, _, err := ParseGlobalID(id[:len(id)-1] + "h"); err == nil {
		t.Fatalf("a non-canonical encoding of %s was accepted", id)
	}
}
