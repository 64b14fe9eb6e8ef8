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
	"cmp"
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

const (
	// replayPage is how many rows a replay reads at a time.
	replayPage = 500
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

// follower is a subscription's hold on its Hub stream. The Hub hands it
// events through a callback (realtime.Hub.SubscribeFunc) and a goroutine
// runs only while there is something to handle, so an idle subscription
// holds no goroutine and no buffer.
type follower struct {
	hub    *realtime.Hub
	stream string
	sub    *realtime.Subscription // the worker's (and, before start, the creator's)

	mu      sync.Mutex
	evs     []realtime.Event // delivered, not taken yet (at most realtime.DefaultBuffer)
	lagged  bool             // the Hub dropped sub for a full buffer: resubscribe and resync
	ended   bool             // the Hub closed
	started bool
	running bool // a worker goroutine is on it
	done    bool // finished: no worker will run again

	// set by start
	ctx    context.Context
	resync bool
	handle func(ctx context.Context, evs []realtime.Event, resync bool) error
	onEnd  func()
	stop   func() bool
}

// follow subscribes to stream. Call it before reading the current state.
func (r *Resolver) follow(stream string) (*follower, error) {
	if r.Hub == nil {
		return nil, fmt.Errorf("subscription %s: no realtime hub configured", stream)
	}
	f := &follower{hub: r.Hub, stream: stream}
	f.subscribe()
	return f, nil
}

// subscribe (re)subscribes to the stream (no lock held).
func (f *follower) subscribe() {
	sub := f.hub.SubscribeFunc(f.stream, f.deliver, f.end)
	f.sub = sub
	if sub.Err() != nil { // the Hub is closed
		f.mu.Lock()
		f.ended = true
		f.mu.Unlock()
	}
}

// deliver takes an event from the Hub (Hub lock held).
func (f *follower) deliver(e realtime.Event) bool {
	f.mu.Lock()
	if len(f.evs) >= realtime.DefaultBuffer {
		f.mu.Unlock()
		return false // lagging: the Hub drops us, we resync
	}
	f.evs = append(f.evs, e)
	f.mu.Unlock()
	f.kick()
	return true
}

// end learns from the Hub that the subscription ended (Hub lock held).
func (f *follower) end(err error) {
	f.mu.Lock()
	switch err {
	case realtime.ErrLagged:
		f.lagged = true
	case realtime.ErrHubClosed:
		f.ended = true
	}
	f.mu.Unlock()
	f.kick()
}

// kick starts a worker unless one is running (or it is not started, or
// finished).
func (f *follower) kick() {
	f.mu.Lock()
	if !f.started || f.running || f.done {
		f.mu.Unlock()
		return
	}
	f.running = true
	f.mu.Unlock()
	go f.work()
}

// close releases a follower that was never started.
func (f *follower) close() { f.sub.Close() }

// start calls handle with each batch of events (what arrived, plus whatever
// else arrived meanwhile), with resync true the first time when resync is
// given and after each lag (having resubscribed first: handle must then
// re-read everything it may have missed). A handle that fails is retried
// with backoff together with the events that arrived meanwhile. When ctx
// ends or the Hub closes, the follower releases its subscription and calls
// onEnd (once; from the follower's goroutine).
func (f *follower) start(ctx context.Context, resync bool, handle func(ctx context.Context, evs []realtime.Event, resync bool) error, onEnd func()) {
	f.mu.Lock()
	f.ctx, f.resync, f.handle, f.onEnd = ctx, resync, handle, onEnd
	f.started, f.running = true, true
	f.mu.Unlock()
	f.stop = realtime.AfterStop(ctx, f.kick) // context.AfterFunc, cheaper over websockets
	go f.work()
}

// work handles what is pending and returns when nothing is (a worker).
func (f *follower) work() {
	var evs []realtime.Event
	var backoff time.Duration
	f.mu.Lock()
	resync := f.resync
	f.resync = false
	f.mu.Unlock()
	for {
		if backoff > 0 {
			t := time.NewTimer(backoff)
			select {
			case <-f.ctx.Done():
				t.Stop()
			case <-t.C:
			}
		}
		f.mu.Lock()
		evs = append(evs, f.evs...)
		f.evs = nil
		lagged, ended := f.lagged, f.ended
		f.lagged = false
		if f.ctx.Err() != nil || (ended && !lagged) {
			f.done, f.running = true, false
			f.mu.Unlock()
			f.finish()
			return
		}
		if !lagged && !resync && len(evs) == 0 {
			f.running = false
			f.mu.Unlock()
			return
		}
		f.mu.Unlock()
		if lagged {
			f.subscribe()
			resync = true
			continue // the Hub may have closed meanwhile
		}
		if len(evs) > maxPendingEvents {
			evs, resync = evs[:0], true
		}
		err := f.handle(f.ctx, evs, resync)
		if f.ctx.Err() != nil {
			continue
		}
		if err != nil {
			backoff = min(max(2*backoff, 100*time.Millisecond), 5*time.Second)
			continue
		}
		evs, resync, backoff = nil, false, 0
	}
}

func (f *follower) finish() {
	f.stop()
	f.close()
	f.onEnd()
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

// outbox is a subscription's channel and the websocket transport's signal
// (realtime.ClaimStreamReady, nil when the transport does not take it).
type outbox[T any] struct {
	c     chan T
	ready func()
}

func newOutbox[T any]() *outbox[T] { return &outbox[T]{c: make(chan T, 1)} }

// claim is called once the subscription cannot fail any more, before
// anything but its first value is sent: from then on the transport reads
// the channel only when told.
func (o *outbox[T]) claim(ctx context.Context) {
	o.ready = realtime.ClaimStreamReady(ctx)
	if o.ready != nil && len(o.c) > 0 {
		o.ready()
	}
}

// send puts v on the channel (blocking while the previous value is unread)
// unless ctx ends first.
func (o *outbox[T]) send(ctx context.Context, v T) error {
	if err := send(ctx, o.c, v); err != nil {
		return err
	}
	if o.ready != nil {
		o.ready()
	}
	return nil
}

func (o *outbox[T]) close() {
	close(o.c)
	if o.ready != nil {
		o.ready()
	}
}

// ---------------------------------------------------------------- walletUpdated

func (r *Resolver) walletUpdates(ctx context.Context, v lending.Viewer) (<-chan *lending.Wallet, error) {
	f, err := r.follow(store.WalletStream(v.UserID))
	if err != nil {
		return nil, err
	}
	// one key: read it directly (a loader would only wait for siblings
	// that never come)
	load := func(ctx context.Context) (*lending.Wallet, error) {
		m, err := r.Store.WalletsByUserID(ctx, v, []int64{v.UserID})
		return m[v.UserID], err
	}
	w, err := load(ctx)
	if err == nil && w == nil {
		err = lending.NotFound("Wallet")
	}
	if err != nil {
		f.close()
		return nil, err
	}
	out := newOutbox[*lending.Wallet]()
	out.c <- w
	out.claim(ctx)
	last := w.Version
	f.start(ctx, false, func(ctx context.Context, _ []realtime.Event, _ bool) error {
		w, err := load(ctx)
		if err != nil || w == nil || w.Version <= last {
			return err // never an older version after a newer one
		}
		last = w.Version
		return out.send(ctx, w)
	}, out.close)
	return out.c, nil
}

// ---------------------------------------------------------------- loanUpdated

// loanUpdates serves loanUpdated from the loan's feed (sharedLoanReads): one
// Hub subscription and one read per event for all of the instance's
// subscribers of a loan, each of whom is handed the loan read.
func (r *Resolver) loanUpdates(ctx context.Context, loanID int64) (<-chan *lending.Loan, error) {
	if r.Hub == nil {
		return nil, fmt.Errorf("subscription %s: no realtime hub configured", store.LoanStream(loanID))
	}
	s := &loanSub{c: make(chan *lending.Loan, 1), last: -1}
	fd := r.loanReads.join(r, loanID, s) // before reading the current state
	l, err := readLoan(ctx, r.Store, loanID)
	if err == nil && l == nil {
		err = lending.NotFound("Loan")
	}
	if err != nil {
		r.loanReads.leave(fd, s)
		return nil, err
	}
	s.claim(ctx)
	s.deliver(l) // unless the feed has already handed it a newer state
	context.AfterFunc(ctx, func() { r.loanReads.leave(fd, s) })
	return s.c, nil
}

// sharedLoanReads holds the instance's loan feeds: a popular loan has
// thousands of subscribers on an instance, and each event would otherwise
// make each of them read it (and hold a Hub subscription and a goroutine).
// A loan's feed follows the loan's stream while it has subscribers, reads
// the loan once per batch of events (after they arrived, so after they
// committed) and hands the state read to every subscriber, which sends it
// unless it has sent that version or a newer one. Loans are public to every
// signed-in user, so sharing shows no one anything they may not see.
type sharedLoanReads struct {
	mu sync.Mutex
	m  map[int64]*loanFeed
}

type loanFeed struct {
	loanID int64
	cancel context.CancelFunc

	mu     sync.Mutex
	subs   map[*loanSub]struct{}
	closed bool
}

// loanSub is one subscriber of a loan feed: a channel holding at most the
// newest state not yet taken (a subscriber that lags gets the newest state
// only). Over websockets it is a realtime.SharedSource: the feed hands the
// same *lending.Loan to every subscriber, and the transport renders it once
// for all the subscribers with the same document and variables; the state
// then waits in next until the transport takes it.
type loanSub struct {
	mu     sync.Mutex
	c      chan *lending.Loan
	ready  func()
	shared bool          // claimed with realtime.ClaimSharedStream
	next   *lending.Loan // shared: the newest state not yet taken
	last   int64         // the newest version handed over (-1: none)
	closed bool
}

var _ realtime.SharedSource = (*loanSub)(nil)

// join adds s to loanID's feed, starting the feed if needed.
func (rs *sharedLoanReads) join(r *Resolver, loanID int64, s *loanSub) *loanFeed {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	if rs.m == nil {
		rs.m = map[int64]*loanFeed{}
	}
	fd := rs.m[loanID]
	if fd != nil {
		fd.mu.Lock()
		if !fd.closed {
			fd.subs[s] = struct{}{}
			fd.mu.Unlock()
			return fd
		}
		fd.mu.Unlock()
	}
	fd = &loanFeed{loanID: loanID, subs: map[*loanSub]struct{}{s: {}}}
	rs.m[loanID] = fd
	ctx, cancel := context.WithCancel(context.Background())
	fd.cancel = cancel
	f, _ := r.follow(store.LoanStream(loanID))
	f.start(ctx, false, func(ctx context.Context, _ []realtime.Event, _ bool) error {
		rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		l, err := readLoan(rctx, r.Store, loanID)
		cancel()
		if err != nil || l == nil {
			return err
		}
		fd.mu.Lock()
		subs := make([]*loanSub, 0, len(fd.subs))
		for s := range fd.subs {
			subs = append(subs, s)
		}
		fd.mu.Unlock()
		for _, s := range subs {
			s.deliver(l)
		}
		return nil
	}, func() {
		// the Hub closed, or the last subscriber left
		fd.mu.Lock()
		fd.closed = true
		subs := fd.subs
		fd.subs = nil
		fd.mu.Unlock()
		rs.mu.Lock()
		if rs.m[loanID] == fd {
			delete(rs.m, loanID)
		}
		rs.mu.Unlock()
		for s := range subs {
			s.close()
		}
		cancel()
	})
	return fd
}

// leave removes s from fd (ending fd with its last subscriber) and closes s.
func (rs *sharedLoanReads) leave(fd *loanFeed, s *loanSub) {
	rs.mu.Lock()
	fd.mu.Lock()
	delete(fd.subs, s)
	last := len(fd.subs) == 0 && !fd.closed
	if last {
		fd.closed = true
		if rs.m[fd.loanID] == fd {
			delete(rs.m, fd.loanID)
		}
	}
	fd.mu.Unlock()
	rs.mu.Unlock()
	if last {
		fd.cancel()
	}
	s.close()
}

// claim: see outbox.claim; over websockets, ClaimSharedStream.
func (s *loanSub) claim(ctx context.Context) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ready = realtime.ClaimSharedStream(ctx, s); s.ready != nil {
		s.shared = true
		select {
		case l := <-s.c: // the transport takes it with Take
			s.next = l
			s.ready()
		default:
		}
		return
	}
	s.ready = realtime.ClaimStreamReady(ctx)
	if s.ready != nil && len(s.c) > 0 {
		s.ready()
	}
}

// Take implements realtime.SharedSource: the key of a state is the
// *lending.Loan the feed handed to every subscriber.
func (s *loanSub) Take(put func(key any) bool) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	l := s.next
	if l == nil || s.closed {
		return false
	}
	s.next = nil
	if put(l) {
		s.c <- l // empty: only Take sends once shared, one value per take
	}
	return true
}

