package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"maps"
	"net/http"
	"os"
	"runtime"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"text/tabwriter"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/redis/go-redis/v9"

	"mutuo/lending"
	"mutuo/store"
)

func init() {
	register(command{
		name: "invest",
		summary: "the invest mutation through GraphQL against the same transaction (store.Invest) called directly, " +
			"spread over 200 loans and all on one hot loan",
		run: runInvest,
	})
}

// investQuery is the mutation a client sends; %s adds fields to the
// selection (-select-loan).
const investQuery = `mutation Invest($loan: ID!, $amount: Money!, $key: String!) { ` +
	`invest(loanId: $loan, amount: $amount, idempotencyKey: $key) { id amount status%s } }`

// investExpected are the business outcomes the workload may meet (a loan that
// fills, a wallet that runs dry); any other error fails the benchmark.
var investExpected = map[string]bool{
	string(lending.CodeInvalidState):      true,
	string(lending.CodeInsufficientFunds): true,
}

type investFlags struct {
	c           int
	d, warmup   time.Duration
	loans       int
	investors   int
	rounds      int
	slices      int
	dists       []string
	poolMax     int
	loaderWait  time.Duration
	selectLoan  bool
	probe       time.Duration
	keep        bool
	cpuprofile  string
	cpuprofileD string
	env         envFlag
}

// investRun is one measured window.
type investRun struct {
	Round    int
	Dist     string // "spread" or "hot"
	GraphQL  bool
	Res      loadResult
	OK       int64          // successful invests
	Codes    map[string]int // error code → count
	Stmts    int64
	Times    investTimes // the path's pool: acquire, transaction, loan lock
	Redis    int64       // commands the server sent to Redis
	SelfCPU  time.Duration
	DBCPU    time.Duration
	RedisCPU time.Duration
	DBOK     bool
	RedisOK  bool
}

func (r investRun) path() string {
	if r.GraphQL {
		return "GraphQL"
	}
	return "direct pgx"
}

// OKPerSec is successful invests per second.
func (r investRun) OKPerSec() float64 {
	if r.Res.Elapsed <= 0 {
		return 0
	}
	return float64(r.OK) / r.Res.Elapsed.Seconds()
}

// per is d per request, in ms.
func (r investRun) per(d time.Duration) float64 {
	if r.Res.Requests == 0 {
		return 0
	}
	return float64(d) / float64(r.Res.Requests) / float64(time.Millisecond)
}

func (r investRun) codes() string {
	if len(r.Codes) == 0 {
		return "none"
	}
	keys := make([]string, 0, len(r.Codes))
	for k := range r.Codes {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	var parts []string
	for _, k := range keys {
		parts = append(parts, fmt.Sprintf("%s:%d", k, r.Codes[k]))
	}
	return strings.Join(parts, " ")
}

// investTally counts outcomes by code for the measured window (reset at its
// start) and in total.
type investTally struct {
	mu         sync.Mutex
	codes      map[string]int
	ok         atomic.Int64
	okTotal    atomic.Int64 // every success, warm-ups included: each is one investment row
	unexpected atomic.Int64 // every unexpected error, warm-ups included
	firstErr   error
}

func (t *investTally) reset() {
	t.mu.Lock()
	t.codes = map[string]int{}
	t.mu.Unlock()
	t.ok.Store(0)
}

func (t *investTally) success() {
	t.ok.Add(1)
	t.okTotal.Add(1)
}

// fail records an error with its code; it returns err for an unexpected
// code (runLoad counts it) and nil for a business outcome.
func (t *investTally) fail(code string, err error) error {
	t.mu.Lock()
	if t.codes == nil {
		t.codes = map[string]int{}
	}
	t.codes[code]++
	if !investExpected[code] && t.firstErr == nil {
		t.firstErr = err
	}
	t.mu.Unlock()
	if investExpected[code] {
		return nil
	}
	t.unexpected.Add(1)
	return err
}

func (t *investTally) snapshot() map[string]int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return maps.Clone(t.codes)
}

// investRedisCounter is a go-redis hook counting the commands a client sends.
type investRedisCounter struct{ n atomic.Int64 }

