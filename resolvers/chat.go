package resolvers

import (
	"context"

	"mutuo/lending"
)

// forgetChat drops what the request's loaders cached about a chat that a
// mutation just changed, so that the fields resolved after it in the same
// request (lastMessage, unreadCount, messages) read the committed state. A
// request without loaders has nothing to forget.
func forgetChat(ctx context.Context, chatID int64) {
	b, _ := ctx.Value(loadersKey{}).(*loaderBox)
	if b == nil {
		return
	}
	l := b.get()
	l.Chat.Clear(ctx, chatID)
	l.LastMessage.Clear(ctx, chatID)
	l.UnreadCount.Clear(ctx, chatID)
	l.ChatMessages.ClearAll() // keyed by page, not by chat
}

// optionalID parses an optional global ID of kind k (nil stays nil).
func optionalID(k lending.Kind, s *string) (*int64, error) {
	if s == nil {
		return nil, nil
	}
	id, err := lending.ParseIDOf(k, *s)
	if err != nil {
		return nil, err
	}
	return &id, nil
}

// idsOf parses a list of global IDs of kind k; nil stays nil (it means
// "all" to the callers) and an empty list stays empty.
func idsOf(k lending.Kind, ss []string) ([]int64, error) {
	if ss == nil {
		return nil, nil
	}
	out := make([]int64, len(ss))
	for i, s := range ss {
		id, err := lending.ParseIDOf(k, s)
		if err != nil {
			return nil, err
		}
		out[i] = id
	}
	return out, nil
}
