package main

import (
	"context"

	"mutuo/app"
)

// loadDemo loads demo data into an empty database and prints the demo
// credentials.
func loadDemo(ctx context.Context, a *app.App, cfg app.Config) error {
	return nil
}