func (c *investRedisCounter) DialHook(next redis.DialHook) redis.DialHook { return next }
func (c *investRedisCounter) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		c.n.Add(1)
		return next(ctx, cmd)
	}
}
func (c *investRedisCounter) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		c.n.Add(int64(len(cmds)))
		return next(ctx, cmds)
	}
}

// investRedisPID is the Redis server's pid when it runs on this machine
// (INFO's process_id names a local redis-server process), else 0.
func investRedisPID(ctx context.Context, rdb *redis.Client) int {
	info, err := rdb.Info(ctx, "server").Result()
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(info, "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), "process_id:"); ok {
			pid, err := strconv.Atoi(v)
			if err != nil {
				return 0
			}
			comm, err := os.ReadFile("/proc/" + v + "/comm")
			if err != nil || !strings.Contains(string(comm), "redis") {
				return 0
			}
			return pid
		}
	}
	return 0
}

// investMix is splitmix64: a deterministic pick from (worker, seq), so the
// GraphQL and direct runs of a distribution see the same sequence of loans,
// amounts and investors.
func investMix(x uint64) uint64 {
	x += 0x9E3779B97F4A7C15
	x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9
	x = (x ^ (x >> 27)) * 0x94D049BB133111EB
	return x ^ (x >> 31)
}

// investWorkload is what the workers pick from.
type investWorkload struct {
	c         int
	spread    []int64
	spreadGID []string
	hot       int64
	hotGID    string
}

// pick returns the investor (index), loan and amount (R$ 25.00–100.00) of
// request seq of worker w. Worker w uses investors w, w+c, w+2c, …: with
// investors a multiple of c, two workers never write the same wallet.
func (wl *investWorkload) pick(w, seq, slice, investors int, hot bool) (inv, loanIdx int, amount lending.Money) {
	h := investMix(uint64(slice)<<48 ^ uint64(w)<<32 | uint64(uint32(seq)))
	inv = (w + wl.c*seq) % investors
	if !hot {
		loanIdx = int(h % uint64(len(wl.spread)))
	}
	amount = lending.Money(25_00 + (h>>24)%7501)
	return inv, loanIdx, amount
}

