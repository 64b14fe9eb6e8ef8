package store

// The outbox's other side: what the realtime relay and broker need to move
// committed events out of the database, and the reads that let a
// subscription replay what a client missed.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"mutuo/lending"
)

// OutboxChannel is the Postgres NOTIFY channel that every transaction which
// writes outbox rows signals at COMMIT (migration 00003).
const OutboxChannel = "mutuo_outbox"

// relayLockKey is the transaction-level advisory lock that a relay holds
// while it publishes a batch: one relay publishes at a time, whichever
// instance it runs on, so events leave in id order. (FOR UPDATE SKIP LOCKED
// alone would let two relays publish two batches at once, and a stream's
// events of the later batch could overtake those of the earlier one.)
// Advisory locks are per database, like the outbox.
const relayLockKey int64 = 0x6d7574756f_0001 // "mutuo", 1

// OutboxEvent is one outbox row.
type OutboxEvent struct {
	ID        int64
	Stream    string
	Topic     string
	Payload   json.RawMessage
	CreatedAt time.Time
}

const outboxCols = `o.id, o.stream, o.topic, o.payload, o.created_at`

func scanOutbox(row pgx.Row) (OutboxEvent, error) {
	var e OutboxEvent
	var payload []byte
	err := row.Scan(&e.ID, &e.Stream, &e.Topic, &payload, &e.CreatedAt)
	e.Payload = payload
	return e, err
}

// RelayBatch is what one RelayOutbox call did.
type RelayBatch struct {
	// Published is how many events were published and marked.
	Published int
	// Busy is true when another relay held the lock: nothing was done.
	Busy bool
	// Latency is, for the newest event published, the time from its insert
	// (in practice its commit) to its publication, by the database's clock;
	// MaxLatency is the same for the oldest.
	Latency, MaxLatency time.Duration
}

// RelayOutbox publishes the oldest unpublished outbox rows (at most limit),
// in one transaction: it takes the relay lock (pg_try_advisory_xact_lock;
// when another relay holds it, it returns Busy and does nothing), locks the
// rows (FOR UPDATE SKIP LOCKED, in id order), calls publish with them in id
// order, marks them published and commits. If publish fails, nothing is
// marked: the rows are published again by a later call (at least once; an
// event may thus be delivered twice, never lost). publish runs with the
// transaction open, so it should be quick (one pipelined round trip).
func (s *Store) RelayOutbox(ctx context.Context, limit int, publish func(context.Context, []OutboxEvent) error) (RelayBatch, error) {
	var b RelayBatch
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		var got bool
		if err := tx.QueryRow(ctx, `SELECT pg_try_advisory_xact_lock($1)`, relayLockKey).Scan(&got); err != nil {
			return fmt.Errorf("relay lock: %w", err)
		}
		if !got {
			b.Busy = true
			return nil
		}
		evs, err := collect(ctx, tx, scanOutbox, `SELECT `+outboxCols+` FROM outbox o
			WHERE o.published_at IS NULL ORDER BY o.id LIMIT $1 FOR UPDATE SKIP LOCKED`, limit)
		if err != nil {
			return fmt.Errorf("claim outbox: %w", err)
		}
		if len(evs) == 0 {
			return nil
		}
		if err := publish(ctx, evs); err != nil {
			return fmt.Errorf("publish outbox %d..%d: %w", evs[0].ID, evs[len(evs)-1].ID, err)
		}
		ids := make([]int64, len(evs))
		for i, e := range evs {
			ids[i] = e.ID
		}
		var n int
		var newest, oldest float64
		if err := tx.QueryRow(ctx, `WITH marked AS (
				UPDATE outbox SET published_at = now() WHERE id = ANY($1) AND published_at IS NULL
				RETURNING extract(epoch FROM clock_timestamp() - created_at)::float8 AS lag)
			SELECT count(*), coalesce(min(lag), 0), coalesce(max(lag), 0) FROM marked`, ids).Scan(&n, &newest, &oldest); err != nil {
			return fmt.Errorf("mark outbox published: %w", err)
		}
		if n != len(evs) {
			return fmt.Errorf("mark outbox published: marked %d of %d", n, len(evs))
		}
		b.Published = n
		b.Latency = time.Duration(newest * float64(time.Second))
		b.MaxLatency = time.Duration(oldest * float64(time.Second))
		return nil
	})
	if err != nil {
		return RelayBatch{}, err
	}
	return b, nil
}

