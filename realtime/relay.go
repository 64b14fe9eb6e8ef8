package realtime

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

	"mutuo/store"
)

// Relay defaults.
const (
	DefaultBatchSize    = 256
	DefaultPollInterval = 500 * time.Millisecond
	DefaultRetention    = 24 * time.Hour
	// publishTimeout bounds one batch's PUBLISH round trip.
	publishTimeout = 5 * time.Second
)

// Channel is the Redis channel that carries every event of the instances
// sharing prefix (each instance's Broker subscribes to it once).
func Channel(prefix string) string { return prefix + "events" }

// Relay numbers committed outbox rows (the publication sequence, see
// store.RelayOutbox), publishes them to Redis in that order and marks them
// published. It is woken by the outbox NOTIFY (a dedicated LISTEN
// connection, reopened after a failure) and also polls, so a lost
// notification or a broken listener only delays events.
//
// Any number of relays may run, on any number of instances: each turn is
// one transaction that first takes a transaction-level advisory lock
// (pg_try_advisory_xact_lock), so exactly one relay works at a time and the
// others skip their turn; that is what keeps the numbering a prefix that
// only grows and each stream's events in order (two relays publishing two
// batches at once could interleave them).
//
// A row is numbered in one turn and published in the next, so a single
// event takes two short transactions; under load each turn publishes one
// batch and numbers the next.
//
// Delivery is at least once: a batch is marked published only after Redis
// took every event of it, in the same transaction; if publishing fails the
// batch stays unmarked and goes again later, so an event may reach Redis
// twice (Hubs drop the repeat), never zero times.
//
// Set the exported fields before Run; they are not changed afterwards.
type Relay struct {
	Store  *store.Store
	Redis  redis.UniversalClient
	Prefix string // the Redis prefix: events go to Channel(Prefix)
	// BatchSize is the most rows per transaction (DefaultBatchSize if 0).
	BatchSize int
	// PollInterval is how often the relay looks without being woken
	// (DefaultPollInterval if 0).
	PollInterval time.Duration
	// Retention is how long published rows are kept (brokers re-read recent
	// ones after a reconnect) before they are deleted (DefaultRetention if
	// 0; negative: never).
	Retention time.Duration
	Logger    *slog.Logger
	// OnBatch, if set, is told of every batch published (for metrics).
	OnBatch func(store.RelayBatch)

	running   atomic.Bool
	lastOK    atomic.Bool
	latency   atomic.Int64 // ns
	published atomic.Int64
	failures  atomic.Int64
	logMu     sync.Mutex
	lastLog   time.Time
}

func (r *Relay) batchSize() int {
	if r.BatchSize > 0 {
		return r.BatchSize
	}
	return DefaultBatchSize
}

func (r *Relay) pollInterval() time.Duration {
	if r.PollInterval > 0 {
		return r.PollInterval
	}
	return DefaultPollInterval
}

func (r *Relay) logger() *slog.Logger {
	if r.Logger != nil {
		return r.Logger
	}
	return slog.Default()
}

// Run relays until ctx ends; it returns nil then. Errors (Postgres or
// Redis down) are logged, make Ready false and are retried at the poll
// interval.
func (r *Relay) Run(ctx context.Context) error {
	r.running.Store(true)
	defer func() {
		r.running.Store(false)
		r.lastOK.Store(false)
	}()
	wake := make(chan struct{}, 1)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		r.listen(ctx, wake)
	}()
	defer wg.Wait()

	tick := time.NewTicker(r.pollInterval())
	defer tick.Stop()
	nextPrune := time.Now()
	for {
		if err := r.Drain(ctx); err != nil && ctx.Err() == nil {
			r.logErr(ctx, "outbox relay", err)
		}
		if r.Retention >= 0 && time.Now().After(nextPrune) {
			nextPrune = time.Now().Add(time.Minute)
			r.prune(ctx)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-wake:
		case <-tick.C:
		}
	}
}

// Drain runs turns until the outbox has nothing to number or publish,
// another relay holds the lock, or an error. It returns that error; Ready
// reflects it.
func (r *Relay) Drain(ctx context.Context) error {
	for {
		b, err := r.Once(ctx)
		if err != nil || !b.More(r.batchSize()) {
			return err
		}
	}
}

