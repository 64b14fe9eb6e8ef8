package realtime

// Shared renderings of public subscription streams.
//
// A popular loan has thousands of subscribers on an instance, most of them
// with the same document and variables, and every one of its events is the
// same loan state for all of them. Executing the document once per
// subscriber per event (gqlgen's field execution, fresh loaders, the
// response interceptors) is most of the work of a fan-out; when the result
// cannot differ between subscribers, the transport renders it once and
// sends the same payload to each.
//
// When that holds is decided by the subscription's resolver, which knows
// what its values are, and checked on every rendering:
//
//   - the resolver claims its stream with ClaimSharedStream instead of
//     ClaimStreamReady, handing over a SharedSource: values are then taken
//     by the transport (SharedSource.Take), each with a key that the source
//     guarantees to mean the same value for every subscriber it hands it to;
//   - a rendering is kept for sharing only when every field resolved below
//     the subscription's root is one the source calls shareable (its value
//     cannot depend on who asks: SharedSource.Shareable), when it has no
//     errors (an error names the request it happened in, and is counted
//     where it happens) and is a plain, complete response;
//   - it is shared only with operations of the same executor, document,
//     operation name and (coerced) variables, whose own sources handed them
//     the same key. An operation still executes for itself when it starts
//     (its first value: limits, rate limits, metrics and logs see it as
//     before) and whenever no rendering of its value is at hand.
//
// A subscriber sent a shared rendering does not run the executor's response
// interceptors for that value: WSConfig.OnSharedNext is called instead (the
// app counts the delivery there). Renderings with errors are never shared,
// so error counts are unaffected; the cost reported in extensions is a
// function of the document and variables, the same for the whole group.

import (
	"context"
	"encoding/json"
	"sync/atomic"

	"github.com/99designs/gqlgen/graphql"
)

// SharedSource is a public subscription stream's side of ClaimSharedStream.
type SharedSource interface {
	// Take takes the newest value signalled and not yet taken. It calls
	// put, under the source's lock, with the value's key (comparable; equal
	// keys only for equal values, whoever the subscriber): put reports
	// whether to put the value on the subscription's channel for the
	// executor (the channel is then empty) or to drop it (the transport
	// sends a rendering of an equal value). Take reports false, without
	// calling put, when there is no value: the stream has ended and its
	// channel is closed.
	Take(put func(key any) bool) bool
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

// wsShareGroup holds the latest renderings of a group's values.
type wsShareGroup struct {
	key  wsShareKey
	refs int // armed operations in the group (under WSTransport.smu)
	// the last renderings, newest first (copied on write)
	entries atomic.Pointer[[]wsShared]
}

type wsShared struct {
	key     any
	payload []byte // the message's payload: {"data":…[,"extensions":…]}
}

// wsShareKeep is how many renderings a group keeps: subscribers that lag by
// a value or two still find theirs.
const wsShareKeep = 4

func (g *wsShareGroup) get(key any) []byte {
	if p := g.entries.Load(); p != nil {
		for _, e := range *p {
			if e.key == key {
				return e.payload
			}
		}
	}
	return nil
}

func (g *wsShareGroup) put(key any, payload []byte) {
	for {
		old := g.entries.Load()
		var prev []wsShared
		if old != nil {
			prev = *old
		}
		for _, e := range prev {
			if e.key == key {
				return // rendered concurrently by another subscriber
			}
		}
		next := make([]wsShared, 0, wsShareKeep)
		next = append(next, wsShared{key: key, payload: payload})
		for _, e := range prev {
			if len(next) == wsShareKeep {
				break
			}
			next = append(next, e)
		}
		if g.entries.CompareAndSwap(old, &next) {
			return
		}
	}
}

// joinShare puts an armed operation with a shared source in its group; nil
// when its document cannot be keyed.
func (t *WSTransport) joinShare(exec graphql.GraphExecutor, rc *graphql.OperationContext) *wsShareGroup {
	vars, err := json.Marshal(rc.Variables) // map keys sorted: a canonical form
	if err != nil {
		return nil
	}
	doc := make([]byte, 0, len(rc.OperationName)+len(rc.RawQuery)+len(vars)+2)
	doc = append(doc, rc.OperationName...)
	doc = append(doc, 0)
	doc = append(doc, rc.RawQuery...)
	doc = append(doc, 0)
	doc = append(doc, vars...)
	key := wsShareKey{exec: exec, doc: string(doc)}
	t.smu.Lock()
	defer t.smu.Unlock()
	if t.shared == nil {
		t.shared = map[wsShareKey]*wsShareGroup{}
	}
	g := t.shared[key]
	if g == nil {
		g = &wsShareGroup{key: key}
		t.shared[key] = g
	}
	g.refs++
	return g
}

// leaveShare takes an ended operation out of its group.
func (t *WSTransport) leaveShare(g *wsShareGroup) {
	t.smu.Lock()
	defer t.smu.Unlock()
	if g.refs--; g.refs == 0 && t.shared[g.key] == g {
		delete(t.shared, g.key)
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
