package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"reflect"
	"runtime"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"mutuo/lending"
	"mutuo/store"
)

func init() {
	register(command{
		name:    "query",
		summary: "the marketplace query (loans → borrower → user, investments → investor) against the same page by hand-written SQL",
		run:     runQuery,
	})
}

// marketplaceQuery is issue 2's marketplace page; $n is N (50).
const marketplaceQuery = `query Marketplace($n: Int, $inv: Int, $orderBy: LoanOrder, $after: String) {
  loans(first: $n, orderBy: $orderBy, after: $after) { edges { node { id amount annualRate
    borrower { displayName user { name } }
    investments(first: $inv) { edges { node { amount investor { displayName } } } } } } } }`

// cursorsQuery walks the pages to collect their cursors (setup only).
const cursorsQuery = `query($n: Int, $orderBy: LoanOrder, $after: String) {
  loans(first: $n, orderBy: $orderBy, after: $after) { pageInfo { endCursor hasNextPage } } }`

// loanOrder is one marketplace order.
type loanOrder struct {
	Field string // a LoanOrderField
	Desc  bool
}

func (o loanOrder) direction() string {
	if o.Desc {
		return "DESC"
	}
	return "ASC"
}

// tag is the store's cursor tag for the order (store.LoanOrder.tag).
func (o loanOrder) tag() string { return "loans:" + o.Field + ":" + strings.ToLower(o.direction()) }

var orderColumns = map[string]string{
	"CREATED_AT":       "created_at",
	"ANNUAL_RATE":      "annual_rate_bps",
	"AMOUNT":           "amount",
	"FUNDING_DEADLINE": "funding_deadline",
}

// marketPage is one request of the workload: an order and a cursor.
type marketPage struct {
	Order loanOrder
	After string // "" for the first page
	Index int    // 1-based page number in the order

	gqlBody   []byte // the GraphQL request body
	directURL string // path and query of the baseline request
}

type queryFlags struct {
	c           int
	d, warmup   time.Duration
	waits       []time.Duration
	rounds      int
	n, inv      int
	pages       int
	poolMax     int
	scale       float64
	keep        bool
	cpuprofile  string
	cpuprofileD string
	env         envFlag
}

// queryRun is one measured run: GraphQL at a loader wait, or the baseline.
type queryRun struct {
	Round   int
	GraphQL bool
	Wait    time.Duration
	Res     loadResult
	Stmts   int64
	SelfCPU time.Duration // this process: server (or baseline handler) and load generator
	DBCPU   time.Duration // the Postgres backends of the bench database
	DBOK    bool
}

func (r queryRun) name() string {
	if r.GraphQL {
		return "GraphQL"
	}
	return "direct pgx"
}

func (r queryRun) waitString() string {
	if r.GraphQL {
		return r.Wait.String()
	}
	return "-"
}

func (r queryRun) perReq(d time.Duration) string {
	if r.Res.Requests == 0 {
		return "-"
	}
	return ms(d / time.Duration(r.Res.Requests))
}

// cpuPerReq is the CPU per request in ms, with the database's share when withDB.
func (r queryRun) cpuPerReq(withDB bool) float64 {
	if r.Res.Requests == 0 {
		return 0
	}
	t := r.SelfCPU
	if withDB && r.DBOK {
		t += r.DBCPU
	}
	return float64(t) / float64(r.Res.Requests) / float64(time.Millisecond)
}

