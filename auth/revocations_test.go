package auth

import (
	"context"
	"testing"
	"time"

	"mutuo/internal/testenv"
)

func TestDenylistRevoked(t *testing.T) {
	rdb := testenv.NewRedis(t)
	d := NewDenylist(rdb.Client, rdb.Prefix)
	ctx := context.Background()
	if err := d.Add(ctx, "a", time.Minute); err != nil {
		t.Fatal(err)
	}
	if err := d.Add(ctx, "c", time.Minute); err != nil {
		t.Fatal(err)
	}
	got, err := d.Revoked(ctx, []string{"a", "b", "c", "a"})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || !got["a"] || !got["c"] || got["b"] {
		t.Fatalf("Revoked = %v, want a and c", got)
	}
	if got, err := d.Revoked(ctx, nil); err != nil || len(got) != 0 {
		t.Fatalf("Revoked(nil) = %v, %v", got, err)
	}
	// another prefix sees nothing
	if got, err := NewDenylist(rdb.Client, rdb.Prefix+"other:").Revoked(ctx, []string{"a"}); err != nil || len(got) != 0 {
		t.Fatalf("other prefix: %v, %v", got, err)
	}
}

func TestDenylistRevokedFailsClosed(t *testing.T) {
	rdb := testenv.NewRedis(t)
	d := NewDenylist(rdb.Client, rdb.Prefix)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := d.Revoked(ctx, []string{"a"}); err == nil {
		t.Fatal("Revoked with a dead context: want an error")
	}
}
