package realtime

// The websocket transport: GraphQL over websockets at /graphql, on
// gorilla/websocket, driving gqlgen's executor. It speaks graphql-transport-ws
// (https://github.com/enisdenjo/graphql-ws/blob/master/PROTOCOL.md) and the
// legacy graphql-ws subprotocol of subscriptions-transport-ws (ws_legacy.go).
//
// Per socket there is one goroutine while it is idle: the reader, started
// by Do, which returns once the socket is upgraded (so that net/http lets go
// of the connection's buffers). A writer runs only while there is something
// to write, and an operation holds a goroutine only while it executes: a
// subscription whose resolver signals its values (ClaimStreamReady) holds
// none between them; any other operation holds one until it ends. All of
// them end before the socket is unregistered (Shutdown waits for that).
// Per instance there is one maintenance goroutine (revocation checks and the
// per-user socket heartbeat, ws_limits.go), running only while the instance
// holds sockets.
//
// Close codes (WSClose*):
//
//	4400 <reason>                            malformed JSON, not an object, unknown or server-only type,
//	                                         missing/invalid id or payload, binary frame (graphql-transport-ws)
//	4401 Unauthorized                        subscribe before connection_ack
//	4403 Forbidden                           no token, bad token, token expired (at its exp, timer) or
//	                                         signed out (checked every RevocationInterval)
//	4406 Subprotocol not acceptable          the client offered neither subprotocol
//	4408 Connection initialisation timeout   no acknowledged connection_init within InitTimeout
//	4409 Subscriber for <id> already exists  subscribe with the id of an active operation
//	4429 Too many initialisation requests    a second connection_init
//	4008 Slow consumer                       the send queue (SendQueue messages) is full
//	1008 Too many sockets for this user      MaxSocketsPerUser sockets already open (all instances)
//	1009 (no reason)                         a message over ReadLimit (gorilla/websocket's close)
//	1012 service restart                     Shutdown
//	1013 Try again later                     authentication or the socket count could not be checked
//	                                         (Redis unavailable); clients should retry
//	1000                                     legacy connection_terminate
//
// A dead peer (no frame of any kind, data or pong, for two PingIntervals) is
// dropped without a close frame (recorded as 1006).

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/99designs/gqlgen/graphql"
	"github.com/gorilla/websocket"
	"github.com/redis/go-redis/v9"
	"github.com/vektah/gqlparser/v2/ast"
	"github.com/vektah/gqlparser/v2/gqlerror"

	"mutuo/auth"
	"mutuo/internal/httpx"
	"mutuo/lending"
)

// Subprotocols served, in order of preference.
const (
	SubprotocolGraphQLTransportWS = "graphql-transport-ws"
	SubprotocolGraphQLWS          = "graphql-ws" // legacy subscriptions-transport-ws
)

// Close codes the transport sends (see the comment at the top of ws.go).
const (
	WSCloseNormal                   = websocket.CloseNormalClosure   // 1000
	WSCloseTooManySockets           = websocket.ClosePolicyViolation // 1008
	WSCloseMessageTooBig            = websocket.CloseMessageTooBig   // 1009
	WSCloseServiceRestart           = websocket.CloseServiceRestart  // 1012
	WSCloseTryAgainLater            = websocket.CloseTryAgainLater   // 1013
	WSCloseSlowConsumer             = 4008
	WSCloseBadRequest               = 4400
	WSCloseUnauthorized             = 4401
	WSCloseForbidden                = 4403
	WSCloseSubprotocolNotAcceptable = 4406
	WSCloseInitTimeout              = 4408
	WSCloseSubscriberExists         = 4409
	WSCloseTooManyInit              = 4429

	// wsCloseDeadPeer is recorded (never sent) when a peer stops answering.
	wsCloseDeadPeer = websocket.CloseAbnormalClosure // 1006
)

// Defaults for WSConfig.
const (
	DefaultWSInitTimeout        = 10 * time.Second
	DefaultWSPingInterval       = 15 * time.Second
	DefaultWSWriteTimeout       = 10 * time.Second
	DefaultWSMaxOperations      = 100
	DefaultWSMaxSocketsPerUser  = 10
	DefaultWSReadLimit          = 64 << 10
	DefaultWSSendQueue          = 256
	DefaultWSRevocationInterval = 2 * time.Second
	DefaultWSHeartbeatInterval  = 10 * time.Second
)

// wsReadBufferSize is a socket's read buffer: client messages are small,
// and a larger one is read through it in pieces. It holds a control frame's
// payload (at most 125 bytes), as gorilla/websocket requires: 128, the
// smallest allocation size that does.
const wsReadBufferSize = 128

// wsCloseGrace is how long a socket waits for the peer's close frame after
// sending its own before dropping the TCP connection.
const wsCloseGrace = time.Second

// WSAuthenticator verifies access tokens for sockets; *auth.Service
// implements it.
type WSAuthenticator interface {
	// Authenticate verifies an access token: an UNAUTHENTICATED error when it
	// does not authenticate, any other error when it cannot be checked.
	Authenticate(ctx context.Context, token string) (lending.Viewer, *auth.Claims, error)
	// RevokedTokens reports which of the revocation ids (a token's, its
	// session's) have been signed out; an error when that cannot be checked.
	RevokedTokens(ctx context.Context, ids []string) (map[string]bool, error)
}

// WSConfig configures a WSTransport. Zero durations and sizes mean the
// defaults above.
type WSConfig struct {
	// Auth verifies tokens at connection_init and reports sign-outs. Required.
	Auth WSAuthenticator
	// Redis holds the per-user socket sets (key Prefix+"ws:sockets:<user id>"),
	// shared by every instance. Required unless MaxSocketsPerUser < 0.
	Redis  redis.UniversalClient
	Prefix string
	// AllowedOrigins are the browser origins ("https://app.mutuo.com.br",
	// scheme://host[:port], compared without case) allowed to open sockets.
	// A request without an Origin header (a non-browser client) is allowed;
	// any other origin gets 403 before the upgrade.
	AllowedOrigins []string
	// AllowLocalhost also allows http(s)://localhost, 127.0.0.1 and [::1] on
	// any port (development).
	AllowLocalhost bool
	// InitTimeout bounds the time from the upgrade to connection_ack.
	InitTimeout time.Duration
	// PingInterval is the period of the server's pings (a protocol ping, or
	// "ka" in the legacy protocol, and a websocket ping frame); a peer from
	// which nothing arrives for two intervals is dropped.
	PingInterval time.Duration
	// WriteTimeout bounds each write to the socket.
	WriteTimeout time.Duration
	// MaxOperationsPerSocket bounds the active operations of one socket; a
	// subscribe beyond it gets an error message (RATE_LIMITED), the socket
	// stays open.
	MaxOperationsPerSocket int
	// MaxSocketsPerUser bounds one user's sockets across all instances
	// (0: the default; negative: no limit).
	MaxSocketsPerUser int
	// ReadLimit is the largest message accepted from a client, in bytes.
	ReadLimit int64
	// SendQueue is the number of messages queued for a socket before it is
	// closed as a slow consumer (4008).
	SendQueue int
	// RevocationInterval is how often the instance checks its sockets'
	// tokens against the denylist (one pipelined Redis round trip per check).
	RevocationInterval time.Duration
	// HeartbeatInterval is how often the instance refreshes its sockets in
	// the per-user sets; an entry not refreshed for three intervals (a
	// crashed instance's) no longer counts.
	HeartbeatInterval time.Duration
	// WithContext, when set, prepares each operation's context (the app adds
	// fresh dataloaders). The context already carries the viewer
	// (lending.ViewerFrom) and the token's claims (auth.ClaimsFrom).
	WithContext func(ctx context.Context) context.Context
	// OnSharedNext, when set, is called for each value of a subscription
	// sent as a rendering shared with other subscribers (ws_share.go)
	// instead of through the executor's response interceptors, with the
	// operation's context (graphql.GetOperationContext works on it): count
	// the delivery there.
	OnSharedNext func(ctx context.Context)
	// OnClose, when set, is called once per socket when it has ended, with
	// the close code sent or received (1006 for a dropped peer).
	OnClose func(code int, reason string)
	// Logger gets protocol and auth failures (slog.Default() when nil).
	Logger *slog.Logger
	// Now is the clock for token expiry (time.Now when nil).
	Now func() time.Time
}

