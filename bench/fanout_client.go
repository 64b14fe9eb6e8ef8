package main

// The fan-out benchmark's websocket clients: graphql-transport-ws on
// gorilla/websocket, one goroutine each (the reader), small buffers, and a
// receipt path that does no JSON decoding for the messages it expects (a
// prefix check and the fundedAmount string), so that the clients, which
// share the machine's two cores with the server, cost as little as
// possible.

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"

	"mutuo/lending"
)

// fanoutEvent is one investment as the clients see it.
type fanoutEvent struct {
	delivered atomic.Int64
	done      chan struct{} // closed when every live client has it
	// recv[c] is when client c received it (since the run's base; 0: not)
	recv []int64
}

// fanoutRun is the state shared by the clients of one run.
type fanoutRun struct {
	base    time.Time
	events  []*fanoutEvent
	byFund  map[string]int // fundedAmount after event k → k
	want    atomic.Int64   // live clients: an event is complete at this many
	closing atomic.Bool

	dropped    atomic.Int64
	dropMu     sync.Mutex
	firstDrop  string
	unexpected atomic.Int64
	firstOdd   atomic.Pointer[string]
	notifs     atomic.Int64
	pings      atomic.Int64
	wg         sync.WaitGroup
}

func (r *fanoutRun) since() int64 { return int64(time.Since(r.base)) }

// newFanoutRun prepares for events investments of amount each, seen by up
// to n clients.
func newFanoutRun(n, events int, amount lending.Money) *fanoutRun {
	r := &fanoutRun{base: time.Now(), byFund: map[string]int{}, events: make([]*fanoutEvent, events)}
	for k := range r.events {
		r.events[k] = &fanoutEvent{done: make(chan struct{}), recv: make([]int64, n)}
		r.byFund[(lending.Money(k+1) * amount).String()] = k
	}
	return r
}

// fundedOf is the loan's fundedAmount after event k.
func (r *fanoutRun) fundedOf(k int) string {
	for s, i := range r.byFund {
		if i == k {
			return s
		}
	}
	return ""
}

// start runs the clients' readers.
func (r *fanoutRun) start(clients []*fanoutClient) {
	r.want.Store(int64(len(clients)))
	for _, c := range clients {
		r.wg.Add(1)
		go c.read(r)
	}
}

// closeAll closes the clients (abruptly) and waits for their readers.
func (r *fanoutRun) closeAll(clients []*fanoutClient) {
	r.closing.Store(true)
	for _, c := range clients {
		_ = c.conn.Close()
	}
	r.wg.Wait()
}

// fanoutClient is one socket.
type fanoutClient struct {
	idx  int
	conn *websocket.Conn
	last int // the newest event index received (-1: none)
	buf  []byte
}

var fanoutWriteBuffers sync.Pool

// fanoutSubscribe are the two subscribe messages after connection_ack.
func fanoutSubscribe(loanGID, loanFields string) [][]byte {
	msg := func(id, query string, vars map[string]any) []byte {
		b, _ := json.Marshal(map[string]any{"id": id, "type": "subscribe",
			"payload": map[string]any{"query": query, "variables": vars}})
		return b
	}
	return [][]byte{
		msg("n", `subscription { notificationAdded { id kind title } }`, nil),
		msg("l", `subscription($id: ID!) { loanUpdated(loanId: $id) { `+loanFields+` } }`, map[string]any{"id": loanGID}),
	}
}

// dialFanout opens a socket from src, authenticates with token, subscribes
// and waits for loanUpdated's first state.
func dialFanout(ctx context.Context, wsURL string, src net.IP, token string, subs [][]byte) (*websocket.Conn, error) {
	d := websocket.Dialer{
		NetDialContext:   (&net.Dialer{LocalAddr: &net.TCPAddr{IP: src}, Timeout: 10 * time.Second}).DialContext,
		HandshakeTimeout: 10 * time.Second,
		Subprotocols:     []string{"graphql-transport-ws"},
		ReadBufferSize:   1024,
		WriteBufferSize:  1024,
		WriteBufferPool:  &fanoutWriteBuffers,
	}
	conn, resp, err := d.DialContext(ctx, wsURL, http.Header{})
	if err != nil {
		if resp != nil {
			b, _ := io.ReadAll(io.LimitReader(resp.Body, 300))
			return nil, fmt.Errorf("dial: %w (HTTP %d: %s)", err, resp.StatusCode, b)
		}
		return nil, fmt.Errorf("dial: %w", err)
	}
	fail := func(err error) (*websocket.Conn, error) {
		_ = conn.Close()
		return nil, err
	}
	_ = conn.SetReadDeadline(time.Now().Add(30 * time.Second))
	init, _ := json.Marshal(map[string]any{"type": "connection_init", "payload": map[string]any{"authorization": "Bearer " + token}})
	if err := conn.WriteMessage(websocket.TextMessage, init); err != nil {
		return fail(fmt.Errorf("connection_init: %w", err))
	}
	if _, m, err := conn.ReadMessage(); err != nil {
		return fail(fmt.Errorf("awaiting connection_ack: %w", err))
	} else if !bytes.Contains(m, []byte(`"connection_ack"`)) {
		return fail(fmt.Errorf("awaiting connection_ack, got %.200s", m))
	}
	for _, s := range subs {
		if err := conn.WriteMessage(websocket.TextMessage, s); err != nil {
			return fail(fmt.Errorf("subscribe: %w", err))
		}
	}
	for {
		_, m, err := conn.ReadMessage()
		if err != nil {
			return fail(fmt.Errorf("awaiting loanUpdated's first state: %w", err))
		}
		if bytes.HasPrefix(m, []byte(`{"id":"l","type":"next"`)) {
			if !bytes.Contains(m, []byte(`"fundedAmount":"`)) {
				return fail(fmt.Errorf("loanUpdated's first state has no fundedAmount: %.300s", m))
			}
			break
		}
		if bytes.HasPrefix(m, []byte(`{"type":"ping"`)) {
			_ = conn.WriteMessage(websocket.TextMessage, []byte(`{"type":"pong"}`))
			continue
		}
		return fail(fmt.Errorf("awaiting loanUpdated's first state, got %.300s", m))
	}
	_ = conn.SetReadDeadline(time.Time{})
	return conn, nil
}

