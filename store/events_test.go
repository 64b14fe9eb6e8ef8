package store_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
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

func collectPub(got *[]store.OutboxEvent) func(context.Context, []store.OutboxEvent) error {
	return func(_ context.Context, evs []store.OutboxEvent) error {
		*got = append(*got, evs...)
		return nil
	}
}

// settle numbers and publishes whatever the fixture's use cases wrote.
func settle(t *testing.T, s *store.Store) {
	t.Helper()
	for {
		b, err := s.RelayOutbox(context.Background(), 1000, func(context.Context, []store.OutboxEvent) error { return nil })
		if err != nil {
			t.Fatal(err)
		}
		if !b.More(1000) {
			return
		}
	}
}

func TestRelayOutboxNumbersThenPublishesInOrder(t *testing.T) {
	s, _ := newStore(t)
	ctx := context.Background()
	settle(t, s)
	base, err := s.PubSeq(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var ids []int64
	for i := 0; i < 5; i++ {
		ids = append(ids, evWrite(t, s, fmt.Sprintf("s:%d", i%2)))
	}
	// first turn: nothing numbered yet to publish; numbers the 3 oldest
	var got []store.OutboxEvent
	b, err := s.RelayOutbox(ctx, 3, collectPub(&got))
	if err != nil || b.Published != 0 || b.Stamped != 3 || b.Busy || !b.More(3) || len(got) != 0 {
		t.Fatalf("turn 1: %+v %v, %v", b, got, err)
	}
	if seq, _ := s.PubSeq(ctx); seq != base+3 {
		t.Fatalf("sequence %d after numbering 3, want %d", seq, base+3)
	}
	// second turn: publishes those 3 in order, numbers the other 2
	b, err = s.RelayOutbox(ctx, 3, collectPub(&got))
	if err != nil || b.Published != 3 || b.Stamped != 2 || b.Latency < 0 || b.MaxLatency < b.Latency {
		t.Fatalf("turn 2: %+v, %v", b, err)
	}
	if len(got) != 3 || got[0].ID != ids[0] || got[2].ID != ids[2] || got[1].Stream != "s:1" || got[0].Topic != "test" ||
		string(got[0].Payload) != `{"a": 1}` || got[0].CreatedAt.IsZero() || got[0].Seq != base+1 || got[2].Seq != base+3 {
		t.Fatalf("published %+v", got)
	}
	if n := evUnpublished(t, s); n != 2 {
		t.Fatalf("backlog %d, want 2", n)
	}
	// a failed publish marks nothing, but numbering goes on and commits
	id6 := evWrite(t, s, "s:0")
	boom := errors.New("redis down")
	b, err = s.RelayOutbox(ctx, 10, func(context.Context, []store.OutboxEvent) error { return boom })
	if !errors.Is(err, boom) || b.Stamped != 1 || b.Published != 0 {
		t.Fatalf("failed publish: %+v, %v", b, err)
	}
	if n := evUnpublished(t, s); n != 3 {
		t.Fatalf("backlog %d after a failure, want 3", n)
	}
	// without publish (Redis known down) only numbering happens
	id7 := evWrite(t, s, "s:1")
	if b, err := s.RelayOutbox(ctx, 10, nil); err != nil || b.Stamped != 1 || b.Published != 0 {
		t.Fatalf("numbering only: %+v, %v", b, err)
	}
	got = nil
	b, err = s.RelayOutbox(ctx, 10, collectPub(&got))
	if err != nil || b.Published != 4 || b.Stamped != 0 || b.More(10) {
		t.Fatalf("turn after: %+v, %v", b, err)
	}
	want := []int64{ids[3], ids[4], id6, id7}
	for i, e := range got {
		if e.ID != want[i] || e.Seq != base+4+int64(i) {
			t.Fatalf("published %d: id %d seq %d, want id %d seq %d", i, e.ID, e.Seq, want[i], base+4+int64(i))
		}
	}
	// nothing left: publish is not called
	b, err = s.RelayOutbox(ctx, 10, func(context.Context, []store.OutboxEvent) error {
		t.Fatal("publish called with nothing to publish")
		return nil
	})
	if err != nil || b.Published != 0 || b.Stamped != 0 {
		t.Fatalf("batch %+v, %v", b, err)
	}

	// OutboxAfter reads numbered rows, published or not, by number
	id8 := evWrite(t, s, "s:0")
	if b, err := s.RelayOutbox(ctx, 10, nil); err != nil || b.Stamped != 1 {
		t.Fatalf("numbering: %+v, %v", b, err)
	}
	after, err := s.OutboxAfter(ctx, base+5, 10)
	if err != nil || len(after) != 3 || after[0].ID != id6 || after[2].ID != id8 || after[2].Seq != base+8 {
		t.Fatalf("after %d: %+v, %v", base+5, after, err)
	}
	if after, _ := s.OutboxAfter(ctx, base+5, 2); len(after) != 2 {
		t.Fatalf("limit: %d rows", len(after))
	}
}

// Rows that commit out of id order are numbered in commit order: a row
// with a smaller id committed after a larger one gets the larger number,
// and so does the notification it announces.
func TestRelayOutboxNumbersInCommitOrder(t *testing.T) {
	s, _ := newStore(t)
	ctx := context.Background()
	settle(t, s)
	tx, err := s.Pool().Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(ctx)
	u := newUser(t, s)
	var lateNotif, lateRow int64
	if err := tx.QueryRow(ctx, `INSERT INTO notifications (user_id, kind, title, body) VALUES ($1, 'NEW_MESSAGE', 't', 'b') RETURNING id`, u).Scan(&lateNotif); err != nil {
		t.Fatal(err)
	}
	if err := tx.QueryRow(ctx, `INSERT INTO outbox (stream, topic, payload) VALUES ($1, 'notification.added', jsonb_build_object('notificationId', $2::bigint)) RETURNING id`,
		store.NotificationStream(u), lateNotif).Scan(&lateRow); err != nil {
		t.Fatal(err)
	}
	early := evWrite(t, s, "x") // a larger id, committed first
	if b, err := s.RelayOutbox(ctx, 10, nil); err != nil || b.Stamped != 1 {
		t.Fatalf("numbering: %+v, %v", b, err)
	}
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	if b, err := s.RelayOutbox(ctx, 10, nil); err != nil || b.Stamped != 1 {
		t.Fatalf("numbering: %+v, %v", b, err)
	}
	rows, err := s.OutboxAfter(ctx, 0, 10_000)
	if err != nil {
		t.Fatal(err)
	}
	seq := map[int64]int64{}
	for _, r := range rows {
		seq[r.ID] = r.Seq
	}
	if lateRow >= early || seq[lateRow] <= seq[early] || seq[early] == 0 {
		t.Fatalf("late row id %d seq %d, early row id %d seq %d", lateRow, seq[lateRow], early, seq[early])
	}
	n, err := s.NotificationsByID(ctx, lending.Viewer{UserID: u}, []int64{lateNotif})
	if err != nil || n[lateNotif] == nil || n[lateNotif].PubSeq != seq[lateRow] {
		t.Fatalf("notification %+v, %v: want seq %d", n[lateNotif], err, seq[lateRow])
	}
}

// While one relay holds the lock, another skips its turn (Busy) instead of
// publishing a batch concurrently.
func TestRelayOutboxOneRelayAtATime(t *testing.T) {
	s, _ := newStore(t)
	ctx := context.Background()
	settle(t, s)
	evWrite(t, s, "a")
	evWrite(t, s, "b")
	if b, err := s.RelayOutbox(ctx, 10, nil); err != nil || b.Stamped != 2 {
		t.Fatalf("numbering: %+v, %v", b, err)
	}
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
	if err != nil || b.Busy || b.Published != 1 || b.Stamped != 0 {
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
	settle(t, s) // numbers the rows left (and publishes them)
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
	// replays read numbered items only
	if got, _ := s.MessagesAfter(ctx, b, 0, 0, 10); len(got) != 0 {
		t.Fatalf("unnumbered messages replayed: %+v", got)
	}
	settle(t, s)
	byID, err := s.MessagesByID(ctx, a, []int64{m1.ID, m2.ID, m3.ID})
	if err != nil || len(byID) != 2 || byID[m1.ID] == nil || byID[m2.ID] != nil || byID[m3.ID].Body != "three" {
		t.Fatalf("a's messages by id: %v, %v", byID, err)
	}
	seq1 := byID[m1.ID].PubSeq
	if seq1 == 0 || byID[m3.ID].PubSeq <= seq1 {
		t.Fatalf("numbers: m1 %d, m3 %d", seq1, byID[m3.ID].PubSeq)
	}

	// b is in both chats; a only in ab
	all, err := s.MessagesAfter(ctx, b, 0, 0, 10)
	if err != nil || len(all) != 3 || all[0].ID != m1.ID || all[1].ID != m2.ID || all[2].ID != m3.ID {
		t.Fatalf("b's messages: %+v, %v", all, err)
	}
	if got, _ := s.MessagesAfter(ctx, b, 0, seq1, 1); len(got) != 1 || got[0].ID != m2.ID {
		t.Fatalf("after m1, limit 1: %+v", got)
	}
	if got, _ := s.MessagesAfter(ctx, b, ab.ID, seq1, 10); len(got) != 1 || got[0].ID != m3.ID {
		t.Fatalf("b in chat ab after m1: %+v", got)
	}
	if got, _ := s.MessagesAfter(ctx, a, 0, 0, 10); len(got) != 2 || got[0].ID != m1.ID || got[1].ID != m3.ID {
		t.Fatalf("a's messages: %+v", got)
	}
	if got, _ := s.MessagesAfter(ctx, a, bc.ID, 0, 10); len(got) != 0 {
		t.Fatalf("a sees chat bc: %+v", got)
	}
	// resume points: the item's number; another's item is BAD_USER_INPUT
	if p, err := s.MessageResumePoint(ctx, b, m1.ID, 0); err != nil || p.Seq != seq1 || p.Skip != 0 {
		t.Fatalf("resume point of m1 for b: %+v, %v", p, err)
	}
	if _, err := s.MessageResumePoint(ctx, a, m2.ID, 0); !lending.IsCode(err, lending.CodeBadUserInput) {
		t.Fatalf("resume point of another's message: %v", err)
	}

	// sending wrote NEW_MESSAGE notifications for the others
	nb, err := s.NotificationsAfter(ctx, b, 0, 10)
	if err != nil || len(nb) != 1 || nb[0].UserID != b.UserID || nb[0].Kind != lending.NotifNewMessage || nb[0].PubSeq == 0 {
		t.Fatalf("b's notifications: %+v, %v", nb, err)
	}
	na, _ := s.NotificationsAfter(ctx, a, 0, 10)
	nc, _ := s.NotificationsAfter(ctx, c, 0, 10)
	if len(na) != 1 || len(nc) != 1 {
		t.Fatalf("a has %d, c has %d notifications", len(na), len(nc))
	}
	if got, _ := s.NotificationsAfter(ctx, a, na[0].PubSeq, 10); len(got) != 0 {
		t.Fatalf("after the last: %+v", got)
	}
	m, err := s.NotificationsByID(ctx, a, []int64{na[0].ID, nb[0].ID, nc[0].ID})
	if err != nil || len(m) != 1 || m[na[0].ID] == nil {
		t.Fatalf("a's notifications by id: %v, %v", m, err)
	}
	if p, err := s.NotificationResumePoint(ctx, c, nc[0].ID, 0); err != nil || p.Seq != nc[0].PubSeq {
		t.Fatalf("resume point of c's notification: %+v, %v", p, err)
	}
	if _, err := s.NotificationResumePoint(ctx, c, na[0].ID, 0); !lending.IsCode(err, lending.CodeBadUserInput) {
		t.Fatalf("resume point of another's notification: %v", err)
	}
}

// A resume point for an item the relay has not numbered yet waits for the
// number; if the relay is stalled, it degrades to replaying from the first
// numbered item with a larger id, skipping the item itself.
func TestResumePointWaitsForTheRelay(t *testing.T) {
	s, _ := newStore(t)
	ctx := context.Background()
	a := lending.Viewer{UserID: newUser(t, s)}
	b := lending.Viewer{UserID: newUser(t, s)}
	chat, err := s.StartChat(ctx, a, b.UserID, nil)
	if err != nil {
		t.Fatal(err)
	}
	m1, err := s.SendMessage(ctx, a, chat.ID, "one", nil, time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	settle(t, s)
	m2, err := s.SendMessage(ctx, a, chat.ID, "two", nil, time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	// stalled relay: m2 has no number
	p, err := s.MessageResumePoint(ctx, b, m2.ID, 50*time.Millisecond)
	got1, _ := s.MessagesByID(ctx, b, []int64{m1.ID})
	if err != nil || p.Skip != m2.ID || p.Seq != got1[m1.ID].PubSeq {
		t.Fatalf("stalled: %+v, %v (m1 is numbered %d)", p, err, got1[m1.ID].PubSeq)
	}
	// the relay numbers it while the resume point waits
	go func() {
		time.Sleep(100 * time.Millisecond)
		_, _ = s.RelayOutbox(context.Background(), 100, nil)
	}()
	p, err = s.MessageResumePoint(ctx, b, m2.ID, 5*time.Second)
	got2, _ := s.MessagesByID(ctx, b, []int64{m2.ID})
	if err != nil || p.Skip != 0 || p.Seq == 0 || p.Seq != got2[m2.ID].PubSeq {
		t.Fatalf("waited: %+v, %v (m2 is numbered %d)", p, err, got2[m2.ID].PubSeq)
	}
}

// A subscription without a cursor starts after the viewer's newest item,
// waiting for its number: an item committed before the subscription is not
// new, even if its event is published later.
func TestStartPointIsAfterTheNewestItem(t *testing.T) {
	s, _ := newStore(t)
	ctx := context.Background()
	a := lending.Viewer{UserID: newUser(t, s)}
	b := lending.Viewer{UserID: newUser(t, s)}
	if p, err := s.NotificationStartPoint(ctx, b, 0); err != nil || p != (store.ResumePoint{}) {
		t.Fatalf("no notifications: %+v, %v", p, err)
	}
	if p, err := s.MessageStartPoint(ctx, b, 0, 0); err != nil || p != (store.ResumePoint{}) {
		t.Fatalf("no messages: %+v, %v", p, err)
	}
	chat, err := s.StartChat(ctx, a, b.UserID, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.SendMessage(ctx, a, chat.ID, "one", nil, time.Time{}); err != nil {
		t.Fatal(err)
	}
	settle(t, s)
	m2, err := s.SendMessage(ctx, a, chat.ID, "two", nil, time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	// stalled relay: the newest message has no number yet
	p, err := s.MessageStartPoint(ctx, b, chat.ID, 20*time.Millisecond)
	if err != nil || p.Skip != m2.ID || p.Seq == 0 {
		t.Fatalf("stalled: %+v, %v", p, err)
	}
	settle(t, s)
	got, _ := s.MessagesByID(ctx, b, []int64{m2.ID})
	if p, err := s.MessageStartPoint(ctx, b, 0, 0); err != nil || p.Skip != 0 || p.Seq != got[m2.ID].PubSeq {
		t.Fatalf("numbered: %+v, %v, want seq %d", p, err, got[m2.ID].PubSeq)
	}
	ns, _ := s.NotificationsAfter(ctx, b, 0, 10)
	if p, err := s.NotificationStartPoint(ctx, b, 0); err != nil || len(ns) != 2 || p.Seq != ns[1].PubSeq {
		t.Fatalf("notifications: %+v, %v (have %+v)", p, err, ns)
	}
}

// CheckInvariants notices a numbered event whose item has no number (a
// replay would never see the item).
func TestCheckInvariantsSeesAnUnnumberedItem(t *testing.T) {
	s, _ := newStore(t)
	ctx := context.Background()
	a := lending.Viewer{UserID: newUser(t, s)}
	b := lending.Viewer{UserID: newUser(t, s)}
	chat, err := s.StartChat(ctx, a, b.UserID, nil)
	if err != nil {
		t.Fatal(err)
	}
	m, err := s.SendMessage(ctx, a, chat.ID, "olá", nil, time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	settle(t, s)
	if err := s.CheckInvariants(ctx); err != nil {
		t.Fatalf("numbered: %v", err)
	}
	if _, err := s.Pool().Exec(ctx, `UPDATE messages SET pub_seq = NULL WHERE id = $1`, m.ID); err != nil {
		t.Fatal(err)
	}
	if err := s.CheckInvariants(ctx); err == nil || !strings.Contains(err.Error(), "its item is not numbered") {
		t.Fatalf("an unnumbered message: %v", err)
	}
}
