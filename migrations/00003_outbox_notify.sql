-- +goose Up
-- Wake the outbox relays when events are written: every statement that
-- inserts outbox rows sends one NOTIFY on the channel "mutuo_outbox"
-- (store.OutboxChannel). Postgres delivers it only at COMMIT and folds the
-- notifications of one transaction into one, so a relay is woken once per
-- committed use case and never for a rolled-back one. The payload is empty:
-- the relay reads the rows themselves. The channel name is fixed (a NOTIFY
-- reaches only sessions of the same database, so each database, and each
-- test's, has its own); relays also poll, so a lost notification only
-- delays an event.
-- +goose StatementBegin
CREATE FUNCTION outbox_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('mutuo_outbox', '');
    RETURN NULL;
END
$$;
-- +goose StatementEnd

CREATE TRIGGER outbox_notify AFTER INSERT ON outbox
    FOR EACH STATEMENT EXECUTE FUNCTION outbox_notify();

-- +goose Down
DROP TRIGGER outbox_notify ON outbox;
DROP FUNCTION outbox_notify();
