// Package realtime moves committed events from the outbox to the
// subscribers of every instance: the Relay publishes outbox rows to one
// Redis channel, each instance's Broker holds one subscription to it and
// hands every event to the instance's Hub, which fans it out by stream to
// the local subscribers (the subscription resolvers, which re-read what
// they send through the store).
//
// Delivery is at least once from the outbox to the Hub and at most once
// from the Hub to a subscriber: the Hub drops an event it has already
// dispatched (same outbox id), and a subscriber that cannot keep up is
// dropped rather than slowing anyone else down.
package realtime

import (
	"encoding/json"
	"errors"
	"strings"
	"sync"
	"time"

	"mutuo/store"
)

// Event is one outbox event as it travels through Redis (JSON) and the Hub.
// ID is the outbox row's id (the Hub drops a repeat of one); Seq its place
// in the publication sequence (store.RelayOutbox): the relay publishes in
// Seq order, so a stream's events reach a Hub in Seq order, except that a
// broker catching up after a reconnect re-reads events it may already have
// dispatched. Stream names the stream the event belongs to, or several
// separated by single spaces (a chat message goes to every participant's
// stream as one event).
type Event struct {
	ID        int64           `json:"id"`
	Seq       int64           `json:"seq"`
	Stream    string          `json:"stream"`
	Topic     string          `json:"topic"`
	Payload   json.RawMessage `json:"payload"`
	CreatedAt time.Time       `json:"createdAt"`
}

// eventOf is the Event of an outbox row.
func eventOf(e store.OutboxEvent) Event {
	return Event{ID: e.ID, Seq: e.Seq, Stream: e.Stream, Topic: e.Topic, Payload: e.Payload, CreatedAt: e.CreatedAt}
}

// Why a Subscription's channel was closed (Subscription.Err).
var (
	// ErrLagged: the subscriber's buffer was full when an event arrived; the
	// event was not delivered. The subscriber should resubscribe and re-read
	// what it shows (or its transport should disconnect the client).
	ErrLagged = errors.New("realtime: subscriber lagged behind and was dropped")
	// ErrHubClosed: the Hub was closed (the instance is shutting down).
	ErrHubClosed = errors.New("realtime: hub closed")
	// ErrUnsubscribed: Close was called.
	ErrUnsubscribed = errors.New("realtime: unsubscribed")
)

// DefaultBuffer is the per-subscriber buffer used when Subscribe is given 0.
const DefaultBuffer = 16

// dedupeWindow is how many recent event ids the Hub remembers to drop
// repeats. A relay repeats at most one batch after a failed publish and a
// broker re-reads a bounded margin after a reconnect; both are far smaller.
const dedupeWindow = 8192

// Hub fans events out to local subscribers by stream. It never blocks on a
// subscriber: each has a bounded buffer, and one whose buffer is full is
// dropped (its channel closed, Err ErrLagged). It is safe for concurrent
// use; its zero value is not: use NewHub.
type Hub struct {
	mu      sync.Mutex
	streams map[string]map[*Subscription]struct{}
	seen    idWindow
	closed  bool
	subs    int
	stats   HubStats
}

// HubStats are the Hub's counters since it was made.
type HubStats struct {
	Delivered  int64 // events put in a subscriber's buffer
	Duplicates int64 // events dropped as already dispatched
	Lagged     int64 // subscribers dropped for a full buffer
}

// NewHub makes an empty Hub.
func NewHub() *Hub {
	return &Hub{streams: map[string]map[*Subscription]struct{}{}, seen: newIDWindow(dedupeWindow)}
}

// Subscription is one subscriber's view of one stream. C delivers its
// events in the order the Hub received them; it is closed when the
// subscription ends, and Err then tells why. (A SubscribeFunc subscription
// has no C: its callbacks take the events and the end.)
type Subscription struct {
	C <-chan Event

	c      chan Event
	hub    *Hub
	stream string
	err    error // guarded by hub.mu; set once, when c is closed

	// a SubscribeFunc subscription has no channel: these instead
	deliver func(Event) bool
	end     func(error)
}

// Subscribe starts a subscription to stream with a buffer of buf events
// (DefaultBuffer when buf <= 0). Events dispatched before it returns are not
// delivered to it. On a closed Hub the subscription is returned already
// closed (Err ErrHubClosed).
func (h *Hub) Subscribe(stream string, buf int) *Subscription {
	if buf <= 0 {
		buf = DefaultBuffer
	}
	c := make(chan Event, buf)
	s := &Subscription{C: c, c: c, hub: h, stream: stream}
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		s.err = ErrHubClosed
		close(c)
		return s
	}
	h.add(s)
	return s
}

