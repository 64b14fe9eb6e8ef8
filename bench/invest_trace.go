package main

import (
	"context"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"mutuo/app"
)

// investTracer is a pgx tracer for a pool that, besides counting statements
// like stmtCounter, times where an invest spends its database time: waiting
// for a pool connection, the whole transaction (begin → commit), waiting for
// the loan's row lock (store.lockLoan's SELECT … FOR NO KEY UPDATE OF l) and
// holding it (granted → commit). On the hot loan the hold time is the
// critical section every investor queues for.
type investTracer struct {
	stmtCounter

	mu    sync.Mutex
	conns map[*pgx.Conn]*investConnState

	acqN, acqNs                   atomic.Int64
	txN, txNs                     atomic.Int64
	lockN, lockWaitNs, lockHoldNs atomic.Int64
}

type investConnState struct {
	begin, locked, qstart time.Time
	kind                  byte // 'b' begin, 'l' loan lock, 'c' commit/rollback
}

// investTimes is a snapshot of an investTracer's sums.
type investTimes struct {
	AcqN, TxN, LockN            int64
	Acq, Tx, LockWait, LockHold time.Duration
}

func (t *investTracer) times() investTimes {
	return investTimes{
		AcqN: t.acqN.Load(), TxN: t.txN.Load(), LockN: t.lockN.Load(),
		Acq: time.Duration(t.acqNs.Load()), Tx: time.Duration(t.txNs.Load()),
		LockWait: time.Duration(t.lockWaitNs.Load()), LockHold: time.Duration(t.lockHoldNs.Load()),
	}
}

func (a investTimes) sub(b investTimes) investTimes {
	return investTimes{a.AcqN - b.AcqN, a.TxN - b.TxN, a.LockN - b.LockN,
		a.Acq - b.Acq, a.Tx - b.Tx, a.LockWait - b.LockWait, a.LockHold - b.LockHold}
}

func (a investTimes) add(b investTimes) investTimes {
	return investTimes{a.AcqN + b.AcqN, a.TxN + b.TxN, a.LockN + b.LockN,
		a.Acq + b.Acq, a.Tx + b.Tx, a.LockWait + b.LockWait, a.LockHold + b.LockHold}
}

func (t *investTracer) state(c *pgx.Conn) *investConnState {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.conns == nil {
		t.conns = map[*pgx.Conn]*investConnState{}
	}
	s := t.conns[c]
	if s == nil {
		s = &investConnState{}
		t.conns[c] = s
	}
	return s
}

func (t *investTracer) TraceQueryStart(ctx context.Context, c *pgx.Conn, d pgx.TraceQueryStartData) context.Context {
	t.n.Add(1)
	s := t.state(c)
	s.qstart, s.kind = time.Now(), 0
	switch {
	case strings.HasPrefix(d.SQL, "begin"):
		s.kind, s.begin, s.locked = 'b', s.qstart, time.Time{}
	case d.SQL == "commit" || d.SQL == "rollback":
		s.kind = 'c'
	case strings.Contains(d.SQL, "FOR NO KEY UPDATE OF l"):
		s.kind = 'l'
	}
	return ctx
}

func (t *investTracer) TraceQueryEnd(_ context.Context, c *pgx.Conn, d pgx.TraceQueryEndData) {
	s := t.state(c)
	now := time.Now()
	switch s.kind {
	case 'l':
		if d.Err == nil {
			t.lockN.Add(1)
			t.lockWaitNs.Add(int64(now.Sub(s.qstart)))
			s.locked = now
		}
	case 'c':
		if !s.begin.IsZero() {
			t.txN.Add(1)
			t.txNs.Add(int64(now.Sub(s.begin)))
		}
		if !s.locked.IsZero() {
			t.lockHoldNs.Add(int64(now.Sub(s.locked)))
		}
		s.begin, s.locked = time.Time{}, time.Time{}
	}
}

type investAcqKey struct{}

func (t *investTracer) TraceAcquireStart(ctx context.Context, _ *pgxpool.Pool, _ pgxpool.TraceAcquireStartData) context.Context {
	return context.WithValue(ctx, investAcqKey{}, time.Now())
}

func (t *investTracer) TraceAcquireEnd(ctx context.Context, _ *pgxpool.Pool, d pgxpool.TraceAcquireEndData) {
	if start, ok := ctx.Value(investAcqKey{}).(time.Time); ok && d.Err == nil {
		t.acqN.Add(1)
		t.acqNs.Add(int64(time.Since(start)))
	}
}

// startInvestServer is startServer (env.go) with an investTracer on the
// server's pool instead of a bare statement counter: the same configuration
// variables, the same in-process httptest server.
func startInvestServer(ctx context.Context, dbURL string, o serverOpts, tr *investTracer) (*server, error) {
	vars := map[string]string{
		"DATABASE_URL": dbURL, "REDIS_URL": redisURL(), "REDIS_PREFIX": "bench:" + randHex(6) + ":",
		"JWT_SECRET": "bench-secret-bench-secret-bench-secret", "DEMO_DATA": "false", "MUTUO_ENV": "development",
		"ADMIN_EMAIL": "admin@bench.mutuo.dev", "ADMIN_PASSWORD": "bench-admin-password",
		"LOADER_WAIT": o.LoaderWait.String(),
	}
	for k, v := range o.Env {
		vars[k] = v
	}
	cfg, err := app.ConfigFromEnv(func(k string) string { return vars[k] })
	if err != nil {
		return nil, err
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	a, err := app.New(ctx, cfg, app.Options{Logger: log, PoolConfig: func(c *pgxpool.Config) { c.ConnConfig.Tracer = tr }})
	if err != nil {
		return nil, err
	}
	mux := http.NewServeMux()
	mux.Handle("/", a.Handler())
	hs := httptest.NewServer(mux)
	return &server{App: a, URL: hs.URL, Stmts: &tr.stmtCounter, http: hs}, nil
}
