package realtime

// Instance-wide upkeep of the websocket transport: revocation checks and the
// per-user socket sets.
//
// Sockets per user, across instances: a Redis sorted set per user,
// Prefix+"ws:sockets:<user id>", whose members are socket ids scored with
// the time (Unix ms) until which they count. connection_init admits a socket
// with one Lua script (drop expired members, refuse when MaxSocketsPerUser
// remain, else add); the socket's end removes it (ZREM); every
// HeartbeatInterval each instance pushes its live sockets' scores ahead
// (ZADD XX, one pipeline). A crashed instance's sockets stop counting three
// intervals later, without anyone cleaning up. (An INCR/DECR counter cannot
// do that: a crash leaks its increments for as long as the user keeps any
// socket open elsewhere and the key's TTL keeps being refreshed.) When Redis
// is unreachable a new socket is refused with 1013 (try again later); open
// sockets are not affected.
//
// Sign-out: every RevocationInterval (default 2 s, at most 4 s) the instance
// asks the denylist about the token ids of all its sockets in one pipelined
// round trip (auth's RevokedTokens) and closes the revoked ones with 4403, so
// a signed-out token's sockets close within RevocationInterval plus a round
// trip. One check per instance, not one per socket: 10,000 sockets cost one
// pipeline of at most 10,000 EXISTS every 2 s. Chosen over a pub/sub
// broadcast because it needs nothing from signOut and loses nothing when a
// message would be dropped; a broadcast could be added later to make it
// instantaneous. If the check fails (Redis down) the sockets stay open and
// the next tick tries again: the expiry timer still ends every socket at its
// token's exp, and a Redis restart must not drop every subscriber.

import (
	"context"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"
)

// wsAdmitScript: KEYS[1] the user's set; ARGV: socket id, max, now (ms), ttl (ms).
var wsAdmitScript = redis.NewScript(`
local now = tonumber(ARGV[3])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[2]) then
  return 0
end
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[4]), ARGV[1])
redis.call('PEXPIRE', KEYS[1], ARGV[4])
return 1
`)

// slotTTL is how long a socket counts without a heartbeat.
func (t *WSTransport) slotTTL() time.Duration { return 3 * t.cfg.HeartbeatInterval }

func (t *WSTransport) slotKey(userID int64) string {
	return t.cfg.Prefix + "ws:sockets:" + strconv.FormatInt(userID, 10)
}

// admit claims a slot for the socket in its user's set; it returns the key
// (or "" when not counted) or a close code.
func (c *wsConn) admit(ctx context.Context, userID int64) (string, int, string) {
	t := c.t
	if t.cfg.MaxSocketsPerUser < 0 {
		return "", 0, ""
	}
	key := t.slotKey(userID)
	ok, err := wsAdmitScript.Run(ctx, t.cfg.Redis, []string{key}, c.id, t.cfg.MaxSocketsPerUser,
		time.Now().UnixMilli(), t.slotTTL().Milliseconds()).Int()
	if err != nil {
		t.log.ErrorContext(ctx, "ws: cannot count sockets", "err", err)
		return "", WSCloseTryAgainLater, "Try again later"
	}
	if ok == 0 {
		t.log.DebugContext(ctx, "ws: too many sockets", "user", userID)
		return "", WSCloseTooManySockets, "Too many sockets for this user"
	}
	return key, 0, ""
}

// releaseSlot gives the socket's slot back.
func (c *wsConn) releaseSlot() {
	a := c.authn.Load()
	if a == nil || a.slotKey == "" {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if err := c.t.cfg.Redis.ZRem(ctx, a.slotKey, c.id).Err(); err != nil {
		c.t.log.Warn("ws: cannot release socket slot (it expires by itself)", "err", err)
	}
}

// maintain runs while the instance holds sockets: revocation checks and
// slot heartbeats.
func (t *WSTransport) maintain(ctx context.Context, done chan struct{}) {
	defer close(done)
	rev := time.NewTicker(t.cfg.RevocationInterval)
	defer rev.Stop()
	hb := time.NewTicker(t.cfg.HeartbeatInterval)
	defer hb.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-rev.C:
			t.checkRevocations(ctx)
		case <-hb.C:
			t.heartbeat(ctx)
		}
	}
}

// checkRevocations closes (4403) the sockets whose tokens were signed out,
// by their own id or their session's (signOut with a later token of the
// same session).
func (t *WSTransport) checkRevocations(ctx context.Context) {
	byID := map[string][]*wsConn{}
	for _, c := range t.snapshot() {
		if a := c.authn.Load(); a != nil && !c.isClosing() {
			for _, id := range a.revocation {
				byID[id] = append(byID[id], c)
			}
		}
	}
	if len(byID) == 0 {
		return
	}
	ids := make([]string, 0, len(byID))
	for id := range byID {
		ids = append(ids, id)
	}
	ctx, cancel := context.WithTimeout(ctx, t.cfg.RevocationInterval)
	defer cancel()
	revoked, err := t.cfg.Auth.RevokedTokens(ctx, ids)
	if err != nil {
		if ctx.Err() == nil || ctx.Err() == context.DeadlineExceeded {
			t.log.Warn("ws: cannot check revoked tokens (retrying)", "err", err)
		}
		return
	}
	for id := range revoked {
		if !revoked[id] {
			continue
		}
		for _, c := range byID[id] {
			t.log.Debug("ws: token signed out, closing socket")
			c.closeWith(WSCloseForbidden, "Forbidden", false)
		}
	}
}

// heartbeat keeps this instance's sockets counted in their users' sets.
func (t *WSTransport) heartbeat(ctx context.Context) {
	if t.cfg.MaxSocketsPerUser < 0 {
		return
	}
	byKey := map[string][]redis.Z{}
	score := float64(time.Now().Add(t.slotTTL()).UnixMilli())
	for _, c := range t.snapshot() {
		if a := c.authn.Load(); a != nil && a.slotKey != "" && !c.isClosing() {
			byKey[a.slotKey] = append(byKey[a.slotKey], redis.Z{Score: score, Member: c.id})
		}
	}
	if len(byKey) == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, t.cfg.HeartbeatInterval)
	defer cancel()
	pipe := t.cfg.Redis.Pipeline()
	for key, members := range byKey {
		pipe.ZAddXX(ctx, key, members...)
		pipe.PExpire(ctx, key, t.slotTTL())
	}
	if _, err := pipe.Exec(ctx); err != nil && ctx.Err() == nil {
		t.log.Warn("ws: socket heartbeat failed (retrying)", "err", err)
	}
}