// WSStats are a transport's current figures.
type WSStats struct {
	Sockets    int64 // open (upgraded) sockets
	Operations int64 // active operations on them
}

// WSTransport is gqlgen's transport for websocket upgrade requests. It
// refuses foreign origins (403) and upgrades while shutting down (503) before
// upgrading; see the comment at the top of ws.go for the protocol and close
// codes.
type WSTransport struct {
	cfg      WSConfig
	log      *slog.Logger
	now      func() time.Time
	origins  map[string]bool
	upgrader websocket.Upgrader

	mu       sync.Mutex
	conns    map[*wsConn]struct{}
	draining bool
	loopStop context.CancelFunc
	loopDone chan struct{}
	wg       sync.WaitGroup // one per registered socket

	sockets atomic.Int64
	ops     atomic.Int64

	smu    sync.Mutex // guards shared
	shared map[wsShareKey]*wsShareGroup
}

var _ graphql.Transport = (*WSTransport)(nil)

// NewWSTransport returns a transport for cfg; it fails when a required field
// is missing or a value is out of range.
func NewWSTransport(cfg WSConfig) (*WSTransport, error) {
	switch {
	case cfg.Auth == nil:
		return nil, errors.New("realtime: WSConfig.Auth is required")
	case cfg.Redis == nil && cfg.MaxSocketsPerUser >= 0:
		return nil, errors.New("realtime: WSConfig.Redis is required to count sockets per user")
	case cfg.InitTimeout < 0 || cfg.PingInterval < 0 || cfg.WriteTimeout < 0 || cfg.RevocationInterval < 0 ||
		cfg.HeartbeatInterval < 0 || cfg.MaxOperationsPerSocket < 0 || cfg.ReadLimit < 0 || cfg.SendQueue < 0:
		return nil, errors.New("realtime: WSConfig durations and sizes must not be negative")
	case cfg.RevocationInterval > 4*time.Second:
		return nil, errors.New("realtime: WSConfig.RevocationInterval must be at most 4s (sign-out closes sockets within 5s)")
	}
	def := func(d *time.Duration, v time.Duration) {
		if *d == 0 {
			*d = v
		}
	}
	def(&cfg.InitTimeout, DefaultWSInitTimeout)
	def(&cfg.PingInterval, DefaultWSPingInterval)
	def(&cfg.WriteTimeout, DefaultWSWriteTimeout)
	def(&cfg.RevocationInterval, DefaultWSRevocationInterval)
	def(&cfg.HeartbeatInterval, DefaultWSHeartbeatInterval)
	if cfg.MaxOperationsPerSocket == 0 {
		cfg.MaxOperationsPerSocket = DefaultWSMaxOperations
	}
	if cfg.MaxSocketsPerUser == 0 {
		cfg.MaxSocketsPerUser = DefaultWSMaxSocketsPerUser
	}
	if cfg.ReadLimit == 0 {
		cfg.ReadLimit = DefaultWSReadLimit
	}
	if cfg.SendQueue == 0 {
		cfg.SendQueue = DefaultWSSendQueue
	}
	t := &WSTransport{cfg: cfg, log: cfg.Logger, now: cfg.Now, origins: map[string]bool{}, conns: map[*wsConn]struct{}{}}
	if t.log == nil {
		t.log = slog.Default()
	}
	if t.now == nil {
		t.now = time.Now
	}
	for _, o := range cfg.AllowedOrigins {
		o = strings.ToLower(strings.TrimRight(strings.TrimSpace(o), "/"))
		if o != "" {
			t.origins[o] = true
		}
	}
	t.upgrader = websocket.Upgrader{
		HandshakeTimeout: 10 * time.Second,
		Subprotocols:     []string{SubprotocolGraphQLTransportWS, SubprotocolGraphQLWS},
		// Write buffers are only held while writing, and a small read
		// buffer of the socket's own (not net/http's, which is let go of
		// when Do returns): idle sockets cost less.
		WriteBufferPool: &sync.Pool{},
		ReadBufferSize:  wsReadBufferSize,
		// The origin is checked (and refused with 403) before Upgrade.
		CheckOrigin: func(*http.Request) bool { return true },
		Error: func(w http.ResponseWriter, r *http.Request, status int, reason error) {
			wsHTTPError(w, status, "websocket upgrade failed: "+reason.Error(), lending.CodeBadUserInput)
		},
	}
	return t, nil
}

// Supports takes websocket upgrade requests (Upgrade: websocket).
func (t *WSTransport) Supports(r *http.Request) bool { return httpx.WebsocketUpgrade(r) }

// Stats returns the current number of sockets and operations.
func (t *WSTransport) Stats() WSStats {
	return WSStats{Sockets: t.sockets.Load(), Operations: t.ops.Load()}
}

// Do upgrades the request and serves the socket until it closes.
func (t *WSTransport) Do(w http.ResponseWriter, r *http.Request, exec graphql.GraphExecutor) {
	if !t.originAllowed(r) {
		t.log.DebugContext(r.Context(), "ws: origin refused", "origin", r.Header.Get("Origin"))
		wsHTTPError(w, http.StatusForbidden, "origin not allowed", lending.CodeForbidden)
		return
	}
	c := t.newConn(r, exec)
	if !t.register(c) {
		w.Header().Set("Retry-After", "1")
		wsHTTPError(w, http.StatusServiceUnavailable, "the server is restarting: try again", lending.CodeInternal)
		return
	}
	ws, err := t.upgrader.Upgrade(wsHijacker(w), r, nil)
	if err != nil {
		t.unregister(c)
		return // the upgrader answered
	}
	c.mu.Lock()
	c.ws = ws
	c.mu.Unlock()
	t.sockets.Add(1)
	// The socket is served from a goroutine of its own and the HTTP handler
	// returns: net/http then lets go of the connection's buffers and of the
	// handler's deep stack, which an idle socket would otherwise keep.
	// Shutdown waits for the socket (register/unregister).
	go func() {
		defer t.unregister(c)
		defer t.sockets.Add(-1)
		c.serve()
	}()
}

// wsHijacker finds the http.Hijacker under middleware wrappers that expose
// the writer they wrap with Unwrap (as http.ResponseController expects):
// gorilla/websocket only asserts the interface on the writer it is given.
func wsHijacker(w http.ResponseWriter) http.ResponseWriter {
	for inner := w; ; {
		if _, ok := inner.(http.Hijacker); ok {
			return inner
		}
		u, ok := inner.(interface{ Unwrap() http.ResponseWriter })
		if !ok {
			return w
		}
		inner = u.Unwrap()
	}
}

func (t *WSTransport) originAllowed(r *http.Request) bool {
	values := r.Header.Values("Origin")
	if len(values) == 0 {
		return true
	}
	if len(values) > 1 {
		return false
	}
	scheme, host, ok := strings.Cut(strings.ToLower(strings.TrimSpace(values[0])), "://")
	if !ok || host == "" || strings.ContainsAny(host, "/?#@ ") {
		return false // includes "null"
	}
	if t.origins[scheme+"://"+host] {
		return true
	}
	if t.cfg.AllowLocalhost && (scheme == "http" || scheme == "https") {
		name := host
		if h, _, err := net.SplitHostPort(host); err == nil {
			name = h
		}
		switch strings.Trim(name, "[]") {
		case "localhost", "127.0.0.1", "::1":
			return true
		}
	}
	return false
}

// register adds c unless the transport is draining.
func (t *WSTransport) register(c *wsConn) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.draining {
		return false
	}
	t.conns[c] = struct{}{}
	t.wg.Add(1)
	if t.loopStop == nil {
		ctx, cancel := context.WithCancel(context.Background())
		t.loopStop, t.loopDone = cancel, make(chan struct{})
		go t.maintain(ctx, t.loopDone)
	}
	return true
}

