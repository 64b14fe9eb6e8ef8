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
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/99designs/gqlgen/graphql"
	"github.com/99designs/gqlgen/graphql/handler"
	"github.com/99designs/gqlgen/graphql/handler/lru"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/redis/go-redis/v9"
	"github.com/vektah/gqlparser/v2/ast"

	"mutuo/auth"
	"mutuo/graph"
	"mutuo/httpapi"
	"mutuo/limits"
	"mutuo/observe"
	"mutuo/pix"
	"mutuo/playground"
	"mutuo/ratelimit"
	"mutuo/realtime"
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

	PSP     pix.PSP
	Hub     *realtime.Hub
	Relay   *realtime.Relay
	Broker  *realtime.Broker
	Metrics *observe.Metrics
	Limiter *ratelimit.Limiter
	WS      *realtime.WSTransport
	// Tracing makes OpenTelemetry spans; nil when tracing is off.
	Tracing *observe.Tracing
	// Now is the clock for everything time-driven (tests move it).
	Now func() time.Time

	limiterRedis *redis.Client
	handler      http.Handler
	draining     atomic.Bool
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
	// Tracing makes spans (tests); nil means observe.InstalledTracing(),
	// which is nil (no tracing at all) unless SetupTracing installed one.
	Tracing *observe.Tracing
}