func runQuery(ctx context.Context, fs *flag.FlagSet, args []string) error {
	f := queryFlags{env: envFlag{}}
	for k, v := range unlimitedRates {
		f.env[k] = v
	}
	var waits string
	fs.IntVar(&f.c, "c", 16, "concurrent clients")
	fs.DurationVar(&f.d, "d", 10*time.Second, "measured duration of each run")
	fs.DurationVar(&f.warmup, "warmup", 2*time.Second, "unmeasured warm-up before each run")
	fs.StringVar(&waits, "loader-wait", "2ms", "dataloader wait (app.Config.LoaderWait); a comma-separated list runs GraphQL once per value")
	fs.IntVar(&f.rounds, "rounds", 1, "repeat the runs (every loader wait, then the baseline) this many times, interleaved")
	fs.IntVar(&f.n, "n", 50, "loans per page (first:)")
	fs.IntVar(&f.inv, "inv", 10, "investments per loan (investments(first:))")
	fs.IntVar(&f.pages, "pages", 3, "pages per order (8 orders: 4 fields × ASC/DESC)")
	fs.IntVar(&f.poolMax, "pool-max-conns", 0, "pgx pool size (pool_max_conns) for the server; the baseline's pool always has the server's size (0: the server's default)")
	fs.Float64Var(&f.scale, "scale", 1, "dataset scale (1: 2,000 borrowers, 500 investors, 10,000 loans, 50,000 investments)")
	fs.BoolVar(&f.keep, "keep", false, "keep the database (its URL is printed)")
	fs.StringVar(&f.cpuprofile, "cpuprofile", "", "write a CPU profile of the first GraphQL measured window to this file")
	fs.StringVar(&f.cpuprofileD, "cpuprofile-direct", "", "write a CPU profile of the first baseline measured window to this file")
	fs.Var(f.env, "env", "KEY=VALUE server configuration variable (repeatable); LOADER_WAIT comes from -loader-wait")
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "usage: go run ./bench query [flags]\n\n"+
			"Seeds a marketplace into its own database, starts the server in-process and drives the\n"+
			"marketplace query at a fixed concurrency for a fixed time, then the same pages fetched by one\n"+
			"hand-written SQL statement (pgx, same HTTP server stack, same JSON) for the same time.\n\nflags:\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	for _, k := range []string{"LOADER_WAIT", "DATABASE_URL"} {
		if _, ok := f.env[k]; ok {
			return fmt.Errorf("-env %s: the benchmark sets it (see -loader-wait, -pool-max-conns)", k)
		}
	}
	for _, s := range strings.Split(waits, ",") {
		w, err := time.ParseDuration(strings.TrimSpace(s))
		if err != nil || w < 0 {
			return fmt.Errorf("-loader-wait: bad duration %q", s)
		}
		f.waits = append(f.waits, w)
	}
	if f.c < 1 || f.d <= 0 || f.n < 1 || f.n > 100 || f.inv < 1 || f.pages < 1 || f.scale <= 0 || f.rounds < 1 {
		return errors.New("need -c >= 1, -d > 0, 1 <= -n <= 100, -inv >= 1, -pages >= 1, -scale > 0, -rounds >= 1")
	}

	// database
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
	st, err := seedMarketplace(ctx, db.Pool, defaultSizes.scaled(f.scale))
	if err != nil {
		return err
	}
	if st.Funding < f.n*f.pages {
		return fmt.Errorf("only %d FUNDING loans for %d pages of %d", st.Funding, f.pages, f.n)
	}
	serverURL := withPoolMax(db.URL, f.poolMax)
	client := newHTTPClient(f.c)
	dbcpu := dbCPU{pool: db.Pool, name: db.Name}

	// the baseline, served by the same net/http stack from a pool of the
	// server's size (started with the first server, to learn that size)
	dstmts := &stmtCounter{}
	var dsrv *httptest.Server
	var dpool *pgxpool.Pool
	defer func() {
		if dsrv != nil {
			dsrv.Close()
			dpool.Close()
		}
	}()
	startDirect := func(maxConns int32) error {
		pcfg, err := pgxpool.ParseConfig(serverURL)
		if err != nil {
			return err
		}
		pcfg.MaxConns = maxConns
		pcfg.ConnConfig.Tracer = dstmts
		if dpool, err = pgxpool.NewWithConfig(ctx, pcfg); err != nil {
			return err
		}
		dmux := http.NewServeMux()
		dmux.Handle("/direct", newDirectHandler(dpool, f.n, f.inv))
		dsrv = httptest.NewServer(dmux)
		return nil
	}

	fmt.Printf("bench query: GOMAXPROCS=%d NumCPU=%d %s; Postgres %s; load average %s\n",
		runtime.GOMAXPROCS(0), runtime.NumCPU(), runtime.Version(), strings.SplitN(adminURL(), "?", 2)[0], loadAvg())
	fmt.Printf("dataset %s: %d borrowers, %d investors, %d loans (%d FUNDING, %d of them with investments), %d investments "+
		"(%d loans with 10+, max %d on one); seeded in %s, ANALYZE %s\n",
		db.Name, st.Sizes.Borrowers, st.Sizes.Investors, st.Sizes.Loans, st.Funding, st.FundingWith, st.Sizes.Investments,
		st.Loans10Plus, st.MaxPerLoan, st.Took.Round(time.Millisecond), st.AnalyzeTook.Round(time.Millisecond))

	// measure runs one window, counting statements and CPU.
	measure := func(run *queryRun, stmts *stmtCounter, profile string, do func(ctx context.Context, w, seq int, buf *bytes.Buffer) error) error {
		var s0 int64
		var c0 time.Duration
		var d0, d1 map[int]time.Duration
		hooks := loadHooks{
			Start: func() { d0 = dbcpu.snapshot(ctx); s0, c0 = stmts.Load(), selfCPU() },
			Stop:  func() { run.SelfCPU, run.Stmts = selfCPU()-c0, stmts.Load()-s0; d1 = dbcpu.snapshot(ctx) },
		}
		var stop func()
		if profile != "" {
			var err error
			if hooks, stop, err = withProfile(hooks, profile); err != nil {
				return err
			}
		}
		run.Res = runLoad(ctx, f.c, f.warmup, f.d, hooks, do)
		if stop != nil {
			stop()
		}
		run.DBCPU, run.DBOK = since(d0, d1)
		return ctx.Err()
	}

	var pages []*marketPage
	var runs []queryRun
	profiledG, profiledD := false, false
	for round := 1; round <= f.rounds; round++ {
		for _, wait := range f.waits {
			run := queryRun{Round: round, GraphQL: true, Wait: wait}
			srv, err := startServer(ctx, serverURL, serverOpts{LoaderWait: wait, Env: f.env})
			if err != nil {
				return err
			}
			err = func() error {
				defer srv.Close()
				token, err := signUp(ctx, client, srv.URL, "INVESTOR")
				if err != nil {
					return err
				}
				if pages == nil {
					if err := startDirect(srv.App.Pool.Config().MaxConns); err != nil {
						return err
					}
					if pages, err = buildPages(ctx, client, srv.URL, token, f); err != nil {
						return err
					}
					if err := verifyPages(ctx, client, srv.URL, dsrv.URL, token, pages, f); err != nil {
						return err
					}
					fmt.Printf("workload: %d pages (4 orders × ASC/DESC × pages 1..%d), N=%d loans, investments(first: %d); "+
						"GraphQL and SQL pages verified identical\n", len(pages), f.pages, f.n, f.inv)
					fmt.Printf("load: %d clients, %s warm-up + %s measured per run, %d round(s); pgx pool %d conns (server and baseline)\n",
						f.c, f.warmup, f.d, f.rounds, srv.App.Pool.Config().MaxConns)
					fmt.Printf("server config: %s\n\n", f.env)
				}
				profile := ""
				if !profiledG {
					profile, profiledG = f.cpuprofile, true
				}
				gqlURL := srv.URL + "/graphql"
				return measure(&run, srv.Stmts, profile, func(ctx context.Context, w, seq int, buf *bytes.Buffer) error {
					p := pages[(w*7+seq)%len(pages)]
					req, err := http.NewRequestWithContext(ctx, http.MethodPost, gqlURL, bytes.NewReader(p.gqlBody))
					if err != nil {
						return err
					}
					req.Header.Set("Content-Type", "application/json")
					req.Header.Set("Authorization", "Bearer "+token)
					return fetch(client, req, buf, checkPage(f.n))
				})
			}()
			if err != nil {
				return err
			}
			runs = append(runs, run)
		}

		run := queryRun{Round: round}
		profile := ""
		if !profiledD {
			profile, profiledD = f.cpuprofileD, true
		}
		err := measure(&run, dstmts, profile, func(ctx context.Context, w, seq int, buf *bytes.Buffer) error {
			p := pages[(w*7+seq)%len(pages)]
			req, err := http.NewRequestWithContext(ctx, http.MethodGet, dsrv.URL+p.directURL, nil)
			if err != nil {
				return err
			}
			return fetch(client, req, buf, checkPage(f.n))
		})
		if err != nil {
			return err
		}
		runs = append(runs, run)
	}
	return reportQuery(runs, f)
}

