package realtime

// The legacy graphql-ws subprotocol of subscriptions-transport-ws, still
// spoken by older Apollo clients:
//
//	client: connection_init {payload}, start {id, payload}, stop {id}, connection_terminate
//	server: connection_ack, ka (right after the ack and every PingInterval),
//	        connection_error {payload}, data {id, payload}, error {id, payload}, complete {id}
//
// Its own semantics: errors are messages and do not close the socket, except
// an authentication failure (connection_error, then close 4403, or 1008 /
// 1013 like the other protocol). An operation that fails as a whole (parse,
// validation, a subscription that cannot start) gets data {errors} and then
// complete, as subscriptions-transport-ws did. A start with the id of an
// active operation replaces it. stop gets no reply. connection_terminate
// closes with 1000. The limits, keep-alive, expiry, revocation and shutdown
// rules are those of graphql-transport-ws.

import (
	"bytes"
	"encoding/json"

	"github.com/99designs/gqlgen/graphql"
	"github.com/vektah/gqlparser/v2/gqlerror"
)

// wsLegacy is the graphql-ws (subscriptions-transport-ws) protocol.
type wsLegacy struct{}

var wsKeepAlive = wsMarshal("", "ka", nil)

func (wsLegacy) keepAlive() []byte { return wsKeepAlive }

func (wsLegacy) next(id string, resp *graphql.Response) []byte {
	return wsMarshalResponse(id, "data", resp)
}

func (wsLegacy) nextPayload(id string, payload []byte) []byte { return wsMessage(id, "data", payload) }

func (wsLegacy) opError(id string, errs gqlerror.List) [][]byte {
	return [][]byte{wsMarshal(id, "data", &graphql.Response{Errors: errs}), wsMarshal(id, "complete", nil)}
}

func (wsLegacy) complete(id string) []byte { return wsMarshal(id, "complete", nil) }

func (wsLegacy) handleBinary(c *wsConn) {
	c.enqueue(wsLegacyError("", "connection_error", "binary messages are not supported"))
}

// wsLegacyError is a connection_error or error message with {message}.
func wsLegacyError(id, typ, msg string) []byte {
	return wsMarshal(id, typ, map[string]string{"message": msg})
}

func (wsLegacy) handle(c *wsConn, data []byte) {
	var m struct {
		Type    string          `json:"type"`
		ID      json.RawMessage `json:"id"`
		Payload json.RawMessage `json:"payload"`
	}
	if d := bytes.TrimSpace(data); len(d) == 0 || d[0] != '{' || json.Unmarshal(d, &m) != nil {
		c.enqueue(wsLegacyError("", "connection_error", "invalid message: a JSON object is expected"))
		return
	}
	id, _ := wsID(m.ID)
	switch m.Type {
	case "connection_init":
		if c.initSeen {
			c.enqueue(wsLegacyError("", "connection_error", "Too many initialisation requests"))
			return
		}
		c.initSeen = true
		if code, reason := c.initialise(m.Payload); code != 0 {
			c.enqueue(wsLegacyError("", "connection_error", reason))
			c.closeWith(code, reason, true)
			return
		}
		c.enqueue(wsMarshal("", "connection_ack", nil))
		c.enqueue(wsKeepAlive)
	case "start":
		if id == "" {
			c.enqueue(wsLegacyError("", "error", `"id" must be a non-empty string`))
			return
		}
		if !c.acked.Load() {
			c.enqueue(wsLegacyError(id, "error", "Unauthorized: send connection_init and wait for connection_ack first"))
			return
		}
		params, reason := wsSubscribePayload(m.Payload)
		if reason != "" {
			c.enqueue(wsLegacyError(id, "error", reason))
			return
		}
		c.startOp(id, params, true)
	case "stop":
		if id != "" {
			c.stopOp(id)
		}
	case "connection_terminate":
		c.closeWith(WSCloseNormal, "", true)
	default:
		c.enqueue(wsLegacyError(id, "error", "Invalid message type!"))
	}
}