// New connects to Postgres and Redis, migrates, ensures the admin, and
// builds the HTTP handler. It does not load demo data (see LoadDemo).
func New(ctx context.Context, cfg Config, opt Options) (*App, error) {
	log := opt.Logger
	if log == nil {
		log = slog.Default()
	}
	log = slog.New(observe.WithRequestIDs(log.Handler()))
	pcfg, err := pgxpool.ParseConfig(cfg.DatabaseURL)
	if err != nil {
		return nil, fmt.Errorf("DATABASE_URL: %w", err)
	}
	if !strings.Contains(cfg.DatabaseURL, "pool_max_conns") {
		// pgx defaults to max(4, cores) connections, which serializes a busy
		// instance on a small machine; DATABASE_URL's pool_max_conns wins
		pcfg.MaxConns = 20
	}
	if opt.PoolConfig != nil {
		opt.PoolConfig(pcfg)
	}
	tracing := opt.Tracing
	if tracing == nil {
		tracing = observe.InstalledTracing()
	}
	if tracing != nil { // a span per SQL statement, chained with the PoolConfig's tracer
		pcfg.ConnConfig.Tracer = tracing.QueryTracer(pcfg.ConnConfig.Tracer)
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
	a := &App{Config: cfg, Log: log, Pool: pool, Redis: rdb, Store: store.New(pool), PSP: opt.PSP, Now: opt.Now, Tracing: tracing}
	if a.PSP == nil {
		a.PSP = pix.Sandbox{}
	}
	if a.Now == nil {
		a.Now = time.Now
	}
	a.Hub = realtime.NewHub()
	a.Relay = &realtime.Relay{Store: a.Store, Redis: rdb, Prefix: cfg.RedisPrefix, Logger: log,
		OnBatch: func(b store.RelayBatch) { a.Metrics.PublishSeconds.Observe(b.MaxLatency.Seconds()) }}
	a.Broker = &realtime.Broker{Redis: rdb, Prefix: cfg.RedisPrefix, Hub: a.Hub, Store: a.Store, Logger: log}
	a.Metrics = observe.NewMetrics(pool, rdb)
	a.Metrics.Gauge("mutuo_subscriptions_active", "Hub subscriptions on this instance.", func() float64 { return float64(a.Hub.Subscribers()) })
	a.Metrics.Gauge("mutuo_outbox_backlog", "Outbox rows not yet published.", func() float64 {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		n, err := a.Relay.Backlog(ctx)
		if err != nil {
			return -1
		}
		return float64(n)
	})
	a.Metrics.Counter("mutuo_hub_events_dispatched_total", "Events the hub put in subscribers' buffers.",
		func() float64 { return float64(a.Hub.Stats().Delivered) })
	a.Metrics.Counter("mutuo_hub_duplicate_events_total", "Events the hub dropped as already dispatched (at-least-once delivery).",
		func() float64 { return float64(a.Hub.Stats().Duplicates) })
	a.Metrics.Counter("mutuo_hub_lagged_subscribers_total", "Subscribers whose buffer filled (they re-read and catch up).",
		func() float64 { return float64(a.Hub.Stats().Lagged) })
	a.Metrics.Gauge("mutuo_outbox_last_publish_latency_seconds", "Commit-to-publish latency of the relay's last batch.",
		func() float64 { return a.Relay.LastLatency().Seconds() })
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
	a.WS, err = realtime.NewWSTransport(realtime.WSConfig{
		Auth: a.Auth, Redis: rdb, Prefix: cfg.RedisPrefix,
		AllowedOrigins: cfg.AllowedOrigins, AllowLocalhost: cfg.Env == Development,
		MaxSocketsPerUser: cfg.WSMaxSocketsPerUser, Logger: log,
		OnClose: func(code int, _ string) { a.Metrics.WSCloses.WithLabelValues(strconv.Itoa(code)).Inc() },
		// a subscription value sent as a rendering shared with other
		// subscribers: counted as observe.Operations counts the others
		OnSharedNext: func(ctx context.Context) {
			a.Metrics.EventsDelivered.WithLabelValues(observe.OperationName(graphql.GetOperationContext(ctx).Operation)).Inc()
		},
		// fresh loaders for every operation on a socket
		WithContext: func(ctx context.Context) context.Context {
			return resolvers.WithFreshLoaders(ctx, a.Store, cfg.LoaderWait)
		},
	})
	if err != nil {
		a.Close()
		return nil, fmt.Errorf("websockets: %w", err)
	}
	a.Metrics.Gauge("mutuo_ws_sockets", "Open websockets on this instance.", func() float64 { return float64(a.WS.Stats().Sockets) })
	a.Metrics.Gauge("mutuo_ws_operations", "Active websocket operations on this instance.", func() float64 { return float64(a.WS.Stats().Operations) })
	a.limiterRedis = redis.NewClient(ratelimit.RedisOptions(ropt))
	rlc := cfg.RateLimit
	rlc.Redis, rlc.Prefix, rlc.Logger = a.limiterRedis, cfg.RedisPrefix, log
	if a.Limiter, err = ratelimit.New(rlc); err != nil {
		a.Close()
		return nil, fmt.Errorf("rate limits: %w", err)
	}
	if a.handler, err = a.routes(); err != nil {
		a.Close()
		return nil, err
	}
	return a, nil
}

// GraphQLServer builds gqlgen's server with our transport, presenter,
// recovery, limits (depth, cost, aliases, …, persisted operations), rate
// limits (charged by cost, after the limits), metrics and logs.
func (a *App) GraphQLServer() (*handler.Server, error) {
	r := &resolvers.Resolver{Store: a.Store, Auth: a.Auth, PSP: a.PSP, Now: a.Now, Hub: a.Hub, SignInGuard: signInGuard{a.Limiter}}
	srv := handler.New(graph.NewExecutableSchema(graph.Config{Resolvers: r}))
	srv.AddTransport(a.WS)
	srv.AddTransport(httpapi.Transport{MaxBodyBytes: httpapi.DefaultMaxBodyBytes})
	srv.SetQueryCache(lru.New[*ast.QueryDocument](1000))
	srv.SetErrorPresenter(resolvers.ErrorPresenter(a.Log))
	srv.SetRecoverFunc(resolvers.RecoverFunc(a.Log))
	if a.Tracing != nil { // operation and resolver spans, around everything below
		srv.Use(a.Tracing.Extension())
	}
	lc := a.Config.Limits
	lc.Logger = a.Log
	if err := limits.Install(srv, lc, a.limiterRedis, a.Config.RedisPrefix); err != nil {
		return nil, fmt.Errorf("GraphQL limits: %w", err)
	}
	srv.Use(a.Limiter.Extension())
	srv.Use(observe.Operations{Metrics: a.Metrics, Log: a.Log})
	srv.Use(resolvers.SubscriptionLoaders{Store: a.Store, Wait: a.Config.LoaderWait})
	return srv, nil
}

func (a *App) routes() (http.Handler, error) {
	mux := http.NewServeMux()
	srv, err := a.GraphQLServer()
	if err != nil {
		return nil, err
	}
	m := a.Metrics
	httpGQL := m.Middleware("/graphql", a.Limiter.Middleware(a.Auth.Middleware(resolvers.LoaderMiddleware(a.Store, a.Config.LoaderWait, srv))))
	// the socket's operations are charged to its user and address
	wsGQL := a.Limiter.Middleware(srv)
	// websocket upgrades go straight to the server: the transport
	// authenticates at connection_init and gives every operation its own
	// loaders; the HTTP middlewares would time the socket's whole life
	mux.Handle("/graphql", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if a.WS.Supports(r) {
			if a.draining.Load() {
				http.Error(w, "shutting down", http.StatusServiceUnavailable)
				return
			}
			wsGQL.ServeHTTP(w, r)
			return
		}
		httpGQL.ServeHTTP(w, r)
	}))
	mux.Handle("/webhooks/pix", m.Middleware("/webhooks/pix",
		&httpapi.PixWebhook{Secret: a.Config.PixWebhookSecret, Store: a.Store, Clock: a.Now, Log: a.Log}))
	mux.Handle("GET /metrics", m.Handler())
	if a.Config.Playground {
		mux.Handle("/", playground.Handler())
	}
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, map[string]any{"status": "ok"})
	})
	mux.HandleFunc("GET /readyz", a.ready)
	return requestID(a.Tracing.Middleware(mux)), nil // Middleware is mux itself when tracing is off
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
	if !a.Relay.Ready() {
		checks["outbox_relay"], status = "not publishing", http.StatusServiceUnavailable
	}
	if !a.Broker.Ready() {
		checks["realtime"], status = "not subscribed", http.StatusServiceUnavailable
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

// RunRealtime runs the outbox relay (Postgres → Redis) and the broker (the
// instance's one Redis subscription → the hub) until ctx ends.
func (a *App) RunRealtime(ctx context.Context) {
	go func() { _ = a.Relay.Run(ctx) }()
	go func() { _ = a.Broker.Run(ctx) }()
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
	// not ready first, while still serving, so load balancers stop sending
	// new work before the listener closes
	a.draining.Store(true)
	if d := a.Config.ShutdownDrainDelay; d > 0 {
		time.Sleep(d)
	}
	sctx, cancel := context.WithTimeout(context.Background(), a.Config.ShutdownTimeout-a.Config.ShutdownDrainDelay)
	defer cancel()
	// http.Server.Shutdown ignores hijacked connections: the websockets
	// drain themselves (subscriptions end, in-flight operations finish,
	// 1012 service restart) while HTTP requests finish
	wsDone := make(chan error, 1)
	go func() { wsDone <- a.WS.Shutdown(sctx) }()
	err := srv.Shutdown(sctx)
	if e := <-errc; !errors.Is(e, http.ErrServerClosed) && err == nil {
		err = e
	}
	if e := <-wsDone; e != nil && err == nil {
		err = fmt.Errorf("websockets: %w", e)
	}
	return err
}

// Close releases the pools and ends every subscription.
func (a *App) Close() {
	if a.WS != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		_ = a.WS.Shutdown(ctx)
		cancel()
	}
	if a.Hub != nil {
		a.Hub.Close()
	}
	if a.limiterRedis != nil {
		_ = a.limiterRedis.Close()
	}
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
		next.ServeHTTP(w, r.WithContext(observe.WithRequestID(r.Context(), id)))
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

// signInGuard adapts the rate limiter to resolvers.SignInGuard, taking the
// client's address from the request context.
type signInGuard struct{ l *ratelimit.Limiter }

func (g signInGuard) BeforeSignIn(ctx context.Context, email string) error {
	return g.l.BeforeSignIn(ctx, email, ratelimit.ClientIPFrom(ctx))
}

func (g signInGuard) AfterSignIn(ctx context.Context, email string, ok bool) {
	g.l.AfterSignIn(ctx, email, ratelimit.ClientIPFrom(ctx), ok)
}
