package resolvers

// The machinery behind the subscription resolvers: each one subscribes to
// its stream in the instance's realtime.Hub BEFORE it reads the current
// state (so nothing committed in between is missed), then re-reads through
// the store whenever an event arrives, and sends what it read on its
// channel. Its goroutine ends with the operation's context (or when the Hub
// closes), closing the channel.
//
// Events only say "something changed"; what a client receives is always
// read from Postgres, with the subscriber's viewer, so it is committed,
// current and the caller's to see. A subscriber that falls behind (the Hub
// dropped it for a full buffer) resubscribes and re-reads, so lagging costs
// a read, never an update.

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/99designs/gqlgen/graphql"
	"github.com/vektah/gqlparser/v2/ast"

	"mutuo/lending"
	"mutuo/realtime"
	"mutuo/store"
)

// Streams, as the store's use cases write them to the outbox.
func walletStream(userID int64) string       { return fmt.Sprintf("wallet:%d", userID) }
func loanStream(loanID int64) string         { return fmt.Sprintf("loan:%d", loanID) }
func notificationStream(userID int64) string { return fmt.Sprintf("notifications:%d", userID) }
func messageStream(userID int64) string      { return fmt.Sprintf("messages:%d", userID) }

// tagNotifications is the Notification edge cursors' tag (store.Notifications).
const tagNotifications = "notifications"

const (
	// replayPage is how many rows a replay reads at a time.
	replayPage = 500
	// sentMemory is how many sent ids a message or notification
	// subscription remembers to drop repeats.
	sentMemory = 1024
	// maxPendingEvents: past this many unhandled events (the store is
	// failing), a subscription forgets them and re-reads instead.
	maxPendingEvents = 256
)

// SubscriptionLoaders is a gqlgen extension that gives every response of a
// subscription operation (one per event) fresh dataloaders, so the fields
// nested in what a subscription sends are read anew for each event rather
// than from a cache as old as the subscription. Register it with
// srv.Use(resolvers.SubscriptionLoaders{Store: s, Wait: w}).
type SubscriptionLoaders struct {
	Store *store.Store
	Wait  time.Duration
}

var (
	_ graphql.HandlerExtension    = SubscriptionLoaders{}
	_ graphql.ResponseInterceptor = SubscriptionLoaders{}
)

// ExtensionName names the extension.
func (SubscriptionLoaders) ExtensionName() string { return "SubscriptionLoaders" }

// Validate accepts every schema.
func (SubscriptionLoaders) Validate(graphql.ExecutableSchema) error { return nil }

// InterceptResponse puts fresh loaders in the context of each subscription
// response; queries and mutations keep their request's loaders.
func (e SubscriptionLoaders) InterceptResponse(ctx context.Context, next graphql.ResponseHandler) *graphql.Response {
	if graphql.HasOperationContext(ctx) {
		if op := graphql.GetOperationContext(ctx).Operation; op != nil && op.Operation == ast.Subscription {
			ctx = WithFreshLoaders(ctx, e.Store, e.Wait)
		}
	}
	return next(ctx)
}

// eventCtx is ctx with fresh loaders, for the reads of one event.
func (r *Resolver) eventCtx(ctx context.Context) context.Context {
	return WithFreshLoaders(ctx, r.Store, r.LoaderWait)
}

// follower is a subscription's hold on its Hub stream.
type follower struct {
	hub    *realtime.Hub
	stream string
	sub    *realtime.Subscription
}

// follow subscribes to stream. Call it before reading the current state.
func (r *Resolver) follow(stream string) (*follower, error) {
	if r.Hub == nil {
		return nil, fmt.Errorf("subscription %s: no realtime hub configured", stream)
	}
	return &follower{hub: r.Hub, stream: stream, sub: r.Hub.Subscribe(stream, realtime.DefaultBuffer)}, nil
}

// reopen resubscribes after the Hub dropped a lagging subscriber; it
// reports false when the subscription is over for good (the Hub closed).
func (f *follower) reopen() bool {
	if f.sub.Err() != realtime.ErrLagged {
		return false
	}
	f.sub = f.hub.Subscribe(f.stream, realtime.DefaultBuffer)
	return true
}