func runInvest(ctx context.Context, fs *flag.FlagSet, args []string) error {
	f := investFlags{env: envFlag{
		"RATE_LIMIT_USER": "off", "RATE_LIMIT_IP": "off",
		"SIGNIN_LIMIT_PER_IP": "off", "SIGNIN_LIMIT_PER_EMAIL": "off",
	}}
	var dists string
	fs.IntVar(&f.c, "c", 32, "concurrent clients")
	fs.DurationVar(&f.d, "d", 10*time.Second, "measured time per distribution and path (cut into -slices)")
	fs.DurationVar(&f.warmup, "warmup", time.Second, "unmeasured warm-up before each path's first slice of a distribution")
	fs.IntVar(&f.loans, "loans", 200, "FUNDING loans of the spread distribution")
	fs.IntVar(&f.investors, "investors", 0, "investors (0: -c, one per worker; a multiple of -c keeps workers off each other's wallets)")
	fs.IntVar(&f.slices, "slices", 10, "cut each path's measured window into this many slices, GraphQL and direct alternating")
	fs.IntVar(&f.rounds, "rounds", 1, "repeat every distribution's runs this many times")
	fs.StringVar(&dists, "dist", "spread,hot", "distributions to run: spread (over -loans loans), hot (all on one loan)")
	fs.IntVar(&f.poolMax, "pool-max-conns", 0, "pgx pool size for the server; the baseline's pool has the same size (0: the server's default)")
	fs.DurationVar(&f.loaderWait, "loader-wait", 2*time.Millisecond, "dataloader wait (LOADER_WAIT); only -select-loan uses a loader")
	fs.BoolVar(&f.selectLoan, "select-loan", false, "also select investment { loan { id fundedAmount status } } (a dataloader round)")
	fs.DurationVar(&f.probe, "auth-probe", 500*time.Millisecond, "time to measure the auth middleware's per-request work (JWT + Redis denylist) alone; 0 skips")
	fs.BoolVar(&f.keep, "keep", false, "keep the database (its URL is printed)")
	fs.StringVar(&f.cpuprofile, "cpuprofile", "", "write CPU profiles of the first distribution's GraphQL slices to this file (slice 1), FILE.2, FILE.3, … (go tool pprof merges them)")
	fs.StringVar(&f.cpuprofileD, "cpuprofile-direct", "", "the same for the direct slices")
	fs.Var(f.env, "env", "KEY=VALUE server configuration variable (repeatable; rate limits are off by default)")
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "usage: go run ./bench invest [flags]\n\n"+
			"Seeds investors with funded wallets and FUNDING loans into its own database, starts the server\n"+
			"in-process, signs the investors in, and drives the invest mutation through GraphQL at a fixed\n"+
			"concurrency for a fixed time, spread over many loans and all on one loan; then the same\n"+
			"transaction (store.Store.Invest) called directly through pgx with the same workload.\n\nflags:\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	for _, s := range strings.Split(dists, ",") {
		s = strings.TrimSpace(s)
		if s != "spread" && s != "hot" {
			return fmt.Errorf("-dist: unknown distribution %q (spread, hot)", s)
		}
		if !slices.Contains(f.dists, s) {
			f.dists = append(f.dists, s)
		}
	}
	if f.investors == 0 {
		f.investors = f.c
	}
	if f.c < 1 || f.d <= 0 || f.warmup < 0 || f.loans < 1 || f.investors < 1 || f.rounds < 1 || f.probe < 0 || f.slices < 1 {
		return errors.New("need -c >= 1, -d > 0, -warmup >= 0, -loans >= 1, -investors >= 1, -rounds >= 1, -slices >= 1, -auth-probe >= 0")
	}

	// database and data
	db, err := createDB(ctx)
	if err != nil {
		return err
	}
	defer func() {
		if f.keep {
			fmt.Printf("\nkept database %s: %s\n", db.Name, db.URL)
			db.Pool.Close()
			return
		}
		if err := db.Drop(); err != nil {
			fmt.Fprintf(os.Stderr, "bench: drop database %s: %v\n", db.Name, err)
		}
	}()
	seed, err := seedInvest(ctx, db.Pool, f.investors, f.loans)
	if err != nil {
		return err
	}
	checker := store.New(db.Pool)
	t := time.Now()
	if err := checker.CheckInvariants(ctx); err != nil {
		return fmt.Errorf("seeded data breaks the ledger invariants: %w", err)
	}
	checkTook := time.Since(t)

	// server (rate limits off) and the baseline's pool of the same size
	serverURL := withPoolMax(db.URL, f.poolMax)
	str, dtr := &investTracer{}, &investTracer{}
	srv, err := startInvestServer(ctx, serverURL, serverOpts{LoaderWait: f.loaderWait, Env: f.env}, str)
	if err != nil {
		return err
	}
	defer srv.Close()
	redisCmds := &investRedisCounter{}
	srv.App.Redis.AddHook(redisCmds)
	maxConns := srv.App.Pool.Config().MaxConns
	pcfg, err := pgxpool.ParseConfig(serverURL)
	if err != nil {
		return err
	}
	pcfg.MaxConns = maxConns
	pcfg.ConnConfig.Tracer = dtr
	dpool, err := pgxpool.NewWithConfig(ctx, pcfg)
	if err != nil {
		return err
	}
	defer dpool.Close()
	direct := store.New(dpool)

	client := newHTTPClient(f.c)
	t = time.Now()
	tokens, err := signInInvestors(ctx, client, srv.URL, seed.InvestorEmails)
	if err != nil {
		return err
	}
	signInTook := time.Since(t)
	bearers := make([]string, len(tokens))
	viewers := make([]lending.Viewer, len(tokens))
	for i, tok := range tokens {
		bearers[i] = "Bearer " + tok
		viewers[i] = lending.Viewer{UserID: seed.InvestorUserIDs[i], Roles: []lending.Role{lending.RoleInvestor}}
	}
	wl := &investWorkload{c: f.c, spread: seed.SpreadLoans, hot: seed.HotLoan, hotGID: lending.GlobalID(lending.KindLoan, seed.HotLoan)}
	for _, id := range seed.SpreadLoans {
		wl.spreadGID = append(wl.spreadGID, lending.GlobalID(lending.KindLoan, id))
	}

	fmt.Printf("bench invest: GOMAXPROCS=%d NumCPU=%d %s; Postgres %s; Redis %s; load average %s\n",
		runtime.GOMAXPROCS(0), runtime.NumCPU(), runtime.Version(), strings.SplitN(adminURL(), "?", 2)[0], redisURL(), loadAvg())
	fmt.Printf("dataset %s: %d investors (R$ %v deposited each, by Pix DEPOSIT transfers), %d borrowers, %d FUNDING loans "+
		"of R$ %v (+1 hot loan); seeded in %s, invariants checked in %s; %d investors signed in through signIn in %s\n",
		db.Name, f.investors, investDeposit, seed.Borrowers, f.loans, investLoanAmount, seed.Took.Round(time.Millisecond),
		checkTook.Round(time.Millisecond), len(tokens), signInTook.Round(time.Millisecond))
	sel := ""
	if f.selectLoan {
		sel = " loan { id fundedAmount status }"
	}
	query := fmt.Sprintf(investQuery, sel)
	fmt.Printf("workload: %d clients; per distribution and path %s warm-up + %s measured in %d slices, GraphQL and direct "+
		"alternating; %d round(s); amounts R$ 25.00–100.00, a fresh idempotency key per request; pgx pool %d conns (server and baseline)\n",
		f.c, f.warmup, f.d, f.slices, f.rounds, maxConns)
	fmt.Printf("GraphQL: %s\nserver config: %s LOADER_WAIT=%s\n", query, f.env, f.loaderWait)

	// the auth middleware's per-request work, measured alone
	var probe investProbe
	if f.probe > 0 {
		probe = probeInvestAuth(ctx, srv, tokens[0], f.probe)
	}

	dbcpu := dbCPU{pool: db.Pool, name: db.Name}
	redisPID := investRedisPID(ctx, srv.App.Redis)
	tally := &investTally{}
	gqlURL := srv.URL + "/graphql"
	bodyHead, _ := json.Marshal(query)
	okPrefix := []byte(`{"data":{"invest":{"id":"`)

	// measure runs one slice of a path's window and adds it to run.
	measure := func(run *investRun, tr *investTracer, profile string, warmup, d time.Duration,
		do func(ctx context.Context, w, seq int, buf *bytes.Buffer) error) error {
		var s0, r0 int64
		var t0 investTimes
		var c0, rc0 time.Duration
		var rok0 bool
		var d0, d1 map[int]time.Duration
		hooks := loadHooks{
			Start: func() {
				tally.reset()
				d0 = dbcpu.snapshot(ctx)
				if redisPID > 0 {
					rc0, rok0 = procCPU(redisPID)
				}
				s0, t0, r0, c0 = tr.Load(), tr.times(), redisCmds.n.Load(), selfCPU()
			},
			Stop: func() {
				run.SelfCPU += selfCPU() - c0
				run.Stmts += tr.Load() - s0
				run.Redis += redisCmds.n.Load() - r0
				run.Times = run.Times.add(tr.times().sub(t0))
				run.OK += tally.ok.Load()
				if run.Codes == nil {
					run.Codes = map[string]int{}
				}
				for k, v := range tally.snapshot() {
					run.Codes[k] += v
				}
				if redisPID > 0 {
					rc1, ok := procCPU(redisPID)
					run.RedisCPU += rc1 - rc0
					run.RedisOK = ok && rok0 && (run.RedisOK || run.Res.Requests == 0)
				}
				d1 = dbcpu.snapshot(ctx)
			},
		}
		var stop func()
		if profile != "" {
			var err error
			if hooks, stop, err = investProfile(hooks, profile); err != nil {
				return err
			}
		}
		first := run.Res.Requests == 0
		res := runLoad(ctx, f.c, warmup, d, hooks, do)
		if stop != nil {
			stop()
		}
		dc, dok := since(d0, d1)
		run.DBCPU += dc
		run.DBOK = dok && (run.DBOK || first)
		run.Res.Requests += res.Requests
		run.Res.Errors += res.Errors
		if run.Res.FirstErr == nil {
			run.Res.FirstErr = res.FirstErr
		}
		run.Res.Elapsed += res.Elapsed
		run.Res.Lat = append(run.Res.Lat, res.Lat...)
		slices.Sort(run.Res.Lat)
		return ctx.Err()
	}

	gqlDo := func(tag string, hot bool, slice int) func(ctx context.Context, w, seq int, buf *bytes.Buffer) error {
		return func(ctx context.Context, w, seq int, buf *bytes.Buffer) error {
			inv, li, amount := wl.pick(w, seq, slice, f.investors, hot)
			gid := wl.hotGID
			if !hot {
				gid = wl.spreadGID[li]
			}
			body := make([]byte, 0, len(bodyHead)+160)
			body = append(body, `{"query":`...)
			body = append(body, bodyHead...)
			body = append(body, `,"variables":{"loan":"`...)
			body = append(body, gid...)
			body = append(body, `","amount":"`...)
			body = append(body, amount.String()...)
			body = append(body, `","key":"`...)
			body = investKey(body, tag, w, seq)
			body = append(body, `"}}`...)
			req, err := http.NewRequestWithContext(ctx, http.MethodPost, gqlURL, bytes.NewReader(body))
			if err != nil {
				return err
			}
			req.Header.Set("Content-Type", "application/json")
			req.Header.Set("Authorization", bearers[inv])
			resp, err := client.Do(req)
			if err != nil {
				if ctx.Err() != nil {
					return nil
				}
				return tally.fail("HTTP", err)
			}
			buf.Reset()
			_, err = io.Copy(buf, resp.Body)
			resp.Body.Close()
			if err != nil {
				return tally.fail("HTTP", err)
			}
			b := buf.Bytes()
			if resp.StatusCode == http.StatusOK && bytes.HasPrefix(b, okPrefix) && !bytes.Contains(b, []byte(`"errors"`)) {
				tally.success()
				return nil
			}
			code := investGraphQLCode(resp.StatusCode, b)
			return tally.fail(code, fmt.Errorf("%s: HTTP %d: %.300s", code, resp.StatusCode, b))
		}
	}
	directDo := func(tag string, hot bool, slice int) func(ctx context.Context, w, seq int, buf *bytes.Buffer) error {
		return func(ctx context.Context, w, seq int, buf *bytes.Buffer) error {
			inv, li, amount := wl.pick(w, seq, slice, f.investors, hot)
			loan := wl.hot
			if !hot {
				loan = wl.spread[li]
			}
			key := investKey(buf.AvailableBuffer(), tag, w, seq)
			out, err := direct.Invest(ctx, viewers[inv], loan, amount, string(key), time.Now())
			if err == nil && out != nil {
				tally.success()
				return nil
			}
			if ctx.Err() != nil {
				return nil
			}
			code := string(lending.CodeInternal)
			if e, ok := lending.AsError(err); ok {
				code = string(e.Code)
			}
			return tally.fail(code, err)
		}
	}

	// Each distribution's window of -d per path is cut into -slices slices,
	// GraphQL and direct alternating (G D, D G, G D, …), so that what else
	// runs on a shared machine weighs on both paths alike.
	var runs []investRun
	sliceD := f.d / time.Duration(f.slices)
	profiled := map[bool]bool{}
	for round := 1; round <= f.rounds; round++ {
		for _, dist := range f.dists {
			hot := dist == "hot"
			g := &investRun{Round: round, Dist: dist, GraphQL: true}
			d := &investRun{Round: round, Dist: dist}
			for sl := 0; sl < f.slices; sl++ {
				order := []*investRun{g, d}
				if (sl+round)%2 == 0 {
					order = []*investRun{d, g}
				}
				for _, run := range order {
					warmup := time.Duration(0)
					if sl == 0 {
						warmup = f.warmup
					}
					tag := fmt.Sprintf("%c%c%d-%d", dist[0], run.path()[0], round, sl)
					profile := ""
					if p := map[bool]string{true: f.cpuprofile, false: f.cpuprofileD}[run.GraphQL]; p != "" && !profiled[run.GraphQL] {
						profile = p
						if sl > 0 {
							profile = fmt.Sprintf("%s.%d", p, sl+1)
						}
						if sl == f.slices-1 {
							profiled[run.GraphQL] = true
						}
					}
					var err error
					if run.GraphQL {
						err = measure(run, str, profile, warmup, sliceD, gqlDo(tag, hot, sl))
					} else {
						err = measure(run, dtr, profile, warmup, sliceD, directDo(tag, hot, sl))
					}
					if err != nil {
						return err
					}
				}
			}
			runs = append(runs, *g, *d)
		}
	}

	// every success is one investment; the ledger still balances
	var investments int64
	if err := db.Pool.QueryRow(ctx, `SELECT count(*) FROM investments`).Scan(&investments); err != nil {
		return err
	}
	// the statistics are from the seed, when investments and holds were empty:
	// without fresh ones the checks' joins plan as nested loops and take a minute
	if _, err := db.Pool.Exec(ctx, "ANALYZE"); err != nil {
		return fmt.Errorf("analyze: %w", err)
	}
	t = time.Now()
	invErr := checker.CheckInvariants(ctx)
	checkTook = time.Since(t)
	return reportInvest(runs, f, probe, investments, tally, invErr, checkTook, redisPID > 0)
}

