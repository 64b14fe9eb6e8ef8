package e2e

// A small graphql-transport-ws client for the end-to-end tests, on
// gorilla/websocket: one reader goroutine per socket puts the server's
// messages on a channel (answering protocol pings), so a test can wait for a
// message, for the close, or for silence without breaking the connection
// (gorilla's read deadlines are fatal to it).

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

// wsMsg is one protocol message.
type wsMsg struct {
	ID      string          `json:"id,omitempty"`
	Type    string          `json:"type"`
	Payload json.RawMessage `json:"payload,omitempty"`
}

// wsClient is one socket.
type wsClient struct {
	t    testing.TB
	name string
	conn *websocket.Conn
	resp *http.Response

	wmu  sync.Mutex // writes: the test and the reader (pongs)
	in   chan wsMsg
	done chan struct{} // closed when the reader has ended
	err  error         // why it ended (valid once done is closed)
	stop chan struct{} // closed by abort: the reader stops waiting for the test
	once sync.Once
}

// wsURL is the websocket URL of a server's /graphql.
func wsURL(httpURL string) string {
	return "ws" + strings.TrimPrefix(httpURL, "http") + "/graphql"
}

// wsDialRaw opens a socket (graphql-transport-ws) without initialising it.
func wsDialRaw(t testing.TB, httpURL string, header http.Header) (*wsClient, error) {
	d := websocket.Dialer{Subprotocols: []string{"graphql-transport-ws"}, HandshakeTimeout: 5 * time.Second}
	conn, resp, err := d.Dial(wsURL(httpURL), header)
	if err != nil {
		return &wsClient{t: t, resp: resp}, err
	}
	if resp != nil && resp.Body != nil {
		_ = resp.Body.Close()
	}
	c := &wsClient{t: t, name: httpURL, conn: conn, resp: resp, in: make(chan wsMsg, 4096), done: make(chan struct{}), stop: make(chan struct{})}
	go c.readLoop()
	t.Cleanup(c.abort)
	return c, nil
}

// wsConnect opens a socket, sends connection_init with token and waits for
// the ack.
func wsConnect(t testing.TB, httpURL, token string) *wsClient {
	t.Helper()
	c, err := wsDialRaw(t, httpURL, nil)
	if err != nil {
		t.Fatalf("dial %s: %v", httpURL, err)
	}
	c.init(token)
	if m := c.next(5 * time.Second); m.Type != "connection_ack" {
		t.Fatalf("want connection_ack, got %s %s", m.Type, m.Payload)
	}
	return c
}

func (c *wsClient) readLoop() {
	defer close(c.done)
	defer close(c.in)
	for {
		_, data, err := c.conn.ReadMessage()
		if err != nil {
			c.err = err
			_ = c.conn.Close()
			return
		}
		var m wsMsg
		if err := json.Unmarshal(data, &m); err != nil {
			c.err = fmt.Errorf("server sent invalid JSON %q: %w", data, err)
			_ = c.conn.Close()
			return
		}
		if m.Type == "ping" {
			_ = c.write(map[string]any{"type": "pong"})
			continue
		}
		select {
		case c.in <- m:
		case <-c.stop:
			c.err = errors.New("ws: aborted")
			_ = c.conn.Close()
			return
		}
	}
}

func (c *wsClient) write(v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	c.wmu.Lock()
	defer c.wmu.Unlock()
	_ = c.conn.SetWriteDeadline(time.Now().Add(5 * time.Second))
	return c.conn.WriteMessage(websocket.TextMessage, b)
}

func (c *wsClient) send(v any) {
	c.t.Helper()
	if err := c.write(v); err != nil {
		c.t.Fatalf("ws write: %v", err)
	}
}

func (c *wsClient) init(token string) {
	c.t.Helper()
	payload := map[string]any{}
	if token != "" {
		payload["authorization"] = "Bearer " + token
	}
	c.send(map[string]any{"type": "connection_init", "payload": payload})
}

// subscribe starts operation id (a subscription, query or mutation).
func (c *wsClient) subscribe(id, query string, vars map[string]any) {
	c.t.Helper()
	c.send(map[string]any{"type": "subscribe", "id": id, "payload": map[string]any{"query": query, "variables": vars}})
}

// complete stops operation id.
func (c *wsClient) complete(id string) {
	c.t.Helper()
	c.send(map[string]any{"type": "complete", "id": id})
}

// recv returns the next message, or an error when the socket ended or
// nothing arrived within d.
func (c *wsClient) recv(d time.Duration) (wsMsg, error) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case m, ok := <-c.in:
		if !ok {
			return wsMsg{}, c.closeErr()
		}
		return m, nil
	case <-t.C:
		return wsMsg{}, errWSTimeout
	}
}

var errWSTimeout = errors.New("ws: no message in time")

func (c *wsClient) closeErr() error {
	<-c.done
	if c.err == nil {
		return errors.New("ws: closed")
	}
	return c.err
}

// next returns the next message or fails the test.
func (c *wsClient) next(d time.Duration) wsMsg {
	c.t.Helper()
	m, err := c.recv(d)
	if err != nil {
		c.t.Fatalf("ws %s: waiting for a message: %v", c.name, err)
	}
	return m
}

