package store_test

import (
	"context"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/stdlib"
	"github.com/pressly/goose/v3"

	"mutuo/lending"
	"mutuo/migrations"
	"mutuo/store"
)

// Upgrading a database with data to the publication sequence (migration
// 00004): existing notifications, messages and published events are
// numbered, unpublished events are left to the relay, which numbers them
// after everything that was there; resuming and replaying work on the old
// items. Down and up again works too.
func TestMigrationNumbersExistingData(t *testing.T) {
	s, db := newStore(t)
	ctx := context.Background()
	sqlDB := stdlib.OpenDBFromPool(db.Pool)
	defer sqlDB.Close()
	p, err := goose.NewProvider(goose.DialectPostgres, sqlDB, migrations.FS)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.DownTo(ctx, 3); err != nil {
		t.Fatalf("down to 3: %v", err)
	}

	// data written by the version before: a chat with messages (one outbox
	// row per participant then), their notifications, some events published
	a := lending.Viewer{UserID: newUser(t, s)}
	b := lending.Viewer{UserID: newUser(t, s)}
	var chat int64
	if err := db.Pool.QueryRow(ctx, `INSERT INTO chats (user_low, user_high) VALUES ($1, $2) RETURNING id`,
		min(a.UserID, b.UserID), max(a.UserID, b.UserID)).Scan(&chat); err != nil {
		t.Fatal(err)
	}
	if _, err := db.Pool.Exec(ctx, `INSERT INTO chat_members (chat_id, user_id) VALUES ($1, $2), ($1, $3)`, chat, a.UserID, b.UserID); err != nil {
		t.Fatal(err)
	}
	var msgs, notifs []int64
	for i := range 3 {
		var m, n int64
		if err := db.Pool.QueryRow(ctx, `INSERT INTO messages (chat_id, sender_id, body) VALUES ($1, $2, 'old') RETURNING id`, chat, a.UserID).Scan(&m); err != nil {
			t.Fatal(err)
		}
		if err := db.Pool.QueryRow(ctx, `INSERT INTO notifications (user_id, kind, title, body) VALUES ($1, 'NEW_MESSAGE', 't', 'b') RETURNING id`, b.UserID).Scan(&n); err != nil {
			t.Fatal(err)
		}
		for _, u := range []int64{a.UserID, b.UserID} {
			if _, err := db.Pool.Exec(ctx, `INSERT INTO outbox (stream, topic, payload) VALUES ($1, 'message.added', jsonb_build_object('messageId', $2::bigint, 'chatId', $3::bigint, 'userId', $4::bigint))`,
				store.MessageStream(u), m, chat, u); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := db.Pool.Exec(ctx, `INSERT INTO outbox (stream, topic, payload) VALUES ($1, 'notification.added', jsonb_build_object('notificationId', $2::bigint))`,
			store.NotificationStream(b.UserID), n); err != nil {
			t.Fatal(err)
		}
		if i < 2 { // the last message's events are not published yet
			if _, err := db.Pool.Exec(ctx, `UPDATE outbox SET published_at = now() WHERE published_at IS NULL`); err != nil {
				t.Fatal(err)
			}
		}
		msgs, notifs = append(msgs, m), append(notifs, n)
	}

	if _, err := p.Up(ctx); err != nil {
		t.Fatalf("up: %v", err)
	}
	if n := count(t, db, `SELECT count(*) FROM outbox WHERE published_at IS NOT NULL AND pub_seq IS NULL`); n != 0 {
		t.Fatalf("%d published events without a number", n)
	}
	if n := count(t, db, `SELECT count(*) FROM outbox WHERE published_at IS NULL AND pub_seq IS NOT NULL`); n != 0 {
		t.Fatalf("%d unpublished events numbered by the migration", n)
	}
	if n := count(t, db, `SELECT count(*) FROM notifications WHERE pub_seq IS NULL`) + count(t, db, `SELECT count(*) FROM messages WHERE pub_seq IS NULL`); n != 0 {
		t.Fatalf("%d items without a number", n)
	}
	last, err := s.PubSeq(ctx)
	if err != nil || last < 6 {
		t.Fatalf("sequence %d, %v", last, err)
	}
	// old items replay in id order, and resume points resolve at once
	got, err := s.MessagesAfter(ctx, b, 0, 0, 10)
	if err != nil || len(got) != 3 || got[0].ID != msgs[0] || got[2].ID != msgs[2] {
		t.Fatalf("old messages: %+v, %v", got, err)
	}
	rp, err := s.NotificationResumePoint(ctx, b, notifs[0], 0)
	if err != nil || rp.Skip != 0 {
		t.Fatalf("resume point: %+v, %v", rp, err)
	}
	after, err := s.NotificationsAfter(ctx, b, rp.Seq, 10)
	if err != nil || len(after) != 2 || after[0].ID != notifs[1] || after[1].ID != notifs[2] {
		t.Fatalf("after the first old notification: %+v, %v", after, err)
	}
	// the relay numbers the unpublished events after everything else
	settle(t, s)
	rows, err := s.OutboxAfter(ctx, last, 10)
	if err != nil || len(rows) != 3 {
		t.Fatalf("events numbered by the relay: %+v, %v", rows, err)
	}
	n, _ := s.NotificationsByID(ctx, b, []int64{notifs[2]})
	if n[notifs[2]] == nil || n[notifs[2]].PubSeq <= last {
		t.Fatalf("the unpublished notification is numbered %+v, want above %d", n[notifs[2]], last)
	}

	// and back down and up
	if _, err := p.DownTo(ctx, 3); err != nil {
		t.Fatalf("down to 3 again: %v", err)
	}
	if _, err := p.Up(ctx); err != nil {
		t.Fatalf("up again: %v", err)
	}
	if m, err := s.SendMessage(ctx, a, chat, "new", nil, time.Time{}); err != nil || m.PubSeq != 0 {
		t.Fatalf("a new message: %+v, %v", m, err)
	}
}
