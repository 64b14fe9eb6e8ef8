package main

// go run ./bench fanout: N websocket clients (default 10,000) subscribed to
// notificationAdded and to loanUpdated on one shared loan, then investments
// into that loan one at a time, and for each the time from the investment's
// commit to every client's receipt of the loan's new state.
//
// The server runs in a child process (this binary, `fanout -server`, see
// fanout_server.go) on 127.0.0.1:<random port> with the outbox relay and the
// broker (RunRealtime), so its RSS, goroutines and CPU are its own; the
// clients run here, dialling from 127.0.0.2…127.0.0.9 (-sources) so that no
// source address runs out of ephemeral ports. Both processes share the
// machine's cores, and Postgres and Redis run on it too: every latency below
// includes the clients' own scheduling.
//
// "Commit" is when store.Invest (called here, on this process's own pool)
// returns: right after its COMMIT, so slightly after the data is visible
// and the NOTIFY that wakes the relay is sent. Receipt is when the client's
// reader goroutine has read the whole `next` message. An event is
// identified by the fundedAmount it produced (every investment is the same
// amount, so the k-th makes it k × amount); a client that receives a later
// state first (the server sends only the newest state to a subscriber that
// lags) is counted as having received the earlier ones then.

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"mutuo/lending"
	"mutuo/store"
)

func init() {
	register(command{
		name:    "fanout",
		summary: "N websocket clients on one loan: commit-to-receipt latency, server memory and goroutines per connection",
		run:     runFanout,
	})
}

type fanoutOpts struct {
	n, events, users, sources, conc int
	interval, rate                  time.Duration
	timeout, settle                 time.Duration
	amount                          string
	fields                          string
	keep, baseline                  bool
	env                             envFlag
	cpuProfile, heapProfile         string
	memRate                         int

	// the server process
	server bool
	db     string
}

func runFanout(ctx context.Context, fs *flag.FlagSet, args []string) error {
	o := fanoutOpts{env: envFlag{}}
	fs.IntVar(&o.n, "n", 10000, "websocket clients")
	fs.IntVar(&o.events, "events", 50, "investments into the shared loan (events)")
	fs.IntVar(&o.users, "users", 0, "users the clients sign in as (0: one per client); more than 10 sockets per user sets WS_MAX_SOCKETS_PER_USER=-1")
	fs.IntVar(&o.sources, "sources", 8, "source addresses 127.0.0.2… the clients dial from")
	fs.IntVar(&o.conc, "dial", 200, "dials in flight while connecting")
	fs.DurationVar(&o.interval, "interval", 100*time.Millisecond, "pause after an event has reached every client, before the next (with -every 0)")
	fs.DurationVar(&o.rate, "every", 0, "start an event every this often without waiting for delivery (0: one at a time)")
	fs.DurationVar(&o.timeout, "timeout", 10*time.Second, "how long an event may take to reach every client")
	fs.DurationVar(&o.settle, "settle", 3*time.Second, "idle time after connecting, before the idle memory reading")
	fs.StringVar(&o.amount, "amount", "25.00", "each investment, in reais")
	fs.StringVar(&o.fields, "fields", "id fundedAmount status", "the loanUpdated selection (fundedAmount is required)")
	fs.BoolVar(&o.keep, "keep", false, "keep the database")
	fs.BoolVar(&o.baseline, "baseline", true, "also measure the baseline: the same clients on a bare websocket broadcast in the same server process")
	fs.Var(o.env, "env", "server configuration KEY=VALUE (repeatable)")
	fs.StringVar(&o.cpuProfile, "cpuprofile", "", "write the server's CPU profile over the events to this file")
	fs.StringVar(&o.heapProfile, "heapprofile", "", "write the server's heap profile with every client connected and idle to this file")
	fs.IntVar(&o.memRate, "memprofilerate", 0, "the server's runtime.MemProfileRate (0: Go's default, 512 KiB; smaller samples the heap profile finer)")
	fs.BoolVar(&o.server, "server", false, "internal: run as the benchmark's server process")
	fs.StringVar(&o.db, "db", "", "internal: the server process's database URL")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if o.server {
		if o.memRate > 0 {
			runtime.MemProfileRate = o.memRate
		}
		return runFanoutServer(ctx, o.db, o.env, o.n)
	}
	amount, err := lending.ParseMoney(o.amount)
	switch {
	case err != nil:
		return fmt.Errorf("-amount: %w", err)
	case o.n < 1 || o.events < 1 || o.sources < 1 || o.sources > 250 || o.conc < 1 || o.users < 0:
		return errors.New("-n, -events, -dial must be positive, -sources 1..250, -users not negative")
	case amount < lending.MinInvestment:
		return fmt.Errorf("-amount must be at least %v", lending.MinInvestment)
	case lending.Money(o.events)*amount >= lending.MaxLoan:
		return fmt.Errorf("%d investments of %v would fund the loan (R$ %v): fewer events or a smaller amount", o.events, amount, lending.MaxLoan)
	case !strings.Contains(o.fields, "fundedAmount"):
		return errors.New("-fields must select fundedAmount")
	}
	if o.users == 0 || o.users > o.n {
		o.users = o.n
	}
	return fanoutMain(ctx, o, amount)
}

