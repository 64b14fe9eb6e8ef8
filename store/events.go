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
// while it numbers and publishes a batch: one relay works at a time,
// whichever instance it runs on, so events are numbered and leave in order.
// (FOR UPDATE SKIP LOCKED alone would let two relays publish two batches at
// once, and a stream's events of the later batch could overtake those of
// the earlier one.) Advisory locks are per database, like the outbox.
const relayLockKey int64 = 0x6d7574756f_0001 // "mutuo", 1

// OutboxEvent is one outbox row.
type OutboxEvent struct {
	ID int64
	// Seq is the row's place in the publication sequence (see RelayOutbox).
	Seq       int64
	Stream    string
	Topic     string
	Payload   json.RawMessage
	CreatedAt time.Time
}

const outboxCols = `o.id, coalesce(o.pub_seq, 0), o.stream, o.topic, o.payload, o.created_at`

func scanOutbox(row pgx.Row) (OutboxEvent, error) {
	var e OutboxEvent
	var payload []byte
	err := row.Scan(&e.ID, &e.Seq, &e.Stream, &e.Topic, &payload, &e.CreatedAt)
	e.Payload = payload
	return e, err
}

// RelayBatch is what one RelayOutbox call did.
type RelayBatch struct {
	// Published is how many events were published and marked.
	Published int
	// Stamped is how many rows were numbered (to be published by the next
	// call).
	Stamped int
	// Busy is true when another relay held the lock: nothing was done.
	Busy bool
	// Latency is, for the newest event published, the time from its insert
	// (in practice its commit) to its publication, by the database's clock;
	// MaxLatency is the same for the oldest.
	Latency, MaxLatency time.Duration
}

// More reports whether the outbox may hold more work right now: rows were
// numbered (they are published by the next call) or a full batch was
// published.
func (b RelayBatch) More(limit int) bool { return !b.Busy && (b.Stamped > 0 || b.Published >= limit) }

// RelayOutbox runs one turn of the relay, in one transaction that first
// takes the relay lock (pg_try_advisory_xact_lock; when another relay holds
// it, it returns Busy and does nothing):
//
//  1. Publish: the oldest numbered, unpublished rows (at most limit), in
//     publication-sequence order, are passed to publish and, if it succeeds,
//     marked published. If publish fails nothing is marked: the rows go
//     again on a later turn (at least once; an event may thus be delivered
//     twice, never lost), and RelayOutbox returns publish's error after
//     step 2 has committed. publish runs with the transaction open, so it
//     should be quick (one pipelined round trip). A nil publish skips this
//     step (Redis is known to be down: numbering goes on).
//  2. Number: the oldest rows not numbered yet (at most limit, in id order)
//     get the next numbers of the publication sequence (outbox_seq), and so
//     do the notifications and messages they announce.
//
// A row is thus numbered and committed one turn before it is published, so
// anyone who receives an event can read its number, and a reader who sees a
// number sees every smaller one (numbering is serialized by the lock, and
// each turn numbers only rows that had committed). Rows of one stream are
// written under one row lock (a wallet's, a loan's, a chat's), so they
// commit, are numbered and are published in id order.
func (s *Store) RelayOutbox(ctx context.Context, limit int, publish func(context.Context, []OutboxEvent) error) (RelayBatch, error) {
	var b RelayBatch
	var pubErr error
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		var got bool
		if err := tx.QueryRow(ctx, `SELECT pg_try_advisory_xact_lock($1)`, relayLockKey).Scan(&got); err != nil {
			return fmt.Errorf("relay lock: %w", err)
		}
		if !got {
			b.Busy = true
			return nil
		}
		if publish != nil {
			pb, err := publishNumbered(ctx, tx, limit, publish)
			if err != nil {
				return err
			}
			b.Published, b.Latency, b.MaxLatency, pubErr = pb.Published, pb.Latency, pb.MaxLatency, pb.err
		}
		n, err := numberOutbox(ctx, tx, limit)
		if err != nil {
			return err
		}
		b.Stamped = n
		return nil
	})
	if err != nil {
		return RelayBatch{}, err
	}
	return b, pubErr
}

type published struct {
	RelayBatch
	err error // publish's
}

