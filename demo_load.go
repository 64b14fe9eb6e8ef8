package main

import (
	"context"
	"fmt"
	"time"

	"mutuo/app"
	"mutuo/demo"
)

// loadDemo loads demo data into a database that has no users but admins,
// and prints the demo credentials (every start, so they are easy to find).
func loadDemo(ctx context.Context, a *app.App, cfg app.Config) error {
	start := time.Now()
	creds, err := demo.Load(ctx, a.Store, a.Auth, a.PSP, a.Now())
	if err != nil {
		return err
	}
	if creds != nil {
		a.Log.Info("demo data loaded", "took", time.Since(start).Round(time.Millisecond).String())
	}
	fmt.Printf(`
  Mutuo demo accounts (DEMO_DATA=true)
    investor  %s / %s
    borrower  %s / %s
    admin     %s / %s
  Playground: http://localhost%s/   GraphQL: http://localhost%s/graphql

`, demo.InvestorEmail, demo.Password, demo.BorrowerEmail, demo.Password, cfg.AdminEmail, adminPassword(cfg), port(cfg), port(cfg))
	return nil
}

// adminPassword shows the development default; a configured one is never printed.
func adminPassword(cfg app.Config) string {
	if cfg.AdminEmail == "admin@mutuo.dev" && cfg.AdminPassword == "mutuo-admin-123" {
		return cfg.AdminPassword
	}
	return "(ADMIN_PASSWORD)"
}

func port(cfg app.Config) string {
	for i := len(cfg.HTTPAddr) - 1; i >= 0; i-- {
		if cfg.HTTPAddr[i] == ':' {
			return cfg.HTTPAddr[i:]
		}
	}
	return cfg.HTTPAddr
}