// OutboxAfter returns committed outbox rows with id > afterID, published or
// not, oldest first, at most limit. A broker that lost its Redis
// subscription reads what it may have missed with it.
func (s *Store) OutboxAfter(ctx context.Context, afterID int64, limit int) ([]OutboxEvent, error) {
	evs, err := collect(ctx, s.pool, scanOutbox, `SELECT `+outboxCols+` FROM outbox o WHERE o.id > $1 ORDER BY o.id LIMIT $2`,
		afterID, limit)
	if err != nil {
		return nil, fmt.Errorf("read outbox after %d: %w", afterID, err)
	}
	return evs, nil
}

// OutboxMaxID returns the highest outbox id committed so far (0 if none).
func (s *Store) OutboxMaxID(ctx context.Context) (int64, error) {
	var id int64
	if err := s.pool.QueryRow(ctx, `SELECT coalesce(max(id), 0) FROM outbox`).Scan(&id); err != nil {
		return 0, fmt.Errorf("outbox max id: %w", err)
	}
	return id, nil
}

// OutboxBacklog counts the committed outbox rows not yet published.
func (s *Store) OutboxBacklog(ctx context.Context) (int64, error) {
	var n int64
	if err := s.pool.QueryRow(ctx, `SELECT count(*) FROM outbox WHERE published_at IS NULL`).Scan(&n); err != nil {
		return 0, fmt.Errorf("outbox backlog: %w", err)
	}
	return n, nil
}

// PruneOutbox deletes published rows published before cutoff, looking at
// most at the limit oldest rows (by id: the table's head, where old rows
// are), and returns how many it deleted.
func (s *Store) PruneOutbox(ctx context.Context, cutoff time.Time, limit int) (int64, error) {
	tag, err := s.pool.Exec(ctx, `DELETE FROM outbox WHERE id IN (SELECT id FROM outbox ORDER BY id LIMIT $2)
		AND published_at < $1`, cutoff, limit)
	if err != nil {
		return 0, fmt.Errorf("prune outbox: %w", err)
	}
	return tag.RowsAffected(), nil
}

// OutboxListener is a dedicated connection that LISTENs on OutboxChannel.
// It is not safe for concurrent use.
type OutboxListener struct {
	conn *pgx.Conn
}

// ListenOutbox takes a connection out of the pool for good and LISTENs on
// OutboxChannel with it. Close it when done.
func (s *Store) ListenOutbox(ctx context.Context) (*OutboxListener, error) {
	c, err := s.pool.Acquire(ctx)
	if err != nil {
		return nil, fmt.Errorf("listen outbox: %w", err)
	}
	conn := c.Hijack()
	if _, err := conn.Exec(ctx, `LISTEN `+OutboxChannel); err != nil {
		_ = conn.Close(context.WithoutCancel(ctx))
		return nil, fmt.Errorf("listen outbox: %w", err)
	}
	return &OutboxListener{conn: conn}, nil
}

// ErrNoNotification is returned by Wait when its context ended first.
var ErrNoNotification = errors.New("no outbox notification")

// Wait blocks until an outbox notification arrives (nil) or ctx ends
// (ErrNoNotification wrapping the context's error; the connection stays
// usable). Any other error means the connection is broken: close it and
// listen again.
func (l *OutboxListener) Wait(ctx context.Context) error {
	_, err := l.conn.WaitForNotification(ctx)
	if err != nil && ctx.Err() != nil && !l.conn.IsClosed() {
		return fmt.Errorf("%w: %w", ErrNoNotification, ctx.Err())
	}
	return err
}