// unregister removes c; the maintenance goroutine ends with the last socket.
func (t *WSTransport) unregister(c *wsConn) {
	t.mu.Lock()
	delete(t.conns, c)
	var stop context.CancelFunc
	var done chan struct{}
	if len(t.conns) == 0 && t.loopStop != nil {
		stop, done = t.loopStop, t.loopDone
		t.loopStop, t.loopDone = nil, nil
	}
	t.mu.Unlock()
	if stop != nil {
		stop()
		<-done
	}
	t.wg.Done()
}

func (t *WSTransport) snapshot() []*wsConn {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := make([]*wsConn, 0, len(t.conns))
	for c := range t.conns {
		out = append(out, c)
	}
	return out
}

// Shutdown stops accepting upgrades (503 from now on), ends every
// subscription, lets queries and mutations in flight finish, sends their
// results, closes every socket with 1012 (service restart) and waits until
// every socket's goroutines have ended. When ctx ends first it drops the
// remaining connections and returns ctx's error.
func (t *WSTransport) Shutdown(ctx context.Context) error {
	t.mu.Lock()
	t.draining = true
	t.mu.Unlock()
	conns := t.snapshot()
	for _, c := range conns {
		go c.drain(ctx)
	}
	done := make(chan struct{})
	go func() {
		t.wg.Wait()
		close(done)
	}()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
	}
	for _, c := range t.snapshot() {
		c.forceClose()
	}
	select {
	case <-done:
	case <-time.After(time.Second):
		t.log.Error("ws: sockets still running after shutdown", "sockets", t.sockets.Load())
	}
	return ctx.Err()
}

// wsConn is one socket.
type wsConn struct {
	t     *WSTransport
	exec  graphql.GraphExecutor
	authz string // the upgrade's Authorization header (until connection_init)
	id    string // the socket's member in the per-user set
	proto wsProtocol

	// the socket's values (the upgrade request's, without its
	// cancellation); nothing is cancelled with the socket: what must end
	// with it waits for closing, or is stopped by stopOps
	ctx context.Context

	// The send queue: a slice (nil when empty, so an idle socket holds no
	// buffer) bounded by SendQueue. A writer runs while writing is set
	// (started on demand: see kick); pingDue asks it for a ping.
	qmu      sync.Mutex
	queue    []wsOut
	writing  bool
	wstarted bool // serve has begun: writers may run
	pingDue  bool
	// One timer for the pings and the token's expiry (see tick), both in
	// wsClock time; under qmu.
	timer      *time.Timer
	pingAt     int64   // the next ping
	expAt      int64   // the token's expiry (0: not authenticated yet)
	closing    wsEvent // fired by closeWith and closeFromReader
	closeOnce  sync.Once
	closeCode  int
	reason     string
	closeFlush bool // write what is queued before the close frame
	closeFrame bool // send a close frame
	readerDone wsEvent
	writerDone wsEvent

	abortInit context.CancelFunc // under qmu: see onClose

	// reader-owned
	initSeen  bool
	opBase    context.Context
	initTimer *time.Timer

	acked  atomic.Bool
	expiry atomic.Int64 // token exp in Unix ns; 0 before authentication
	authn  atomic.Pointer[wsAuthState]

	mu         sync.Mutex
	ws         *websocket.Conn
	ops        []*wsOp // the active operations, by id (see op); few, so a slice
	opsWG      sync.WaitGroup
	draining   bool
	opsStopped bool // stopOps has run: no operation starts
}

// wsEvent is a one-time event (a socket closing, its reader or writer
// done) whose channel is made only when someone waits for it: an idle
// socket holds none, and one word per event. ch is nil until someone
// waits or the event fires, then the channel waited on, and wsFired once
// fired (fire swaps it in and closes the channel it replaces).
type wsEvent struct {
	ch atomic.Pointer[chan struct{}]
}

// wsFired is a fired wsEvent's ch: a closed channel.
var wsFired = func() *chan struct{} { ch := make(chan struct{}); close(ch); return &ch }()

// fire marks the event; it reports false when it had fired already.
func (e *wsEvent) fire() bool {
	p := e.ch.Swap(wsFired)
	if p == wsFired {
		return false
	}
	if p != nil {
		close(*p)
	}
	return true
}

// fired reports whether the event has fired.
func (e *wsEvent) fired() bool { return e.ch.Load() == wsFired }

// wait returns a channel closed when the event fires.
func (e *wsEvent) wait() <-chan struct{} {
	if p := e.ch.Load(); p != nil {
		return *p
	}
	ch := make(chan struct{})
	if e.ch.CompareAndSwap(nil, &ch) {
		return ch // fire closes it
	}
	return *e.ch.Load() // another waiter's, or fired
}

// wsEpoch is the origin of wsClock.
var wsEpoch = time.Now()

// wsClock is the monotonic time in ns since wsEpoch (a socket's timer
// deadlines).
func wsClock() int64 { return int64(time.Since(wsEpoch)) }

// op returns the active operation id (c.mu held).
func (c *wsConn) op(id string) *wsOp {
	for _, op := range c.ops {
		if op.id == id {
			return op
		}
	}
	return nil
}

// setOp makes op the active operation of its id, in place of the one that
// was (c.mu held).
func (c *wsConn) setOp(op *wsOp) {
	for i, o := range c.ops {
		if o.id == op.id {
			c.ops[i] = op
			return
		}
	}
	c.ops = append(c.ops, op)
}

// deleteOp removes the active operation id (c.mu held).
func (c *wsConn) deleteOp(id string) {
	for i, o := range c.ops {
		if o.id == id {
			n := len(c.ops) - 1
			c.ops[i], c.ops[n] = c.ops[n], nil
			c.ops = c.ops[:n]
			if n == 0 {
				c.ops = nil // an idle socket keeps no slice
			}
			return
		}
	}
}

// wsAuthState is what the maintenance goroutine needs of an authenticated
// socket.
type wsAuthState struct {
	revocation []string // the token's revocation ids (auth.Claims.RevocationIDs)
	slotKey    string   // "" when sockets per user are not counted
}

// wsOp is one active operation.
type wsOp struct {
	c       *wsConn
	id      string
	cancel  context.CancelFunc // the operation's context (nil for a group member)
	ctxDone <-chan struct{}    // a subscription's context's Done (see AfterStop)
	sub     bool               // a subscription (set once parsed, under wsConn.mu)
	stopped atomic.Bool        // stopped by the client or the socket (see stop)

	// A subscription whose resolver claimed the ready signal
	// (ClaimStreamReady) is pumped: its handler is called only once per
	// value signalled, from a goroutine started for the purpose (see pump).
	smu     sync.Mutex
	claimed bool
	armed   bool // the handler is set: a signal may start a pump
	pending int  // values (or the close) signalled and not yet taken
	running bool // a pump is on it
	ended   bool
	first   bool
	onStop  func() // registered with AfterStop: run once the context is cancelled
	handler graphql.ResponseHandler
	hctx    context.Context // the handler's
	rc      *graphql.OperationContext

	// A subscription claimed with ClaimSharedStream (ws_share.go).
	src SharedSource
	chk *wsShareCheck
	// the renderer of a share group (its execution donated to the group;
	// no longer the socket's operation): its pumps render for the group
	rg *wsShareGroup
	// a member of a share group: an operation of the socket holding only
	// its id, its group and the newest value sent (seq, under wsConn.mu)
	member bool
	group  *wsShareGroup // under WSTransport.smu
	gidx   int           // index in group.members (under WSTransport.smu)
	seq    int64
	done   atomic.Bool // a member's end has run
}

type wsOpKey struct{}

// ClaimStreamReady is for subscription resolvers. Called once the resolver
// cannot fail any more, just before it returns its channel, it returns a
// function that the resolver must then call once after each value it puts
// on the channel (the first one too, even if already there when claiming:
// call it once for each value then in the channel) and once after closing
// the channel. The websocket transport then reads the channel only when
// told and an idle subscription holds no goroutine. It returns nil when
// the operation's transport takes no such signal (another transport, or a
// second claim): the resolver then signals nothing.
func ClaimStreamReady(ctx context.Context) func() {
	op, _ := ctx.Value(wsOpKey{}).(*wsOp)
	if op == nil {
		return nil
	}
	op.smu.Lock()
	defer op.smu.Unlock()
	if op.claimed || op.armed || op.ended {
		return nil
	}
	op.claimed = true
	return op.ready
}