// investKey appends a request's idempotency key: tag (distribution, path,
// round), worker and sequence number; unique per run, so never a replay.
func investKey(b []byte, tag string, w, seq int) []byte {
	b = append(b, "bench-"...)
	b = append(b, tag...)
	b = append(b, '-')
	b = strconv.AppendInt(b, int64(w), 10)
	b = append(b, '-')
	return strconv.AppendInt(b, int64(seq), 10)
}

// investGraphQLCode is the first error's extensions.code of a GraphQL
// response, or HTTP_<status> when there is none.
func investGraphQLCode(status int, b []byte) string {
	var r struct {
		Errors []struct {
			Extensions struct {
				Code string `json:"code"`
			} `json:"extensions"`
		} `json:"errors"`
	}
	if err := json.Unmarshal(b, &r); err == nil && len(r.Errors) > 0 && r.Errors[0].Extensions.Code != "" {
		return r.Errors[0].Extensions.Code
	}
	return "HTTP_" + strconv.Itoa(status)
}

// investProbe is the auth middleware's per-request work measured alone,
// one call at a time.
type investProbe struct {
	Auth, Exists time.Duration // mean per call: Auth.Authenticate (JWT + denylist EXISTS); a bare Redis EXISTS
	N            int
}

func probeInvestAuth(ctx context.Context, srv *server, token string, d time.Duration) investProbe {
	var p investProbe
	key := srv.App.Config.RedisPrefix + "bench:probe"
	n, start := 0, time.Now()
	for time.Since(start) < d && ctx.Err() == nil {
		if _, _, err := srv.App.Auth.Authenticate(ctx, token); err != nil {
			fmt.Fprintf(os.Stderr, "bench: auth probe: %v\n", err)
			return investProbe{}
		}
		n++
	}
	p.Auth, p.N = time.Since(start)/time.Duration(max(n, 1)), n
	n, start = 0, time.Now()
	for time.Since(start) < d && ctx.Err() == nil {
		if err := srv.App.Redis.Exists(ctx, key).Err(); err != nil {
			fmt.Fprintf(os.Stderr, "bench: redis probe: %v\n", err)
			return investProbe{}
		}
		n++
	}
	p.Exists = time.Since(start) / time.Duration(max(n, 1))
	return p
}