// run calls handle with each batch of events (what arrived, plus whatever
// else is already buffered), with resync true the first time when resync
// is given and after each lag (having resubscribed first: handle must then
// re-read everything it may have missed). A handle that fails is retried
// with backoff together with the events that arrived meanwhile. run returns
// when ctx ends or the Hub closes, and releases the subscription.
func (f *follower) run(ctx context.Context, resync bool, handle func(ctx context.Context, evs []realtime.Event, resync bool) error) {
	defer func() { f.sub.Close() }()
	var evs []realtime.Event
	var backoff time.Duration
	take := func(e realtime.Event, ok bool) bool {
		if !ok {
			if !f.reopen() {
				return false
			}
			resync = true
			return true
		}
		evs = append(evs, e)
		return true
	}
	for {
		if !resync && len(evs) == 0 {
			select {
			case <-ctx.Done():
				return
			case e, ok := <-f.sub.C:
				if !take(e, ok) {
					return
				}
			}
		} else if backoff > 0 {
			t := time.NewTimer(backoff)
			select {
			case <-ctx.Done():
				t.Stop()
				return
			case <-t.C:
			}
		}
	drain:
		for {
			select {
			case e, ok := <-f.sub.C:
				if !take(e, ok) {
					return
				}
			default:
				break drain
			}
		}
		if len(evs) > maxPendingEvents {
			evs, resync = evs[:0], true
		}
		err := handle(ctx, evs, resync)
		if ctx.Err() != nil {
			return
		}
		if err != nil {
			backoff = min(max(2*backoff, 100*time.Millisecond), 5*time.Second)
			continue
		}
		evs, resync, backoff = evs[:0], false, 0
	}
}