// ready counts one value signalled and starts a pump if none runs.
func (op *wsOp) ready() {
	op.smu.Lock()
	op.pending++
	op.startPumpLocked()
}

// stop stops the operation (the client's complete, a replacement, the
// socket closing or draining): its context is cancelled and a pumped
// operation is woken to end. Safe under wsConn.mu.
func (op *wsOp) stop() {
	op.stopped.Store(true)
	if op.cancel != nil {
		op.cancel()
	}
	op.smu.Lock()
	f := op.onStop
	op.onStop = nil
	op.startPumpLocked()
	if f != nil {
		go f()
	}
}

// cancelCtx cancels op's context (its execution ends) and runs what
// AfterStop registered.
func (op *wsOp) cancelCtx() {
	op.cancel()
	op.smu.Lock()
	f := op.onStop
	op.onStop = nil
	op.smu.Unlock()
	if f != nil {
		go f()
	}
}

// AfterStop is context.AfterFunc for a subscription resolver's context:
// f runs, in a goroutine of its own, once ctx is done, unless stop is
// called first (stop reports whether it prevented f from running). For a
// websocket operation's context, done only when the operation ends, the
// operation runs f itself: its context then holds no child for it (an
// idle subscription costs less). Other contexts take context.AfterFunc.
func AfterStop(ctx context.Context, f func()) (stop func() bool) {
	op, _ := ctx.Value(wsOpKey{}).(*wsOp)
	if op == nil || op.ctxDone == nil || ctx.Done() != op.ctxDone {
		return context.AfterFunc(ctx, f) // another transport, or cancelled by more than the operation
	}
	op.smu.Lock()
	if op.onStop != nil { // one registration per operation
		op.smu.Unlock()
		return context.AfterFunc(ctx, f)
	}
	op.onStop = f
	op.smu.Unlock()
	if ctx.Err() != nil { // cancelled meanwhile: the canceller may have missed f
		op.takeOnStop(true)
	}
	return func() bool { return op.takeOnStop(false) }
}

// takeOnStop removes the function registered with AfterStop, running it
// with run; it reports whether there was one.
func (op *wsOp) takeOnStop(run bool) bool {
	op.smu.Lock()
	f := op.onStop
	op.onStop = nil
	op.smu.Unlock()
	if f != nil && run {
		go f()
	}
	return f != nil
}

// startPumpLocked (op.smu held, released) starts a pump unless one runs:
// for a member only to end it, for a group's renderer only for a value.
func (op *wsOp) startPumpLocked() {
	if !op.armed || op.running || op.ended || (op.rg != nil && op.pending == 0) {
		op.smu.Unlock()
		return
	}
	op.running = true
	switch {
	case op.member:
		op.smu.Unlock()
		go op.c.endMember(op)
	case op.rg != nil:
		op.rg.pumps.Add(1) // under smu, before the group's end sets ended
		op.smu.Unlock()
		go op.rg.pump(op)
	default:
		op.smu.Unlock()
		go op.c.pump(op)
	}
}

// wsProtocol is what differs between the two subprotocols.
type wsProtocol interface {
	// handle processes one text message (reader goroutine).
	handle(c *wsConn, data []byte)
	// handleBinary processes a binary message.
	handleBinary(c *wsConn)
	// keepAlive is the message written every PingInterval once acknowledged.
	keepAlive() []byte
	next(id string, resp *graphql.Response) []byte
	// nextPayload is next for a payload already encoded (wsResponsePayload).
	nextPayload(id string, payload []byte) []byte
	// opError are the messages for an operation that failed as a whole.
	opError(id string, errs gqlerror.List) [][]byte
	complete(id string) []byte
}

func (t *WSTransport) newConn(r *http.Request, exec graphql.GraphExecutor) *wsConn {
	// the request's values, not its cancellation: net/http cancels the
	// request's context when Do returns
	ctx := context.WithoutCancel(r.Context())
	b := make([]byte, 12)
	_, _ = rand.Read(b)
	// of the request only the Authorization header is kept (connection_init
	// may leave the token to it): not the request, nor its other headers
	var authz string
	if values := r.Header.Values("Authorization"); len(values) == 1 {
		authz = values[0] // none, or more than one: no token from the header
	}
	c := &wsConn{
		t: t, exec: exec, authz: strings.Clone(authz), id: hex.EncodeToString(b), ctx: ctx,
	}
	return c
}

// stopOps stops every operation once the socket is closing (started by
// closeWith and closeFromReader: operations' contexts are not children of
// the socket's, nothing is registered with it); none starts after it.
func (c *wsConn) stopOps() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.opsStopped = true
	for _, op := range c.ops {
		op.stop()
	}
}

// serve runs the socket: this goroutine reads; a second one writes.
func (c *wsConn) serve() {
	switch c.ws.Subprotocol() {
	case SubprotocolGraphQLWS:
		c.proto = wsLegacy{}
	case SubprotocolGraphQLTransportWS:
		c.proto = wsTransport{}
	default:
		c.proto = wsTransport{}
		c.closeWith(WSCloseSubprotocolNotAcceptable, "Subprotocol not acceptable", false)
	}
	c.ws.SetReadLimit(c.t.cfg.ReadLimit)
	c.ws.SetPongHandler(func(string) error { c.alive(); return nil })
	c.ws.SetPingHandler(func(data string) error {
		c.alive()
		if c.expired() {
			return nil
		}
		err := c.ws.WriteControl(websocket.PongMessage, []byte(data), time.Now().Add(time.Second))
		var ne net.Error
		if err == nil || errors.Is(err, websocket.ErrCloseSent) || (errors.As(err, &ne) && ne.Timeout()) {
			return nil
		}
		return err
	})
	c.alive()
	c.qmu.Lock()
	c.wstarted = true
	c.pingAt = wsClock() + int64(c.t.cfg.PingInterval)
	c.timer = time.AfterFunc(c.t.cfg.PingInterval, c.tick)
	c.qmu.Unlock()
	c.kick(false) // a close that came first
	c.initTimer = time.AfterFunc(c.t.cfg.InitTimeout, func() {
		if !c.acked.Load() {
			c.closeWith(WSCloseInitTimeout, "Connection initialisation timeout", false)
		}
	})

	code, reason := c.readLoop()

	c.readerDone.fire()
	if code == WSCloseMessageTooBig {
		// gorilla has sent 1009; discard what the peer is still sending for a
		// moment so that closing does not reset the connection (and lose the
		// close frame) with unread data
		nc := c.ws.NetConn()
		_ = nc.SetReadDeadline(time.Now().Add(wsCloseGrace))
		_, _ = io.Copy(io.Discard, nc)
	}
	c.closeFromReader(code, reason) // no-op when closing already
	_ = c.ws.Close()                // a writer stuck in a write gives up
	<-c.writerDone.wait()           // the writer has stopped the timer
	if c.initTimer != nil {
		c.initTimer.Stop()
	}
	c.opsWG.Wait()
	c.releaseSlot()
	if c.t.cfg.OnClose != nil {
		c.t.cfg.OnClose(c.closeCode, c.reason)
	}
}

// readLoop reads until the connection fails or the peer closes it, and
// returns the close code that describes why.
func (c *wsConn) readLoop() (int, string) {
	for {
		mt, data, err := c.ws.ReadMessage()
		if err != nil {
			var ce *websocket.CloseError
			var ne net.Error
			switch {
			case errors.As(err, &ce):
				return ce.Code, ce.Text
			case errors.Is(err, websocket.ErrReadLimit):
				return WSCloseMessageTooBig, "" // gorilla sent the close frame
			case errors.As(err, &ne) && ne.Timeout():
				return wsCloseDeadPeer, "ping timeout"
			default:
				return wsCloseDeadPeer, "connection lost"
			}
		}
		c.alive()
		if c.isClosing() {
			continue // draining the peer until its close frame
		}
		c.handle(mt, data)
	}
}

