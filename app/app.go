package app

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/99designs/gqlgen/graphql/handler"
	"github.com/99designs/gqlgen/graphql/handler/extension"
	"github.com/99designs/gqlgen/graphql/handler/lru"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/redis/go-redis/v9"
	"github.com/vektah/gqlparser/v2/ast"

	"mutuo/auth"
	"mutuo/graph"
	"mutuo/httpapi"
	"mutuo/pix"
	"mutuo/resolvers"
	"mutuo/store"
)

// App is one running Mutuo instance's parts.
type App struct {
	Config Config
	Log    *slog.Logger
	Pool   *pgxpool.Pool
	Redis  *redis.Client
	Store  *store.Store
	Auth   *auth.Service

	PSP pix.PSP
	// Now is the clock for everything time-driven (tests move it).
	Now func() time.Time

	handler  http.Handler
	draining atomic.Bool
}

// Options tune New for tests and tools.
type Options struct {
	Logger *slog.Logger
	// PoolConfig adjusts the pgx pool config (tests add a tracer).
	PoolConfig func(*pgxpool.Config)
	// PSP is the Pix provider (the sandbox when nil).
	PSP pix.PSP
	// Now is the clock (time.Now when nil).
	Now func() time.Time
}

// New connects to Postgres and Redis, migrates, ensures the admin, and
// builds the HTTP handler. It does not load demo data (see LoadDemo).
func New(ctx context.Context, cfg Config, opt Options) (*App, error) {
	log := opt.Logger
	if log == nil {
		log = slog.Default()
	}
	pcfg, err := pgxpool.ParseConfig(cfg.DatabaseURL)
	if err != nil {
		return nil, fmt.Errorf("DATABASE_URL: %w", err)
	}
	if opt.PoolConfig != nil {
		opt.PoolConfig(pcfg)
	}
	pool, err := pgxpool.NewWithConfig(ctx, pcfg)
	if err != nil {
		return nil, fmt.Errorf("postgres: %w", err)
	}
	if err := pool.Ping(ctx); err != nil {
		pool.Close()
		return nil, fmt.Errorf("postgres unreachable (DATABASE_URL): %w", err)
	}
	ropt, err := redis.ParseURL(cfg.RedisURL)
	if err != nil {
		pool.Close()
		return nil, fmt.Errorf("REDIS_URL: %w", err)
	}
	rdb := redis.NewClient(ropt)
	if err := rdb.Ping(ctx).Err(); err != nil {
		pool.Close()
		_ = rdb.Close()
		return nil, fmt.Errorf("redis unreachable (REDIS_URL): %w", err)
	}
	a := &App{Config: cfg, Log: log, Pool: pool, Redis: rdb, Store: store.New(pool), PSP: opt.PSP, Now: opt.Now}
	if a.PSP == nil {
		a.PSP = pix.Sandbox{}
	}
	if a.Now == nil {
		a.Now = time.Now
	}
	if err := store.Migrate(ctx, pool); err != nil {
		a.Close()
		return nil, err
	}
	var keys *auth.Keys
	if cfg.JWTPrivateKeyPEM != nil {
		keys, err = auth.ParseEdDSAKeys(cfg.JWTPrivateKeyPEM)
	} else {
		keys, err = auth.NewHS256Keys(cfg.JWTSecret)
	}
	if err != nil {
		a.Close()
		return nil, fmt.Errorf("JWT keys: %w", err)
	}
	a.Auth, err = auth.New(auth.Config{Issuer: cfg.JWTIssuer, Audience: cfg.JWTAudience, Keys: keys, Redis: rdb,
		Prefix: cfg.RedisPrefix, Logger: log}, a.Store)
	if err != nil {
		a.Close()
		return nil, err
	}
	if cfg.AdminEmail != "" {
		if _, err := a.Auth.EnsureAdmin(ctx, "Admin", cfg.AdminEmail, cfg.AdminPassword); err != nil {
			a.Close()
			return nil, fmt.Errorf("ADMIN_EMAIL/ADMIN_PASSWORD: %w", err)
		}
	}
	a.handler = a.routes()
	return a, nil
}

