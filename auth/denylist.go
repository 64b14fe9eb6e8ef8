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