// Seq implements realtime.SharedSource: a loan's version grows with every
// change, and the feed hands every subscriber increasing versions.
func (s *loanSub) Seq(key any) int64 { return key.(*lending.Loan).Version }

// Shareable implements realtime.SharedSource: a loan is public to every
// signed-in user, and the fields resolved from the loan itself (no
// resolver: no viewer, no store) are the same for all of them.
func (s *loanSub) Shareable(fc *graphql.FieldContext) bool {
	return fc.Object == "Loan" && !fc.IsResolver
}

// deliver hands l to the subscriber unless it has had that version or a
// newer one; an unread older state is replaced.
func (s *loanSub) deliver(l *lending.Loan) {
	s.mu.Lock()
	defer s.mu.Unlock()
	// every change to a loan bumps its version: an equal one is a state
	// already handed over
	if s.closed || l.Version <= s.last {
		return
	}
	s.last = l.Version
	if s.shared {
		waiting := s.next != nil
		s.next = l // replaces a state not yet taken
		if !waiting {
			s.ready()
		}
		return
	}
	replaced := false
	select {
	case <-s.c:
		replaced = true
	default:
	}
	s.c <- l // never blocks: only deliver sends, under s.mu
	if !replaced && s.ready != nil {
		s.ready()
	}
}

func (s *loanSub) close() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return
	}
	s.closed = true
	s.next = nil
	close(s.c)
	if s.ready != nil {
		s.ready()
	}
}

