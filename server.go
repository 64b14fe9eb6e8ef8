// Command mutuo is the Mutuo GraphQL backend.
//
//	mutuo [serve]            run the server (migrates first)
//	mutuo migrate            apply database migrations and exit
//	mutuo sandbox pay TXID   pay a pending deposit through a signed webhook (development)
package main

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"mutuo/app"
	"mutuo/observe"
	"mutuo/store"
)

func main() {
	log := slog.New(slog.NewJSONHandler(os.Stderr, nil))
	slog.SetDefault(log)
	cmd := "serve"
	if len(os.Args) > 1 {
		cmd = os.Args[1]
	}
	cfg, err := app.ConfigFromEnv(os.Getenv)
	if err != nil {
		fmt.Fprintln(os.Stderr, "mutuo: configuration:", err)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	switch cmd {
	case "serve":
		err = serve(ctx, cfg, log)
	case "migrate":
		err = migrate(ctx, cfg)
	case "sandbox":
		err = sandbox(ctx, cfg, os.Args[2:])
	default:
		err = fmt.Errorf("unknown command %q (want serve, migrate or sandbox)", cmd)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "mutuo:", err)
		os.Exit(1)
	}
}

func serve(ctx context.Context, cfg app.Config, log *slog.Logger) error {
	if cfg.JWTGenerated {
		log.Warn("JWT_SECRET is not set: using a random secret for this run; every token dies with the process. Set JWT_SECRET (or JWT_PRIVATE_KEY_FILE) to keep sessions across restarts; production refuses to start without one.")
	}
	// OpenTelemetry traces when OTEL_EXPORTER_OTLP_ENDPOINT is set; nothing otherwise
	shutdownTracing, err := observe.SetupTracing(ctx, os.Getenv)
	if err != nil {
		return fmt.Errorf("tracing: %w", err)
	}
	defer func() {
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := shutdownTracing(sctx); err != nil {
			log.Warn("tracing: flushing spans at shutdown failed", "err", err)
		}
	}()
	startCtx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	a, err := app.New(startCtx, cfg, app.Options{Logger: log})
	if err != nil {
		return err
	}
	defer a.Close()
	if cfg.DemoData {
		if err := loadDemo(startCtx, a, cfg); err != nil {
			return fmt.Errorf("demo data: %w", err)
		}
	}
	ln, err := net.Listen("tcp", cfg.HTTPAddr)
	if err != nil {
		return fmt.Errorf("HTTP_ADDR %s: %w", cfg.HTTPAddr, err)
	}
	a.RunRealtime(ctx)
	a.RunJobs(ctx)
	log.Info("mutuo listening", "addr", ln.Addr().String(), "graphql", "/graphql", "env", cfg.Env)
	return a.Serve(ctx, ln)
}

func migrate(ctx context.Context, cfg app.Config) error {
	pool, err := pgxpool.New(ctx, cfg.DatabaseURL)
	if err != nil {
		return fmt.Errorf("DATABASE_URL: %w", err)
	}
	defer pool.Close()
	if err := store.Migrate(ctx, pool); err != nil {
		return err
	}
	fmt.Println("migrations applied")
	return nil
}