// reportQuery prints the table and fails if any request failed.
func reportQuery(runs []queryRun, f queryFlags) error {
	direct := map[int]queryRun{}
	for _, r := range runs {
		if !r.GraphQL {
			direct[r.Round] = r
		}
	}
	tw := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', tabwriter.AlignRight)
	head := "path\tloader wait\trequests\treq/s\tp50\tp99\terrors\tSQL stmts/req\tGo CPU/req\tDB CPU/req\treq/s vs direct\tCPU/req vs direct\t\n"
	if f.rounds > 1 {
		head = "round\t" + head
	}
	fmt.Fprint(tw, head)
	for _, r := range runs {
		stm, dbc, ratio := "-", "-", "1"
		if r.Res.Requests > 0 {
			stm = fmt.Sprintf("%.2f", float64(r.Stmts)/float64(r.Res.Requests))
		}
		if r.DBOK {
			dbc = r.perReq(r.DBCPU)
		}
		cpuRatio := "1"
		if d := direct[r.Round]; r.GraphQL && d.Res.RPS() > 0 {
			ratio = fmt.Sprintf("%.3f", r.Res.RPS()/d.Res.RPS())
			cpuRatio = fmt.Sprintf("%.1f×", r.cpuPerReq(d.DBOK)/d.cpuPerReq(r.DBOK))
		}
		if f.rounds > 1 {
			fmt.Fprintf(tw, "%d\t", r.Round)
		}
		fmt.Fprintf(tw, "%s\t%s\t%d\t%.0f\t%s\t%s\t%d\t%s\t%s\t%s\t%s\t%s\t\n", r.name(), r.waitString(), r.Res.Requests, r.Res.RPS(),
			ms(r.Res.Pct(50)), ms(r.Res.Pct(99)), r.Res.Errors, stm, r.perReq(r.SelfCPU), dbc, ratio, cpuRatio)
	}
	_ = tw.Flush()
	fmt.Printf("load average at the end: %s (on %d CPUs)\n", loadAvg(), runtime.NumCPU())
	fmt.Println("Go CPU: this process (the server or the baseline handler, plus the load generator); DB CPU: the Postgres\n" +
		"backends of the bench database, when local. CPU/req vs direct compares Go+DB CPU per request with the same\n" +
		"round's baseline: on a shared machine it is steadier than req/s, which other load moves run to run.")

	if f.rounds > 1 || len(f.waits) > 1 {
		// medians per configuration
		type agg struct {
			rps, cpu, total []float64
		}
		byWait := map[time.Duration]*agg{}
		var d agg
		for _, r := range runs {
			a := &d
			if r.GraphQL {
				if byWait[r.Wait] == nil {
					byWait[r.Wait] = &agg{}
				}
				a = byWait[r.Wait]
			}
			a.rps = append(a.rps, r.Res.RPS())
			if r.Res.Requests > 0 {
				a.cpu = append(a.cpu, r.cpuPerReq(false))
				a.total = append(a.total, r.cpuPerReq(true))
			}
		}
		fmt.Printf("\nmedians over %d round(s): direct %.0f req/s, %.2fms Go CPU/req, %.2fms Go+DB CPU/req\n",
			f.rounds, median(d.rps), median(d.cpu), median(d.total))
		best, bestRPS := time.Duration(-1), 0.0
		for _, w := range f.waits {
			a := byWait[w]
			fmt.Printf("  GraphQL loader wait %-6s %6.0f req/s (%.3f of direct), %.2fms Go CPU/req, %.2fms Go+DB CPU/req (%.1f× direct)\n",
				w, median(a.rps), median(a.rps)/median(d.rps), median(a.cpu), median(a.total), median(a.total)/median(d.total))
			if median(a.rps) > bestRPS {
				best, bestRPS = w, median(a.rps)
			}
		}
		if len(f.waits) > 1 {
			fmt.Printf("best loader wait by median req/s: %s\n", best)
		}
	}

	failed := false
	for _, r := range runs {
		if r.Res.Errors > 0 {
			failed = true
			fmt.Fprintf(os.Stderr, "round %d %s (loader wait %s): %d errors, first: %v\n",
				r.Round, r.name(), r.waitString(), r.Res.Errors, r.Res.FirstErr)
		}
	}
	if failed {
		return errors.New("requests failed")
	}
	return nil
}

