package realtime

// Share groups: one execution of a public subscription stream for all of an
// instance's subscribers with the same document and variables.
//
// A popular loan has thousands of subscribers on an instance, most of them
// with the same document and variables, and every one of its events is the
// same loan state for all of them. Executing the document once per
// subscriber per event (gqlgen's field execution, fresh loaders, the
// response interceptors), and keeping a gqlgen operation per subscriber
// (operation context, field caches, argument maps, contexts, the resolver's
// state) is most of the work and of the memory of a fan-out; when the
// result cannot differ between subscribers, the transport executes it once
// and sends the same frame to each.
//
// When that holds is decided by the subscription's resolver, which knows
// what its values are, and checked on every rendering:
//
//   - the resolver claims its stream with ClaimSharedStream instead of
//     ClaimStreamReady, handing over a SharedSource: values are then taken
//     by the transport (SharedSource.Take), each with a key that the source
//     guarantees to mean the same value for every subscriber it hands it
//     to, and a sequence number (SharedSource.Seq) that grows with newer
//     values;
//   - a rendering is shared only when every field resolved below the
//     subscription's root is one the source calls shareable (its value
//     cannot depend on who asks: SharedSource.Shareable), when it has no
//     errors (an error names the request it happened in, and is counted
//     where it happens) and is a plain, complete response;
//   - it is shared only with operations of the same executor, document,
//     operation name and (coerced) variables.
//
// Every operation is admitted and executed for itself up to its first
// value, as any other (validation, limits, cost, rate limits, metrics and
// logs see it as before), and renders that first value itself. If that
// rendering could be shared, the operation then joins the group of its
// document and variables as a member: a record of its id, its group and the
// sequence number of the newest value it was sent. The first to join
// donates its execution to the group (the group's renderer, whose context
// no longer ends with that operation or its socket); the others' executions
// end there. The renderer's values are rendered once, through the
// executor's interceptors, and sent to every member as one frame prepared
// once per operation id and subprotocol (gorilla's PreparedMessage), never
// a value older than or equal to one a member was sent (a member that
// joins after a newer value went out is sent that one). The renderer ends
// with the group's last member. Should the stream end, every member ends as
// its own stream would have (complete, or the error); should a rendering
// not be shareable (a data-dependent field outside the source's shareable
// ones), the members skip that value (logged) and get the next.
//
// A member sent a shared rendering does not run the executor's response
// interceptors for that value (the renderer's rendering ran them once, and
// counts as one delivery): WSConfig.OnSharedNext is called for each other
// delivery instead (the app counts it there). The cost reported in
// extensions is a function of the document and variables, the same for the
// whole group.

import (
	"context"
	"encoding/json"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"

	"github.com/99designs/gqlgen/graphql"
	"github.com/gorilla/websocket"
	"github.com/vektah/gqlparser/v2/gqlerror"
)

// SharedSource is a public subscription stream's side of ClaimSharedStream.
type SharedSource interface {
	// Take takes the newest value signalled and not yet taken. It calls
	// put, under the source's lock, with the value's key (comparable; equal
	// keys only for equal values, whoever the subscriber): put reports
	// whether to put the value on the subscription's channel for the
	// executor (the channel is then empty) or to drop it. Take reports
	// false, without calling put, when there is no value: the stream has
	// ended and its channel is closed.
	Take(put func(key any) bool) bool
	// Seq is the sequence number of the value of key: a newer value has a
	// larger one, for every subscriber of the stream (a loan's version).
	Seq(key any) int64
	// Shareable reports whether the value of a field below the
	// subscription's root field, as executed for one subscriber, may be
	// sent to any other subscriber of an equal value (it depends on the
	// value only, never on the viewer or the request).
	Shareable(fc *graphql.FieldContext) bool
}