// investProfile extends hooks to profile the CPU during the measured
// window; call stop after the run to close the file.
func investProfile(h loadHooks, path string) (loadHooks, func(), error) {
	fh, err := os.Create(path)
	if err != nil {
		return h, nil, err
	}
	start, end := h.Start, h.Stop
	h.Start = func() {
		if start != nil {
			start()
		}
		if err := pprof.StartCPUProfile(fh); err != nil {
			fmt.Fprintf(os.Stderr, "bench: cpu profile: %v\n", err)
		}
	}
	h.Stop = func() {
		pprof.StopCPUProfile()
		if end != nil {
			end()
		}
	}
	return h, func() {
		if err := fh.Close(); err == nil {
			fmt.Fprintf(os.Stderr, "wrote CPU profile %s (go tool pprof -top %s)\n", path, path)
		}
	}, nil
}

func investMedian(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	s := slices.Clone(v)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

func reportInvest(runs []investRun, f investFlags, probe investProbe, investments int64, tally *investTally,
	invErr error, checkTook time.Duration, redisLocal bool) error {
	type key struct {
		round int
		dist  string
	}
	directs := map[key]investRun{}
	for _, r := range runs {
		if !r.GraphQL {
			directs[key{r.Round, r.Dist}] = r
		}
	}
	distName := func(d string) string {
		if d == "hot" {
			return "hot (1 loan)"
		}
		return fmt.Sprintf("spread (%d loans)", f.loans)
	}
	fmt.Println()
	tw := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', tabwriter.AlignRight)
	head := "distribution\tpath\tinvests\tinvests/s\tp50\tp99\terrors by code\tSQL/op\tRedis/op\tGo CPU/op\tDB CPU/op\tRedis CPU/op\tGraphQL/direct\t\n"
	if f.rounds > 1 {
		head = "round\t" + head
	}
	fmt.Fprint(tw, head)
	type agg struct{ ratio, extraGo, cpuRatio []float64 }
	aggs := map[string]*agg{}
	for _, r := range runs {
		ratio := "-"
		if d, ok := directs[key{r.Round, r.Dist}]; ok && r.GraphQL && d.OKPerSec() > 0 {
			x := r.OKPerSec() / d.OKPerSec()
			ratio = fmt.Sprintf("%.3f", x)
			a := aggs[r.Dist]
			if a == nil {
				a = &agg{}
				aggs[r.Dist] = a
			}
			a.ratio = append(a.ratio, x)
			a.extraGo = append(a.extraGo, r.per(r.SelfCPU)-d.per(d.SelfCPU))
			if r.DBOK && d.DBOK {
				g := r.per(r.SelfCPU + r.DBCPU + r.RedisCPU)
				dd := d.per(d.SelfCPU + d.DBCPU + d.RedisCPU)
				if dd > 0 {
					a.cpuRatio = append(a.cpuRatio, g/dd)
				}
			}
		}
		dbc, rc, rcmd := "-", "-", "0"
		if r.DBOK {
			dbc = fmt.Sprintf("%.3fms", r.per(r.DBCPU))
		}
		if r.RedisOK {
			rc = fmt.Sprintf("%.3fms", r.per(r.RedisCPU))
		}
		if r.Res.Requests > 0 {
			rcmd = fmt.Sprintf("%.2f", float64(r.Redis)/float64(r.Res.Requests))
		}
		stm := "-"
		if r.Res.Requests > 0 {
			stm = fmt.Sprintf("%.2f", float64(r.Stmts)/float64(r.Res.Requests))
		}
		if f.rounds > 1 {
			fmt.Fprintf(tw, "%d\t", r.Round)
		}
		fmt.Fprintf(tw, "%s\t%s\t%d\t%.0f\t%s\t%s\t%s\t%s\t%s\t%.3fms\t%s\t%s\t%s\t\n", distName(r.Dist), r.path(), r.OK, r.OKPerSec(),
			ms(r.Res.Pct(50)), ms(r.Res.Pct(99)), r.codes(), stm, rcmd, r.per(r.SelfCPU), dbc, rc, ratio)
	}
	_ = tw.Flush()
	fmt.Println()
	tw = tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', tabwriter.AlignRight)
	head = "distribution\tpath\tmean latency\tpool wait\ttransaction\tloan lock wait\tloan lock held\toutside the DB\t\n"
	if f.rounds > 1 {
		head = "round\t" + head
	}
	fmt.Fprint(tw, head)
	for _, r := range runs {
		tm := r.Times
		avg := func(d time.Duration, n int64) time.Duration {
			if n == 0 {
				return 0
			}
			return d / time.Duration(n)
		}
		// per request: a request may acquire more than once (a dataloader's
		// query with -select-loan) and runs one transaction
		reqs := int64(max(r.Res.Requests, 1))
		acq, tx := avg(tm.Acq, reqs), avg(tm.Tx, reqs)
		if f.rounds > 1 {
			fmt.Fprintf(tw, "%d\t", r.Round)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t\n", distName(r.Dist), r.path(), ms(r.Res.Mean()), ms(acq), ms(tx),
			ms(avg(tm.LockWait, tm.LockN)), ms(avg(tm.LockHold, tm.LockN)), ms(r.Res.Mean()-acq-tx))
	}
	_ = tw.Flush()
	fmt.Println("Means per invest, wall time. pool wait: waiting for the pool's connections; transaction: begin → commit;\n" +
		"loan lock wait/held: store.lockLoan's row lock until granted, and from then to commit (the hot loan's critical\n" +
		"section); outside the DB: the rest of the request (GraphQL: HTTP both ways, auth, gqlgen, JSON, and queries\n" +
		"outside the transaction such as -select-loan's dataloader and its wait).")
	fmt.Printf("load average at the end: %s (on %d CPUs)\n", loadAvg(), runtime.NumCPU())
	fmt.Println("invests/s counts successful invests; p50/p99 are per request. Go CPU: this process (for GraphQL the HTTP\n" +
		"client and the whole server; for direct the workers calling store.Invest). DB CPU: the Postgres backends of the\n" +
		"bench database; Redis CPU: the Redis server (both when local). SQL/op: statements sent by the path's pool,\n" +
		"begin and commit included. Redis/op: commands of the app's Redis client (the auth denylist); the rate\n" +
		"limiter has a client of its own, not counted (its limits are off unless -env sets them).")
	if redisLocal {
		fmt.Println("Redis CPU counts everything the Redis server did during the window (other tenants included).")
	}
	if probe.N > 0 {
		fmt.Printf("\nauth middleware alone (one call at a time, %d calls): Authenticate %.1fµs per request = JWT verification "+
			"%.1fµs + denylist EXISTS round trip %.1fµs\n", probe.N, investUS(probe.Auth), investUS(probe.Auth-probe.Exists), investUS(probe.Exists))
	}
	fmt.Println()
	verdict := true
	for _, dist := range f.dists {
		a := aggs[dist]
		if a == nil {
			continue
		}
		label := "ratio"
		if f.rounds > 1 {
			label = fmt.Sprintf("median ratio over %d rounds", f.rounds)
		}
		cpu := "-"
		if len(a.cpuRatio) > 0 {
			cpu = fmt.Sprintf("%.2f×", investMedian(a.cpuRatio))
		}
		fmt.Printf("%-18s GraphQL/direct invests/s %s %.3f; GraphQL stack adds %.3fms Go CPU per invest; "+
			"Go+DB+Redis CPU per invest %s direct\n", distName(dist)+":", label, investMedian(a.ratio), investMedian(a.extraGo), cpu)
		if investMedian(a.ratio) < 0.6 {
			verdict = false
		}
	}
	if verdict {
		fmt.Println("aim (GraphQL/direct >= 0.6): met")
	} else {
		fmt.Println("aim (GraphQL/direct >= 0.6): NOT met")
	}

	fmt.Printf("\nafter the runs: %d investments in the database for %d successful invests (warm-ups included); "+
		"invariants checked in %s: ", investments, tally.okTotal.Load(), checkTook.Round(time.Millisecond))
	if invErr == nil {
		fmt.Println("all hold")
	} else {
		fmt.Println("VIOLATED")
	}
	var failures []string
	if invErr != nil {
		failures = append(failures, invErr.Error())
	}
	if investments != tally.okTotal.Load() {
		failures = append(failures, fmt.Sprintf("%d investments for %d successful invests", investments, tally.okTotal.Load()))
	}
	if n := tally.unexpected.Load(); n > 0 {
		failures = append(failures, fmt.Sprintf("%d unexpected errors (warm-ups included), first: %v", n, tally.firstErr))
	}
	if len(failures) > 0 {
		return errors.New(strings.Join(failures, "; "))
	}
	return nil
}

// investUS is d in microseconds.
func investUS(d time.Duration) float64 { return float64(d) / float64(time.Microsecond) }