func readLoan(ctx context.Context, st *store.Store, loanID int64) (*lending.Loan, error) {
	m, err := st.LoansByID(ctx, []int64{loanID})
	if err != nil {
		return nil, err
	}
	return m[loanID], nil
}

// ---------------------------------------------------------------- notificationAdded and messageAdded

// itemFeed is what notificationAdded and messageAdded have in common: a
// per-user stream of "item n was added" events, a replay of the items
// numbered after a publication sequence number, and a viewer-scoped load by
// ids.
//
// Items are sent in publication sequence order (store.RelayOutbox), and an
// item is sent only if its number is above the last one sent: the replay
// reads in that order, the Hub hands events over in that order, and a
// reader that sees a number sees every smaller one, so whatever arrives
// with a smaller number is a repeat (an event the replay covered, a relay's
// or a broker's repeat). That holds for any interleaving of commits, and
// costs one integer per subscription.
type itemFeed[T any] struct {
	// idOf extracts the item's id from an event; ok false skips the event
	// (another chat's message when following one chat).
	idOf func(realtime.Event) (id int64, ok bool)
	// after reads the items numbered after seq, in order, at most limit.
	after func(ctx context.Context, seq int64, limit int) ([]T, error)
	// byID loads the items among ids that the viewer may see.
	byID func(ctx context.Context, ids []int64) (map[int64]T, error)
	id   func(T) int64
	seq  func(T) int64
}

