package main

import (
	"context"
	"errors"

	"mutuo/app"
)

// sandbox runs the development helpers.
func sandbox(ctx context.Context, cfg app.Config, args []string) error {
	return errors.New("sandbox: not built yet")
}