// publishNumbered is RelayOutbox's step 1.
func publishNumbered(ctx context.Context, tx pgx.Tx, limit int, publish func(context.Context, []OutboxEvent) error) (published, error) {
	var p published
	evs, err := collect(ctx, tx, scanOutbox, `SELECT `+outboxCols+` FROM outbox o
		WHERE o.published_at IS NULL AND o.pub_seq IS NOT NULL ORDER BY o.pub_seq LIMIT $1`, limit)
	if err != nil {
		return p, fmt.Errorf("claim outbox: %w", err)
	}
	if len(evs) == 0 {
		return p, nil
	}
	if err := publish(ctx, evs); err != nil {
		p.err = fmt.Errorf("publish outbox %d..%d: %w", evs[0].Seq, evs[len(evs)-1].Seq, err)
		return p, nil
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
		return p, fmt.Errorf("mark outbox published: %w", err)
	}
	if n != len(evs) {
		return p, fmt.Errorf("mark outbox published: marked %d of %d", n, len(evs))
	}
	p.Published = n
	p.Latency = time.Duration(newest * float64(time.Second))
	p.MaxLatency = time.Duration(oldest * float64(time.Second))
	return p, nil
}

// numberOutbox is RelayOutbox's step 2.
func numberOutbox(ctx context.Context, tx pgx.Tx, limit int) (int, error) {
	rows, err := tx.Query(ctx, `SELECT id FROM outbox WHERE pub_seq IS NULL ORDER BY id LIMIT $1`, limit)
	if err != nil {
		return 0, fmt.Errorf("outbox to number: %w", err)
	}
	ids, err := pgx.CollectRows(rows, pgx.RowTo[int64])
	if err != nil {
		return 0, fmt.Errorf("outbox to number: %w", err)
	}
	if len(ids) == 0 {
		return 0, nil
	}
	var n int
	if err := tx.QueryRow(ctx, `
		WITH c AS (UPDATE outbox_seq SET last = last + $2 RETURNING last - $2 AS base),
		s AS (UPDATE outbox o SET pub_seq = c.base + u.ord FROM c, unnest($1::bigint[]) WITH ORDINALITY AS u(id, ord)
			WHERE o.id = u.id RETURNING o.topic, o.payload, o.pub_seq),
		nt AS (UPDATE notifications nt SET pub_seq = s.pub_seq FROM s
			WHERE s.topic = '`+topicNotificationAdded+`' AND nt.id = (s.payload->>'notificationId')::bigint),
		m AS (UPDATE messages m SET pub_seq = s.pub_seq FROM s
			WHERE s.topic = '`+topicMessageAdded+`' AND m.id = (s.payload->>'messageId')::bigint)
		SELECT count(*) FROM s`, ids, len(ids)).Scan(&n); err != nil {
		return 0, fmt.Errorf("number outbox: %w", err)
	}
	if n != len(ids) {
		return 0, fmt.Errorf("number outbox: numbered %d of %d", n, len(ids))
	}
	return n, nil
}

// OutboxAfter returns the numbered outbox rows with a publication sequence
// number above afterSeq, published or not, in sequence order, at most
// limit. A broker that lost its Redis subscription reads what it may have
// missed with it.
func (s *Store) OutboxAfter(ctx context.Context, afterSeq int64, limit int) ([]OutboxEvent, error) {
	evs, err := collect(ctx, s.pool, scanOutbox, `SELECT `+outboxCols+` FROM outbox o WHERE o.pub_seq > $1 ORDER BY o.pub_seq LIMIT $2`,
		afterSeq, limit)
	if err != nil {
		return nil, fmt.Errorf("read outbox after %d: %w", afterSeq, err)
	}
	return evs, nil
}