// ClaimSharedStream is ClaimStreamReady for a stream of public values: the
// resolver calls the function returned once after each value it makes
// available to src.Take (not once per value, when a newer one replaces a
// value not yet taken: once per value that Take will return) and once
// after closing its channel; it never sends on the channel itself (Take's
// put does). It returns nil when the operation's transport takes no such
// signal (another transport, or a second claim): the resolver then sends
// on its channel as usual, without signals.
func ClaimSharedStream(ctx context.Context, src SharedSource) func() {
	op, _ := ctx.Value(wsOpKey{}).(*wsOp)
	if op == nil || src == nil {
		return nil
	}
	op.smu.Lock()
	defer op.smu.Unlock()
	if op.claimed || op.armed || op.ended {
		return nil
	}
	op.claimed = true
	op.src = src
	return op.ready
}

// wsShareKey identifies the operations whose renderings of equal values are
// equal.
type wsShareKey struct {
	exec graphql.GraphExecutor
	doc  string // operation name, document and variables
}

func wsShareKeyOf(exec graphql.GraphExecutor, rc *graphql.OperationContext) (wsShareKey, bool) {
	if rc == nil {
		return wsShareKey{}, false
	}
	vars, err := json.Marshal(rc.Variables) // map keys sorted: a canonical form
	if err != nil {
		return wsShareKey{}, false
	}
	doc := make([]byte, 0, len(rc.OperationName)+len(rc.RawQuery)+len(vars)+2)
	doc = append(doc, rc.OperationName...)
	doc = append(doc, 0)
	doc = append(doc, rc.RawQuery...)
	doc = append(doc, 0)
	doc = append(doc, vars...)
	return wsShareKey{exec: exec, doc: string(doc)}, true
}

// wsShareGroup is one execution shared by its members. Its membership, its
// renderer and its last frame are guarded by WSTransport.smu.
type wsShareGroup struct {
	t       *WSTransport
	key     wsShareKey
	members []*wsOp  // each at its gidx
	r       *wsOp    // the renderer (nil once the group has ended)
	closed  bool     // ended: no longer in WSTransport.shared
	last    *wsFrame // the newest value sent
	pumps   sync.WaitGroup
}

// wsFrame is one value of a group: its rendering, and its messages, each
// prepared once for all the members with the same subprotocol and id.
type wsFrame struct {
	seq     int64
	payload []byte          // {"data":…[,"extensions":…]}
	ctx     context.Context // the renderer's (for OnSharedNext)

	mu   sync.RWMutex
	msgs map[wsFrameKey]*websocket.PreparedMessage
}

type wsFrameKey struct {
	proto wsProtocol
	id    string
}

