package httpx

import (
	"net/http"
	"testing"
)

func TestWebsocketUpgrade(t *testing.T) {
	for _, c := range []struct {
		upgrade []string
		want    bool
	}{
		{nil, false},
		{[]string{"websocket"}, true},
		{[]string{"WebSocket"}, true},
		{[]string{"h2c, websocket"}, true},
		{[]string{"h2c", " websocket "}, true},
		{[]string{"h2c"}, false},
		{[]string{"websockets"}, false},
		{[]string{"not-websocket"}, false},
	} {
		r, _ := http.NewRequest(http.MethodGet, "/graphql", nil)
		for _, v := range c.upgrade {
			r.Header.Add("Upgrade", v)
		}
		if got := WebsocketUpgrade(r); got != c.want {
			t.Errorf("Upgrade %q: %v, want %v", c.upgrade, got, c.want)
		}
	}
}
