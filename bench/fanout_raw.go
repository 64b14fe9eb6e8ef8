package main

// The fan-out baseline, measured in the same run as DESIGN.md asks: the
// same server process, listener, websocket library and upgrader settings
// as the app's transport, and the same clients, but no GraphQL, no hub and
// no per-subscriber work. /bench/raw speaks just enough graphql-transport-ws
// for the clients (connection_ack, then loanUpdated's "first state" for the
// subscribe with id "l") and keeps one goroutine per socket (the handler's,
// reading). POST /bench/raw/send?funded=X writes one message, marshalled
// once (a websocket.PreparedMessage), to every socket from GOMAXPROCS
// goroutines: the floor of pushing one event to N sockets on this machine.

import (
	"bytes"
	"net/http"
	"runtime"
	"sync"
	"time"

	"github.com/gorilla/websocket"
)

type fanoutRawConn struct {
	mu sync.Mutex // one writer at a time
	ws *websocket.Conn
}

type fanoutRawServer struct {
	upgrader websocket.Upgrader
	mu       sync.Mutex
	conns    map[*fanoutRawConn]struct{}
}

func newFanoutRawServer() *fanoutRawServer {
	return &fanoutRawServer{
		conns: map[*fanoutRawConn]struct{}{},
		upgrader: websocket.Upgrader{ // as realtime.NewWSTransport's
			HandshakeTimeout: 10 * time.Second,
			Subprotocols:     []string{"graphql-transport-ws"},
			WriteBufferPool:  &sync.Pool{},
			CheckOrigin:      func(*http.Request) bool { return true },
		},
	}
}

func fanoutRawNext(funded string) []byte {
	return []byte(`{"id":"l","type":"next","payload":{"data":{"loanUpdated":{"fundedAmount":"` + funded + `"}}}}`)
}

// ServeHTTP serves one socket until it closes.
func (f *fanoutRawServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	ws, err := f.upgrader.Upgrade(w, r, nil)
	if err != nil {
		return
	}
	c := &fanoutRawConn{ws: ws}
	f.mu.Lock()
	f.conns[c] = struct{}{}
	f.mu.Unlock()
	defer func() {
		f.mu.Lock()
		delete(f.conns, c)
		f.mu.Unlock()
		_ = ws.Close()
	}()
	write := func(m []byte) error {
		c.mu.Lock()
		defer c.mu.Unlock()
		_ = ws.SetWriteDeadline(time.Now().Add(10 * time.Second))
		return ws.WriteMessage(websocket.TextMessage, m)
	}
	for {
		_, m, err := ws.ReadMessage()
		if err != nil {
			return
		}
		switch {
		case bytes.Contains(m, []byte(`"connection_init"`)):
			err = write([]byte(`{"type":"connection_ack"}`))
		case bytes.Contains(m, []byte(`"subscribe"`)) && bytes.Contains(m, []byte(`"id":"l"`)):
			err = write(fanoutRawNext("0.00"))
		}
		if err != nil {
			return
		}
	}
}

// send writes the loan state with funded to every socket.
func (f *fanoutRawServer) send(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		http.Error(w, "POST", http.StatusMethodNotAllowed)
		return
	}
	pm, err := websocket.NewPreparedMessage(websocket.TextMessage, fanoutRawNext(r.URL.Query().Get("funded")))
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	f.mu.Lock()
	conns := make([]*fanoutRawConn, 0, len(f.conns))
	for c := range f.conns {
		conns = append(conns, c)
	}
	f.mu.Unlock()
	// answer at once: the parent times from before its request
	w.WriteHeader(http.StatusNoContent)
	workers := runtime.GOMAXPROCS(0)
	for i := 0; i < workers; i++ {
		go func(i int) {
			for j := i; j < len(conns); j += workers {
				c := conns[j]
				c.mu.Lock()
				_ = c.ws.SetWriteDeadline(time.Now().Add(10 * time.Second))
				_ = c.ws.WritePreparedMessage(pm)
				c.mu.Unlock()
			}
		}(i)
	}
}