// GraphQLServer builds gqlgen's server with our transport, presenter and
// recovery.
func (a *App) GraphQLServer() *handler.Server {
	es := graph.NewExecutableSchema(graph.Config{Resolvers: &resolvers.Resolver{Store: a.Store, Auth: a.Auth, PSP: a.PSP, Now: a.Now}})
	srv := handler.New(es)
	srv.AddTransport(httpapi.Transport{MaxBodyBytes: httpapi.DefaultMaxBodyBytes})
	srv.SetQueryCache(lru.New[*ast.QueryDocument](1000))
	srv.SetErrorPresenter(resolvers.ErrorPresenter(a.Log))
	srv.SetRecoverFunc(resolvers.RecoverFunc(a.Log))
	if a.Config.Env == Development {
		srv.Use(extension.Introspection{})
	}
	return srv
}

func (a *App) routes() http.Handler {
	mux := http.NewServeMux()
	gql := a.Auth.Middleware(resolvers.LoaderMiddleware(a.Store, a.Config.LoaderWait, a.GraphQLServer()))
	mux.Handle("/graphql", gql)
	mux.Handle("/webhooks/pix", &httpapi.PixWebhook{Secret: a.Config.PixWebhookSecret, Store: a.Store, Clock: a.Now, Log: a.Log})
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, map[string]any{"status": "ok"})
	})
	mux.HandleFunc("GET /readyz", a.ready)
	return requestID(mux)
}

// Handler is the instance's HTTP handler.
func (a *App) Handler() http.Handler { return a.handler }

func (a *App) ready(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
	defer cancel()
	checks := map[string]string{"postgres": "ok", "redis": "ok"}
	status := http.StatusOK
	if err := a.Pool.Ping(ctx); err != nil {
		checks["postgres"], status = "unreachable", http.StatusServiceUnavailable
	}
	if err := a.Redis.Ping(ctx).Err(); err != nil {
		checks["redis"], status = "unreachable", http.StatusServiceUnavailable
	}
	if a.draining.Load() {
		checks["instance"], status = "shutting down", http.StatusServiceUnavailable
	}
	s := "ready"
	if status != http.StatusOK {
		s = "not ready"
	}
	writeJSON(w, status, map[string]any{"status": s, "checks": checks})
}

// RunJobs runs the instance's background work until ctx ends: the loan
// scheduler (funding deadlines, due and late installments, defaults),
// deposit expiry and the retry of withdrawals left pending by a crash. Every
// instance runs them; they are safe to run concurrently (row locks with SKIP
// LOCKED, and state guards on every transition).
func (a *App) RunJobs(ctx context.Context) {
	go func() {
		_ = (&store.Scheduler{Store: a.Store, Interval: time.Minute, Clock: a.Now, Logger: a.Log}).Run(ctx)
	}()
	go func() {
		t := time.NewTicker(time.Minute)
		defer t.Stop()
		for {
			// a grace period: a payment made in time but delivered late still credits
			if _, err := a.Store.ExpireDeposits(ctx, a.Now().Add(-10*time.Minute)); err != nil && ctx.Err() == nil {
				a.Log.ErrorContext(ctx, "expire deposits", "err", err)
			}
			if _, err := a.Store.ResumePendingWithdrawals(ctx, a.PSP, 2*time.Minute); err != nil && ctx.Err() == nil {
				a.Log.ErrorContext(ctx, "resume withdrawals", "err", err)
			}
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
		}
	}()
}

// Serve listens on ln until ctx ends, then drains: not ready, no new
// connections, in-flight requests finish within the shutdown timeout.
func (a *App) Serve(ctx context.Context, ln net.Listener) error {
	srv := &http.Server{Handler: a.handler, ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 120 * time.Second,
		BaseContext: func(net.Listener) context.Context { return context.WithoutCancel(ctx) }}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	a.draining.Store(true)
	sctx, cancel := context.WithTimeout(context.Background(), a.Config.ShutdownTimeout)
	defer cancel()
	err := srv.Shutdown(sctx)
	if e := <-errc; !errors.Is(e, http.ErrServerClosed) && err == nil {
		err = e
	}
	return err
}

// Close releases the pools.
func (a *App) Close() {
	a.Pool.Close()
	_ = a.Redis.Close()
}

type requestIDKey struct{}

// requestID gives every request an id (the client's X-Request-Id when it is
// sane), returned in the X-Request-Id header and named by INTERNAL errors.
func requestID(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id := r.Header.Get("X-Request-Id")
		if len(id) == 0 || len(id) > 64 || !printable(id) {
			b := make([]byte, 12)
			_, _ = rand.Read(b)
			id = hex.EncodeToString(b)
		}
		w.Header().Set("X-Request-Id", id)
		next.ServeHTTP(w, r.WithContext(resolvers.WithRequestID(r.Context(), id)))
	})
}

func printable(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x21 || c > 0x7e {
			return false
		}
	}
	return true
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}
