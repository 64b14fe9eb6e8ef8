package realtime_test

import (
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"mutuo/realtime"
)

func ev(id int64, stream string) realtime.Event {
	return realtime.Event{ID: id, Stream: stream, Topic: "t", Payload: []byte(`{}`)}
}

// recv takes n events from s or fails.
func recv(t *testing.T, s *realtime.Subscription, n int) []realtime.Event {
	t.Helper()
	var out []realtime.Event
	timeout := time.After(5 * time.Second)
	for len(out) < n {
		select {
		case e, ok := <-s.C:
			if !ok {
				t.Fatalf("subscription closed after %d of %d events: %v", len(out), n, s.Err())
			}
			out = append(out, e)
		case <-timeout:
			t.Fatalf("got %d of %d events", len(out), n)
		}
	}
	return out
}

func none(t *testing.T, s *realtime.Subscription) {
	t.Helper()
	select {
	case e, ok := <-s.C:
		t.Fatalf("unexpected delivery %+v (open %v)", e, ok)
	default:
	}
}

func TestHubFansOutByStreamAndDropsRepeats(t *testing.T) {
	h := realtime.NewHub()
	a1 := h.Subscribe("a", 8)
	a2 := h.Subscribe("a", 8)
	b := h.Subscribe("b", 8)
	if h.Subscribers() != 3 {
		t.Fatalf("subscribers = %d", h.Subscribers())
	}
	if !h.Publish(ev(1, "a")) || !h.Publish(ev(2, "b")) || !h.Publish(ev(3, "a")) {
		t.Fatal("new events reported as repeats")
	}
	if h.Publish(ev(1, "a")) || h.Publish(ev(2, "b")) {
		t.Fatal("repeated events reported as new")
	}
	// an event of a stream no one follows is still remembered
	if !h.Publish(ev(4, "c")) || h.Publish(ev(4, "c")) {
		t.Fatal("dedupe of an unfollowed stream")
	}
	for _, s := range []*realtime.Subscription{a1, a2} {
		got := recv(t, s, 2)
		if got[0].ID != 1 || got[1].ID != 3 {
			t.Fatalf("stream a got %v", got)
		}
		none(t, s)
	}
	if got := recv(t, b, 1); got[0].ID != 2 {
		t.Fatalf("stream b got %v", got)
	}
	none(t, b)
	// a smaller id arriving later (another transaction committed late) is
	// delivered: ids are not assumed to increase
	h.Publish(ev(0, "a"))
	h.Publish(ev(-1, "a"))
	if got := recv(t, a1, 2); got[0].ID != 0 || got[1].ID != -1 {
		t.Fatalf("late ids: %v", got)
	}
	st := h.Stats()
	if st.Duplicates != 3 || st.Lagged != 0 {
		t.Fatalf("stats %+v", st)
	}
}

func TestHubUnsubscribeAndClose(t *testing.T) {
	h := realtime.NewHub()
	s := h.Subscribe("a", 0)
	s.Close()
	s.Close() // idempotent
	if _, ok := <-s.C; ok || !errors.Is(s.Err(), realtime.ErrUnsubscribed) {
		t.Fatalf("after Close: err %v", s.Err())
	}
	h.Publish(ev(1, "a")) // no subscriber, no panic
	if h.Subscribers() != 0 {
		t.Fatalf("subscribers = %d", h.Subscribers())
	}

	s1, s2 := h.Subscribe("a", 1), h.Subscribe("b", 1)
	h.Close()
	for _, s := range []*realtime.Subscription{s1, s2} {
		if _, ok := <-s.C; ok || !errors.Is(s.Err(), realtime.ErrHubClosed) {
			t.Fatalf("after hub Close: err %v", s.Err())
		}
		s.Close() // still fine
	}
	late := h.Subscribe("a", 1)
	if _, ok := <-late.C; ok || !errors.Is(late.Err(), realtime.ErrHubClosed) {
		t.Fatal("subscribing to a closed hub should return a closed subscription")
	}
	if h.Publish(ev(9, "a")) {
		t.Fatal("publish on a closed hub")
	}
}

// A subscriber that stops reading is dropped once its buffer is full; the
// others get every event and Publish never blocks.
func TestHubDropsSlowSubscriberWithoutBlocking(t *testing.T) {
	h := realtime.NewHub()
	slow := h.Subscribe("s", 4)
	const n = 1000
	fast := make([]*realtime.Subscription, 10)
	for i := range fast {
		fast[i] = h.Subscribe("s", n)
	}
	var wg sync.WaitGroup
	got := make([][]int64, len(fast))
	for i, s := range fast {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for e := range s.C {
				got[i] = append(got[i], e.ID)
				if len(got[i]) == n {
					return
				}
			}
		}()
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := int64(1); i <= n; i++ {
			h.Publish(ev(i, "s"))
		}
	}()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Publish blocked on a slow subscriber")
	}
	wg.Wait()
	// the slow one holds its 4 events, then its channel is closed as lagged
	if e := recv(t, slow, 4); e[0].ID != 1 || e[3].ID != 4 {
		t.Fatalf("slow subscriber got %v", e)
	}
	if _, ok := <-slow.C; ok || !errors.Is(slow.Err(), realtime.ErrLagged) {
		t.Fatalf("slow subscriber: err %v", slow.Err())
	}
	for i := range fast {
		if len(got[i]) != n {
			t.Fatalf("fast subscriber %d got %d of %d", i, len(got[i]), n)
		}
		for j, id := range got[i] {
			if id != int64(j+1) {
				t.Fatalf("fast subscriber %d: event %d is %d", i, j, id)
			}
		}
	}
	if st := h.Stats(); st.Lagged != 1 {
		t.Fatalf("stats %+v", st)
	}
}

// Subscribing, closing and publishing concurrently is safe (run with -race).
func TestHubConcurrentUse(t *testing.T) {
	h := realtime.NewHub()
	var wg sync.WaitGroup
	stop := make(chan struct{})
	for p := 0; p < 4; p++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := int64(0); ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				h.Publish(ev(int64(p)<<32|i, fmt.Sprintf("s%d", i%8)))
			}
		}()
	}
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 500; i++ {
				s := h.Subscribe(fmt.Sprintf("s%d", (g+i)%8), 2)
				for j := 0; j < 3; j++ {
					select {
					case <-s.C:
					default:
					}
				}
				s.Close()
			}
		}()
	}
	time.Sleep(200 * time.Millisecond)
	close(stop)
	wg.Wait()
	h.Close()
	if h.Subscribers() != 0 {
		t.Fatalf("subscribers left: %d", h.Subscribers())
	}
}

// An event whose Stream names several streams (space-separated) reaches the
// subscribers of each, once; a repeat reaches none.
func TestHubDispatchesToEveryStreamNamed(t *testing.T) {
	h := realtime.NewHub()
	a, b, c := h.Subscribe("messages:1", 4), h.Subscribe("messages:2", 4), h.Subscribe("messages:3", 4)
	if !h.Publish(ev(1, "messages:1 messages:2")) {
		t.Fatal("new event refused")
	}
	if got := recv(t, a, 1); got[0].ID != 1 {
		t.Fatalf("a got %+v", got)
	}
	if got := recv(t, b, 1); got[0].ID != 1 {
		t.Fatalf("b got %+v", got)
	}
	none(t, c)
	if h.Publish(ev(1, "messages:1 messages:2")) {
		t.Fatal("repeat accepted")
	}
	none(t, a)
	none(t, b)
	if st := h.Stats(); st.Delivered != 2 || st.Duplicates != 1 {
		t.Fatalf("stats %+v", st)
	}
}
