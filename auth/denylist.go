package auth

import (
	"context"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"
)

// Denylist is the Redis set of revoked access-token ids (jti), shared by all
// instances. Each entry is a key prefix+"denylist:"+jti that expires once the
// token could no longer verify anyway.
type Denylist struct {
	rdb    redis.Cmdable
	prefix string
}

// NewDenylist returns a denylist on rdb whose keys all start with prefix.
func NewDenylist(rdb redis.Cmdable, prefix string) *Denylist {
	return &Denylist{rdb: rdb, prefix: prefix}
}

func (d *Denylist) key(jti string) string { return d.prefix + "denylist:" + jti }

// Add revokes jti for ttl. A ttl that is not positive adds nothing (the token
// has already expired).
func (d *Denylist) Add(ctx context.Context, jti string, ttl time.Duration) error {
	if ttl <= 0 {
		return nil
	}
	if err := d.rdb.Set(ctx, d.key(jti), 1, ttl).Err(); err != nil {
		return fmt.Errorf("denylist add %s: %w", jti, err)
	}
	return nil
}

// Contains reports whether jti is revoked. A Redis failure is an error, never
// a "no": callers must fail closed.
func (d *Denylist) Contains(ctx context.Context, jti string) (bool, error) {
	n, err := d.rdb.Exists(ctx, d.key(jti)).Result()
	if err != nil {
		return false, fmt.Errorf("denylist check %s: %w", jti, err)
	}
	return n > 0, nil
}