// expectNext waits for a "next" of operation id and returns its data; it
// fails on anything else or on errors in the payload.
func (c *wsClient) expectNext(id string, d time.Duration) map[string]any {
	c.t.Helper()
	m := c.next(d)
	if m.Type != "next" || m.ID != id {
		c.t.Fatalf("ws %s: want next for %q, got %s %q %s", c.name, id, m.Type, m.ID, m.Payload)
	}
	var r struct {
		Data   map[string]any `json:"data"`
		Errors []gqlError     `json:"errors"`
	}
	if err := json.Unmarshal(m.Payload, &r); err != nil || len(r.Errors) > 0 || r.Data == nil {
		c.t.Fatalf("ws %s: next for %q: %s (%v)", c.name, id, m.Payload, err)
	}
	return r.Data
}

// expectResult reads a query or mutation's one result: next (returned,
// errors included) then complete.
func (c *wsClient) expectResult(id string, d time.Duration) (map[string]any, []gqlError) {
	c.t.Helper()
	data, errs := c.expectSingle(id, d)
	if m := c.next(2 * time.Second); m.Type != "complete" || m.ID != id {
		c.t.Fatalf("ws %s: want complete for %q after its result, got %s %q %s", c.name, id, m.Type, m.ID, m.Payload)
	}
	return data, errs
}

// expectSingle reads a query or mutation's result (its next message) and
// nothing else: tests about other things use it so that they do not fail
// for the missing complete (see TestRealtimeQueriesAndMutationsComplete).
func (c *wsClient) expectSingle(id string, d time.Duration) (map[string]any, []gqlError) {
	c.t.Helper()
	m := c.next(d)
	if m.Type != "next" || m.ID != id {
		c.t.Fatalf("ws %s: want next for %q, got %s %q %s", c.name, id, m.Type, m.ID, m.Payload)
	}
	var r struct {
		Data   map[string]any `json:"data"`
		Errors []gqlError     `json:"errors"`
	}
	if err := json.Unmarshal(m.Payload, &r); err != nil {
		c.t.Fatalf("ws %s: %s: %v", c.name, m.Payload, err)
	}
	return r.Data, r.Errors
}

// skipComplete consumes operation id's complete (which follows its result,
// per the protocol) and proves nothing else is queued: it sends a ping and
// reads exactly the complete and the pong, in either order (the pong may
// overtake a complete the operation has not queued yet).
func (c *wsClient) skipComplete(id string) {
	c.t.Helper()
	c.send(map[string]any{"type": "ping", "payload": map[string]any{"sync": true}})
	var complete, pong bool
	for !complete || !pong {
		m := c.next(5 * time.Second)
		switch {
		case m.Type == "complete" && m.ID == id && !complete:
			complete = true
		case m.Type == "pong" && !pong:
			pong = true
		default:
			c.t.Fatalf("ws %s: got %s %q %s, want only %q's complete and the pong", c.name, m.Type, m.ID, m.Payload, id)
		}
	}
}

// expectError waits for an "error" message for id and returns its errors.
func (c *wsClient) expectError(id string, d time.Duration) []gqlError {
	c.t.Helper()
	m := c.next(d)
	if m.Type != "error" || m.ID != id {
		c.t.Fatalf("ws %s: want error for %q, got %s %q %s", c.name, id, m.Type, m.ID, m.Payload)
	}
	var errs []gqlError
	if err := json.Unmarshal(m.Payload, &errs); err != nil || len(errs) == 0 {
		c.t.Fatalf("ws %s: error payload %s (%v)", c.name, m.Payload, err)
	}
	return errs
}

// sync proves the server has handled everything sent so far and has
// nothing queued before its pong: the pong must be the very next message.
func (c *wsClient) sync() {
	c.t.Helper()
	c.send(map[string]any{"type": "ping", "payload": map[string]any{"sync": true}})
	if m := c.next(5 * time.Second); m.Type != "pong" {
		c.t.Fatalf("ws %s: got %s %q %s before the pong", c.name, m.Type, m.ID, m.Payload)
	}
}

// quiet fails if any message arrives within d.
func (c *wsClient) quiet(d time.Duration) {
	c.t.Helper()
	m, err := c.recv(d)
	if err == nil {
		c.t.Fatalf("ws %s: unexpected %s %q %s", c.name, m.Type, m.ID, m.Payload)
	}
	if !errors.Is(err, errWSTimeout) {
		c.t.Fatalf("ws %s: socket ended: %v", c.name, err)
	}
}

// closeCode waits for the socket to end and returns the close code the
// server sent (1006 when the connection dropped without a close frame).
func (c *wsClient) closeCode(d time.Duration) int {
	c.t.Helper()
	deadline := time.After(d)
	for {
		select {
		case m, ok := <-c.in:
			if ok {
				if m.Type == "pong" {
					continue
				}
				c.t.Fatalf("ws %s: got %s %q %s, want the socket to close", c.name, m.Type, m.ID, m.Payload)
			}
			var ce *websocket.CloseError
			if errors.As(c.closeErr(), &ce) {
				return ce.Code
			}
			return websocket.CloseAbnormalClosure
		case <-deadline:
			c.t.Fatalf("ws %s: not closed within %v", c.name, d)
		}
	}
}

// abort drops the TCP connection without a close frame (a phone losing its
// network) and waits for the reader to end.
func (c *wsClient) abort() {
	if c.conn == nil {
		return
	}
	c.once.Do(func() { close(c.stop) })
	_ = c.conn.NetConn().Close()
	<-c.done
}

// wsPayloadData decodes a "next" payload's data.
func wsPayloadData(t testing.TB, m wsMsg) map[string]any {
	t.Helper()
	var r struct {
		Data   map[string]any `json:"data"`
		Errors []gqlError     `json:"errors"`
	}
	if err := json.Unmarshal(m.Payload, &r); err != nil || len(r.Errors) > 0 {
		t.Fatalf("next payload %s (%v)", m.Payload, err)
	}
	return r.Data
}
