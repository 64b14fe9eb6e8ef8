package store

// Chats and notification read state: startChat, sendMessage, markChatRead
// and markNotificationsRead, each one transaction.
//
// Lock order, followed by every use case here, so that concurrent
// transactions never deadlock: at most one chat row (FOR NO KEY UPDATE),
// then the viewer's own chat_members row, then the notifications written or
// updated (markChatRead takes only the member row, markNotificationsRead
// only notifications). sendMessage holds the chat row from its first
// statement to COMMIT,
// so a chat's messages commit in id order: a reader that has seen message n
// of a chat will never later find a message < n appear in it, which is what
// resuming a chat's stream after a cursor relies on.

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/jackc/pgx/v5"

	"mutuo/lending"
)

// Limits of the chat and notification use cases.
const (
	// MaxMessageRunes is the most characters a message body may have after trimming.
	MaxMessageRunes = 4000
	// MaxClientMessageIDRunes is the most characters a clientMessageId may have.
	MaxClientMessageIDRunes = 64
	// MaxNotificationIDs is the most ids one markNotificationsRead may name.
	MaxNotificationIDs = 1000
	// previewRunes is the most characters of a message a NEW_MESSAGE notification shows.
	previewRunes = 100
)

// StartChat returns the chat between the viewer and otherUserID about loanID
// (nil: about no loan), creating it with both members when there is none.
// One chat exists per pair of users and loan whatever the order or
// concurrency of the calls: the insert relies on the chats_pair_loan unique
// index and, when another transaction won, reads the chat it committed.
//
// Errors: UNAUTHENTICATED for an anonymous viewer; BAD_USER_INPUT when
// otherUserID is the viewer; NOT_FOUND when the other user or the loan does
// not exist.
func (s *Store) StartChat(ctx context.Context, v lending.Viewer, otherUserID int64, loanID *int64) (*lending.Chat, error) {
	if !v.Authenticated() {
		return nil, lending.ErrUnauthenticated
	}
	if otherUserID == v.UserID {
		return nil, lending.BadInput("you cannot start a chat with yourself")
	}
	lo, hi := v.UserID, otherUserID
	if lo > hi {
		lo, hi = hi, lo
	}
	var out *lending.Chat
	err := s.inTx(ctx, func(tx pgx.Tx) error {
		var ok bool
		if err := tx.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM users WHERE id = $1)`, otherUserID).Scan(&ok); err != nil {
			return fmt.Errorf("look up user %d: %w", otherUserID, err)
		}
		if !ok {
			return lending.NotFound("User")
		}
		if loanID != nil {
			if err := tx.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM loans WHERE id = $1)`, *loanID).Scan(&ok); err != nil {
				return fmt.Errorf("look up loan %d: %w", *loanID, err)
			}
			if !ok {
				return lending.NotFound("Loan")
			}
		}
		c, err := scanChat(tx.QueryRow(ctx, `
			INSERT INTO chats AS c (loan_id, user_low, user_high) VALUES ($1, $2, $3)
			ON CONFLICT (user_low, user_high, coalesce(loan_id, 0)) DO NOTHING
			RETURNING `+chatCols, loanID, lo, hi))
		if errors.Is(err, pgx.ErrNoRows) {
			// It exists (perhaps committed a moment ago by a concurrent
			// call, which this statement's fresh snapshot sees).
			out, err = one(ctx, tx, "Chat", scanChat, `SELECT `+chatCols+` FROM chats c
				WHERE c.user_low = $1 AND c.user_high = $2 AND coalesce(c.loan_id, 0) = coalesce($3::bigint, 0)`, lo, hi, loanID)
			return err
		}
		if err != nil {
			return fmt.Errorf("insert chat: %w", err)
		}
		tag, err := tx.Exec(ctx, `INSERT INTO chat_members (chat_id, user_id) VALUES ($1, $2), ($1, $3)`, c.ID, lo, hi)
		if err != nil {
			return fmt.Errorf("insert members of chat %d: %w", c.ID, err)
		}
		if tag.RowsAffected() != 2 {
			return fmt.Errorf("insert members of chat %d: touched %d rows, want 2", c.ID, tag.RowsAffected())
		}
		out = c
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// SendMessage adds a message from the viewer to one of their chats, at now
// (zero: the database's clock). The body is trimmed of surrounding white
// space and must then have 1 to MaxMessageRunes characters. In the same
// transaction it moves the chat's last_message_at forward, advances the
// sender's read position to the new message, writes one "message.added"
// outbox row for all participants (its stream names every participant's
// "messages:<user id>" stream, separated by a space; payload {"messageId",
// "chatId"}) and a NEW_MESSAGE
// notification for every other participant.
//
// clientMessageID, when given (1 to MaxClientMessageIDRunes characters),
// makes a resend idempotent per sender: a second call with the same id, chat
// and body returns the first call's message and writes nothing, also when
// the calls race (the messages_client_id unique index decides).
//
// Errors: UNAUTHENTICATED for an anonymous viewer; BAD_USER_INPUT for a body
// or clientMessageID out of bounds; NOT_FOUND when the chat does not exist or
// the viewer is not in it (the two are indistinguishable); CONFLICT when the
// viewer already used clientMessageID for another chat or another body.
func (s *Store) SendMessage(ctx context.Context, v lending.Viewer, chatID int64, body string, clientMessageID *string, now time.Time) (*lending.Message, error) {
	if !v.Authenticated() {
		return nil, lending.ErrUnauthenticated
	}
	body, err := validateMessage(body, clientMessageID)
	if err != nil {
		return nil, err
	}
	var at *time.Time
	if !now.IsZero() {
		at = &now
	}
	var out *lending.Message
	err = s.inTx(ctx, func(tx pgx.Tx) error {
		// The chat row, locked, and only if the viewer is in it.
		var loanID *int64
		var senderName string
		var low, high int64 // a chat's members are exactly its two users
		err := tx.QueryRow(ctx, `
			SELECT c.loan_id, u.name, c.user_low, c.user_high FROM chats c
			JOIN chat_members cm ON cm.chat_id = c.id AND cm.user_id = $2
			JOIN users u ON u.id = cm.user_id
			WHERE c.id = $1 FOR NO KEY UPDATE OF c`, chatID, v.UserID).Scan(&loanID, &senderName, &low, &high)
		if errors.Is(err, pgx.ErrNoRows) {
			return lending.NotFound("Chat")
		}
		if err != nil {
			return fmt.Errorf("lock chat %d: %w", chatID, err)
		}
		m, err := scanMessage(tx.QueryRow(ctx, `
			INSERT INTO messages AS m (chat_id, sender_id, body, client_message_id, created_at)
			VALUES ($1, $2, $3, $4, coalesce($5, now()))
			ON CONFLICT (sender_id, client_message_id) WHERE client_message_id IS NOT NULL DO NOTHING
			RETURNING `+messageCols, chatID, v.UserID, body, clientMessageID, at))
		if errors.Is(err, pgx.ErrNoRows) {
			// A resend: the first message with this clientMessageId.
			first, err := one(ctx, tx, "Message", scanMessage, `SELECT `+messageCols+` FROM messages m
				WHERE m.sender_id = $1 AND m.client_message_id = $2`, v.UserID, *clientMessageID)
			if err != nil {
				return err
			}
			if first.ChatID != chatID || first.Body != body {
				return lending.Errorf(lending.CodeConflict, "clientMessageId %q was already used for another message", *clientMessageID)
			}
			out = first
			return nil
		}
		if err != nil {
			return fmt.Errorf("insert message: %w", err)
		}
		tag, err := tx.Exec(ctx, `UPDATE chats SET last_message_at = greatest(last_message_at, $2) WHERE id = $1`, chatID, m.CreatedAt)
		if err != nil {
			return fmt.Errorf("touch chat %d: %w", chatID, err)
		}
		if err := mustOne(tag, "touch chat"); err != nil {
			return err
		}
		members := []int64{low, high}
		tag, err = tx.Exec(ctx, `UPDATE chat_members SET last_read_message_id = greatest(last_read_message_id, $3)
			WHERE chat_id = $1 AND user_id = $2`, chatID, v.UserID, m.ID)
		if err != nil {
			return fmt.Errorf("advance read position in chat %d: %w", chatID, err)
		}
		if err := mustOne(tag, "advance read position"); err != nil {
			return err
		}
		title, preview := NewMessageTitle(senderName), MessagePreview(body)
		// one event for every participant's stream: the message has one
		// place in the publication sequence
		if err := emit(ctx, tx, MessageStream(low)+" "+MessageStream(high), topicMessageAdded,
			map[string]any{"messageId": m.ID, "chatId": chatID}); err != nil {
			return err
		}
		for _, uid := range members {
			if uid != v.UserID {
				if err := notify(ctx, tx, uid, lending.NotifNewMessage, title, preview, loanID); err != nil {
					return err
				}
			}
		}
		out = m
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// MarkChatRead moves the viewer's read position in a chat to its newest
// message (never backwards: a position already past it stays), so the chat's
// unreadCount for the viewer becomes 0; other members' positions are
// untouched. It returns the chat.
//
// Errors: UNAUTHENTICATED for an anonymous viewer; NOT_FOUND when the chat
// does not exist or the viewer is not in it.
func (s *Store) MarkChatRead(ctx context.Context, v lending.Viewer, chatID int64) (*lending.Chat, error) {
	if !v.Authenticated() {
		return nil, lending.ErrUnauthenticated
	}
	var out *lending.Chat
	err := s.inTx(ctx, func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, `
			UPDATE chat_members cm SET last_read_message_id = greatest(cm.last_read_message_id,
				(SELECT coalesce(max(m.id), 0) FROM messages m WHERE m.chat_id = cm.chat_id))
			WHERE cm.chat_id = $1 AND cm.user_id = $2`, chatID, v.UserID)
		if err != nil {
			return fmt.Errorf("mark chat %d read: %w", chatID, err)
		}
		if tag.RowsAffected() == 0 {
			return lending.NotFound("Chat")
		}
		out, err = one(ctx, tx, "Chat", scanChat, `SELECT `+chatCols+` FROM chats c WHERE c.id = $1`, chatID)
		return err
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// MarkNotificationsRead marks the viewer's unread notifications read: those
// whose ids are given, or all of them when ids is nil (an empty, non-nil
// slice marks none). Ids of notifications that are not the viewer's, do not
// exist or are already read are ignored, so the count returned is exactly how
// many notifications changed, and a repeated call returns 0. At most
// MaxNotificationIDs ids.
//
// Errors: UNAUTHENTICATED for an anonymous viewer; BAD_USER_INPUT for more
// than MaxNotificationIDs ids.
func (s *Store) MarkNotificationsRead(ctx context.Context, v lending.Viewer, ids []int64) (int, error) {
	if !v.Authenticated() {
		return 0, lending.ErrUnauthenticated
	}
	if len(ids) > MaxNotificationIDs {
		return 0, lending.BadInput("at most %d notification ids at once", MaxNotificationIDs)
	}
	if ids != nil && len(ids) == 0 {
		return 0, nil
	}
	var n int
	err := s.inTx(ctx, func(tx pgx.Tx) error {
		sql, args := `UPDATE notifications SET read_at = now() WHERE user_id = $1 AND read_at IS NULL`, []any{v.UserID}
		if ids != nil {
			sql, args = sql+` AND id = ANY($2)`, append(args, uniqueSorted(ids))
		}
		tag, err := tx.Exec(ctx, sql, args...)
		if err != nil {
			return fmt.Errorf("mark notifications read: %w", err)
		}
		n = int(tag.RowsAffected())
		return nil
	})
	return n, err
}

// validateMessage returns the body to store (trimmed) or BAD_USER_INPUT.
func validateMessage(body string, clientMessageID *string) (string, error) {
	if !utf8.ValidString(body) || strings.ContainsRune(body, 0) {
		return "", lending.BadInput("message body is not valid text")
	}
	body = strings.TrimSpace(body)
	if n := utf8.RuneCountInString(body); n < 1 || n > MaxMessageRunes {
		return "", lending.BadInput("message body must have 1 to %d characters, has %d", MaxMessageRunes, n)
	}
	if clientMessageID != nil {
		id := *clientMessageID
		if n := utf8.RuneCountInString(id); !utf8.ValidString(id) || strings.ContainsRune(id, 0) || n < 1 || n > MaxClientMessageIDRunes {
			return "", lending.BadInput("clientMessageId must have 1 to %d characters", MaxClientMessageIDRunes)
		}
	}
	return body, nil
}

// NewMessageTitle is the title of the NEW_MESSAGE notification of a message
// from sender.
func NewMessageTitle(sender string) string { return "Nova mensagem de " + sender }

// MessagePreview is a message's first previewRunes characters on one line,
// with an ellipsis when cut.
func MessagePreview(body string) string {
	s := strings.Join(strings.Fields(body), " ")
	if utf8.RuneCountInString(s) <= previewRunes {
		return s
	}
	r := []rune(s)
	return strings.TrimRight(string(r[:previewRunes-1]), " ") + "…"
}