func median(v []float64) float64 {
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

// withProfile extends hooks to profile the CPU during the measured window;
// call stop after the run to close the file.
func withProfile(h loadHooks, path string) (loadHooks, func(), error) {
	fh, err := os.Create(path)
	if err != nil {
		return h, nil, err
	}
	start := h.Start
	h.Start = func() {
		if start != nil {
			start()
		}
		if err := pprof.StartCPUProfile(fh); err != nil {
			fmt.Fprintf(os.Stderr, "bench: cpu profile: %v\n", err)
		}
	}
	stop := h.Stop
	h.Stop = func() {
		pprof.StopCPUProfile()
		if stop != nil {
			stop()
		}
	}
	return h, func() {
		if err := fh.Close(); err == nil {
			fmt.Fprintf(os.Stderr, "wrote CPU profile %s (go tool pprof -top %s)\n", path, path)
		}
	}, nil
}

// checkPage accepts a marketplace response of n loans and no errors, the
// same test for both paths.
func checkPage(n int) func([]byte) error {
	prefix := []byte(`{"data":{"loans":{"edges":[`)
	field := []byte(`"annualRate"`)
	return func(b []byte) error {
		if !bytes.HasPrefix(b, prefix) || bytes.Contains(b, []byte(`"errors"`)) {
			return fmt.Errorf("bad response: %.300s", b)
		}
		if got := bytes.Count(b, field); got != n {
			return fmt.Errorf("got %d loans, want %d", got, n)
		}
		return nil
	}
}

// buildPages walks every order through GraphQL for the cursors of its first
// f.pages pages and prepares both paths' requests.
func buildPages(ctx context.Context, client *http.Client, baseURL, token string, f queryFlags) ([]*marketPage, error) {
	var out []*marketPage
	for _, field := range []string{"CREATED_AT", "ANNUAL_RATE", "AMOUNT", "FUNDING_DEADLINE"} {
		for _, desc := range []bool{true, false} {
			o := loanOrder{Field: field, Desc: desc}
			after := ""
			for i := 1; i <= f.pages; i++ {
				p := &marketPage{Order: o, After: after, Index: i}
				vars := map[string]any{"n": f.n, "inv": f.inv, "orderBy": map[string]any{"field": o.Field, "direction": o.direction()}}
				if after != "" {
					vars["after"] = after
				}
				var err error
				if p.gqlBody, err = json.Marshal(map[string]any{"query": marketplaceQuery, "variables": vars}); err != nil {
					return nil, err
				}
				q := url.Values{"order": {o.Field}, "dir": {o.direction()}}
				if after != "" {
					q.Set("after", after)
				}
				p.directURL = "/direct?" + q.Encode()
				out = append(out, p)
				if i == f.pages {
					break
				}
				delete(vars, "inv")
				data, err := gql(ctx, client, baseURL, token, cursorsQuery, vars)
				if err != nil {
					return nil, err
				}
				var r struct {
					Loans struct {
						PageInfo struct {
							EndCursor   *string `json:"endCursor"`
							HasNextPage bool    `json:"hasNextPage"`
						} `json:"pageInfo"`
					} `json:"loans"`
				}
				if err := json.Unmarshal(data, &r); err != nil {
					return nil, err
				}
				if r.Loans.PageInfo.EndCursor == nil || !r.Loans.PageInfo.HasNextPage {
					return nil, fmt.Errorf("%s %s: no page %d", o.Field, o.direction(), i+1)
				}
				after = *r.Loans.PageInfo.EndCursor
			}
		}
	}
	return out, nil
}

// verifyPages checks that both paths return the same data for every page.
func verifyPages(ctx context.Context, client *http.Client, baseURL, directURL, token string, pages []*marketPage, f queryFlags) error {
	for _, p := range pages {
		var vars map[string]any
		var body struct {
			Variables map[string]any `json:"variables"`
		}
		if err := json.Unmarshal(p.gqlBody, &body); err != nil {
			return err
		}
		vars = body.Variables
		gd, err := gql(ctx, client, baseURL, token, marketplaceQuery, vars)
		if err != nil {
			return err
		}
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, directURL+p.directURL, nil)
		if err != nil {
			return err
		}
		var buf bytes.Buffer
		if err := fetch(client, req, &buf, checkPage(f.n)); err != nil {
			return fmt.Errorf("direct %s: %w", p.directURL, err)
		}
		var g, d any
		var dd struct {
			Data json.RawMessage `json:"data"`
		}
		if err := json.Unmarshal(gd, &g); err != nil {
			return err
		}
		if err := json.Unmarshal(buf.Bytes(), &dd); err != nil {
			return err
		}
		if err := json.Unmarshal(dd.Data, &d); err != nil {
			return err
		}
		if !reflect.DeepEqual(g, d) {
			return fmt.Errorf("%s %s page %d: GraphQL and direct SQL differ:\n graphql %.400s\n direct  %.400s",
				p.Order.Field, p.Order.direction(), p.Index, gd, dd.Data)
		}
	}
	return nil
}