// handle processes a client message on a goroutine of its own and waits for
// it: authentication, parsing and starting operations need a deep stack,
// and the reader's would otherwise stay that large (at least until enough
// collections shrink it) while the socket idles in a read. The handler runs
// as if on the reader (the reader waits), so reader-owned state is its.
func (c *wsConn) handle(mt int, data []byte) {
	done := make(chan struct{})
	go func() {
		defer close(done)
		if mt != websocket.TextMessage {
			c.proto.handleBinary(c)
			return
		}
		c.proto.handle(c, data)
	}()
	<-done
}

// alive pushes the read deadline two ping intervals ahead (reader goroutine).
func (c *wsConn) alive() {
	_ = c.ws.SetReadDeadline(time.Now().Add(2 * c.t.cfg.PingInterval))
}

func (c *wsConn) isClosing() bool { return c.closing.fired() }

// expired reports whether the socket's token has expired: nothing may be
// sent from then on.
func (c *wsConn) expired() bool {
	exp := c.expiry.Load()
	return exp != 0 && !c.t.now().Before(time.Unix(0, exp))
}

// closeWith starts closing the socket with code (the first call wins):
// operations are cancelled at once; the writer then sends what is queued
// (flush), the close frame, waits briefly for the peer's, and drops the
// connection. Safe from any goroutine.
func (c *wsConn) closeWith(code int, reason string, flush bool) {
	c.closeOnce.Do(func() {
		if len(reason) > 123 { // a close frame's reason is at most 123 bytes
			reason = reason[:123]
			for !utf8.ValidString(reason) {
				reason = reason[:len(reason)-1]
			}
		}
		c.closeCode, c.reason, c.closeFlush = code, reason, flush
		c.closeFrame = code != wsCloseDeadPeer
		c.closing.fire()
		c.abort()
		go c.stopOps() // callers may hold c.mu
	})
	c.kick(false) // the writer finishes the close
}

// onClose sets (or, with nil, clears) the function that closing the socket
// calls: connection_init's authentication gives up. It reports false when
// the socket is closing already (f is not set).
func (c *wsConn) onClose(f context.CancelFunc) bool {
	c.qmu.Lock()
	defer c.qmu.Unlock()
	if f != nil && c.isClosing() {
		return false
	}
	c.abortInit = f
	return true
}

// abort calls the function set with onClose (after closing has fired).
func (c *wsConn) abort() {
	c.qmu.Lock()
	f := c.abortInit
	c.qmu.Unlock()
	if f != nil {
		f()
	}
}

// closeFromReader marks a close that the read side saw first: the peer's
// close frame (gorilla answered it), a message over the read limit (gorilla
// sent 1009) or a lost peer. No close frame is sent.
func (c *wsConn) closeFromReader(code int, reason string) {
	c.closeOnce.Do(func() {
		c.closeCode, c.reason = code, reason
		c.closing.fire()
		c.abort()
		go c.stopOps()
	})
	c.kick(false)
}

// forceClose drops the TCP connection (Shutdown past its deadline).
func (c *wsConn) forceClose() {
	c.closeWith(WSCloseServiceRestart, "service restart", false)
	c.mu.Lock()
	ws := c.ws
	c.mu.Unlock()
	if ws != nil {
		_ = ws.NetConn().Close()
	}
}

// drain ends the socket for Shutdown: subscriptions at once, queries and
// mutations once they finish (or ctx ends), then 1012.
func (c *wsConn) drain(ctx context.Context) {
	c.mu.Lock()
	c.draining = true
	for _, op := range c.ops {
		if op.sub {
			op.stop()
		}
	}
	c.mu.Unlock()
	done := make(chan struct{})
	go func() {
		c.opsWG.Wait() // no Add after draining is set
		close(done)
	}()
	select {
	case <-done:
		c.closeWith(WSCloseServiceRestart, "service restart", true)
	case <-ctx.Done():
		c.closeWith(WSCloseServiceRestart, "service restart", false)
	case <-c.closing.wait():
	}
}

// kick makes sure a writer runs when there is something to do (queued
// messages, a ping, the close): it starts one unless one runs. With inline
// the caller becomes the writer (an operation's pump: it has nothing else
// to do, and a write then costs no goroutine switch).
func (c *wsConn) kick(inline bool) {
	c.qmu.Lock()
	if c.writing || !c.wstarted {
		c.qmu.Unlock()
		return
	}
	c.writing = true
	c.qmu.Unlock()
	if inline {
		c.writeLoop()
	} else {
		go c.writeLoop()
	}
}

// writeLoop (the writer) writes queued messages and pings until there are
// none; once the socket is closing it finishes the close and no writer
// runs again.
func (c *wsConn) writeLoop() {
	for {
		if c.isClosing() {
			c.finishClose() // writing stays set: no writer after this one
			c.writerDone.fire()
			return
		}
		c.qmu.Lock()
		ping := c.pingDue
		c.pingDue = false
		var m wsOut
		have := false
		if !ping {
			m, have = c.dequeueLocked()
		}
		if !ping && !have {
			if c.isClosing() { // checked under qmu: a later close's kick sees writing clear
				c.qmu.Unlock()
				continue
			}
			c.writing = false
			c.qmu.Unlock()
			return
		}
		c.qmu.Unlock()
		if ping {
			c.ping()
			continue
		}
		if err := c.writeOut(m); err != nil {
			c.closeWith(wsCloseDeadPeer, "write failed", false)
		}
	}
}

// tick (the socket's timer) asks the writer for a ping every PingInterval
// and closes the socket (4403) when its token expires: one timer for both,
// set for whichever comes first. It may fire early (initialise resets it
// while it runs): it then only sets itself again.
func (c *wsConn) tick() {
	c.qmu.Lock()
	if c.isClosing() { // finishClose stops the timer under qmu once closing
		c.qmu.Unlock()
		return
	}
	now := wsClock()
	if c.expAt != 0 && now >= c.expAt {
		c.qmu.Unlock()
		c.closeWith(WSCloseForbidden, "Forbidden", false)
		return
	}
	ping := now >= c.pingAt
	if ping {
		c.pingDue = true
		c.pingAt = now + int64(c.t.cfg.PingInterval)
	}
	c.resetTimerLocked(now)
	c.qmu.Unlock()
	if ping {
		c.kick(false)
	}
}

// resetTimerLocked (qmu held) sets the timer for the next ping or the
// token's expiry, whichever comes first.
func (c *wsConn) resetTimerLocked(now int64) {
	next := c.pingAt
	if c.expAt != 0 && c.expAt < next {
		next = c.expAt
	}
	c.timer.Reset(time.Duration(next - now))
}

// ping (writer) sends the protocol's keep-alive once acknowledged and a
// websocket ping frame.
func (c *wsConn) ping() {
	if c.acked.Load() {
		if ka := c.proto.keepAlive(); ka != nil {
			if err := c.write(ka); err != nil {
				c.closeWith(wsCloseDeadPeer, "write failed", false)
				return
			}
		}
	}
	if !c.expired() {
		if err := c.ws.WriteControl(websocket.PingMessage, nil, time.Now().Add(c.t.cfg.WriteTimeout)); err != nil {
			c.closeWith(wsCloseDeadPeer, "write failed", false)
		}
	}
}

var errExpired = errors.New("token expired")

// write sends one message unless the token has expired (then it closes 4403).
func (c *wsConn) write(m []byte) error {
	if c.expired() {
		c.closeWith(WSCloseForbidden, "Forbidden", false)
		return errExpired
	}
	_ = c.ws.SetWriteDeadline(time.Now().Add(c.t.cfg.WriteTimeout))
	return c.ws.WriteMessage(websocket.TextMessage, m)
}

// wsOut is a queued message: its bytes, or a message prepared once for
// many sockets (a share group's).
type wsOut struct {
	b  []byte
	pm *websocket.PreparedMessage
}

// writeOut writes a queued message (see write).
func (c *wsConn) writeOut(m wsOut) error {
	if m.pm == nil {
		return c.write(m.b)
	}
	if c.expired() {
		c.closeWith(WSCloseForbidden, "Forbidden", false)
		return errExpired
	}
	_ = c.ws.SetWriteDeadline(time.Now().Add(c.t.cfg.WriteTimeout))
	return c.ws.WritePreparedMessage(m.pm)
}