// start follows f and sends on the returned channel: first every item
// numbered after from.Seq (a replay, which also covers whatever was
// numbered between reading from and following f), then each new item, once.
func (it itemFeed[T]) start(ctx context.Context, f *follower, from store.ResumePoint) <-chan T {
	out := newOutbox[T]()
	out.claim(ctx)
	last, skip := from.Seq, from.Skip
	emit := func(ctx context.Context, v T) error {
		n := it.seq(v)
		if n != 0 && n <= last || it.id(v) == skip {
			return nil
		}
		// (n is 0 only for an item whose event was published without the
		// item being numbered, which RelayOutbox never does; sending it
		// unfiltered prefers a repeat to a loss)
		if err := out.send(ctx, v); err != nil {
			return err
		}
		last = max(last, n)
		return nil
	}
	f.start(ctx, true, func(ctx context.Context, evs []realtime.Event, resync bool) error {
		if resync {
			// everything numbered after the last item sent (or the start)
			for {
				page, err := it.after(ctx, last, replayPage)
				if err != nil {
					return err
				}
				for _, v := range page {
					if err := emit(ctx, v); err != nil {
						return err
					}
				}
				if len(page) < replayPage {
					break
				}
			}
		}
		var ids []int64
		for _, e := range evs {
			if id, ok := it.idOf(e); ok && !slices.Contains(ids, id) {
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
		items := make([]T, 0, len(got))
		for _, v := range got {
			items = append(items, v)
		}
		slices.SortFunc(items, func(a, b T) int { return cmp.Compare(it.seq(a), it.seq(b)) })
		for _, v := range items {
			if err := emit(ctx, v); err != nil {
				return err
			}
		}
		return nil
	}, out.close)
	return out.c
}

// resumeFrom resolves where a notification or message subscription starts:
// after the item the cursor (an edge cursor of the listing tag, or the
// item's global ID of kind) names, or, without one, after the viewer's
// newest item (start). It is read before following the stream: the first
// replay covers whatever is numbered in between.
func (r *Resolver) resumeFrom(ctx context.Context, after *string, tag string, kind lending.Kind,
	start func(ctx context.Context, wait time.Duration) (store.ResumePoint, error),
	point func(ctx context.Context, id int64, wait time.Duration) (store.ResumePoint, error)) (store.ResumePoint, error) {
	if after == nil {
		return start(ctx, store.ResumeWait)
	}
	id, err := lending.ParseIDOf(kind, *after)
	if err != nil {
		c, cerr := store.DecodeCursor(*after, tag)
		if cerr != nil {
			return store.ResumePoint{}, cerr
		}
		id = c.ID
	}
	return point(ctx, id, store.ResumeWait)
}

func (r *Resolver) notificationUpdates(ctx context.Context, v lending.Viewer, after *string) (<-chan *lending.Notification, error) {
	from, err := r.resumeFrom(ctx, after, store.TagNotifications, lending.KindNotification,
		func(ctx context.Context, wait time.Duration) (store.ResumePoint, error) {
			return r.Store.NotificationStartPoint(ctx, v, wait)
		},
		func(ctx context.Context, id int64, wait time.Duration) (store.ResumePoint, error) {
			return r.Store.NotificationResumePoint(ctx, v, id, wait)
		})
	if err != nil {
		return nil, err
	}
	f, err := r.follow(store.NotificationStream(v.UserID))
	if err != nil {
		return nil, err
	}
	feed := itemFeed[*lending.Notification]{
		idOf: func(e realtime.Event) (int64, bool) {
			var p struct {
				NotificationID int64 `json:"notificationId"`
			}
			return p.NotificationID, json.Unmarshal(e.Payload, &p) == nil && p.NotificationID > 0
		},
		after: func(ctx context.Context, seq int64, limit int) ([]*lending.Notification, error) {
			return r.Store.NotificationsAfter(ctx, v, seq, limit)
		},
		byID: func(ctx context.Context, ids []int64) (map[int64]*lending.Notification, error) {
			return r.Store.NotificationsByID(ctx, v, ids)
		},
		id:  func(n *lending.Notification) int64 { return n.ID },
		seq: func(n *lending.Notification) int64 { return n.PubSeq },
	}
	return feed.start(ctx, f, from), nil
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
	from, err := r.resumeFrom(ctx, after, store.TagChatMessages, lending.KindMessage,
		func(ctx context.Context, wait time.Duration) (store.ResumePoint, error) {
			return r.Store.MessageStartPoint(ctx, v, chat, wait)
		},
		func(ctx context.Context, id int64, wait time.Duration) (store.ResumePoint, error) {
			return r.Store.MessageResumePoint(ctx, v, id, wait)
		})
	if err != nil {
		return nil, err
	}
	f, err := r.follow(store.MessageStream(v.UserID))
	if err != nil {
		return nil, err
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
		after: func(ctx context.Context, seq int64, limit int) ([]*lending.Message, error) {
			return r.Store.MessagesAfter(ctx, v, chat, seq, limit)
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
		id:  func(m *lending.Message) int64 { return m.ID },
		seq: func(m *lending.Message) int64 { return m.PubSeq },
	}
	return feed.start(ctx, f, from), nil
}
