package lending

import "context"

type viewerKey struct{}

// WithViewer returns ctx carrying v.
func WithViewer(ctx context.Context, v Viewer) context.Context {
	return context.WithValue(ctx, viewerKey{}, v)
}

// ViewerFrom returns the viewer in ctx (anonymous if none).
func ViewerFrom(ctx context.Context) Viewer {
	v, _ := ctx.Value(viewerKey{}).(Viewer)
	return v
}

// RequireViewer returns the signed-in viewer, or UNAUTHENTICATED.
func RequireViewer(ctx context.Context) (Viewer, error) {
	v := ViewerFrom(ctx)
	if !v.Authenticated() {
		return v, ErrUnauthenticated
	}
	return v, nil
}