// ---------------------------------------------------------------- the baseline

// directHandler serves the marketplace page from one hand-written statement
// (loans page, borrower and user joined, each loan's first investments with
// their investors' names aggregated through LATERAL; the investor is a
// scalar subquery because a join there plans as a hash join over every
// investor per loan, 1.7× slower), marshalled to the GraphQL response's
// shape. GET /direct?order=FIELD&dir=ASC|DESC&after=CURSOR, where CURSOR is
// the GraphQL endCursor of the same order.
type directHandler struct {
	pool *pgxpool.Pool
	n    int
	sqls map[string]string // order field + dir + "after"?
}

func newDirectHandler(pool *pgxpool.Pool, n, inv int) *directHandler {
	h := &directHandler{pool: pool, n: n, sqls: map[string]string{}}
	for field, col := range orderColumns {
		for _, dir := range []string{"ASC", "DESC"} {
			for _, after := range []bool{false, true} {
				cond := ""
				if after {
					cmp := ">"
					if dir == "DESC" {
						cmp = "<"
					}
					cond = fmt.Sprintf(" AND (l.%s, l.id) %s ($2, $3)", col, cmp)
				}
				h.sqls[directKey(field, dir, after)] = fmt.Sprintf(`
SELECT l.id, l.amount, l.annual_rate_bps, b.display_name, u.name, inv.amounts, inv.names
FROM (SELECT l.id, l.amount, l.annual_rate_bps, l.borrower_id, l.%[1]s AS k FROM loans l
      WHERE l.status = 'FUNDING'%[2]s ORDER BY l.%[1]s %[3]s, l.id %[3]s LIMIT $1) l
JOIN borrowers b ON b.id = l.borrower_id
JOIN users u ON u.id = b.user_id
CROSS JOIN LATERAL (
    SELECT array_agg(i.amount ORDER BY i.id) AS amounts, array_agg(i.investor ORDER BY i.id) AS names
    FROM (SELECT i.id, i.amount, (SELECT iv.display_name FROM investors iv WHERE iv.id = i.investor_id) AS investor
          FROM investments i WHERE i.loan_id = l.id ORDER BY i.id LIMIT %[4]d) i) inv
ORDER BY l.k %[3]s, l.id %[3]s`, col, cond, dir, inv)
			}
		}
	}
	return h
}