func fanoutMain(ctx context.Context, o fanoutOpts, amount lending.Money) error {
	out := os.Stdout
	lim, err := fanoutRaiseNoFile(uint64(2*o.n) + 1024)
	if err != nil {
		if lim.Cur < uint64(o.n)+256 {
			return err
		}
		fmt.Fprintf(out, "note: %v; this process holds only the %d clients (the server is another process)\n", err, o.n)
	}
	fmt.Fprintf(out, "fanout: %d clients (%d users), %d events of R$ %v, %d CPUs, GOMAXPROCS %d, RLIMIT_NOFILE %d, load %s\n",
		o.n, o.users, o.events, amount, runtime.NumCPU(), runtime.GOMAXPROCS(0), lim.Cur, loadAvg())

	// database and accounts
	db, err := createDB(ctx)
	if err != nil {
		return err
	}
	defer func() {
		if o.keep {
			fmt.Fprintf(out, "kept database %s\n", db.Name)
			db.Pool.Close()
			return
		}
		if err := db.Drop(); err != nil {
			fmt.Fprintf(os.Stderr, "drop %s: %v\n", db.Name, err)
		}
	}()
	seed, err := seedFanout(ctx, db.Pool, o.users, lending.Money(o.events)*amount+1000_00)
	if err != nil {
		return fmt.Errorf("seed: %w", err)
	}
	perUser := (o.n + o.users - 1) / o.users
	env := envFlag{}
	for k, v := range unlimitedRates {
		env[k] = v
	}
	env["JWT_SECRET"] = "fanout-" + randHex(24)
	env["JWT_ISSUER"] = "mutuo"
	env["JWT_AUDIENCE"] = "mutuo-api"
	env["REDIS_PREFIX"] = "bench:fanout:" + randHex(6) + ":"
	if perUser > 10 {
		env["WS_MAX_SOCKETS_PER_USER"] = "-1"
	}
	for k, v := range o.env {
		env[k] = v
	}
	if strings.TrimSpace(env["JWT_PRIVATE_KEY_FILE"]) != "" {
		return errors.New("fanout mints HS256 tokens: leave JWT_PRIVATE_KEY_FILE unset")
	}
	minter := fanoutTokenMinter{secret: []byte(env["JWT_SECRET"]), issuer: env["JWT_ISSUER"], audience: env["JWT_AUDIENCE"], ttl: time.Hour}
	t := time.Now()
	tokens := make([]string, len(seed.UserIDs))
	for i, id := range seed.UserIDs {
		if tokens[i], err = minter.mint(id, []lending.Role{lending.RoleInvestor}); err != nil {
			return fmt.Errorf("mint token: %w", err)
		}
	}
	if err := minter.checkToken(ctx, db.Pool, env["REDIS_PREFIX"], tokens[0], seed.UserIDs[0]); err != nil {
		return err
	}
	fmt.Fprintf(out, "seeded %d investor users + 1 borrower and loan %d (R$ %v) in %v; minted %d access tokens in %v (one checked with auth.Service.Authenticate)\n",
		len(seed.UserIDs), seed.LoanID, seed.LoanAmount, seed.Took.Round(time.Millisecond), len(tokens), time.Since(t).Round(time.Millisecond))
	if perUser > 1 {
		fmt.Fprintf(out, "  %d sockets per user; WS_MAX_SOCKETS_PER_USER=%q\n", perUser, env["WS_MAX_SOCKETS_PER_USER"])
	}

	// the server process
	srv, err := startFanoutServer(ctx, db.URL, env, o.n, o.memRate)
	if err != nil {
		return err
	}
	defer srv.stop()
	u, _ := url.Parse(srv.url)
	wsURL := "ws://" + u.Host + "/graphql"
	fmt.Fprintf(out, "server: pid %d at %s (outbox relay and broker running)\n", srv.pid, wsURL)

	loanGID := lending.GlobalID(lending.KindLoan, seed.LoanID)
	subs := fanoutSubscribe(loanGID, o.fields)
	srcs := make([]net.IP, o.sources)
	for i := range srcs {
		srcs[i] = net.IPv4(127, 0, 0, byte(2+i))
	}
	// warm-up: one client through the whole path, so that one-time costs
	// (query cache, pools, lazy init) are in the baseline, not per socket
	if c, err := dialFanout(ctx, wsURL, srcs[0], tokens[0], subs); err != nil {
		return fmt.Errorf("warm-up client: %w", err)
	} else {
		_ = c.Close()
	}
	time.Sleep(time.Second)
	before, err := srv.stats(false)
	if err != nil {
		return err
	}
	beforeGC, err := srv.stats(true)
	if err != nil {
		return err
	}

	// connect
	run := newFanoutRun(o.n, o.events, amount)
	t = time.Now()
	clients, failed, cerr := connectFanout(ctx, wsURL, o.n, o.conc, srcs, tokens, subs, fanoutProgress(o.n))
	connectTook := time.Since(t)
	defer run.closeAll(clients)
	if ctx.Err() != nil {
		return ctx.Err()
	}
	fmt.Fprintf(out, "connected %d/%d clients in %v (%.0f/s) from %d source addresses", len(clients), o.n,
		connectTook.Round(time.Millisecond), float64(len(clients))/connectTook.Seconds(), len(srcs))
	if failed > 0 {
		fmt.Fprintf(out, "; %d failed, first: %v", failed, cerr)
	}
	fmt.Fprintln(out)
	if len(clients) == 0 {
		return errors.New("no client connected")
	}
	run.start(clients)

	// idle
	time.Sleep(o.settle)
	idle, err := srv.stats(false)
	if err != nil {
		return err
	}
	idleGC, err := srv.stats(true)
	if err != nil {
		return err
	}
	if o.heapProfile != "" {
		if err := srv.post("/bench/heap", o.heapProfile); err != nil {
			return fmt.Errorf("heap profile: %w", err)
		}
	}
	clientRSS, _ := fanoutProcStatus(os.Getpid(), "VmRSS")
	clientG := runtime.NumGoroutine()

	// events: investments through the store, on this process's pool
	st := store.New(db.Pool)
	investTook := make([]time.Duration, 0, o.events)
	sampler := fanoutStartRSSSampler(srv.pid, 100*time.Millisecond)
	cpu0, _ := procCPU(srv.pid)
	self0 := selfCPU()
	dbc := dbCPU{pool: db.Pool, name: db.Name}
	pg0 := dbc.snapshot(ctx)
	if o.cpuProfile != "" {
		if err := srv.post("/bench/cpu/start", o.cpuProfile); err != nil {
			return fmt.Errorf("CPU profile: %w", err)
		}
	}
	idem := randHex(4)
	commits, timedOut, phaseTook, err := fanoutDrive(ctx, run, o, func(k int) (int64, error) {
		v := lending.Viewer{UserID: seed.UserIDs[k%len(seed.UserIDs)], Roles: []lending.Role{lending.RoleInvestor}}
		t0 := time.Now()
		if _, err := st.Invest(ctx, v, seed.LoanID, amount, fmt.Sprintf("fanout-%s-%d", idem, k), time.Now()); err != nil {
			return 0, fmt.Errorf("invest %d: %w", k, err)
		}
		c := run.since() // "commit": store.Invest has returned
		investTook = append(investTook, time.Since(t0))
		return c, nil
	})
	if err != nil {
		return err
	}
	if o.cpuProfile != "" {
		if err := srv.post("/bench/cpu/stop", ""); err != nil {
			return fmt.Errorf("CPU profile: %w", err)
		}
	}
	serverCPU := time.Duration(0)
	if cpu1, ok := procCPU(srv.pid); ok {
		serverCPU = cpu1 - cpu0
	}
	clientCPU := selfCPU() - self0
	pgCPU, pgOK := since(pg0, dbc.snapshot(ctx))
	peakRSS := sampler.stop()
	during, err := srv.stats(false)
	if err != nil {
		return err
	}
	groups, _ := srv.statsGroups()

	// the outbox's view: when each loan event was written and picked up
	type fanoutOutboxRow struct{ created, published time.Time }
	var rows []fanoutOutboxRow
	if rs, err := db.Pool.Query(ctx, `SELECT created_at, coalesce(published_at, 'epoch') FROM outbox WHERE stream = $1 ORDER BY id`,
		fmt.Sprintf("loan:%d", seed.LoanID)); err == nil {
		for rs.Next() {
			var r fanoutOutboxRow
			if rs.Scan(&r.created, &r.published) == nil {
				rows = append(rows, r)
			}
		}
		rs.Close()
	}
	run.closeAll(clients)
	if ctx.Err() != nil {
		return ctx.Err()
	}
	held := len(clients) - int(run.dropped.Load())
	del := fanoutMeasure(run, clients, commits)

	// the baseline, same server process and clients
	var raw *fanoutRawResult
	if o.baseline {
		if raw, err = fanoutRawBaseline(ctx, o, srv, "ws://"+u.Host+"/bench/raw", srcs, tokens, amount); err != nil {
			return fmt.Errorf("baseline: %w", err)
		}
	}

	// figures
	srv.logRepeats()
	slices.Sort(investTook)
	kib := func(b float64) string { return fmt.Sprintf("%.1f KiB", b/1024) }
	mib := func(b int64) string { return fmt.Sprintf("%.1f MiB", float64(b)/(1<<20)) }
	nc := float64(len(clients))
	ev := float64(o.events)

	fmt.Fprintf(out, "\nconnections held: %d of %d opened (server: %d sockets, %d operations, %d hub subscriptions); dropped during the run: %d",
		held, len(clients), idle.Sockets, idle.Operations, idle.HubSubscribers, run.dropped.Load())
	if run.dropped.Load() > 0 {
		fmt.Fprintf(out, " (first: %s)", run.firstDrop)
	}
	fmt.Fprintln(out)

	fmt.Fprintf(out, "\nevents: %d investments in %v", o.events, phaseTook.Round(time.Millisecond))
	if o.rate > 0 {
		fmt.Fprintf(out, " (one every %v)", o.rate)
	} else {
		fmt.Fprintf(out, " (one at a time; %v pause once an event reached every client)", o.interval)
	}
	fmt.Fprintf(out, "; store.Invest p50 %s\n", ms(fanoutPct(investTook, 50)))
	fmt.Fprintf(out, "  delivered: %d loanUpdated messages of %d expected (%d missing, %d events timed out); %d notificationAdded (expected %d); %d unexpected messages\n",
		len(del.all), o.events*len(clients), del.missing, len(timedOut), run.notifs.Load(), o.events, run.unexpected.Load())
	if p := run.firstOdd.Load(); p != nil {
		fmt.Fprintf(out, "  first unexpected message: %s\n", *p)
	}
	fmt.Fprintf(out, "  delivered events/s: %.0f loanUpdated messages/s over the phase (pauses included); %.0f/s while fanning out (N / median time to reach all N)\n",
		float64(len(del.all))/phaseTook.Seconds(), nc/fanoutPct(del.last, 50).Seconds())
	fmt.Fprintf(out, "  latency from commit (store.Invest returned) to receipt:\n")
	del.print(out, "    ")
	if len(rows) == o.events+1 { // the loan request's event, then ours
		alt := make([]int64, o.events)
		var pick []time.Duration
		for k := range o.events {
			alt[k] = int64(rows[k+1].created.Sub(run.base))
			if rows[k+1].published.Year() > 1970 {
				pick = append(pick, rows[k+1].published.Sub(run.base.Add(time.Duration(commits[k]))))
			}
		}
		slices.Sort(pick)
		fmt.Fprintf(out, "  latency from the outbox row's created_at (clock_timestamp() at insert, inside the transaction; wall clocks) to receipt:\n")
		fanoutMeasure(run, clients, alt).print(out, "    ")
		fmt.Fprintf(out, "  commit → relay's publishing transaction began (published_at = now()): p50 %s  p99 %s\n", ms(fanoutPct(pick, 50)), ms(fanoutPct(pick, 99)))
	}
	fmt.Fprintf(out, "  CPU per event: server %s, clients %s", ms(time.Duration(float64(serverCPU)/ev)), ms(time.Duration(float64(clientCPU)/ev)))
	if pgOK {
		fmt.Fprintf(out, ", Postgres %s", ms(time.Duration(float64(pgCPU)/ev)))
	}
	fmt.Fprintf(out, "; server %.1f µs per delivered message\n", float64(serverCPU.Microseconds())/max(1, float64(len(del.all))))

	fmt.Fprintf(out, "\nserver memory (VmRSS of the server process, pid %d):\n", srv.pid)
	fmt.Fprintf(out, "  before connecting %s; idle with %d clients %s; peak during the events %s; after %s\n",
		mib(before.RSS), len(clients), mib(idle.RSS), mib(max(peakRSS, during.RSS)), mib(during.RSS))
	fmt.Fprintf(out, "  per idle connection (two subscriptions): %s = (RSS idle − RSS before) / N\n", kib(float64(idle.RSS-before.RSS)/nc))
	fmt.Fprintf(out, "  the same after a GC that returns free memory to the OS: %s per connection; of which Go heap in use %s, goroutine stacks %s\n",
		kib(float64(idleGC.RSS-beforeGC.RSS)/nc), kib((float64(idleGC.HeapInuse)-float64(beforeGC.HeapInuse))/nc),
		kib((float64(idleGC.StackInuse)-float64(beforeGC.StackInuse))/nc))
	fmt.Fprintf(out, "\nserver goroutines: %d before, %d idle → %.2f per connection; OS threads %d\n",
		before.Goroutines, idle.Goroutines, float64(idle.Goroutines-before.Goroutines)/nc, idle.Threads)
	for i, g := range groups {
		if i == 12 || g.Count < max(2, len(clients)/20) {
			break
		}
		fmt.Fprintf(out, "  %6d  %.2f/conn  %s\n", g.Count, float64(g.Count)/nc, g.Func)
	}
	fmt.Fprintf(out, "\nclients (this process): RSS %s idle, %d goroutines; %d server pings answered\n", mib(clientRSS), clientG, run.pings.Load())

	if raw != nil {
		rn := float64(raw.connected)
		fmt.Fprintf(out, "\nbaseline, same server process and clients: /bench/raw, gorilla/websocket with the app's upgrader settings, one goroutine per socket,\n"+
			"one message marshalled once (PreparedMessage) written to every socket by %d goroutines; \"commit\" = before the POST that triggers it\n", runtime.GOMAXPROCS(0))
		fmt.Fprintf(out, "  connected %d in %v; delivered %d of %d (%d missing)\n", raw.connected, raw.connectTook.Round(time.Millisecond),
			len(raw.del.all), o.events*raw.connected, raw.del.missing)
		raw.del.print(out, "    ")
		fmt.Fprintf(out, "  server CPU per event %s (%.1f µs per delivered message); per idle socket after a GC: %s (heap %s, stacks %s), %.2f goroutines\n",
			ms(time.Duration(float64(raw.serverCPU)/ev)), float64(raw.serverCPU.Microseconds())/max(1, float64(len(raw.del.all))),
			kib(float64(raw.idle.RSS-raw.before.RSS)/rn), kib((float64(raw.idle.HeapInuse)-float64(raw.before.HeapInuse))/rn),
			kib((float64(raw.idle.StackInuse)-float64(raw.before.StackInuse))/rn), float64(raw.idle.Goroutines-raw.before.Goroutines)/rn)
		ratio := func(a, b time.Duration) string {
			if b <= 0 {
				return "-"
			}
			return fmt.Sprintf("%.1f×", float64(a)/float64(b))
		}
		fmt.Fprintf(out, "  app / baseline: p50 %s, p99 %s, last-of-N p50 %s, server CPU per message %s, heap+stacks per idle socket %.1f×\n",
			ratio(fanoutPct(del.all, 50), fanoutPct(raw.del.all, 50)), ratio(fanoutPct(del.all, 99), fanoutPct(raw.del.all, 99)),
			ratio(fanoutPct(del.last, 50), fanoutPct(raw.del.last, 50)),
			ratio(time.Duration(float64(serverCPU)/max(1, float64(len(del.all)))), time.Duration(float64(raw.serverCPU)/max(1, float64(len(raw.del.all))))),
			((float64(idleGC.HeapInuse)+float64(idleGC.StackInuse)-float64(beforeGC.HeapInuse)-float64(beforeGC.StackInuse))/nc)/
				max(1, (float64(raw.idle.HeapInuse)+float64(raw.idle.StackInuse)-float64(raw.before.HeapInuse)-float64(raw.before.StackInuse))/rn))
	}

	// aims
	p99 := fanoutPct(del.all, 99)
	perConn := float64(idle.RSS-before.RSS) / nc
	fmt.Fprintf(out, "\naims: %d connections held %s; p99 %s < 100ms %s; %s per idle connection ≤ 20 KiB %s\n",
		held, fanoutOK(held >= 10000), ms(p99), fanoutOK(p99 < 100*time.Millisecond && del.missing == 0), kib(perConn), fanoutOK(perConn <= 20*1024))
	if o.cpuProfile != "" {
		fmt.Fprintf(out, "server CPU profile over the events: %s (go tool pprof -top %s)\n", o.cpuProfile, o.cpuProfile)
	}
	if o.heapProfile != "" {
		fmt.Fprintf(out, "server heap profile, idle with every client: %s (go tool pprof -sample_index=inuse_space -top %s)\n", o.heapProfile, o.heapProfile)
	}
	if len(timedOut) > 0 {
		return fmt.Errorf("%d events did not reach every client within %v", len(timedOut), o.timeout)
	}
	return nil
}

