package resolvers

import "testing"

func TestSentIDsRemembersTheLastNAndEverythingBelowWhatItForgot(t *testing.T) {
	s := newSentIDs(3)
	if s.has(5) {
		t.Fatal("empty remembers nothing")
	}
	for _, id := range []int64{10, 7, 12} {
		s.add(id)
	}
	for _, id := range []int64{10, 7, 12} {
		if !s.has(id) {
			t.Fatalf("forgot %d", id)
		}
	}
	if s.has(11) || s.has(8) {
		t.Fatal("remembers ids it never saw")
	}
	s.add(12) // a repeat changes nothing
	s.add(20) // evicts 10: everything ≤ 10 now counts as sent
	if !s.has(10) || !s.has(9) || s.has(11) || !s.has(20) || !s.has(7) {
		t.Fatalf("after wrap: floor %d, ring %v", s.floor, s.ring)
	}
	s.add(21) // evicts 7 (floor stays 10)
	s.add(22) // evicts 12
	if s.floor != 12 || !s.has(11) || s.has(13) || len(s.ring) != 3 {
		t.Fatalf("floor %d ring %v", s.floor, s.ring)
	}
}