var (
	fanoutLoanNext  = []byte(`{"id":"l","type":"next","payload":`)
	fanoutNotifNext = []byte(`{"id":"n","type":"next","payload":`)
	fanoutPing      = []byte(`{"type":"ping"`)
	fanoutPong      = []byte(`{"type":"pong"`)
	fanoutFunded    = []byte(`"fundedAmount":"`)
	fanoutPongMsg   = []byte(`{"type":"pong"}`)
)

// read runs the client's reader until the socket ends.
func (c *fanoutClient) read(r *fanoutRun) {
	defer r.wg.Done()
	for {
		_, rd, err := c.conn.NextReader()
		if err != nil {
			if !r.closing.Load() {
				r.dropped.Add(1)
				r.want.Add(-1)
				r.dropMu.Lock()
				if r.firstDrop == "" {
					r.firstDrop = err.Error()
				}
				r.dropMu.Unlock()
				// events now complete at one client fewer
				for _, e := range r.events {
					if e.delivered.Load() >= r.want.Load() {
						fanoutCloseOnce(e.done)
					}
				}
			}
			return
		}
		c.buf = c.buf[:0]
		for {
			if len(c.buf) == cap(c.buf) {
				c.buf = append(c.buf, 0)[:len(c.buf)]
			}
			n, err := rd.Read(c.buf[len(c.buf):cap(c.buf)])
			c.buf = c.buf[:len(c.buf)+n]
			if err == io.EOF {
				break
			}
			if err != nil {
				break // NextReader reports it
			}
		}
		now := r.since()
		m := c.buf
		switch {
		case bytes.HasPrefix(m, fanoutLoanNext):
			i := bytes.Index(m, fanoutFunded)
			if i < 0 {
				r.odd(m)
				continue
			}
			v := m[i+len(fanoutFunded):]
			j := bytes.IndexByte(v, '"')
			if j < 0 {
				r.odd(m)
				continue
			}
			k, ok := r.byFund[string(v[:j])]
			if !ok {
				r.odd(m)
				continue
			}
			// a later state covers the earlier ones (a subscriber that
			// lags sends the newest state only)
			for ; c.last < k; c.last++ {
				e := r.events[c.last+1]
				e.recv[c.idx] = now
				if e.delivered.Add(1) >= r.want.Load() {
					fanoutCloseOnce(e.done)
				}
			}
		case bytes.HasPrefix(m, fanoutNotifNext):
			r.notifs.Add(1)
		case bytes.HasPrefix(m, fanoutPing):
			r.pings.Add(1)
			_ = c.conn.WriteMessage(websocket.TextMessage, fanoutPongMsg)
		case bytes.HasPrefix(m, fanoutPong):
		default:
			r.odd(m)
		}
	}
}

func (r *fanoutRun) odd(m []byte) {
	r.unexpected.Add(1)
	s := string(m)
	if len(s) > 300 {
		s = s[:300]
	}
	r.firstOdd.CompareAndSwap(nil, &s)
}

var fanoutCloseMu sync.Mutex

func fanoutCloseOnce(c chan struct{}) {
	fanoutCloseMu.Lock()
	defer fanoutCloseMu.Unlock()
	select {
	case <-c:
	default:
		close(c)
	}
}

// connectFanout opens n clients over the source addresses with conc dials
// at a time; client i uses tokens[i % len(tokens)]. It returns the clients
// that connected, and the first error with the count of failures.
func connectFanout(ctx context.Context, wsURL string, n, conc int, srcs []net.IP, tokens []string, subs [][]byte,
	fanoutProgress func(done int)) ([]*fanoutClient, int, error) {
	clients := make([]*fanoutClient, n)
	var next, done, failed atomic.Int64
	var firstErr atomic.Pointer[error]
	var wg sync.WaitGroup
	for w := 0; w < conc; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				i := int(next.Add(1) - 1)
				if i >= n {
					return
				}
				var conn *websocket.Conn
				var err error
				for attempt := 0; attempt < 3; attempt++ {
					conn, err = dialFanout(ctx, wsURL, srcs[i%len(srcs)], tokens[i%len(tokens)], subs)
					if err == nil || errors.Is(err, context.Canceled) || !strings.Contains(err.Error(), "dial") {
						break
					}
					time.Sleep(100 * time.Millisecond)
				}
				if err != nil {
					failed.Add(1)
					firstErr.CompareAndSwap(nil, &err)
				} else {
					clients[i] = &fanoutClient{idx: i, conn: conn, last: -1, buf: make([]byte, 0, 512)}
				}
				if d := int(done.Add(1)); fanoutProgress != nil && d%1000 == 0 {
					fanoutProgress(d)
				}
			}
		}()
	}
	wg.Wait()
	out := clients[:0]
	for _, c := range clients {
		if c != nil {
			out = append(out, c)
		}
	}
	var err error
	if p := firstErr.Load(); p != nil {
		err = *p
	}
	if err == nil {
		err = ctx.Err()
	}
	return out, int(failed.Load()), err
}