// SubscribeFunc starts a subscription to stream that holds no channel and
// no goroutine: the Hub calls deliver with each event (events dispatched
// before it returns are not delivered) and, once, end with the reason the
// subscription ended (ErrLagged, ErrHubClosed or ErrUnsubscribed). Both are
// called with the Hub's lock held, from the publishing goroutine (end also
// from Close's and Hub.Close's): they must return at once and must not call
// the Hub. deliver returns false when the subscriber cannot take the event;
// the Hub then drops the subscriber (end(ErrLagged)) as it drops a full
// channel. On a closed Hub the subscription is returned already ended (Err
// ErrHubClosed) and end is not called.
func (h *Hub) SubscribeFunc(stream string, deliver func(Event) bool, end func(error)) *Subscription {
	s := &Subscription{hub: h, stream: stream, deliver: deliver, end: end}
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		s.err = ErrHubClosed
		return s
	}
	h.add(s)
	return s
}

// add registers s; h.mu is held.
func (h *Hub) add(s *Subscription) {
	m := h.streams[s.stream]
	if m == nil {
		m = map[*Subscription]struct{}{}
		h.streams[s.stream] = m
	}
	m[s] = struct{}{}
	h.subs++
}

// Close ends the subscription and closes C (if it is not closed yet). It
// is idempotent and safe to call concurrently with dispatch.
func (s *Subscription) Close() {
	h := s.hub
	h.mu.Lock()
	defer h.mu.Unlock()
	h.drop(s, ErrUnsubscribed)
}

// Err tells why C was closed: ErrLagged, ErrHubClosed or ErrUnsubscribed;
// nil while it is open.
func (s *Subscription) Err() error {
	s.hub.mu.Lock()
	defer s.hub.mu.Unlock()
	return s.err
}

// drop removes s and closes its channel with reason; h.mu is held.
func (h *Hub) drop(s *Subscription, reason error) {
	if s.err != nil {
		return
	}
	s.err = reason
	if s.c != nil {
		close(s.c)
	} else if s.end != nil {
		s.end(reason)
	}
	if m := h.streams[s.stream]; m != nil {
		delete(m, s)
		if len(m) == 0 {
			delete(h.streams, s.stream)
		}
	}
	h.subs--
}

// Publish dispatches e to the subscribers of e.Stream (of each stream it
// names), unless an event with
// the same id was dispatched recently (a repeat of at-least-once delivery).
// It never blocks: a subscriber whose buffer is full is dropped with
// ErrLagged. It reports whether e was new.
func (h *Hub) Publish(e Event) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		return false
	}
	if !h.seen.add(e.ID) {
		h.stats.Duplicates++
		return false
	}
	for rest := e.Stream; rest != ""; {
		var stream string
		stream, rest, _ = strings.Cut(rest, " ")
		h.dispatch(stream, e)
	}
	return true
}

// dispatch hands e to stream's subscribers; h.mu is held.
func (h *Hub) dispatch(stream string, e Event) {
	for s := range h.streams[stream] {
		if s.c == nil {
			if s.deliver(e) {
				h.stats.Delivered++
			} else {
				h.stats.Lagged++
				h.drop(s, ErrLagged)
			}
			continue
		}
		select {
		case s.c <- e:
			h.stats.Delivered++
		default:
			h.stats.Lagged++
			h.drop(s, ErrLagged)
		}
	}
}

// Subscribers counts the open subscriptions.
func (h *Hub) Subscribers() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.subs
}

// Stats returns the Hub's counters.
func (h *Hub) Stats() HubStats {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.stats
}

// Close ends every subscription (Err ErrHubClosed) and refuses new ones.
func (h *Hub) Close() {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		return
	}
	h.closed = true
	for _, m := range h.streams {
		for s := range m {
			h.drop(s, ErrHubClosed)
		}
	}
}

// idWindow remembers the last n ids added (first in, first out).
type idWindow struct {
	ring []int64
	next int
	full bool
	set  map[int64]struct{}
}

func newIDWindow(n int) idWindow {
	return idWindow{ring: make([]int64, n), set: make(map[int64]struct{}, n)}
}

// add records id and reports whether it was new to the window. An id too
// old to be in the window counts as new: the Hub prefers a rare repeat
// (which subscribers drop anyway) to a lost event.
func (w *idWindow) add(id int64) bool {
	if _, ok := w.set[id]; ok {
		return false
	}
	if w.full {
		delete(w.set, w.ring[w.next])
	}
	w.ring[w.next] = id
	w.set[id] = struct{}{}
	w.next++
	if w.next == len(w.ring) {
		w.next, w.full = 0, true
	}
	return true
}