// finishClose (writer) sends what must still be sent and the close frame,
// waits for the reader to see the peer's close, and drops the connection.
func (c *wsConn) finishClose() {
	c.qmu.Lock()
	c.timer.Stop()
	c.qmu.Unlock()
	if c.closeFlush {
		for {
			m, ok := c.dequeue()
			if !ok || c.writeOut(m) != nil {
				break
			}
		}
	}
	if c.closeFrame {
		_ = c.ws.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(c.closeCode, c.reason), time.Now().Add(time.Second))
		select {
		case <-c.readerDone.wait():
		case <-time.After(wsCloseGrace):
		}
	}
	_ = c.ws.Close()
}

// enqueue queues m and starts a writer if none runs; a full queue closes
// the socket as a slow consumer. It never blocks.
func (c *wsConn) enqueue(m []byte) bool {
	if !c.push(m) {
		return false
	}
	c.kick(false)
	return true
}

// push queues m without starting a writer (the caller does, see kick).
func (c *wsConn) push(m []byte) bool { return c.pushOut(wsOut{b: m}) }

func (c *wsConn) pushOut(m wsOut) bool {
	if c.isClosing() {
		return false
	}
	c.qmu.Lock()
	if len(c.queue) >= c.t.cfg.SendQueue {
		c.qmu.Unlock()
		c.t.log.Warn("ws: slow consumer disconnected", "queue", c.t.cfg.SendQueue)
		c.closeWith(WSCloseSlowConsumer, "Slow consumer", false)
		return false
	}
	c.queue = append(c.queue, m)
	c.qmu.Unlock()
	return true
}

// dequeue takes the oldest queued message (writer).
func (c *wsConn) dequeue() (wsOut, bool) {
	c.qmu.Lock()
	defer c.qmu.Unlock()
	return c.dequeueLocked()
}

func (c *wsConn) dequeueLocked() (wsOut, bool) {
	if len(c.queue) == 0 {
		return wsOut{}, false
	}
	m := c.queue[0]
	c.queue[0] = wsOut{}
	c.queue = c.queue[1:]
	if len(c.queue) == 0 {
		c.queue = nil
	}
	return m, true
}

// sendOp queues msgs for op while it is active (not completed by the
// client, not replaced); the caller then starts a writer (kick).
func (c *wsConn) sendOp(op *wsOp, msgs ...[]byte) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.op(op.id) != op {
		return false
	}
	for _, m := range msgs {
		if !c.push(m) {
			return false
		}
	}
	return true
}

// finishOp ends op, queueing its last msgs if it is still active.
func (c *wsConn) finishOp(op *wsOp, msgs ...[]byte) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.op(op.id) != op {
		return
	}
	c.deleteOp(op.id)
	c.t.ops.Add(-1)
	for _, m := range msgs {
		if !c.enqueue(m) {
			return
		}
	}
}

// stopOp ends the operation id at the client's request: nothing more is
// sent for it.
func (c *wsConn) stopOp(id string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if op := c.op(id); op != nil {
		c.deleteOp(id)
		c.t.ops.Add(-1)
		op.stop()
	}
}

// startOp starts operation id. With replace (legacy) an active operation
// with the same id is stopped first; without, it reports a duplicate.
func (c *wsConn) startOp(id string, params *graphql.RawParams, replace bool) (duplicate bool) {
	c.mu.Lock()
	if c.draining || c.opsStopped {
		c.mu.Unlock()
		return false // the socket is about to close (with 1012 when draining)
	}
	if old := c.op(id); old != nil {
		if !replace {
			c.mu.Unlock()
			return true
		}
		c.deleteOp(id)
		c.t.ops.Add(-1)
		old.stop()
	}
	if len(c.ops) >= c.t.cfg.MaxOperationsPerSocket {
		c.mu.Unlock()
		err := lending.Errorf(lending.CodeRateLimited, "too many operations on this socket: at most %d at a time", c.t.cfg.MaxOperationsPerSocket)
		resp := c.exec.DispatchError(c.opBase, gqlerror.List{{Message: err.Message, Err: err}})
		for _, m := range c.proto.opError(id, resp.Errors) {
			c.enqueue(m)
		}
		return false
	}
	ctx, cancel := context.WithCancel(c.opBase)
	op := &wsOp{c: c, id: id, cancel: cancel}
	c.ops = append(c.ops, op)
	c.opsWG.Add(1)
	c.t.ops.Add(1)
	c.mu.Unlock()
	go c.runOp(ctx, op, params)
	return false
}

// runOp executes one operation through the executor and sends its results.
func (c *wsConn) runOp(ctx context.Context, op *wsOp, params *graphql.RawParams) {
	if c.execOp(ctx, op, params) {
		c.pump(op) // the first value, already signalled
	}
}

// execOp runs op until it ends, or until its resolver has claimed the ready
// signal (then it reports true: op is armed and the caller must pump it).
func (c *wsConn) execOp(ctx context.Context, op *wsOp, params *graphql.RawParams) (pumped bool) {
	defer func() {
		if !pumped {
			c.opsWG.Done()
		}
	}()
	defer func() {
		if !pumped {
			op.cancelCtx()
		}
	}()
	var rc *graphql.OperationContext
	defer func() {
		if r := recover(); r != nil {
			pumped = false
			var err error
			if rc != nil && rc.RecoverFunc != nil {
				err = rc.RecoverFunc(ctx, r)
			} else {
				err = fmt.Errorf("panic: %v", r)
			}
			resp := c.exec.DispatchError(ctx, gqlerror.List{gqlerror.WrapIfUnwrapped(err)})
			c.finishOp(op, c.proto.opError(op.id, resp.Errors)...)
		}
	}()

	if c.t.cfg.WithContext != nil {
		ctx = c.t.cfg.WithContext(ctx)
	}
	ctx = graphql.StartOperationTrace(ctx)
	now := graphql.Now()
	params.ReadTime = graphql.TraceTiming{Start: now, End: now}
	var errs gqlerror.List
	rc, errs = c.exec.CreateOperationContext(ctx, params)
	if errs != nil {
		resp := c.exec.DispatchError(graphql.WithOperationContext(ctx, rc), errs)
		c.finishOp(op, c.proto.opError(op.id, resp.Errors)...)
		return false
	}
	sub := rc.Operation.Operation == ast.Subscription
	if sub {
		c.mu.Lock()
		op.sub = true
		draining := c.draining
		c.mu.Unlock()
		if draining {
			c.finishOp(op)
			return false
		}
		ctx = context.WithValue(ctx, wsOpKey{}, op)
		op.ctxDone = ctx.Done() // before the resolver runs (AfterStop)
	}
	// the operation's own context: the one DispatchOperation returns may be
	// cancelled by an extension once the last response is out (the
	// operation timeout does), which is not the client stopping it
	opCtx := ctx
	handler, ctx := c.exec.DispatchOperation(ctx, rc)
	if sub && op.arm(handler, ctx, rc) {
		return true
	}
	for first := true; ; first = false {
		resp := handler(ctx)
		if resp == nil {
			break
		}
		if first && sub && len(resp.Errors) > 0 && wsNoData(resp.Data) {
			// the source stream could not be created (e.g. NOT_FOUND)
			c.finishOp(op, c.proto.opError(op.id, resp.Errors)...)
			return false
		}
		if !c.sendOp(op, c.proto.next(op.id, resp)) {
			c.finishOp(op) // a no-op when the operation is already gone
			return false
		}
		c.kick(false)
	}
	if opCtx.Err() != nil {
		c.finishOp(op) // stopped by the client or the socket: nothing more to say
		return false
	}
	c.finishOp(op, c.proto.complete(op.id))
	return false
}

// arm switches op to pumping if its resolver claimed the ready signal; the
// caller is then op's pump.
func (op *wsOp) arm(handler graphql.ResponseHandler, ctx context.Context, rc *graphql.OperationContext) bool {
	op.smu.Lock()
	defer op.smu.Unlock()
	if !op.claimed {
		op.ended = true // a late claim gets nothing
		return false
	}
	op.handler, op.hctx, op.rc = handler, ctx, rc
	op.armed, op.running, op.first = true, true, true
	if op.src != nil && rc != nil {
		op.checkFields(rc, op.src)
	}
	return true
}