// Once runs one turn (see store.RelayOutbox: publish the rows numbered
// before, number the new ones) and records its outcome for Ready and the
// metrics. When Redis does not answer, it still numbers rows (resume points
// go on working) and returns Redis's error.
func (r *Relay) Once(ctx context.Context) (store.RelayBatch, error) {
	ch := Channel(r.Prefix)
	publish := func(ctx context.Context, evs []store.OutboxEvent) error {
		ctx, cancel := context.WithTimeout(ctx, publishTimeout)
		defer cancel()
		return r.publish(ctx, ch, evs)
	}
	var redisErr error
	if !r.lastOK.Load() {
		// After a failure, make sure Redis answers before publishing: a
		// relay that cannot publish must not keep healthy ones waiting.
		if redisErr = r.Redis.Ping(ctx).Err(); redisErr != nil {
			publish = nil
		}
	}
	b, err := r.Store.RelayOutbox(ctx, r.batchSize(), publish)
	if err == nil {
		err = redisErr
	}
	if err != nil {
		r.lastOK.Store(false)
		r.failures.Add(1)
		return b, err
	}
	r.lastOK.Store(true)
	if b.Published > 0 {
		r.published.Add(int64(b.Published))
		r.latency.Store(int64(b.Latency))
		if r.OnBatch != nil {
			r.OnBatch(b)
		}
	}
	return b, nil
}

// publish sends evs to Redis in one pipelined round trip, in order (one
// connection runs a pipeline's commands in sequence). It fails if any
// PUBLISH failed.
func (r *Relay) publish(ctx context.Context, ch string, evs []store.OutboxEvent) error {
	msgs := make([][]byte, len(evs))
	for i, e := range evs {
		b, err := json.Marshal(eventOf(e))
		if err != nil {
			return fmt.Errorf("encode event %d: %w", e.ID, err)
		}
		msgs[i] = b
	}
	cmds, err := r.Redis.Pipelined(ctx, func(p redis.Pipeliner) error {
		for _, m := range msgs {
			p.Publish(ctx, ch, m)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("redis publish: %w", err)
	}
	for _, c := range cmds {
		if err := c.Err(); err != nil {
			return fmt.Errorf("redis publish: %w", err)
		}
	}
	return nil
}

// listen keeps a LISTEN connection and signals wake on every notification
// (and once after each reconnect, since notifications may have been missed
// while it was down).
func (r *Relay) listen(ctx context.Context, wake chan<- struct{}) {
	signal := func() {
		select {
		case wake <- struct{}{}:
		default:
		}
	}
	backoff := 100 * time.Millisecond
	for ctx.Err() == nil {
		l, err := r.Store.ListenOutbox(ctx)
		if err != nil {
			if ctx.Err() == nil {
				r.logErr(ctx, "outbox listen", err)
			}
			sleep(ctx, backoff)
			backoff = min(2*backoff, 5*time.Second)
			continue
		}
		backoff = 100 * time.Millisecond
		signal()
		for {
			err := l.Wait(ctx)
			if err == nil {
				signal()
				continue
			}
			if ctx.Err() == nil && !errors.Is(err, store.ErrNoNotification) {
				r.logErr(ctx, "outbox listen", err)
			}
			break
		}
		l.Close()
	}
}

func (r *Relay) prune(ctx context.Context) {
	ret := r.Retention
	if ret == 0 {
		ret = DefaultRetention
	}
	if _, err := r.Store.PruneOutbox(ctx, time.Now().Add(-ret), 10_000); err != nil && ctx.Err() == nil {
		r.logErr(ctx, "outbox prune", err)
	}
}

// logErr logs at most one relay error every 5 seconds (an outage would
// otherwise log at the poll rate).
func (r *Relay) logErr(ctx context.Context, msg string, err error) {
	r.logMu.Lock()
	ok := time.Since(r.lastLog) >= 5*time.Second
	if ok {
		r.lastLog = time.Now()
	}
	r.logMu.Unlock()
	if ok {
		r.logger().WarnContext(ctx, msg, "err", err)
	}
}

// Ready reports whether Run is running and its last attempt succeeded (a
// turn skipped because another relay held the lock counts as success).
func (r *Relay) Ready() bool { return r.running.Load() && r.lastOK.Load() }

// LastLatency is, for the newest event of the last batch published, the
// time from its insert (in practice its commit) to its publication.
func (r *Relay) LastLatency() time.Duration { return time.Duration(r.latency.Load()) }

// Published counts the events this relay has published.
func (r *Relay) Published() int64 { return r.published.Load() }

// Failures counts the batches that failed (and were rolled back).
func (r *Relay) Failures() int64 { return r.failures.Load() }

// Backlog counts the committed events not yet published (by any relay).
func (r *Relay) Backlog(ctx context.Context) (int64, error) { return r.Store.OutboxBacklog(ctx) }

func sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}
