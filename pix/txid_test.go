package pix

import (
	"strings"
	"testing"
)

func TestNewTxid(t *testing.T) {
	seen := map[string]bool{}
	counts := map[rune]int{}
	for i := 0; i < 2000; i++ {
		id := NewTxid()
		if len(id) != TxidLen || !ValidTxid(id) {
			t.Fatalf("NewTxid() = %q", id)
		}
		if seen[id] {
			t.Fatalf("duplicate txid %q", id)
		}
		seen[id] = true
		for _, c := range id {
			counts[c]++
		}
	}
	// 64000 characters over 62 symbols: about 1032 each. A biased or broken
	// generator (e.g. missing symbols) shows up far outside this band.
	if len(counts) != 62 {
		t.Fatalf("%d distinct characters, want 62", len(counts))
	}
	for c, n := range counts {
		if n < 800 || n > 1300 {
			t.Errorf("character %q appeared %d times", c, n)
		}
	}
}

func TestValidTxid(t *testing.T) {
	tests := []struct {
		s    string
		want bool
	}{
		{strings.Repeat("a", 26), true},
		{strings.Repeat("Z9", 17) + "x", true}, // 35
		{"c3e0e7a4e7f1469a9f782d3d4999343c", true},
		{strings.Repeat("a", 25), false},
		{strings.Repeat("a", 36), false},
		{strings.Repeat("a", 31) + "-", false},
		{strings.Repeat("a", 31) + "é", false},
		{"", false},
		{"***", false},
	}
	for _, tt := range tests {
		if got := ValidTxid(tt.s); got != tt.want {
			t.Errorf("ValidTxid(%q) = %v", tt.s, got)
		}
	}
}
