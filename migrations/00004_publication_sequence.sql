-- +goose Up
-- The publication sequence: a number the outbox relay gives every event, in
-- the order it publishes them, and copies onto the notification or message
-- the event announces. Ids are taken at INSERT and transactions commit in
-- any order, so a notification (or a message in another chat) with a
-- smaller id can commit after one with a larger id: "id > cursor" is no
-- resume point. The relay stamps rows in batches, one relay at a time (under
-- its advisory lock), in id order among the rows committed so far, and
-- commits the stamps before it publishes: whatever a reader sees stamped is
-- a prefix of the sequence, and anything committed later gets a larger
-- number. A subscription resumes with "pub_seq > the cursor item's".
--
-- outbox_seq holds the last number given (one row; transactional, so a
-- rolled-back batch leaves no hole).
CREATE TABLE outbox_seq (
    one  boolean PRIMARY KEY DEFAULT true CHECK (one),
    last bigint  NOT NULL
);

ALTER TABLE outbox ADD COLUMN pub_seq bigint;
ALTER TABLE notifications ADD COLUMN pub_seq bigint;
ALTER TABLE messages ADD COLUMN pub_seq bigint;

-- What existed before: published events and every notification and message
-- are numbered in id order (they have all committed; their order no longer
-- matters to anyone resuming). Unpublished events are left to the relay,
-- which renumbers their items after these.
UPDATE outbox o SET pub_seq = x.n
  FROM (SELECT id, row_number() OVER (ORDER BY id) AS n FROM outbox WHERE published_at IS NOT NULL) x
 WHERE o.id = x.id;
UPDATE notifications nt SET pub_seq = x.n
  FROM (SELECT id, row_number() OVER (ORDER BY id) AS n FROM notifications) x
 WHERE nt.id = x.id;
UPDATE messages m SET pub_seq = x.n
  FROM (SELECT id, row_number() OVER (ORDER BY id) AS n FROM messages) x
 WHERE m.id = x.id;
INSERT INTO outbox_seq (last) SELECT greatest(
    (SELECT count(*) FROM outbox WHERE published_at IS NOT NULL),
    (SELECT count(*) FROM notifications),
    (SELECT count(*) FROM messages));

DROP INDEX outbox_unpublished;
-- the relay's two queues: rows to number (by id), numbered rows to publish
-- (by number); brokers catch up by number
CREATE INDEX outbox_unstamped ON outbox (id) WHERE pub_seq IS NULL;
CREATE INDEX outbox_unpublished ON outbox (pub_seq) WHERE published_at IS NULL AND pub_seq IS NOT NULL;
CREATE UNIQUE INDEX outbox_pub_seq ON outbox (pub_seq);
CREATE INDEX notifications_user_seq ON notifications (user_id, pub_seq);
CREATE INDEX messages_chat_seq ON messages (chat_id, pub_seq);

-- +goose Down
DROP INDEX messages_chat_seq, notifications_user_seq, outbox_pub_seq, outbox_unpublished, outbox_unstamped;
CREATE INDEX outbox_unpublished ON outbox (id) WHERE published_at IS NULL;
ALTER TABLE messages DROP COLUMN pub_seq;
ALTER TABLE notifications DROP COLUMN pub_seq;
ALTER TABLE outbox DROP COLUMN pub_seq;
DROP TABLE outbox_seq;
