// Package httpx holds the small HTTP helpers that several layers share.
package httpx

import (
	"net/http"
	"strings"
)

// WebsocketUpgrade reports whether r asks for a websocket: an Upgrade header
// with a "websocket" token (any case, in a comma-separated list). It does
// not check the rest of the handshake (Connection, Sec-WebSocket-*): a
// request that asks for a websocket goes to the websocket transport, which
// answers a malformed handshake with a clear 400, and never to the HTTP
// transport, the rate limiter's HTTP path or the HTTP tracer.
func WebsocketUpgrade(r *http.Request) bool {
	for _, v := range r.Header.Values("Upgrade") {
		for _, p := range strings.Split(v, ",") {
			if strings.EqualFold(strings.TrimSpace(p), "websocket") {
				return true
			}
		}
	}
	return false
}
