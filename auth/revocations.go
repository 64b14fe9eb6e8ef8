package auth

import (
	"context"
	"fmt"

	"github.com/redis/go-redis/v9"
)

// Revoked reports which of jtis are revoked (only those appear in the map,
// as true), in one pipelined round trip of EXISTS commands (so it works on
// Redis Cluster too). A Redis failure is an error, never a "no": callers
// decide how to fail.
func (d *Denylist) Revoked(ctx context.Context, jtis []string) (map[string]bool, error) {
	out := map[string]bool{}
	if len(jtis) == 0 {
		return out, nil
	}
	pipe := d.rdb.Pipeline()
	cmds := make([]*redis.IntCmd, len(jtis))
	for i, j := range jtis {
		cmds[i] = pipe.Exists(ctx, d.key(j))
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return nil, fmt.Errorf("denylist check of %d ids: %w", len(jtis), err)
	}
	for i, c := range cmds {
		if c.Val() > 0 {
			out[jtis[i]] = true
		}
	}
	return out, nil
}

// RevokedTokens reports which of the revocation ids (Claims.RevocationIDs:
// token ids and session ids) have been signed out. Long-lived connections (websockets), which authenticate
// once, call it periodically for all their tokens at once; a Redis failure
// is an error.
func (s *Service) RevokedTokens(ctx context.Context, jtis []string) (map[string]bool, error) {
	return s.denylist.Revoked(ctx, jtis)
}