// message is f's message for an operation id of a subprotocol.
func (f *wsFrame) message(p wsProtocol, id string) *websocket.PreparedMessage {
	k := wsFrameKey{p, id}
	f.mu.RLock()
	pm := f.msgs[k]
	f.mu.RUnlock()
	if pm != nil {
		return pm
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if pm = f.msgs[k]; pm == nil {
		var err error
		if pm, err = websocket.NewPreparedMessage(websocket.TextMessage, p.nextPayload(id, f.payload)); err != nil {
			return nil
		}
		if f.msgs == nil {
			f.msgs = map[wsFrameKey]*websocket.PreparedMessage{}
		}
		f.msgs[k] = pm
	}
	return pm
}

// share makes op, whose first value (of key token, rendered as payload) has
// just been queued, a member of its group, donating its execution if the
// group has no renderer and ending it otherwise. It reports false when op
// cannot join (it then carries on as before).
func (t *WSTransport) share(op *wsOp, token any, payload []byte) bool {
	c := op.c
	key, ok := wsShareKeyOf(c.exec, op.rc)
	if !ok {
		return false
	}
	seq := op.src.Seq(token)
	m := &wsOp{c: c, id: op.id, sub: true, member: true, armed: true, seq: seq, gidx: -1}
	c.mu.Lock()
	if c.op(op.id) != op || op.stopped.Load() || c.opsStopped {
		c.mu.Unlock()
		return false // stopped meanwhile: its pump ends it
	}
	c.setOp(m) // m takes op's place, and its count in opsWG
	c.mu.Unlock()

	f := &wsFrame{seq: seq, payload: payload, ctx: op.hctx}
	t.smu.Lock()
	if t.shared == nil {
		t.shared = map[wsShareKey]*wsShareGroup{}
	}
	g := t.shared[key]
	if g == nil {
		g = &wsShareGroup{t: t, key: key}
		t.shared[key] = g
	}
	donate := g.r == nil
	if donate {
		g.r, g.last = op, f
	}
	last := g.last
	if !m.stopped.Load() { // else its end has run, or waits for smu
		m.group, m.gidx = g, len(g.members)
		g.members = append(g.members, m)
	}
	if len(g.members) == 0 { // only op's, and it was stopped
		g.closed, g.r = true, nil
		delete(t.shared, key)
		donate = false
	}
	t.smu.Unlock()

	op.smu.Lock()
	op.running = false
	if donate {
		op.rg = g
		op.startPumpLocked() // values signalled meanwhile
	} else {
		op.ended = true
		op.smu.Unlock()
		op.cancelCtx() // its execution ends: the group's serves it
	}
	if !donate && last != nil && m.deliver(last) && t.cfg.OnSharedNext != nil {
		t.cfg.OnSharedNext(last.ctx)
	}
	return true
}

// deliver queues f for member m unless m was sent f or a newer value, or
// is no longer the socket's operation. (m.seq is guarded by wsConn.mu,
// which orders the socket's queue.)
func (m *wsOp) deliver(f *wsFrame) bool {
	c := m.c
	pm := f.message(c.proto, m.id)
	if pm == nil {
		return false
	}
	c.mu.Lock()
	ok := c.op(m.id) == m && f.seq > m.seq
	if ok {
		m.seq = f.seq
		ok = c.pushOut(wsOut{pm: pm})
	}
	c.mu.Unlock()
	if ok {
		c.kick(false)
	}
	return ok
}

// endMember ends a stopped member (its pump).
func (c *wsConn) endMember(m *wsOp) { m.finishMember(nil) }

// finishMember ends member m once, sending msgs if it is still active.
func (m *wsOp) finishMember(msgs [][]byte) {
	if !m.done.CompareAndSwap(false, true) {
		return
	}
	c := m.c
	c.t.leave(m)
	c.finishOp(m, msgs...)
	c.opsWG.Done()
}

// leave takes m out of its group; the last member out ends the group.
func (t *WSTransport) leave(m *wsOp) {
	t.smu.Lock()
	g := m.group
	var r *wsOp
	if g != nil && m.gidx >= 0 {
		n := len(g.members) - 1
		moved := g.members[n]
		g.members[m.gidx], moved.gidx = moved, m.gidx
		g.members[n] = nil
		g.members = g.members[:n]
		m.gidx = -1
		if n == 0 && !g.closed {
			g.closed, r, g.r = true, g.r, nil
			if t.shared[g.key] == g {
				delete(t.shared, g.key)
			}
		}
	}
	t.smu.Unlock()
	if r != nil {
		g.stopRenderer(r)
		g.pumps.Wait() // no goroutine of the group outlives its last member
	}
}

// stopRenderer ends the group's execution: no pump starts after this.
func (g *wsShareGroup) stopRenderer(r *wsOp) {
	r.smu.Lock()
	r.ended = true
	r.smu.Unlock()
	r.cancelCtx()
}

// pump (the renderer's only pump while it runs) renders the values
// signalled and sends each to every member.
func (g *wsShareGroup) pump(r *wsOp) {
	defer g.pumps.Done()
	for {
		r.smu.Lock()
		if r.ended || r.pending == 0 {
			r.running = false
			r.smu.Unlock()
			return
		}
		r.pending--
		r.smu.Unlock()

		var token any
		if !r.src.Take(func(key any) bool { token = key; return true }) {
			token = nil // ended: the handler sees the closed channel
		}
		r.chk.tainted.Store(false)
		resp, err := r.next()
		switch {
		case err != nil:
			errs := g.key.exec.DispatchError(r.hctx, gqlerror.List{gqlerror.WrapIfUnwrapped(err)}).Errors
			g.end(func(m *wsOp) [][]byte { return m.c.proto.opError(m.id, errs) })
			return
		case resp == nil:
			g.end(func(m *wsOp) [][]byte { return [][]byte{m.c.proto.complete(m.id)} })
			return
		}
		payload, ok := wsSharedPayload(resp)
		if token == nil || !ok || r.chk.tainted.Load() {
			g.t.log.ErrorContext(r.hctx, "ws: a rendering of a shared subscription could not be shared; its subscribers skip that value",
				"errors", len(resp.Errors), "tainted", r.chk.tainted.Load())
			continue
		}
		g.broadcast(&wsFrame{seq: r.src.Seq(token), payload: payload, ctx: r.hctx})
	}
}

// wsBroadcastChunk is how many members one goroutine of a broadcast serves.
const wsBroadcastChunk = 1024

// broadcast sends f to every member, from up to GOMAXPROCS goroutines that
// end before it returns.
func (g *wsShareGroup) broadcast(f *wsFrame) {
	t := g.t
	t.smu.Lock()
	if g.closed {
		t.smu.Unlock()
		return
	}
	g.last = f
	ms := slices.Clone(g.members)
	t.smu.Unlock()

	var counted atomic.Bool // the renderer's rendering counts as one delivery
	send := func(ms []*wsOp) {
		for _, m := range ms {
			if m.deliver(f) && t.cfg.OnSharedNext != nil && !counted.CompareAndSwap(false, true) {
				t.cfg.OnSharedNext(f.ctx)
			}
		}
	}
	workers := min(runtime.GOMAXPROCS(0), (len(ms)+wsBroadcastChunk-1)/wsBroadcastChunk)
	if workers <= 1 {
		send(ms)
		return
	}
	var wg sync.WaitGroup
	per := (len(ms) + workers - 1) / workers
	for i := 0; i < len(ms); i += per {
		part := ms[i:min(i+per, len(ms))]
		wg.Add(1)
		go func() {
			defer wg.Done()
			send(part)
		}()
	}
	wg.Wait()
}

// end ends the group when its stream has ended: every member gets msgs.
func (g *wsShareGroup) end(msgs func(m *wsOp) [][]byte) {
	t := g.t
	t.smu.Lock()
	ms := g.members
	g.members = nil
	for _, m := range ms {
		m.gidx = -1
	}
	r := g.r
	g.closed, g.r = true, nil
	if t.shared[g.key] == g {
		delete(t.shared, g.key)
	}
	t.smu.Unlock()
	if r != nil {
		g.stopRenderer(r)
	}
	for _, m := range ms {
		m.finishMember(msgs(m))
	}
}

// wsShareCheck wraps an operation's field middleware to see whether each
// rendering resolved only fields its source calls shareable.
type wsShareCheck struct {
	tainted atomic.Bool // the rendering under way resolved a field that is not shareable
}

func (op *wsOp) checkFields(rc *graphql.OperationContext, src SharedSource) {
	chk := &wsShareCheck{}
	op.chk = chk
	next := rc.ResolverMiddleware
	rc.ResolverMiddleware = func(ctx context.Context, resolve graphql.Resolver) (any, error) {
		// during renderings (installed once the root field has resolved)
		if fc := graphql.GetFieldContext(ctx); fc == nil || !src.Shareable(fc) {
			chk.tainted.Store(true)
		}
		return next(ctx, resolve)
	}
}

// wsSharedPayload is the payload of a rendering that may be shared: a
// plain, complete response without errors.
func wsSharedPayload(resp *graphql.Response) ([]byte, bool) {
	if resp == nil || len(resp.Errors) > 0 || resp.Label != "" || len(resp.Path) > 0 || resp.HasNext != nil {
		return nil, false
	}
	return wsResponsePayload(resp)
}