// Close closes the connection.
func (l *OutboxListener) Close() {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	_ = l.conn.Close(ctx)
}

// ---------------------------------------------------------------- replay

// NotificationsAfter returns the viewer's notifications with id > afterID,
// oldest first, at most limit.
func (s *Store) NotificationsAfter(ctx context.Context, v lending.Viewer, afterID int64, limit int) ([]*lending.Notification, error) {
	rows, err := collect(ctx, s.pool, scanNotification, `SELECT `+notificationCols+` FROM notifications nt
		WHERE nt.user_id = $1 AND nt.id > $2 ORDER BY nt.id LIMIT $3`, v.UserID, afterID, limit)
	if err != nil {
		return nil, fmt.Errorf("notifications after %d: %w", afterID, err)
	}
	return rows, nil
}

// NotificationsByID loads the viewer's notifications among ids (others'
// are absent).
func (s *Store) NotificationsByID(ctx context.Context, v lending.Viewer, ids []int64) (map[int64]*lending.Notification, error) {
	return byKey(ctx, s.pool, scanNotification, func(n *lending.Notification) int64 { return n.ID },
		`SELECT `+notificationCols+` FROM notifications nt WHERE nt.id = ANY($1) AND nt.user_id = $2`, ids, v.UserID)
}

// LatestNotificationID returns the id of the viewer's newest notification
// (0 if none).
func (s *Store) LatestNotificationID(ctx context.Context, v lending.Viewer) (int64, error) {
	var id int64
	if err := s.pool.QueryRow(ctx, `SELECT coalesce(max(id), 0) FROM notifications WHERE user_id = $1`, v.UserID).Scan(&id); err != nil {
		return 0, fmt.Errorf("latest notification: %w", err)
	}
	return id, nil
}

// MessagesAfter returns the messages with id > afterID in the chats the
// viewer takes part in (only chat chatID when it is not 0), oldest first, at
// most limit.
func (s *Store) MessagesAfter(ctx context.Context, v lending.Viewer, chatID, afterID int64, limit int) ([]*lending.Message, error) {
	rows, err := collect(ctx, s.pool, scanMessage, `SELECT `+messageCols+` FROM chat_members cm
		JOIN messages m ON m.chat_id = cm.chat_id AND m.id > $3
		WHERE cm.user_id = $1 AND ($2 = 0 OR cm.chat_id = $2)
		ORDER BY m.id LIMIT $4`, v.UserID, chatID, afterID, limit)
	if err != nil {
		return nil, fmt.Errorf("messages after %d: %w", afterID, err)
	}
	return rows, nil
}

// MessagesByID loads the messages among ids in chats the viewer takes part
// in (others are absent).
func (s *Store) MessagesByID(ctx context.Context, v lending.Viewer, ids []int64) (map[int64]*lending.Message, error) {
	return byKey(ctx, s.pool, scanMessage, func(m *lending.Message) int64 { return m.ID }, `SELECT `+messageCols+` FROM messages m
		WHERE m.id = ANY($1) AND EXISTS (SELECT 1 FROM chat_members cm WHERE cm.chat_id = m.chat_id AND cm.user_id = $2)`, ids, v.UserID)
}

// LatestMessageID returns the id of the newest message in the viewer's
// chats (only chat chatID when it is not 0), 0 if none.
func (s *Store) LatestMessageID(ctx context.Context, v lending.Viewer, chatID int64) (int64, error) {
	var id int64
	if err := s.pool.QueryRow(ctx, `SELECT coalesce(max(m.id), 0) FROM chat_members cm JOIN messages m ON m.chat_id = cm.chat_id
		WHERE cm.user_id = $1 AND ($2 = 0 OR cm.chat_id = $2)`, v.UserID, chatID).Scan(&id); err != nil {
		return 0, fmt.Errorf("latest message: %w", err)
	}
	return id, nil
}