// fanoutProgress shows the connections on a terminal.
func fanoutProgress(n int) func(int) {
	if fi, err := os.Stderr.Stat(); err != nil || fi.Mode()&os.ModeCharDevice == 0 {
		return nil
	}
	return func(d int) {
		fmt.Fprintf(os.Stderr, "\r  connected %d/%d", d, n)
		if d == n {
			fmt.Fprintf(os.Stderr, "\r%30s\r", "")
		}
	}
}

func fanoutPct(s []time.Duration, p float64) time.Duration {
	if len(s) == 0 {
		return 0
	}
	i := int(float64(len(s))*p/100+0.5) - 1
	return s[max(0, min(i, len(s)-1))]
}

// fanoutDrive triggers the run's events, one at a time (each once every
// client has it, after o.interval) or every o.rate, and waits for them;
// trigger returns the event's "commit" time (fanoutRun.since).
func fanoutDrive(ctx context.Context, run *fanoutRun, o fanoutOpts, trigger func(k int) (int64, error)) (
	commits []int64, timedOut []int, took time.Duration, err error) {
	commits = make([]int64, len(run.events))
	start := time.Now()
	for k := 0; k < len(run.events) && ctx.Err() == nil; k++ {
		if commits[k], err = trigger(k); err != nil {
			return nil, nil, 0, err
		}
		if o.rate > 0 {
			if d := time.Until(start.Add(time.Duration(k+1) * o.rate)); d > 0 {
				time.Sleep(d)
			}
			continue
		}
		select {
		case <-run.events[k].done:
		case <-time.After(o.timeout):
			timedOut = append(timedOut, k)
		case <-ctx.Done():
		}
		if k < len(run.events)-1 {
			time.Sleep(o.interval)
		}
	}
	if o.rate > 0 {
		deadline := time.After(o.timeout)
		for k, e := range run.events {
			select {
			case <-e.done:
				continue
			case <-deadline:
			case <-ctx.Done():
			}
			timedOut = append(timedOut, k)
		}
	}
	return commits, timedOut, time.Since(start), ctx.Err()
}

