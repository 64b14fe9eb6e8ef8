package resolvers

import (
	"context"

	"mutuo/auth"
	"mutuo/graph/model"
	"mutuo/lending"
)

// private fails with FORBIDDEN unless the viewer is the owner or an admin;
// the field is then null and the rest of the response intact.
func private(ctx context.Context, owner int64) error {
	if !lending.ViewerFrom(ctx).CanSeePrivate(owner) {
		return lending.Forbidden("only the owner and admins may see this field")
	}
	return nil
}

// payload answers an operation that created a session: the rest of the
// response is resolved as the session's user.
func payload(ctx context.Context) func(*auth.Session, error) (*model.AuthPayload, error) {
	return func(s *auth.Session, err error) (*model.AuthPayload, error) {
		if err != nil {
			return nil, err
		}
		lending.ReplaceViewer(ctx, lending.Viewer{UserID: s.User.ID, Roles: s.User.Roles})
		return &model.AuthPayload{AccessToken: s.AccessToken, AccessTokenExpiresAt: s.AccessTokenExpiresAt,
			RefreshToken: s.RefreshToken, User: s.User}, nil
	}
}