// PubSeq returns the last publication sequence number given so far:
// everything numbered later gets a larger one.
func (s *Store) PubSeq(ctx context.Context) (int64, error) {
	var n int64
	if err := s.pool.QueryRow(ctx, `SELECT last FROM outbox_seq`).Scan(&n); err != nil {
		return 0, fmt.Errorf("publication sequence: %w", err)
	}
	return n, nil
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

// A subscription to notifications or messages resumes by publication
// sequence number (see RelayOutbox): it replays the items numbered after the
// last one the client has, then goes on live. Ids are no resume point: an
// item with a smaller id may commit, and be published, after one with a
// larger id.

// NotificationsAfter returns the viewer's notifications numbered after
// afterSeq, in sequence order, at most limit.
func (s *Store) NotificationsAfter(ctx context.Context, v lending.Viewer, afterSeq int64, limit int) ([]*lending.Notification, error) {
	rows, err := collect(ctx, s.pool, scanNotification, `SELECT `+notificationCols+` FROM notifications nt
		WHERE nt.user_id = $1 AND nt.pub_seq > $2 ORDER BY nt.pub_seq LIMIT $3`, v.UserID, afterSeq, limit)
	if err != nil {
		return nil, fmt.Errorf("notifications after %d: %w", afterSeq, err)
	}
	return rows, nil
}

// NotificationsByID loads the viewer's notifications among ids (others'
// are absent).
func (s *Store) NotificationsByID(ctx context.Context, v lending.Viewer, ids []int64) (map[int64]*lending.Notification, error) {
	return byKey(ctx, s.pool, scanNotification, func(n *lending.Notification) int64 { return n.ID },
		`SELECT `+notificationCols+` FROM notifications nt WHERE nt.id = ANY($1) AND nt.user_id = $2`, ids, v.UserID)
}

// MessagesAfter returns the messages numbered after afterSeq in the chats
// the viewer takes part in (only chat chatID when it is not 0), in sequence
// order, at most limit.
func (s *Store) MessagesAfter(ctx context.Context, v lending.Viewer, chatID, afterSeq int64, limit int) ([]*lending.Message, error) {
	rows, err := collect(ctx, s.pool, scanMessage, `SELECT `+messageCols+` FROM chat_members cm
		JOIN messages m ON m.chat_id = cm.chat_id AND m.pub_seq > $3
		WHERE cm.user_id = $1 AND ($2 = 0 OR cm.chat_id = $2)
		ORDER BY m.pub_seq LIMIT $4`, v.UserID, chatID, afterSeq, limit)
	if err != nil {
		return nil, fmt.Errorf("messages after %d: %w", afterSeq, err)
	}
	return rows, nil
}

// MessagesByID loads the messages among ids in chats the viewer takes part
// in (others are absent).
func (s *Store) MessagesByID(ctx context.Context, v lending.Viewer, ids []int64) (map[int64]*lending.Message, error) {
	return byKey(ctx, s.pool, scanMessage, func(m *lending.Message) int64 { return m.ID }, `SELECT `+messageCols+` FROM messages m
		WHERE m.id = ANY($1) AND EXISTS (SELECT 1 FROM chat_members cm WHERE cm.chat_id = m.chat_id AND cm.user_id = $2)`, ids, v.UserID)
}

// NumberHistory gives publication sequence numbers, in the order given
// (messages first), to messages and notifications written in tx without an
// event (the demo's history), so that replays and resume points see them as
// the relay's numbering would have. It takes the sequence's row lock, so it
// is serialized with the relay like any numbering.
func NumberHistory(ctx context.Context, tx pgx.Tx, messageIDs, notificationIDs []int64) error {
	n := len(messageIDs) + len(notificationIDs)
	if n == 0 {
		return nil
	}
	var got int
	if err := tx.QueryRow(ctx, `
		WITH c AS (UPDATE outbox_seq SET last = last + $3 RETURNING last - $3 AS base),
		m AS (UPDATE messages x SET pub_seq = c.base + u.ord FROM c, unnest($1::bigint[]) WITH ORDINALITY AS u(id, ord)
			WHERE x.id = u.id RETURNING 1),
		nt AS (UPDATE notifications x SET pub_seq = c.base + cardinality($1::bigint[]) + u.ord FROM c, unnest($2::bigint[]) WITH ORDINALITY AS u(id, ord)
			WHERE x.id = u.id RETURNING 1)
		SELECT (SELECT count(*) FROM m) + (SELECT count(*) FROM nt)`, messageIDs, notificationIDs, n).Scan(&got); err != nil {
		return fmt.Errorf("number history: %w", err)
	}
	if got != n {
		return fmt.Errorf("number history: numbered %d of %d", got, n)
	}
	return nil
}

// ResumePoint is where a subscription that the client resumes after one of
// its items goes on from.
type ResumePoint struct {
	// Seq: replay the items numbered after it.
	Seq int64
	// Skip is an item the client has that was not numbered yet when the
	// resume point was taken (0: none): it is not sent again when it is.
	Skip int64
}

// ResumeWait is how long NotificationResumePoint and MessageResumePoint wait
// for the relay to number the item a client resumes after.
const ResumeWait = 2 * time.Second

// NotificationResumePoint resolves "after the viewer's notification id".
// An item committed moments ago may not be numbered yet; it waits up to
// wait for the relay to number it. If the relay is stalled longer, it
// degrades to at least once: it replays from the first of the viewer's
// notifications with a larger id that has a number (items with a smaller id
// that are numbered later arrive live, even if the client had them), and
// skips the cursor's own item. A notification that is not the viewer's is
// BAD_USER_INPUT, like a cursor that does not decode.
func (s *Store) NotificationResumePoint(ctx context.Context, v lending.Viewer, id int64, wait time.Duration) (ResumePoint, error) {
	return s.resumePoint(ctx, wait,
		`SELECT coalesce(pub_seq, 0) FROM notifications WHERE id = $1 AND user_id = $2`,
		`SELECT coalesce((SELECT min(pub_seq) - 1 FROM notifications WHERE user_id = $2 AND id > $1),
			(SELECT max(pub_seq) FROM notifications WHERE user_id = $2), 0)`, id, v.UserID)
}

// MessageResumePoint resolves "after message id", which must be in one of
// the viewer's chats (BAD_USER_INPUT otherwise), as NotificationResumePoint
// does.
func (s *Store) MessageResumePoint(ctx context.Context, v lending.Viewer, id int64, wait time.Duration) (ResumePoint, error) {
	return s.resumePoint(ctx, wait,
		`SELECT coalesce(m.pub_seq, 0) FROM messages m JOIN chat_members cm ON cm.chat_id = m.chat_id AND cm.user_id = $2 WHERE m.id = $1`,
		`WITH mine AS (SELECT m.id, m.pub_seq FROM chat_members cm JOIN messages m ON m.chat_id = cm.chat_id WHERE cm.user_id = $2)
		SELECT coalesce((SELECT min(pub_seq) - 1 FROM mine WHERE id > $1), (SELECT max(pub_seq) FROM mine), 0)`, id, v.UserID)
}

// NotificationStartPoint is where a notification subscription without a
// cursor starts: after the viewer's newest notification (waiting for its
// number as NotificationResumePoint does), so nothing committed before it
// is sent as new even if its event is published after the subscription
// began; {0} when the viewer has none.
func (s *Store) NotificationStartPoint(ctx context.Context, v lending.Viewer, wait time.Duration) (ResumePoint, error) {
	var id, seq int64
	err := s.pool.QueryRow(ctx, `SELECT id, coalesce(pub_seq, 0) FROM notifications WHERE user_id = $1 ORDER BY id DESC LIMIT 1`,
		v.UserID).Scan(&id, &seq)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		return ResumePoint{}, nil
	case err != nil:
		return ResumePoint{}, fmt.Errorf("start point: %w", err)
	case seq > 0:
		return ResumePoint{Seq: seq}, nil
	}
	return s.NotificationResumePoint(ctx, v, id, wait)
}

