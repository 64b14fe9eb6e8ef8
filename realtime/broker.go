package realtime

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

	"mutuo/store"
)

// Broker defaults.
const (
	// DefaultPingInterval is how long the broker waits on a silent
	// subscription before it pings Redis; no answer within another interval
	// and it reconnects.
	DefaultPingInterval = 5 * time.Second
)

// Broker holds the instance's one Redis subscription (to Channel(Prefix))
// and hands every event to Hub. When the subscription breaks (Redis
// restarted, network cut) it reconnects with backoff and resubscribes.
//
// Events published while it was not subscribed are gone from Redis, so
// after every (re)subscription it reads them back from the outbox table:
// the rows numbered after the newest publication sequence number it has
// seen (published or about to be: numbering is a prefix that only grows,
// so nothing numbered later can have a smaller number). The Hub drops those
// it already dispatched. On its first subscription it reads the rows
// numbered since it started. With a nil Store it skips these reads.
//
// Set the exported fields before Run.
type Broker struct {
	Redis  redis.UniversalClient
	Prefix string
	Hub    *Hub
	Store  *store.Store
	// PingInterval (DefaultPingInterval if 0).
	PingInterval time.Duration
	Logger       *slog.Logger

	ready    atomic.Bool
	lastSeen atomic.Int64 // newest publication sequence number handed to the hub (or the start baseline)
	started  atomic.Bool  // lastSeen is meaningful
	received atomic.Int64
	resubs   atomic.Int64
}

func (b *Broker) logger() *slog.Logger {
	if b.Logger != nil {
		return b.Logger
	}
	return slog.Default()
}

// Ready reports whether the broker is subscribed and has caught up.
func (b *Broker) Ready() bool { return b.ready.Load() }

// Received counts the events read from Redis (repeats included).
func (b *Broker) Received() int64 { return b.received.Load() }

// Subscriptions counts the successful (re)subscriptions.
func (b *Broker) Subscriptions() int64 { return b.resubs.Load() }

// Run subscribes and dispatches until ctx ends; it returns nil then.
func (b *Broker) Run(ctx context.Context) error {
	defer b.ready.Store(false)
	backoff := 50 * time.Millisecond
	for ctx.Err() == nil {
		subscribed, err := b.session(ctx)
		b.ready.Store(false)
		if ctx.Err() != nil {
			return nil
		}
		if subscribed {
			backoff = 50 * time.Millisecond
		}
		b.logger().WarnContext(ctx, "realtime broker: subscription lost, reconnecting", "err", err, "in", backoff)
		sleep(ctx, backoff)
		backoff = min(2*backoff, time.Second)
	}
	return nil
}

var errNoPong = errors.New("redis did not answer a ping")

// session is one subscription, from SUBSCRIBE until it breaks. It reports
// whether it got as far as being subscribed.
func (b *Broker) session(ctx context.Context) (subscribed bool, err error) {
	if b.Store != nil && !b.started.Load() {
		// the baseline: events from here on are ours to deliver
		seq, err := b.Store.PubSeq(ctx)
		if err != nil {
			return false, err
		}
		b.lastSeen.Store(seq)
		b.started.Store(true)
	}
	ch := Channel(b.Prefix)
	ps := b.Redis.Subscribe(ctx)
	defer ps.Close()
	stop := context.AfterFunc(ctx, func() { _ = ps.Close() })
	defer stop()
	if err := ps.Subscribe(ctx, ch); err != nil {
		return false, fmt.Errorf("subscribe %s: %w", ch, err)
	}
	ping := b.PingInterval
	if ping <= 0 {
		ping = DefaultPingInterval
	}
	awaitingPong := false
	for {
		msg, err := ps.ReceiveTimeout(ctx, ping)
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() && ctx.Err() == nil {
				if awaitingPong {
					return subscribed, errNoPong
				}
				if err := ps.Ping(ctx); err != nil {
					return subscribed, fmt.Errorf("ping: %w", err)
				}
				awaitingPong = true
				continue
			}
			return subscribed, err
		}
		awaitingPong = false
		switch m := msg.(type) {
		case *redis.Subscription:
			if m.Kind == "subscribe" && m.Channel == ch {
				if err := b.catchUp(ctx); err != nil {
					return subscribed, fmt.Errorf("catch up: %w", err)
				}
				subscribed = true
				b.resubs.Add(1)
				b.ready.Store(true)
			}
		case *redis.Message:
			b.received.Add(1)
			var e Event
			if err := json.Unmarshal([]byte(m.Payload), &e); err != nil {
				b.logger().ErrorContext(ctx, "realtime broker: bad event", "err", err)
				continue
			}
			b.dispatch(e)
		case *redis.Pong:
		}
	}
}

func (b *Broker) dispatch(e Event) {
	b.Hub.Publish(e)
	for {
		old := b.lastSeen.Load()
		if e.Seq <= old || b.lastSeen.CompareAndSwap(old, e.Seq) {
			return
		}
	}
}

// catchUp reads back the events this instance may have missed while it was
// not subscribed.
func (b *Broker) catchUp(ctx context.Context) error {
	if b.Store == nil {
		return nil
	}
	from := b.lastSeen.Load()
	const page = 500
	for {
		evs, err := b.Store.OutboxAfter(ctx, from, page)
		if err != nil {
			return err
		}
		for _, e := range evs {
			b.dispatch(eventOf(e))
			from = e.Seq
		}
		if len(evs) < page {
			return nil
		}
	}
}