// fanoutDeliveries are a run's latencies, sorted.
type fanoutDeliveries struct {
	all         []time.Duration // every (event, client) received
	last, first []time.Duration // per event: its last and first receipt
	missing     int
}

func fanoutMeasure(run *fanoutRun, clients []*fanoutClient, commits []int64) fanoutDeliveries {
	var d fanoutDeliveries
	for k, e := range run.events {
		first, last, got := time.Duration(1<<62), time.Duration(0), 0
		for _, c := range clients {
			r := e.recv[c.idx]
			if r == 0 {
				d.missing++
				continue
			}
			l := time.Duration(r - commits[k])
			d.all = append(d.all, l)
			first, last = min(first, l), max(last, l)
			got++
		}
		if got > 0 {
			d.first = append(d.first, first)
			d.last = append(d.last, last)
		}
	}
	slices.Sort(d.all)
	slices.Sort(d.last)
	slices.Sort(d.first)
	return d
}

func (d fanoutDeliveries) print(w io.Writer, indent string) {
	fmt.Fprintf(w, "%severy delivery (%d): p50 %s  p90 %s  p99 %s  max %s  (min %s)\n", indent,
		len(d.all), ms(fanoutPct(d.all, 50)), ms(fanoutPct(d.all, 90)), ms(fanoutPct(d.all, 99)), ms(fanoutPct(d.all, 100)), ms(fanoutPct(d.all, 0)))
	fmt.Fprintf(w, "%sper event, its last client (%d events): p50 %s  p99 %s  max %s; its first client: p50 %s\n", indent,
		len(d.last), ms(fanoutPct(d.last, 50)), ms(fanoutPct(d.last, 99)), ms(fanoutPct(d.last, 100)), ms(fanoutPct(d.first, 50)))
}

