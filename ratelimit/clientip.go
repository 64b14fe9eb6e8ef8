package ratelimit

import (
	"context"
	"net"
	"net/http"
	"net/netip"
	"strings"

	"mutuo/lending"
)

type clientIPKey struct{}

// WithClientIP returns ctx carrying the client's IP. Middleware sets it for
// every request, including websocket upgrades.
func WithClientIP(ctx context.Context, ip string) context.Context {
	return context.WithValue(ctx, clientIPKey{}, ip)
}

// ClientIPFrom returns the client IP that Middleware put in ctx ("" if
// none).
func ClientIPFrom(ctx context.Context) string {
	ip, _ := ctx.Value(clientIPKey{}).(string)
	return ip
}

// SubjectFrom is the Subject of the request whose ctx this is: the viewer's
// user id (lending.ViewerFrom) and the client IP (ClientIPFrom).
func SubjectFrom(ctx context.Context) Subject {
	return Subject{UserID: lending.ViewerFrom(ctx).UserID, IP: ClientIPFrom(ctx)}
}

// ClientIP is the client address of r under l's TrustedProxies ("" when
// RemoteAddr is not an IP address, e.g. on a unix socket).
func (l *Limiter) ClientIP(r *http.Request) string { return l.ips.clientIP(r) }

type ipResolver struct {
	trusted []netip.Prefix
}

func (res ipResolver) isTrusted(a netip.Addr) bool {
	for _, p := range res.trusted {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// clientIP is RemoteAddr, unless RemoteAddr is a trusted proxy. Then it is
// the rightmost X-Forwarded-For entry that is not a trusted proxy (or the
// leftmost entry when all of them are trusted). A malformed entry stops the
// walk at the last good address, which is a trusted proxy's. What a client
// writes to the left of the first untrusted hop is never read.
func (res ipResolver) clientIP(r *http.Request) string {
	peer, ok := parseAddr(r.RemoteAddr)
	if !ok {
		return ""
	}
	if len(res.trusted) == 0 || !res.isTrusted(peer) {
		return peer.String()
	}
	client := peer
	values := r.Header.Values("X-Forwarded-For")
	for v := len(values) - 1; v >= 0; v-- {
		hops := strings.Split(values[v], ",")
		for i := len(hops) - 1; i >= 0; i-- {
			a, ok := parseAddr(strings.TrimSpace(hops[i]))
			if !ok {
				return client.String()
			}
			client = a
			if !res.isTrusted(a) {
				return client.String()
			}
		}
	}
	return client.String()
}

// parseAddr parses "ip", "ip:port" or "[ipv6]:port". It drops IPv6 zones
// and unmaps IPv4-mapped addresses.
func parseAddr(s string) (netip.Addr, bool) {
	if s == "" {
		return netip.Addr{}, false
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		host, _, err2 := net.SplitHostPort(s)
		if err2 != nil {
			return netip.Addr{}, false
		}
		if a, err = netip.ParseAddr(host); err != nil {
			return netip.Addr{}, false
		}
	}
	return a.Unmap().WithZone(""), true
}
