package lending

import (
	"context"
	"sync"
)

type viewerKey struct{}

// viewerBox holds a request's viewer. It is a box so that an operation that
// authenticates (signUp, signIn, refreshToken) can make the rest of the same
// response see the new session's user.
type viewerBox struct {
	mu sync.RWMutex
	v  Viewer
}

// WithViewer returns ctx carrying v.
func WithViewer(ctx context.Context, v Viewer) context.Context {
	return context.WithValue(ctx, viewerKey{}, &viewerBox{v: v})
}

// ViewerFrom returns the viewer in ctx (anonymous if none).
func ViewerFrom(ctx context.Context) Viewer {
	b, _ := ctx.Value(viewerKey{}).(*viewerBox)
	if b == nil {
		return Viewer{}
	}
	b.mu.RLock()
	defer b.mu.RUnlock()
	return b.v
}

// ReplaceViewer makes v the viewer for the rest of the request whose ctx
// this is. It is for the operations that create a session.
func ReplaceViewer(ctx context.Context, v Viewer) {
	if b, _ := ctx.Value(viewerKey{}).(*viewerBox); b != nil {
		b.mu.Lock()
		b.v = v
		b.mu.Unlock()
	}
}

// RequireViewer returns the signed-in viewer, or UNAUTHENTICATED.
func RequireViewer(ctx context.Context) (Viewer, error) {
	v := ViewerFrom(ctx)
	if !v.Authenticated() {
		return v, ErrUnauthenticated
	}
	return v, nil
}