// fanoutRawResult is the baseline's.
type fanoutRawResult struct {
	connected    int
	connectTook  time.Duration
	del          fanoutDeliveries
	serverCPU    time.Duration
	before, idle fanoutServerStats // after a GC
}

// fanoutRawBaseline waits for the app's sockets to be gone, connects the
// clients to /bench/raw and drives the same number of events.
func fanoutRawBaseline(ctx context.Context, o fanoutOpts, srv *fanoutServer, rawURL string, srcs []net.IP, tokens []string, amount lending.Money) (*fanoutRawResult, error) {
	deadline := time.Now().Add(15 * time.Second)
	for {
		st, err := srv.stats(false)
		if err != nil {
			return nil, err
		}
		if st.Sockets == 0 || time.Now().After(deadline) {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	time.Sleep(500 * time.Millisecond)
	r := &fanoutRawResult{}
	var err error
	if r.before, err = srv.stats(true); err != nil {
		return nil, err
	}
	run := newFanoutRun(o.n, o.events, amount)
	t := time.Now()
	clients, failed, cerr := connectFanout(ctx, rawURL, o.n, o.conc, srcs, tokens, fanoutSubscribe("-", "fundedAmount"), fanoutProgress(o.n))
	r.connectTook, r.connected = time.Since(t), len(clients)
	defer run.closeAll(clients)
	if len(clients) == 0 {
		return nil, fmt.Errorf("no client connected (%d failed): %v", failed, cerr)
	}
	run.start(clients)
	time.Sleep(time.Second)
	if r.idle, err = srv.stats(true); err != nil {
		return nil, err
	}
	cpu0, _ := procCPU(srv.pid)
	commits, _, _, err := fanoutDrive(ctx, run, o, func(k int) (int64, error) {
		c := run.since()
		return c, srv.post("/bench/raw/send?funded="+run.fundedOf(k), "")
	})
	if err != nil {
		return nil, err
	}
	if cpu1, ok := procCPU(srv.pid); ok {
		r.serverCPU = cpu1 - cpu0
	}
	run.closeAll(clients)
	r.del = fanoutMeasure(run, clients, commits)
	return r, nil
}

func fanoutOK(ok bool) string {
	if ok {
		return "(met)"
	}
	return "(MISSED)"
}

// fanoutServer is the child process.
type fanoutServer struct {
	cmd   *exec.Cmd
	pid   int
	url   string
	stdin io.WriteCloser
	http  *http.Client
	done  chan error
	once  sync.Once

	logDone chan struct{}
	logMu   sync.Mutex
	repeats map[string]int // log message → lines after the first
	order   []string
}

// relayLog copies the server's log to stderr, each message once: a close
// storm of 10,000 sockets logs the same warning thousands of times.
func (s *fanoutServer) relayLog(r io.Reader) {
	defer close(s.logDone)
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		key := line
		if i := strings.Index(line, " msg="); i >= 0 {
			key = line[i+1:]
		}
		s.logMu.Lock()
		n, seen := s.repeats[key]
		if seen {
			s.repeats[key] = n + 1
		} else {
			s.repeats[key] = 0
			s.order = append(s.order, key)
		}
		s.logMu.Unlock()
		if !seen {
			fmt.Fprintln(os.Stderr, "server:", line)
		}
	}
}

// logRepeats summarizes the repeated log lines.
func (s *fanoutServer) logRepeats() {
	s.logMu.Lock()
	defer s.logMu.Unlock()
	for _, k := range s.order {
		if n := s.repeats[k]; n > 0 {
			fmt.Fprintf(os.Stderr, "server: … and %d more of: %s\n", n, k)
			s.repeats[k] = 0
		}
	}
}

func startFanoutServer(ctx context.Context, dbURL string, env envFlag, n, memRate int) (*fanoutServer, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("the benchmark's own executable: %w", err)
	}
	args := []string{"fanout", "-server", "-db", dbURL, "-n", fmt.Sprint(n), "-memprofilerate", fmt.Sprint(memRate)}
	for k, v := range env {
		args = append(args, "-env", k+"="+v)
	}
	cmd := exec.Command(exe, args...)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		return nil, err
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start the server process: %w", err)
	}
	s := &fanoutServer{cmd: cmd, pid: cmd.Process.Pid, stdin: stdin, done: make(chan error, 1),
		http: &http.Client{Timeout: 60 * time.Second}, logDone: make(chan struct{}), repeats: map[string]int{}}
	go s.relayLog(stderr)
	ready := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			if u, ok := strings.CutPrefix(sc.Text(), "READY "); ok {
				ready <- u
			} else {
				fmt.Fprintln(os.Stderr, "server:", sc.Text())
			}
		}
		<-s.logDone // Wait closes the pipes: read them to the end first
		s.done <- cmd.Wait()
	}()
	select {
	case s.url = <-ready:
		return s, nil
	case err := <-s.done:
		return nil, fmt.Errorf("the server process exited: %v", err)
	case <-time.After(60 * time.Second):
		s.stop()
		return nil, errors.New("the server process was not ready within 60s")
	case <-ctx.Done():
		s.stop()
		return nil, ctx.Err()
	}
}