// MessageStartPoint is NotificationStartPoint for the messages in the
// viewer's chats (only chat chatID when it is not 0).
func (s *Store) MessageStartPoint(ctx context.Context, v lending.Viewer, chatID int64, wait time.Duration) (ResumePoint, error) {
	var id, seq int64
	err := s.pool.QueryRow(ctx, `SELECT m.id, coalesce(m.pub_seq, 0) FROM chat_members cm JOIN messages m ON m.chat_id = cm.chat_id
		WHERE cm.user_id = $1 AND ($2 = 0 OR cm.chat_id = $2) ORDER BY m.id DESC LIMIT 1`, v.UserID, chatID).Scan(&id, &seq)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		return ResumePoint{}, nil
	case err != nil:
		return ResumePoint{}, fmt.Errorf("start point: %w", err)
	case seq > 0:
		return ResumePoint{Seq: seq}, nil
	}
	return s.MessageResumePoint(ctx, v, id, wait)
}

func (s *Store) resumePoint(ctx context.Context, wait time.Duration, seqQ, fallbackQ string, id, userID int64) (ResumePoint, error) {
	deadline := time.Now().Add(wait)
	for {
		var seq int64
		err := s.pool.QueryRow(ctx, seqQ, id, userID).Scan(&seq)
		if errors.Is(err, pgx.ErrNoRows) {
			return ResumePoint{}, lending.BadInput("invalid cursor")
		}
		if err != nil {
			return ResumePoint{}, fmt.Errorf("resume point: %w", err)
		}
		if seq > 0 {
			return ResumePoint{Seq: seq}, nil
		}
		if !time.Now().Before(deadline) {
			break
		}
		t := time.NewTimer(25 * time.Millisecond)
		select {
		case <-ctx.Done():
			t.Stop()
			return ResumePoint{}, ctx.Err()
		case <-t.C:
		}
	}
	var seq int64
	if err := s.pool.QueryRow(ctx, fallbackQ, id, userID).Scan(&seq); err != nil {
		return ResumePoint{}, fmt.Errorf("resume point: %w", err)
	}
	return ResumePoint{Seq: seq, Skip: id}, nil
}