// send puts v on out unless ctx ends first.
func send[T any](ctx context.Context, out chan<- T, v T) error {
	select {
	case out <- v:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// ---------------------------------------------------------------- walletUpdated

func (r *Resolver) walletUpdates(ctx context.Context, v lending.Viewer) (<-chan *lending.Wallet, error) {
	f, err := r.follow(walletStream(v.UserID))
	if err != nil {
		return nil, err
	}
	load := func(ctx context.Context) (*lending.Wallet, error) {
		ctx = r.eventCtx(ctx)
		return For(ctx).WalletByUser.Load(ctx, v.UserID)()
	}
	w, err := load(ctx)
	if err == nil && w == nil {
		err = lending.NotFound("Wallet")
	}
	if err != nil {
		f.sub.Close()
		return nil, err
	}
	out := make(chan *lending.Wallet, 1)
	out <- w
	last := w.Version
	go func() {
		defer close(out)
		f.run(ctx, false, func(ctx context.Context, _ []realtime.Event, _ bool) error {
			w, err := load(ctx)
			if err != nil || w == nil || w.Version <= last {
				return err // never an older version after a newer one
			}
			last = w.Version
			return send(ctx, out, w)
		})
	}()
	return out, nil
}

// ---------------------------------------------------------------- loanUpdated

func (r *Resolver) loanUpdates(ctx context.Context, loanID int64) (<-chan *lending.Loan, error) {
	f, err := r.follow(loanStream(loanID))
	if err != nil {
		return nil, err
	}
	ectx := r.eventCtx(ctx)
	l, err := For(ectx).Loan.Load(ectx, loanID)()
	if err == nil && l == nil {
		err = lending.NotFound("Loan")
	}
	if err != nil {
		f.sub.Close()
		return nil, err
	}
	out := make(chan *lending.Loan, 1)
	out <- l
	last := l.Version
	go func() {
		defer close(out)
		f.run(ctx, false, func(ctx context.Context, evs []realtime.Event, resync bool) error {
			var newest int64
			for _, e := range evs {
				newest = max(newest, e.ID)
			}
			if resync {
				newest = 0 // after a lag: a read of our own, started now
			}
			l, err := r.loanReads.read(ctx, r.Store, loanID, newest)
			// every change to a loan bumps its version: an equal one is a
			// state already sent
			if err != nil || l == nil || l.Version <= last {
				return err
			}
			last = l.Version
			return send(ctx, out, l)
		})
	}()
	return out, nil
}

// sharedLoanReads lets the subscribers of one loan share the read that an
// event causes: a popular loan has thousands of subscribers on an instance,
// and each event would otherwise make each of them read it. A read may be
// shared by every subscriber whose newest event is no newer than the
// newest event of the subscriber that started it (a loan's events are
// written under its row lock, so they arrive in commit order: the read
// started after all of them committed). Loans are public to every
// signed-in user, so sharing shows no one anything they may not see.
type sharedLoanReads struct {
	mu sync.Mutex
	m  map[int64]*loanRead
}

type loanRead struct {
	after int64 // the newest event its starter had received
	done  chan struct{}
	loan  *lending.Loan
	err   error
}

// read returns loanID as read after event id after was received (after 0:
// a read of the caller's own).
func (s *sharedLoanReads) read(ctx context.Context, st *store.Store, loanID, after int64) (*lending.Loan, error) {
	if after == 0 {
		return readLoan(ctx, st, loanID)
	}
	s.mu.Lock()
	if s.m == nil {
		s.m = map[int64]*loanRead{}
	}
	e := s.m[loanID]
	if e != nil && e.after >= after && !(isDone(e.done) && e.err != nil) {
		s.mu.Unlock()
		select {
		case <-e.done:
			return e.loan, e.err
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	e = &loanRead{after: after, done: make(chan struct{})}
	if len(s.m) >= 1024 {
		for id, x := range s.m {
			if isDone(x.done) {
				delete(s.m, id)
			}
		}
	}
	s.m[loanID] = e
	s.mu.Unlock()
	// the read serves other subscribers too: it must not end with ours
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	e.loan, e.err = readLoan(rctx, st, loanID)
	cancel()
	close(e.done)
	return e.loan, e.err
}

func readLoan(ctx context.Context, st *store.Store, loanID int64) (*lending.Loan, error) {
	m, err := st.LoansByID(ctx, []int64{loanID})
	if err != nil {
		return nil, err
	}
	return m[loanID], nil
}

func isDone(c chan struct{}) bool {
	select {
	case <-c:
		return true
	default:
		return false
	}
}

// ---------------------------------------------------------------- notificationAdded and messageAdded

// sentIDs remembers the ids a subscription sent, to drop repeats: an event
// for an item the replay already sent, or a repeated event. Ids are not
// assumed to arrive in order (a user's notifications, or messages across
// chats, may commit out of id order), so it is a set: the last n ids, and
// anything at or below the largest id it forgot counts as sent.
type sentIDs struct {
	ring  []int64 // grows to max, then wraps (an idle subscription holds none)
	max   int
	next  int
	set   map[int64]struct{}
	floor int64
}

func newSentIDs(n int) *sentIDs { return &sentIDs{max: n} }

func (s *sentIDs) has(id int64) bool {
	_, ok := s.set[id]
	return ok || id <= s.floor
}

func (s *sentIDs) add(id int64) {
	if s.has(id) {
		return
	}
	if s.set == nil {
		s.set = map[int64]struct{}{}
	}
	s.set[id] = struct{}{}
	if len(s.ring) < s.max {
		s.ring = append(s.ring, id)
		return
	}
	old := s.ring[s.next]
	delete(s.set, old)
	s.floor = max(s.floor, old)
	s.ring[s.next] = id
	s.next = (s.next + 1) % s.max
}

// itemFeed is what notificationAdded and messageAdded have in common: a
// per-user stream of "item n was added" events, a replay of the items after
// an id, and a viewer-scoped load by ids.
type itemFeed[T any] struct {
	// idOf extracts the item's id from an event; ok false skips the event
	// (another chat's message when following one chat).
	idOf func(realtime.Event) (id int64, ok bool)
	// after reads the items with id > after, oldest first, at most limit.
	after func(ctx context.Context, after int64, limit int) ([]T, error)
	// byID loads the items among ids that the viewer may see.
	byID func(ctx context.Context, ids []int64) (map[int64]T, error)
	id   func(T) int64
}

// start follows f and sends on the returned channel: first, when mark is a
// resume point (replay), every item after it; then each new item, once.
// mark is the id after which items are "new": the cursor given, or the
// newest item when subscribing without one.
func (it itemFeed[T]) start(ctx context.Context, f *follower, mark int64, replay bool) <-chan T {
	out := make(chan T, 1)
	sent := newSentIDs(sentMemory)
	emit := func(ctx context.Context, v T) error {
		id := it.id(v)
		if sent.has(id) {
			return nil
		}
		if err := send(ctx, out, v); err != nil {
			return err
		}
		sent.add(id)
		mark = max(mark, id)
		return nil
	}
	go func() {
		defer close(out)
		f.run(ctx, replay, func(ctx context.Context, evs []realtime.Event, resync bool) error {
			if resync {
				// everything after the last item sent (or the cursor)
				for {
					page, err := it.after(ctx, mark, replayPage)
					if err != nil {
						return err
					}
					for _, v := range page {
						if err := emit(ctx, v); err != nil {
							return err
						}
						mark = max(mark, it.id(v))
					}
					if len(page) < replayPage {
						break
					}
				}
			}
			var ids []int64
			for _, e := range evs {
				if id, ok := it.idOf(e); ok && !sent.has(id) && !slices.Contains(ids, id) {
					ids = append(ids, id)
				}
			}
			if len(ids) == 0 {
				return nil
			}
			got, err := it.byID(ctx, ids)
			if err != nil {
				return err
			}
			slices.Sort(ids)
			for _, id := range ids {
				if v, ok := got[id]; ok {
					if err := emit(ctx, v); err != nil {
						return err
					}
				}
			}
			return nil
		})
	}()
	return out
}

func (r *Resolver) notificationUpdates(ctx context.Context, v lending.Viewer, after *string) (<-chan *lending.Notification, error) {
	var mark int64
	if after != nil {
		c, err := store.DecodeCursor(*after, tagNotifications)
		if err != nil {
			return nil, err
		}
		mark = c.ID
	}
	f, err := r.follow(notificationStream(v.UserID))
	if err != nil {
		return nil, err
	}
	if after == nil {
		if mark, err = r.Store.LatestNotificationID(ctx, v); err != nil {
			f.sub.Close()
			return nil, err
		}
	}
	feed := itemFeed[*lending.Notification]{
		idOf: func(e realtime.Event) (int64, bool) {
			var p struct {
				NotificationID int64 `json:"notificationId"`
			}
			return p.NotificationID, json.Unmarshal(e.Payload, &p) == nil && p.NotificationID > 0
		},
		after: func(ctx context.Context, after int64, limit int) ([]*lending.Notification, error) {
			return r.Store.NotificationsAfter(ctx, v, after, limit)
		},
		byID: func(ctx context.Context, ids []int64) (map[int64]*lending.Notification, error) {
			return r.Store.NotificationsByID(ctx, v, ids)
		},
		id: func(n *lending.Notification) int64 { return n.ID },
	}
	return feed.start(ctx, f, mark, after != nil), nil
}

func (r *Resolver) messageUpdates(ctx context.Context, v lending.Viewer, chatID *string, after *string) (<-chan *lending.Message, error) {
	var chat int64 // 0: every chat of the viewer's
	if chatID != nil {
		id, err := lending.ParseIDOf(lending.KindChat, *chatID)
		if err != nil {
			return nil, err
		}
		chats, err := r.Store.ChatsByID(ctx, v, []int64{id})
		if err != nil {
			return nil, err
		}
		if chats[id] == nil {
			return nil, lending.NotFound("Chat")
		}
		chat = id
	}
	var mark int64
	if after != nil {
		c, err := store.DecodeCursor(*after, store.TagChatMessages)
		if err != nil {
			return nil, err
		}
		mark = c.ID
	}
	f, err := r.follow(messageStream(v.UserID))
	if err != nil {
		return nil, err
	}
	if after == nil {
		if mark, err = r.Store.LatestMessageID(ctx, v, chat); err != nil {
			f.sub.Close()
			return nil, err
		}
	}
	feed := itemFeed[*lending.Message]{
		idOf: func(e realtime.Event) (int64, bool) {
			var p struct {
				MessageID int64 `json:"messageId"`
				ChatID    int64 `json:"chatId"`
			}
			if json.Unmarshal(e.Payload, &p) != nil || p.MessageID <= 0 {
				return 0, false
			}
			return p.MessageID, chat == 0 || p.ChatID == chat
		},
		after: func(ctx context.Context, after int64, limit int) ([]*lending.Message, error) {
			return r.Store.MessagesAfter(ctx, v, chat, after, limit)
		},
		byID: func(ctx context.Context, ids []int64) (map[int64]*lending.Message, error) {
			m, err := r.Store.MessagesByID(ctx, v, ids)
			if chat != 0 {
				for id, msg := range m {
					if msg.ChatID != chat {
						delete(m, id)
					}
				}
			}
			return m, err
		},
		id: func(m *lending.Message) int64 { return m.ID },
	}
	return feed.start(ctx, f, mark, after != nil), nil
}