// stop closes the server's stdin (it shuts down) and waits, killing it
// after 20 s.
func (s *fanoutServer) stop() {
	s.once.Do(func() {
		_ = s.stdin.Close()
		select {
		case <-s.done:
		case <-time.After(20 * time.Second):
			_ = s.cmd.Process.Kill()
			<-s.done
		}
		<-s.logDone
		s.logRepeats()
	})
}

func (s *fanoutServer) stats(gc bool) (fanoutServerStats, error) {
	q := ""
	if gc {
		q = "?gc=1"
	}
	var st fanoutServerStats
	resp, err := s.http.Get(s.url + "/bench/stats" + q)
	if err != nil {
		return st, fmt.Errorf("server stats: %w", err)
	}
	defer resp.Body.Close()
	return st, json.NewDecoder(resp.Body).Decode(&st)
}

func (s *fanoutServer) statsGroups() ([]fanoutGoroutineGroup, error) {
	resp, err := s.http.Get(s.url + "/bench/stats?groups=1")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var st fanoutServerStats
	err = json.NewDecoder(resp.Body).Decode(&st)
	return st.Groups, err
}

func (s *fanoutServer) post(path, file string) error {
	q := ""
	if file != "" {
		abs, err := fanoutAbsPath(file)
		if err != nil {
			return err
		}
		q = "?path=" + url.QueryEscape(abs)
	}
	resp, err := s.http.Post(s.url+path+q, "text/plain", nil)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 300))
		return fmt.Errorf("%s: HTTP %d: %s", path, resp.StatusCode, b)
	}
	return nil
}

func fanoutAbsPath(p string) (string, error) {
	if strings.HasPrefix(p, "/") {
		return p, nil
	}
	wd, err := os.Getwd()
	if err != nil {
		return "", err
	}
	return wd + "/" + p, nil
}

// fanoutRSSSampler records a process's peak VmRSS.
type fanoutRSSSampler struct {
	stopc chan struct{}
	peak  chan int64
}

func fanoutStartRSSSampler(pid int, every time.Duration) *fanoutRSSSampler {
	s := &fanoutRSSSampler{stopc: make(chan struct{}), peak: make(chan int64, 1)}
	go func() {
		var peak int64
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			if r, err := fanoutProcStatus(pid, "VmRSS"); err == nil {
				peak = max(peak, r)
			}
			select {
			case <-s.stopc:
				s.peak <- peak
				return
			case <-t.C:
			}
		}
	}()
	return s
}

func (s *fanoutRSSSampler) stop() int64 {
	close(s.stopc)
	return <-s.peak
}