func directKey(field, dir string, after bool) string {
	return field + ":" + dir + ":" + strconv.FormatBool(after)
}

// The response, in the GraphQL selection's shape and field order.
type (
	dResponse struct {
		Data struct {
			Loans struct {
				Edges []dLoanEdge `json:"edges"`
			} `json:"loans"`
		} `json:"data"`
	}
	dLoanEdge struct {
		Node dLoan `json:"node"`
	}
	dLoan struct {
		ID          string    `json:"id"`
		Amount      string    `json:"amount"`
		AnnualRate  float64   `json:"annualRate"`
		Borrower    dBorrower `json:"borrower"`
		Investments struct {
			Edges []dInvEdge `json:"edges"`
		} `json:"investments"`
	}
	dBorrower struct {
		DisplayName string `json:"displayName"`
		User        struct {
			Name string `json:"name"`
		} `json:"user"`
	}
	dInvEdge struct {
		Node dInvestment `json:"node"`
	}
	dInvestment struct {
		Amount   string `json:"amount"`
		Investor struct {
			DisplayName string `json:"displayName"`
		} `json:"investor"`
	}
)

func (h *directHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	o := loanOrder{Field: q.Get("order"), Desc: q.Get("dir") == "DESC"}
	if _, ok := orderColumns[o.Field]; !ok {
		http.Error(w, "unknown order", http.StatusBadRequest)
		return
	}
	args := []any{h.n}
	after := q.Get("after")
	if after != "" {
		c, err := store.DecodeCursor(after, o.tag())
		if err != nil {
			http.Error(w, "bad cursor", http.StatusBadRequest)
			return
		}
		k, err := strconv.ParseInt(c.Key, 10, 64)
		if err != nil {
			http.Error(w, "bad cursor", http.StatusBadRequest)
			return
		}
		var key any = k
		if o.Field == "CREATED_AT" || o.Field == "FUNDING_DEADLINE" {
			key = time.UnixMicro(k).UTC()
		}
		args = append(args, key, c.ID)
	}
	rows, err := h.pool.Query(r.Context(), h.sqls[directKey(o.Field, o.direction(), after != "")], args...)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	defer rows.Close()
	var resp dResponse
	resp.Data.Loans.Edges = make([]dLoanEdge, 0, h.n)
	for rows.Next() {
		var (
			id, amount int64
			bps        int
			l          dLoan
			amounts    []int64
			names      []string
		)
		if err := rows.Scan(&id, &amount, &bps, &l.Borrower.DisplayName, &l.Borrower.User.Name, &amounts, &names); err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		l.ID = lending.GlobalID(lending.KindLoan, id)
		l.Amount = lending.Money(amount).String()
		l.AnnualRate = float64(bps) / 10000
		l.Investments.Edges = make([]dInvEdge, len(amounts))
		for i, a := range amounts {
			l.Investments.Edges[i].Node.Amount = lending.Money(a).String()
			l.Investments.Edges[i].Node.Investor.DisplayName = names[i]
		}
		resp.Data.Loans.Edges = append(resp.Data.Loans.Edges, dLoanEdge{Node: l})
	}
	if err := rows.Err(); err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(&resp)
}