// pump (op's only pump while it runs) takes the values signalled, one
// handler call each, and sends them; it returns when none is left, or ends
// op when its stream has ended or op was stopped. The caller has set
// op.running. An operation with a shared source whose first value could be
// shared joins a share group after sending it (ws_share.go): the pump then
// returns and op is no longer the socket's.
func (c *wsConn) pump(op *wsOp) {
	for {
		op.smu.Lock()
		if op.stopped.Load() {
			op.smu.Unlock()
			c.endStream(op) // stopped by the client or the socket: nothing more to say
			return
		}
		if op.pending == 0 {
			op.running = false
			op.smu.Unlock()
			return
		}
		op.pending--
		first := op.first
		op.first = false
		op.smu.Unlock()

		var token any
		if op.src != nil {
			if !op.src.Take(func(key any) bool { token = key; return true }) {
				token = nil // ended: the handler sees the closed channel
			}
			if op.chk != nil {
				op.chk.tainted.Store(false)
			}
		}
		resp, err := op.next()
		switch {
		case err != nil:
			resp := c.exec.DispatchError(op.hctx, gqlerror.List{gqlerror.WrapIfUnwrapped(err)})
			c.endStream(op, c.proto.opError(op.id, resp.Errors)...)
			return
		case resp == nil:
			if op.stopped.Load() {
				c.endStream(op)
			} else {
				c.endStream(op, c.proto.complete(op.id))
			}
			return
		case first && len(resp.Errors) > 0 && wsNoData(resp.Data):
			c.endStream(op, c.proto.opError(op.id, resp.Errors)...)
			return
		}
		if !c.sendOp(op, c.proto.next(op.id, resp)) {
			c.endStream(op)
			return
		}
		if first && token != nil && op.chk != nil && !op.chk.tainted.Load() {
			if payload, ok := wsSharedPayload(resp); ok && c.t.share(op, token, payload) {
				c.kick(true)
				return // a member of its group now
			}
		}
		c.kick(true) // write it from here unless a writer runs
	}
}

// next calls op's handler once, recovering a panic into an error.
func (op *wsOp) next() (resp *graphql.Response, err error) {
	defer func() {
		if r := recover(); r != nil {
			resp = nil
			if op.rc != nil && op.rc.RecoverFunc != nil {
				err = op.rc.RecoverFunc(op.hctx, r)
			}
			if err == nil {
				err = fmt.Errorf("panic: %v", r)
			}
		}
	}()
	return op.handler(op.hctx), nil
}

// endStream ends a pumped op (from its pump), sending msgs if it is still
// active.
func (c *wsConn) endStream(op *wsOp, msgs ...[]byte) {
	op.smu.Lock()
	op.ended, op.running = true, false
	op.smu.Unlock()
	c.finishOp(op, msgs...)
	op.cancelCtx()
	c.opsWG.Done()
}

func wsNoData(data json.RawMessage) bool {
	d := bytes.TrimSpace(data)
	return len(d) == 0 || bytes.Equal(d, []byte("null"))
}

// initialise authenticates the socket from the connection_init payload (or
// the upgrade request's Authorization header) and claims a per-user slot. It
// returns a close code on failure.
func (c *wsConn) initialise(payload json.RawMessage) (int, string) {
	token, ok := wsToken(payload, c.authz)
	c.authz = ""
	if !ok {
		c.t.log.DebugContext(c.ctx, "ws: no usable access token")
		return WSCloseForbidden, "Forbidden"
	}
	ctx, cancel := context.WithTimeout(c.ctx, 5*time.Second)
	defer cancel()
	if !c.onClose(cancel) { // the socket closing meanwhile gives up
		return WSCloseForbidden, "Forbidden" // not sent: the socket is closing
	}
	defer c.onClose(nil)
	viewer, claims, err := c.t.cfg.Auth.Authenticate(ctx, token)
	if err != nil {
		if lending.IsCode(err, lending.CodeUnauthenticated) {
			c.t.log.DebugContext(c.ctx, "ws: rejected access token", "err", err)
			return WSCloseForbidden, "Forbidden"
		}
		if !c.isClosing() { // (a socket closed meanwhile cancels the check: nothing to report)
			c.t.log.ErrorContext(c.ctx, "ws: cannot authenticate", "err", err)
		}
		return WSCloseTryAgainLater, "Try again later"
	}
	if !viewer.Authenticated() || claims == nil || claims.ExpiresAt == nil {
		return WSCloseForbidden, "Forbidden"
	}
	exp := claims.ExpiresAt.Time
	left := exp.Sub(c.t.now())
	if left <= 0 {
		return WSCloseForbidden, "Forbidden"
	}
	slotKey, code, reason := c.admit(ctx, viewer.UserID)
	if code != 0 {
		return code, reason
	}
	// not cancelled with the socket: stopOps stops its operations
	// (the viewer once for all of them; of the claims, what is used later)
	kept := claims.Retained()
	c.opBase = lending.WithViewer(auth.WithClaims(c.ctx, kept), kept.Viewer())
	c.authn.Store(&wsAuthState{revocation: kept.RevocationIDs(), slotKey: slotKey})
	c.expiry.Store(exp.UnixNano())
	c.qmu.Lock() // the socket's timer closes it (4403) at exp
	now := wsClock()
	c.expAt = now + int64(left)
	if c.expAt < c.pingAt && !c.isClosing() {
		c.resetTimerLocked(now)
	}
	c.qmu.Unlock()
	c.acked.Store(true)
	if c.initTimer != nil { // an idle socket keeps no timer it no longer needs
		c.initTimer.Stop()
		c.initTimer = nil
	}
	return 0, ""
}

// wsToken finds the access token: connection_init's payload
// {"authorization": "Bearer …"} (key in any case) or {"token": "…"}, else
// the upgrade request's Authorization header (authz, when it had exactly
// one).
func wsToken(payload json.RawMessage, authz string) (string, bool) {
	var fields map[string]json.RawMessage
	if len(payload) > 0 {
		_ = json.Unmarshal(payload, &fields) // not an object: no fields
	}
	for k, v := range fields {
		if strings.EqualFold(k, "authorization") {
			var s string
			if json.Unmarshal(v, &s) != nil {
				return "", false
			}
			return auth.BearerToken(s)
		}
	}
	if v, ok := fields["token"]; ok {
		var s string
		if json.Unmarshal(v, &s) != nil {
			return "", false
		}
		if tok, ok := auth.BearerToken(s); ok {
			return tok, true
		}
		s = strings.TrimSpace(s)
		return s, s != "" && !strings.ContainsAny(s, " \t")
	}
	if authz != "" {
		return auth.BearerToken(authz)
	}
	return "", false
}

// wsOutMsg is a message to the client (both protocols).
type wsOutMsg struct {
	ID      string          `json:"id,omitempty"`
	Type    string          `json:"type"`
	Payload json.RawMessage `json:"payload,omitempty"`
}

func wsMarshal(id, typ string, payload any) []byte {
	var raw json.RawMessage
	switch p := payload.(type) {
	case nil:
	case json.RawMessage:
		raw = p
	default:
		b, err := json.Marshal(p)
		if err != nil {
			b = []byte(`{"errors":[{"message":"internal error","extensions":{"code":"INTERNAL"}}]}`)
		}
		raw = b
	}
	b, _ := json.Marshal(wsOutMsg{ID: id, Type: typ, Payload: raw})
	return b
}

// wsMarshalResponse is wsMarshal(id, typ, resp) for an operation's result,
// without encoding/json re-validating and re-compacting resp.Data (the
// executor's own, compact, output): the bulk of every message a
// subscription sends. Other shapes take wsMarshal.
func wsMarshalResponse(id, typ string, resp *graphql.Response) []byte {
	if resp.Label != "" || len(resp.Path) > 0 || resp.HasNext != nil || !wsPlainString(id) || !wsPlainString(typ) {
		return wsMarshal(id, typ, resp)
	}
	payload, ok := wsResponsePayload(resp)
	if !ok {
		return wsMarshal(id, typ, resp)
	}
	return wsMessage(id, typ, payload)
}

