package store_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"mutuo/lending"
	"mutuo/store"
)

func evWrite(t *testing.T, s *store.Store, stream string) int64 {
	t.Helper()
	var id int64
	if err := s.Pool().QueryRow(context.Background(), `INSERT INTO outbox (stream, topic, payload) VALUES ($1, 'test', '{"a": 1}') RETURNING id`,
		stream).Scan(&id); err != nil {
		t.Fatal(err)
	}
	return id
}

func evUnpublished(t *testing.T, s *store.Store) int64 {
	t.Helper()
	n, err := s.OutboxBacklog(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func TestRelayOutboxPublishesInOrderAndMarks(t *testing.T) {
	s, _ := newStore(t)
	ctx := context.Background()
	base, _ := s.OutboxMaxID(ctx) // use cases of the fixture may have written some
	if _, err := s.Pool().Exec(ctx, `UPDATE outbox SET published_at = now()`); err != nil {
		t.Fatal(err)
	}
	var ids []int64
	for i := 0; i < 5; i++ {
		ids = append(ids, evWrite(t, s, fmt.Sprintf("s:%d", i%2)))
	}
	if max, err := s.OutboxMaxID(ctx); err != nil || max != ids[4] || max <= base {
		t.Fatalf("max id %d, %v", max, err)
	}
	var got []store.OutboxEvent
	b, err := s.RelayOutbox(ctx, 3, func(_ context.Context, evs []store.OutboxEvent) error {
		got = append(got, evs...)
		return nil
	})
	if err != nil || b.Published != 3 || b.Busy || b.Latency < 0 || b.MaxLatency < b.Latency {
		t.Fatalf("batch %+v, %v", b, err)
	}
	if len(got) != 3 || got[0].ID != ids[0] || got[2].ID != ids[2] || got[1].Stream != "s:1" || got[0].Topic != "test" ||
		string(got[0].Payload) != `{"a": 1}` || got[0].CreatedAt.IsZero() {
		t.Fatalf("published %+v", got)
	}
	if n := evUnpublished(t, s); n != 2 {
		t.Fatalf("backlog %d, want 2", n)
	}
	// a failed publish marks nothing
	boom := errors.New("redis down")
	if _, err := s.RelayOutbox(ctx, 10, func(context.Context, []store.OutboxEvent) error { return boom }); !errors.Is(err, boom) {
		t.Fatalf("err = %v", err)
	}
	if n := evUnpublished(t, s); n != 2 {
		t.Fatalf("backlog %d after a failure, want 2", n)
	}
	got = nil
	b, err = s.RelayOutbox(ctx, 10, func(_ context.Context, evs []store.OutboxEvent) error {
		got = append(got, evs...)
		return nil
	})
	if err != nil || b.Published != 2 || got[0].ID != ids[3] || got[1].ID != ids[4] {
		t.Fatalf("batch %+v %v, %v", b, got, err)
	}
	// nothing left: publish is not called
	b, err = s.RelayOutbox(ctx, 10, func(context.Context, []store.OutboxEvent) error {
		t.Fatal("publish called with nothing to publish")
		return nil
	})
	if err != nil || b.Published != 0 {
		t.Fatalf("batch %+v, %v", b, err)
	}

	// OutboxAfter reads published and unpublished rows alike
	id6 := evWrite(t, s, "s:0")
	after, err := s.OutboxAfter(ctx, ids[2], 10)
	if err != nil || len(after) != 3 || after[0].ID != ids[3] || after[2].ID != id6 {
		t.Fatalf("after %v: %+v, %v", ids[2], after, err)
	}
	if after, _ := s.OutboxAfter(ctx, ids[2], 2); len(after) != 2 {
		t.Fatalf("limit: %d rows", len(after))
	}
}

// While one relay holds the lock, another skips its turn (Busy) instead of
// publishing a batch concurrently.
func TestRelayOutboxOneRelayAtATime(t *testing.T) {
	s, _ := newStore(t)
	ctx := context.Background()
	if _, err := s.Pool().Exec(ctx, `UPDATE outbox SET published_at = now()`); err != nil {
		t.Fatal(err)
	}
	evWrite(t, s, "a")
	evWrite(t, s, "b")
	inside, release := make(chan struct{}), make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		b, err := s.RelayOutbox(ctx, 1, func(context.Context, []store.OutboxEvent) error {
			close(inside)
			<-release
			return nil
		})
		if err != nil || b.Published != 1 {
			t.Errorf("first relay: %+v, %v", b, err)
		}
	}()
	<-inside
	b, err := s.RelayOutbox(ctx, 10, func(context.Context, []store.OutboxEvent) error {
		t.Error("second relay published while the first held the lock")
		return nil
	})
	if err != nil || !b.Busy {
		t.Fatalf("second relay: %+v, %v", b, err)
	}
	close(release)
	wg.Wait()
	b, err = s.RelayOutbox(ctx, 10, func(context.Context, []store.OutboxEvent) error { return nil })
	if err != nil || b.Busy || b.Published != 1 {
		t.Fatalf("after release: %+v, %v", b, err)
	}
}

func TestPruneOutboxDeletesOnlyOldPublishedRows(t *testing.T) {
	s, _ := newStore(t)
	ctx := context.Background()
	old := evWrite(t, s, "a")
	recent := evWrite(t, s, "a")
	pending := evWrite(t, s, "a")
	if _, err := s.Pool().Exec(ctx, `UPDATE outbox SET published_at = now() - interval '2 days' WHERE id <= $1`, old); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Pool().Exec(ctx, `UPDATE outbox SET published_at = now() WHERE id = $1`, recent); err != nil {
		t.Fatal(err)
	}
	n, err := s.PruneOutbox(ctx, time.Now().Add(-24*time.Hour), 1000)
	if err != nil || n < 1 {
		t.Fatalf("pruned %d, %v", n, err)
	}
	rows, err := s.OutboxAfter(ctx, 0, 100)
	if err != nil || len(rows) != 2 || rows[0].ID != recent || rows[1].ID != pending {
		t.Fatalf("left %+v, %v", rows, err)
	}
}

func TestListenOutboxWakesOnCommit(t *testing.T) {
	s, _ := newStore(t)
	ctx := context.Background()
	l, err := s.ListenOutbox(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	// nothing yet: the wait times out and the connection stays usable
	wctx, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
	err = l.Wait(wctx)
	cancel()
	if !errors.Is(err, store.ErrNoNotification) {
		t.Fatalf("wait with nothing: %v", err)
	}
	// a rolled-back insert notifies no one
	tx, err := s.Pool().Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(ctx, `INSERT INTO outbox (stream, topic, payload) VALUES ('a', 't', '{}')`); err != nil {
		t.Fatal(err)
	}
	_ = tx.Rollback(ctx)
	wctx, cancel = context.WithTimeout(ctx, 200*time.Millisecond)
	err = l.Wait(wctx)
	cancel()
	if !errors.Is(err, store.ErrNoNotification) {
		t.Fatalf("wait after a rollback: %v", err)
	}
	evWrite(t, s, "a")
	wctx, cancel = context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if err := l.Wait(wctx); err != nil {
		t.Fatalf("wait after a commit: %v", err)
	}
}

func TestReplayReadsAreScopedToTheViewer(t *testing.T) {
	s, _ := newStore(t)
	ctx := context.Background()
	a := lending.Viewer{UserID: newUser(t, s)}
	b := lending.Viewer{UserID: newUser(t, s)}
	c := lending.Viewer{UserID: newUser(t, s)}
	ab, err := s.StartChat(ctx, a, b.UserID, nil)
	if err != nil {
		t.Fatal(err)
	}
	bc, err := s.StartChat(ctx, b, c.UserID, nil)
	if err != nil {
		t.Fatal(err)
	}
	sendMsg := func(v lending.Viewer, chat int64, body string) *lending.Message {
		m, err := s.SendMessage(ctx, v, chat, body, nil, time.Time{})
		if err != nil {
			t.Fatal(err)
		}
		return m
	}
	m1 := sendMsg(a, ab.ID, "one")
	m2 := sendMsg(b, bc.ID, "two")
	m3 := sendMsg(b, ab.ID, "three")

	// b is in both chats; a only in ab
	all, err := s.MessagesAfter(ctx, b, 0, 0, 10)
	if err != nil || len(all) != 3 || all[0].ID != m1.ID || all[1].ID != m2.ID || all[2].ID != m3.ID {
		t.Fatalf("b's messages: %+v, %v", all, err)
	}
	if got, _ := s.MessagesAfter(ctx, b, 0, m1.ID, 1); len(got) != 1 || got[0].ID != m2.ID {
		t.Fatalf("after m1, limit 1: %+v", got)
	}
	if got, _ := s.MessagesAfter(ctx, b, ab.ID, m1.ID, 10); len(got) != 1 || got[0].ID != m3.ID {
		t.Fatalf("b in chat ab after m1: %+v", got)
	}
	if got, _ := s.MessagesAfter(ctx, a, 0, 0, 10); len(got) != 2 || got[0].ID != m1.ID || got[1].ID != m3.ID {
		t.Fatalf("a's messages: %+v", got)
	}
	if got, _ := s.MessagesAfter(ctx, a, bc.ID, 0, 10); len(got) != 0 {
		t.Fatalf("a sees chat bc: %+v", got)
	}
	byID, err := s.MessagesByID(ctx, a, []int64{m1.ID, m2.ID, m3.ID})
	if err != nil || len(byID) != 2 || byID[m1.ID] == nil || byID[m2.ID] != nil || byID[m3.ID].Body != "three" {
		t.Fatalf("a's messages by id: %v, %v", byID, err)
	}
	if id, err := s.LatestMessageID(ctx, a, 0); err != nil || id != m3.ID {
		t.Fatalf("latest for a: %d, %v", id, err)
	}
	if id, _ := s.LatestMessageID(ctx, b, bc.ID); id != m2.ID {
		t.Fatalf("latest for b in bc: %d", id)
	}
	if id, _ := s.LatestMessageID(ctx, c, ab.ID); id != 0 {
		t.Fatalf("latest for c in ab: %d", id)
	}

	// sending wrote NEW_MESSAGE notifications for the others
	nb, err := s.NotificationsAfter(ctx, b, 0, 10)
	if err != nil || len(nb) != 1 || nb[0].UserID != b.UserID || nb[0].Kind != lending.NotifNewMessage {
		t.Fatalf("b's notifications: %+v, %v", nb, err)
	}
	na, _ := s.NotificationsAfter(ctx, a, 0, 10)
	nc, _ := s.NotificationsAfter(ctx, c, 0, 10)
	if len(na) != 1 || len(nc) != 1 {
		t.Fatalf("a has %d, c has %d notifications", len(na), len(nc))
	}
	if got, _ := s.NotificationsAfter(ctx, a, na[0].ID, 10); len(got) != 0 {
		t.Fatalf("after the last: %+v", got)
	}
	m, err := s.NotificationsByID(ctx, a, []int64{na[0].ID, nb[0].ID, nc[0].ID})
	if err != nil || len(m) != 1 || m[na[0].ID] == nil {
		t.Fatalf("a's notifications by id: %v, %v", m, err)
	}
	if id, _ := s.LatestNotificationID(ctx, c); id != nc[0].ID {
		t.Fatalf("latest notification of c: %d", id)
	}
	if id, _ := s.LatestNotificationID(ctx, lending.Viewer{UserID: 1 << 40}); id != 0 {
		t.Fatalf("latest notification of nobody: %d", id)
	}
}