// wsResponsePayload is resp as a message's payload ({"errors":…,
// "data":…,"extensions":…}) for a response without label, path or hasNext;
// false when it cannot be encoded that way.
func wsResponsePayload(resp *graphql.Response) ([]byte, bool) {
	var errs, ext []byte
	var err error
	if len(resp.Errors) > 0 {
		if errs, err = json.Marshal(resp.Errors); err != nil {
			return nil, false
		}
	}
	if len(resp.Extensions) > 0 {
		if ext, err = json.Marshal(resp.Extensions); err != nil {
			return nil, false
		}
	}
	data := bytes.TrimSpace(resp.Data)
	if len(data) == 0 {
		data = []byte("null")
	}
	b := make([]byte, 0, len(data)+len(errs)+len(ext)+32)
	b = append(b, '{')
	if errs != nil {
		b = append(b, `"errors":`...)
		b = append(b, errs...)
		b = append(b, ',')
	}
	b = append(b, `"data":`...)
	b = append(b, data...)
	if ext != nil {
		b = append(b, `,"extensions":`...)
		b = append(b, ext...)
	}
	return append(b, '}'), true
}

// wsMessage is the message {"id":id,"type":typ,"payload":payload} (no id
// when empty) for an encoded payload; id and typ must be plain strings
// (wsPlainString), else it takes wsMarshal.
func wsMessage(id, typ string, payload []byte) []byte {
	if !wsPlainString(id) || !wsPlainString(typ) {
		return wsMarshal(id, typ, json.RawMessage(payload))
	}
	b := make([]byte, 0, len(id)+len(typ)+len(payload)+32)
	if id != "" {
		b = append(b, `{"id":"`...)
		b = append(b, id...)
		b = append(b, `","type":"`...)
	} else {
		b = append(b, `{"type":"`...)
	}
	b = append(b, typ...)
	b = append(b, `","payload":`...)
	b = append(b, payload...)
	return append(b, '}')
}

// wsPlainString reports whether encoding/json writes s as is between quotes.
func wsPlainString(s string) bool {
	for i := 0; i < len(s); i++ {
		switch ch := s[i]; {
		case ch < 0x20 || ch >= 0x7f, ch == '"', ch == '\\', ch == '<', ch == '>', ch == '&':
			return false
		}
	}
	return true
}

func wsHTTPError(w http.ResponseWriter, status int, msg string, code lending.Code) {
	b, _ := json.Marshal(map[string]any{"errors": []map[string]any{{"message": msg, "extensions": map[string]any{"code": string(code)}}}})
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = w.Write(b)
}

// ---- graphql-transport-ws ----

// wsTransport is the graphql-transport-ws protocol.
type wsTransport struct{}

// wsInMsg is a client message as decoded before validation.
type wsInMsg struct {
	Type    *string         `json:"type"`
	ID      json.RawMessage `json:"id"`
	Payload json.RawMessage `json:"payload"`
}

var wsPing = wsMarshal("", "ping", nil)

func (wsTransport) keepAlive() []byte { return wsPing }

func (wsTransport) next(id string, resp *graphql.Response) []byte {
	return wsMarshalResponse(id, "next", resp)
}

func (wsTransport) nextPayload(id string, payload []byte) []byte {
	return wsMessage(id, "next", payload)
}

func (wsTransport) opError(id string, errs gqlerror.List) [][]byte {
	if errs == nil {
		errs = gqlerror.List{}
	}
	return [][]byte{wsMarshal(id, "error", errs)}
}

func (wsTransport) complete(id string) []byte { return wsMarshal(id, "complete", nil) }

func (wsTransport) handleBinary(c *wsConn) {
	c.closeWith(WSCloseBadRequest, "Invalid message received: binary messages are not supported", false)
}

func (p wsTransport) handle(c *wsConn, data []byte) {
	bad := func(reason string) { c.closeWith(WSCloseBadRequest, reason, false) }
	var m wsInMsg
	if d := bytes.TrimSpace(data); len(d) == 0 || d[0] != '{' || json.Unmarshal(d, &m) != nil {
		bad("Invalid message received")
		return
	}
	if m.Type == nil {
		bad(`Invalid message received: "type" property must be a string`)
		return
	}
	switch typ := *m.Type; typ {
	case "connection_init":
		if !wsObjectOrNull(m.Payload) {
			bad(`Invalid message received: "payload" property must be an object`)
			return
		}
		if c.initSeen {
			c.closeWith(WSCloseTooManyInit, "Too many initialisation requests", false)
			return
		}
		c.initSeen = true
		if code, reason := c.initialise(m.Payload); code != 0 {
			c.closeWith(code, reason, false)
			return
		}
		c.enqueue(wsMarshal("", "connection_ack", nil))
	case "ping", "pong":
		if !wsObjectOrNull(m.Payload) {
			bad(`Invalid message received: "payload" property must be an object`)
			return
		}
		if typ == "ping" {
			var payload json.RawMessage
			if !wsNoData(m.Payload) {
				payload = m.Payload
			}
			c.enqueue(wsMarshal("", "pong", payload))
		}
	case "subscribe":
		id, reason := wsID(m.ID)
		if reason != "" {
			bad(reason)
			return
		}
		params, reason := wsSubscribePayload(m.Payload)
		if reason != "" {
			bad(reason)
			return
		}
		if !c.acked.Load() {
			c.closeWith(WSCloseUnauthorized, "Unauthorized", false)
			return
		}
		if c.startOp(id, params, false) {
			c.closeWith(WSCloseSubscriberExists, "Subscriber for "+id+" already exists", false)
		}
	case "complete":
		id, reason := wsID(m.ID)
		if reason != "" {
			bad(reason)
			return
		}
		c.stopOp(id)
	default:
		bad(fmt.Sprintf("Invalid message received: unexpected message of type %q", typ))
	}
}

// wsID checks an operation id: a non-empty string.
func wsID(raw json.RawMessage) (string, string) {
	var id string
	if len(raw) == 0 || json.Unmarshal(raw, &id) != nil {
		return "", `Invalid message received: "id" property must be a string`
	}
	if id == "" {
		return "", `Invalid message received: "id" property cannot be empty`
	}
	return id, ""
}

func wsObjectOrNull(raw json.RawMessage) bool {
	d := bytes.TrimSpace(raw)
	return len(d) == 0 || bytes.Equal(d, []byte("null")) || d[0] == '{'
}

// wsSubscribePayload decodes {query, variables, operationName, extensions}:
// query a string, variables and extensions objects or null, operationName a
// string or null.
func wsSubscribePayload(raw json.RawMessage) (*graphql.RawParams, string) {
	d := bytes.TrimSpace(raw)
	if len(d) == 0 || d[0] != '{' {
		return nil, `Invalid message received: "payload" property must be an object`
	}
	var p struct {
		Query         *string         `json:"query"`
		OperationName *string         `json:"operationName"`
		Variables     json.RawMessage `json:"variables"`
		Extensions    json.RawMessage `json:"extensions"`
	}
	if json.Unmarshal(d, &p) != nil || p.Query == nil {
		return nil, `Invalid message received: "payload.query" must be a string, "payload.operationName" a string or null`
	}
	params := &graphql.RawParams{Query: *p.Query}
	if p.OperationName != nil {
		params.OperationName = *p.OperationName
	}
	for name, f := range map[string]struct {
		raw json.RawMessage
		dst *map[string]any
	}{"variables": {p.Variables, &params.Variables}, "extensions": {p.Extensions, &params.Extensions}} {
		if !wsObjectOrNull(f.raw) {
			return nil, `Invalid message received: "payload.` + name + `" must be an object or null`
		}
		if wsNoData(f.raw) {
			continue
		}
		dec := json.NewDecoder(bytes.NewReader(f.raw))
		dec.UseNumber()
		if dec.Decode(f.dst) != nil {
			return nil, `Invalid message received: "payload.` + name + `" must be an object or null`
		}
	}
	return params, ""
}
