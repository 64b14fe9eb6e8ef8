package e2e

// The concurrent money workload of the Money issue: many users and
// goroutines doing random deposits (through signed webhooks, delivered
// twice, concurrently, with wrong amounts), loan requests, investments
// (including one hot loan everyone hammers at once), repayments and
// withdrawals through the real HTTP server, with retries of the same
// idempotency keys, while the scheduler and the withdrawal resumer run
// alongside; then every invariant must hold exactly.

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand"
	"net/http"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"mutuo/lending"
	"mutuo/pix"
)

const (
	// workloadDuration is how long the random operations run.
	workloadDuration    = 10 * time.Second
	workloadInvestors   = 12
	workloadBorrowers   = 6
	workloadPerUser     = 2 // goroutines per user: 36 in all, two per wallet
	workloadHotAmount   = lending.Money(3000_00)
	workloadMaxOpen     = 3 // FUNDING loans a borrower may have before requesting another
	workloadHTTPTimeout = 30 * time.Second
)

// Business errors each operation may legitimately answer with. CONFLICT is
// accepted only where the workload provokes it (see mutate).
var workloadAllowed = map[string][]string{
	"createDeposit":     nil,
	"requestLoan":       nil,
	"invest":            {"INSUFFICIENT_FUNDS", "INVALID_STATE", "BAD_USER_INPUT"},
	"repayLoan":         {"INSUFFICIENT_FUNDS", "INVALID_STATE", "BAD_USER_INPUT"},
	"requestWithdrawal": {"INSUFFICIENT_FUNDS"},
}

type wlUser struct {
	idx      int
	email    string
	token    string
	id       int64
	investor bool
}

// wlKey is one idempotency key the workload used, and what it saw.
type wlKey struct {
	user     *wlUser
	op, key  string
	ok       bool  // some call with this key (and its first arguments) succeeded
	resultID int64 // the result's id (0 for repayLoan, whose result has none)
	loanID   int64 // repayLoan: the loan
	amount   lending.Money
}

// wlWithdrawal is a withdrawal the workload created and the status the
// sandbox PSP must give it.
type wlWithdrawal struct {
	amount lending.Money
	want   string
}

type workload struct {
	e      *env
	client *http.Client
	secret []byte
	start  time.Time

	hotLoan   string // global id
	hotToken  string // its borrower's
	hotLoanID int64
	hotActive atomic.Bool

	mu          sync.Mutex
	ops         map[string]int            // op -> calls
	outcomes    map[string]map[string]int // op -> outcome -> count
	tallies     map[string]int            // scheduler transitions and the like
	unexpected  []string
	keys        []*wlKey
	credited    lending.Money // deposits credited, as the webhook answers said
	creditedN   int
	withdrawals map[int64]wlWithdrawal
	hotInvests  map[int64]lending.Money // investment id -> amount, in the hot loan
	schedRuns   int
}

func (w *workload) fail(format string, args ...any) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.unexpected = append(w.unexpected, fmt.Sprintf(format, args...))
}

func (w *workload) count(op, outcome string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.ops[op]++
	if w.outcomes[op] == nil {
		w.outcomes[op] = map[string]int{}
	}
	w.outcomes[op][outcome]++
}

// gql posts a GraphQL request; it never touches t, so any goroutine may call it.
func (w *workload) gql(tok, query string, vars map[string]any) (*gqlResponse, error) {
	body, _ := json.Marshal(map[string]any{"query": query, "variables": vars})
	req, _ := http.NewRequest(http.MethodPost, w.e.URL+"/graphql", bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	if tok != "" {
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	resp, err := w.client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	r := &gqlResponse{Status: resp.StatusCode, Header: resp.Header, Body: string(b)}
	if err := json.Unmarshal(b, r); err != nil {
		return nil, fmt.Errorf("response is not JSON (%d): %s", resp.StatusCode, b)
	}
	if len(r.RawData) > 0 && string(r.RawData) != "null" {
		_ = json.Unmarshal(r.RawData, &r.Data)
	}
	return r, nil
}

// check classifies a mutation's answer: ok, or a business error that op
// may give (counted), or anything else (counted and recorded as unexpected).
func (w *workload) check(label, op string, r *gqlResponse, err error, extra ...string) (bool, string) {
	if err != nil {
		w.count(label, "TRANSPORT")
		w.fail("%s: %v", label, err)
		return false, "TRANSPORT"
	}
	if len(r.Errors) > 0 {
		code := r.code(0)
		if code == "" {
			code = "NO_CODE"
		}
		w.count(label, code)
		if !slices.Contains(workloadAllowed[op], code) && !slices.Contains(extra, code) {
			w.fail("%s: unexpected %s (HTTP %d): %s", label, code, r.Status, trimBody(r.Body))
		}
		return false, code
	}
	if r.Data == nil {
		w.count(label, "NO_DATA")
		w.fail("%s: no data (HTTP %d): %s", label, r.Status, trimBody(r.Body))
		return false, "NO_DATA"
	}
	w.count(label, "OK")
	return true, "OK"
}

// query runs a read that must succeed.
func (w *workload) query(label, tok, q string, vars map[string]any) (map[string]any, bool) {
	r, err := w.gql(tok, q, vars)
	if err != nil {
		w.fail("%s: %v", label, err)
		return nil, false
	}
	if len(r.Errors) > 0 || r.Data == nil {
		w.fail("%s: %s", label, trimBody(r.Body))
		return nil, false
	}
	return r.Data, true
}

func trimBody(s string) string {
	if len(s) > 600 {
		return s[:600] + "…"
	}
	return s
}

func parseMoney(s string) lending.Money {
	m, err := lending.ParseMoney(s)
	if err != nil {
		return -1
	}
	return m
}

func randMoney(r *rand.Rand, lo, hi lending.Money) lending.Money {
	if hi <= lo {
		return lo
	}
	return lo + lending.Money(r.Int63n(int64(hi-lo)+1))
}

func globalNum(id string) int64 {
	_, n, err := lending.ParseGlobalID(id)
	if err != nil {
		return -1
	}
	return n
}

// mutation is one money-moving mutation under an idempotency key.
type mutation struct {
	op    string
	user  *wlUser
	key   string
	query string
	vars  map[string]any // the first arguments
	alt   map[string]any // other arguments, for the CONFLICT probe
	// id identifies a result, to compare a replay with the first answer.
	id     func(data map[string]any) string
	loanID int64
	amount lending.Money
	// forceSingle: exactly one call (setup).
	forceSingle bool
}

// mutate runs m with a random retry pattern and records the key:
//   - one call;
//   - a call, then a sequential retry with the same key and arguments: if the
//     first succeeded the retry must answer the same result;
//   - two concurrent calls with the same key and arguments: if both succeed
//     they must answer the same result (CONFLICT is tolerated, as the
//     contract allows it while the first is in flight);
//   - a call, then (if it succeeded) the same key with other arguments,
//     which must be CONFLICT.
//
// It returns the data of a successful call, if any.
func (w *workload) mutate(r *rand.Rand, m mutation) (map[string]any, bool) {
	call := func(label string, vars map[string]any, extra ...string) (map[string]any, bool) {
		resp, err := w.gql(m.user.token, m.query, vars)
		ok, _ := w.check(label, m.op, resp, err, extra...)
		if !ok {
			return nil, false
		}
		return resp.Data, true
	}
	var data map[string]any
	ok := false
	p := r.Intn(100)
	if m.forceSingle {
		p = 0
	}
	switch {
	case p < 60:
		data, ok = call(m.op, m.vars)
	case p < 75:
		d1, ok1 := call(m.op, m.vars)
		d2, ok2 := call(m.op+" (retry)", m.vars)
		if ok1 && !ok2 {
			w.fail("%s key %s: the first call succeeded, its replay did not", m.op, m.key)
		}
		if ok1 && ok2 && m.id(d1) != m.id(d2) {
			w.fail("%s key %s: replay answered %s, first call %s", m.op, m.key, m.id(d2), m.id(d1))
		}
		data, ok = d1, ok1
		if !ok {
			data, ok = d2, ok2
		}
	case p < 90:
		var wg sync.WaitGroup
		var ds [2]map[string]any
		var oks [2]bool
		for k := range 2 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				ds[k], oks[k] = call(m.op+" (concurrent retry)", m.vars, "CONFLICT")
			}()
		}
		wg.Wait()
		if oks[0] && oks[1] && m.id(ds[0]) != m.id(ds[1]) {
			w.fail("%s key %s: two concurrent calls answered %s and %s: two effects", m.op, m.key, m.id(ds[0]), m.id(ds[1]))
		}
		for k := range 2 {
			if oks[k] {
				data, ok = ds[k], true
				break
			}
		}
	default:
		data, ok = call(m.op, m.vars)
		if ok {
			resp, err := w.gql(m.user.token, m.query, m.alt)
			label := m.op + " (same key, other args)"
			if err != nil {
				w.count(label, "TRANSPORT")
				w.fail("%s: %v", label, err)
			} else if c := resp.code(0); c != "CONFLICT" {
				if c == "" {
					c = "OK"
				}
				w.count(label, c)
				w.fail("%s key %s: got %s, want CONFLICT: %s", label, m.key, c, trimBody(resp.Body))
			} else {
				w.count(label, "CONFLICT")
			}
		}
	}
	k := &wlKey{user: m.user, op: m.op, key: m.key, ok: ok, loanID: m.loanID, amount: m.amount}
	if ok && m.op != "repayLoan" {
		k.resultID = globalNum(m.id(data))
	}
	w.mu.Lock()
	w.keys = append(w.keys, k)
	w.mu.Unlock()
	return data, ok
}

// ---------------------------------------------------------------- deposits

type whResult struct {
	EndToEndID string `json:"endToEndId"`
	Outcome    string `json:"outcome"`
	Duplicate  bool   `json:"duplicate"`
}

// webhook delivers a signed webhook body and returns its one result.
func (w *workload) webhook(label string, body []byte) (whResult, bool) {
	req, _ := http.NewRequest(http.MethodPost, w.e.URL+"/webhooks/pix", bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-Mutuo-Signature", pix.Sign(w.secret, body))
	resp, err := w.client.Do(req)
	if err != nil {
		w.count(label, "TRANSPORT")
		w.fail("%s: %v", label, err)
		return whResult{}, false
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var out struct {
		Results []whResult `json:"results"`
	}
	if resp.StatusCode != http.StatusOK || json.Unmarshal(b, &out) != nil || len(out.Results) != 1 {
		w.count(label, fmt.Sprintf("HTTP_%d", resp.StatusCode))
		w.fail("%s: HTTP %d: %s", label, resp.StatusCode, trimBody(string(b)))
		return whResult{}, false
	}
	res := out.Results[0]
	dup := ""
	if res.Duplicate {
		dup = " (duplicate)"
	}
	w.count(label, res.Outcome+dup)
	return res, true
}

// otherPayment is a webhook body for another Pix paying txid (its own
// endToEndId, derived from tag and the txid).
func otherPayment(tag, txid string, amount lending.Money) []byte {
	e2e := ("E" + tag + txid + strings.Repeat("0", 32))[:32]
	return []byte(fmt.Sprintf(`{"pix":[{"endToEndId":%q,"txid":%q,"valor":%q,"horario":%q}]}`,
		e2e, txid, amount.String(), time.Now().UTC().Format(time.RFC3339)))
}

func (w *workload) expectOutcome(what, txid string, got whResult, outcome string, dup bool) {
	if got.Outcome != outcome || got.Duplicate != dup {
		w.fail("webhook %s for %s: got %s (duplicate %v), want %s (duplicate %v)", what, txid, got.Outcome, got.Duplicate, outcome, dup)
	}
}

func (w *workload) addCredit(amount lending.Money) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.credited += amount
	w.creditedN++
}

// deposit creates a charge (with a random idempotency pattern) and pays it
// through the signed webhook with a random delivery pattern.
func (w *workload) deposit(r *rand.Rand, u *wlUser, key string, amount lending.Money, setup bool) {
	q := `mutation($a: Money!, $k: String!) { createDeposit(amount: $a, idempotencyKey: $k) { id txid status amount } }`
	d, ok := w.mutate(r, mutation{op: "createDeposit", user: u, key: key, query: q, amount: amount, forceSingle: setup,
		vars: map[string]any{"a": amount.String(), "k": key},
		alt:  map[string]any{"a": (amount + 100).String(), "k": key},
		id:   func(d map[string]any) string { return str(d, "createDeposit.id") },
	})
	if !ok {
		if setup {
			w.fail("setup deposit of %s failed", u.email)
		}
		return
	}
	txid := str(d, "createDeposit.txid")
	if got := parseMoney(str(d, "createDeposit.amount")); got != amount {
		w.fail("createDeposit %s: amount %v, want %v", key, got, amount)
	}
	body := pix.Sandbox{}.PaymentWebhook(txid, amount, time.Now())
	v := r.Intn(100)
	if setup {
		v = 10
	}
	switch {
	case v < 5: // never paid: stays PENDING
	case v < 50: // one delivery
		if res, ok := w.webhook("webhook", body); ok {
			w.expectOutcome("delivery", txid, res, "CREDITED", false)
			if res.Outcome == "CREDITED" && !res.Duplicate {
				w.addCredit(amount)
			}
		}
	case v < 62: // the PSP delivers it twice
		if res, ok := w.webhook("webhook", body); ok {
			w.expectOutcome("delivery", txid, res, "CREDITED", false)
			if res.Outcome == "CREDITED" && !res.Duplicate {
				w.addCredit(amount)
			}
		}
		if res, ok := w.webhook("webhook (redelivery)", body); ok {
			w.expectOutcome("redelivery", txid, res, "CREDITED", true)
		}
	case v < 80: // two or three concurrent deliveries of the same payment
		n := 2 + r.Intn(2)
		var wg sync.WaitGroup
		res := make([]whResult, n)
		oks := make([]bool, n)
		for k := range n {
			wg.Add(1)
			go func() {
				defer wg.Done()
				res[k], oks[k] = w.webhook("webhook (concurrent)", body)
			}()
		}
		wg.Wait()
		fresh := 0
		for k := range n {
			if !oks[k] {
				continue
			}
			if res[k].Outcome != "CREDITED" {
				w.fail("concurrent deliveries for %s: outcome %s", txid, res[k].Outcome)
			}
			if !res[k].Duplicate {
				fresh++
			}
		}
		if fresh != 1 {
			w.fail("concurrent deliveries for %s: %d applied it, want exactly 1", txid, fresh)
		}
		if fresh >= 1 {
			w.addCredit(amount)
		}
	case v < 90: // a payment of the wrong amount first (recorded, not credited), then the right one
		wrong := otherPayment("WRONG", txid, amount+lending.Money(1+r.Intn(5000)))
		if res, ok := w.webhook("webhook (wrong amount)", wrong); ok {
			w.expectOutcome("wrong amount", txid, res, "WRONG_AMOUNT", false)
		}
		var wg sync.WaitGroup
		wg.Add(2)
		go func() {
			defer wg.Done()
			if res, ok := w.webhook("webhook", body); ok {
				w.expectOutcome("delivery after a wrong amount", txid, res, "CREDITED", false)
				if res.Outcome == "CREDITED" && !res.Duplicate {
					w.addCredit(amount)
				}
			}
		}()
		go func() { // and the wrong one again, concurrently
			defer wg.Done()
			if res, ok := w.webhook("webhook (wrong amount, redelivery)", wrong); ok {
				w.expectOutcome("wrong amount redelivery", txid, res, "WRONG_AMOUNT", true)
			}
		}()
		wg.Wait()
	default: // paid, then paid again by another Pix
		if res, ok := w.webhook("webhook", body); ok {
			w.expectOutcome("delivery", txid, res, "CREDITED", false)
			if res.Outcome == "CREDITED" && !res.Duplicate {
				w.addCredit(amount)
			}
		}
		if res, ok := w.webhook("webhook (second payment)", otherPayment("AGAIN", txid, amount)); ok {
			w.expectOutcome("second payment", txid, res, "ALREADY_PAID", false)
		}
	}
}

// ---------------------------------------------------------------- investors

const wlInvestQuery = `mutation($l: ID!, $a: Money!, $k: String!) { invest(loanId: $l, amount: $a, idempotencyKey: $k) {
	id status amount loan { id status amount fundedAmount } } }`

func (w *workload) investIn(r *rand.Rand, u *wlUser, key, loanID string, amount lending.Money, hot bool) (map[string]any, bool) {
	alt := amount + 100
	if alt < lending.MinInvestment {
		alt = lending.MinInvestment + 500
	}
	d, ok := w.mutate(r, mutation{op: "invest", user: u, key: key, query: wlInvestQuery, amount: amount,
		vars: map[string]any{"l": loanID, "a": amount.String(), "k": key},
		alt:  map[string]any{"l": loanID, "a": alt.String(), "k": key},
		id:   func(d map[string]any) string { return str(d, "invest.id") },
	})
	if ok {
		if got := parseMoney(str(d, "invest.amount")); got != amount {
			w.fail("invest %s: amount %v, want %v", key, got, amount)
		}
		if l := get(d, "invest.loan"); parseMoney(str(l, "fundedAmount")) > parseMoney(str(l, "amount")) {
			w.fail("invest %s: loan overfunded: %v", key, l)
		}
		if hot {
			w.mu.Lock()
			w.hotInvests[globalNum(str(d, "invest.id"))] = amount
			w.mu.Unlock()
		}
	}
	return d, ok
}

// hammerHotLoan invests in the hot loan until it is no longer FUNDING.
func (w *workload) hammerHotLoan(r *rand.Rand, u *wlUser, worker int, seq *int) {
	remaining := workloadHotAmount
	for range 200 {
		amount := randMoney(r, 25_00, 300_00)
		if r.Intn(3) == 0 {
			amount = amount / 100 * 100
		}
		switch {
		case remaining <= lending.MinInvestment:
			// Everyone races for the same last centavos, which only the
			// exact remainder may take.
			amount = remaining
		case amount >= remaining:
			// Take all but a tail below the minimum: the loan is then
			// funded by someone taking exactly that tail.
			tail := randMoney(r, 1, min(lending.MinInvestment-1, remaining-lending.MinInvestment))
			amount = remaining - tail
		}
		*seq++
		key := fmt.Sprintf("hot-w%d-%d", worker, *seq)
		d, ok := w.investIn(r, u, key, w.hotLoan, amount, true)
		if ok {
			l := get(d, "invest.loan")
			if str(l, "status") != "FUNDING" {
				w.hotActive.Store(true)
				return
			}
			remaining = parseMoney(str(l, "amount")) - parseMoney(str(l, "fundedAmount"))
			continue
		}
		// someone else got there first: read the loan again
		ld, ok := w.query("hot loan", u.token, `query($id: ID!) { loan(id: $id) { status amount fundedAmount } }`, map[string]any{"id": w.hotLoan})
		if !ok {
			return
		}
		if str(ld, "loan.status") != "FUNDING" {
			w.hotActive.Store(true)
			return
		}
		before := remaining
		remaining = parseMoney(str(ld, "loan.amount")) - parseMoney(str(ld, "loan.fundedAmount"))
		if remaining <= 0 {
			return
		}
		if amount == before && amount == remaining && amount < lending.MinInvestment {
			// Nobody else can invest now but for exactly this remainder:
			// refusing it leaves the loan unfundable until its deadline.
			w.fail("invest: the exact remainder %v of the hot loan (below the %v minimum) was refused, so it can never be funded (lending.CheckInvestment allows it)",
				amount, lending.MinInvestment)
			return
		}
	}
}

// investRandom invests in a random FUNDING loan of the marketplace.
func (w *workload) investRandom(r *rand.Rand, u *wlUser, key string) {
	d, ok := w.query("loans", u.token, `{ loans(filter: {status: [FUNDING]}, first: 100) { edges { node { id amount fundedAmount } } } }`, nil)
	if !ok {
		return
	}
	edges := list(d, "loans.edges")
	if len(edges) == 0 {
		w.count("invest: no FUNDING loan listed", "SKIPPED")
		return
	}
	n := get(edges[r.Intn(len(edges))], "node")
	remaining := parseMoney(str(n, "amount")) - parseMoney(str(n, "fundedAmount"))
	amount := randMoney(r, 25_00, 600_00)
	switch q := r.Intn(100); {
	case q < 30 && remaining > 0: // complete it (possibly less than the minimum: the exact remainder)
		amount = remaining
	case q < 40: // whole reais
		amount = amount / 100 * 100
	}
	w.investIn(r, u, key, str(n, "id"), amount, false)
}

// ---------------------------------------------------------------- borrowers

func (w *workload) requestLoan(r *rand.Rand, u *wlUser, key string, amount lending.Money, term int, setup bool) (string, bool) {
	q := `mutation($in: RequestLoanInput!, $k: String!) { requestLoan(input: $in, idempotencyKey: $k) { id status amount fundedAmount termMonths } }`
	in := map[string]any{"amount": amount.String(), "termMonths": term, "purpose": fmt.Sprintf("Capital de giro %s", key)}
	alt := map[string]any{"amount": (amount + 100).String(), "termMonths": term, "purpose": in["purpose"]}
	d, ok := w.mutate(r, mutation{op: "requestLoan", user: u, key: key, query: q, amount: amount, forceSingle: setup,
		vars: map[string]any{"in": in, "k": key},
		alt:  map[string]any{"in": alt, "k": key},
		id:   func(d map[string]any) string { return str(d, "requestLoan.id") },
	})
	if !ok {
		return "", false
	}
	if parseMoney(str(d, "requestLoan.amount")) != amount || num(d, "requestLoan.termMonths") != term {
		w.fail("requestLoan %s: answered %v", key, d)
	}
	return str(d, "requestLoan.id"), true
}

func (w *workload) requestRandomLoan(r *rand.Rand, u *wlUser, key string) bool {
	d, ok := w.query("my funding loans", u.token, `{ me { borrower { loans(first: 100, status: [FUNDING]) { totalCount } } } }`, nil)
	if !ok || num(d, "me.borrower.loans.totalCount") >= workloadMaxOpen {
		return false
	}
	w.requestLoan(r, u, key, randMoney(r, 500_00, 3000_00), 3+r.Intn(4), false)
	return true
}

// repay pays part (or all, or too much) of one of the borrower's ACTIVE loans.
func (w *workload) repay(r *rand.Rand, u *wlUser, key string) bool {
	d, ok := w.query("my active loans", u.token, `{ me { borrower { loans(first: 100, status: [ACTIVE]) { edges { node { id installments { total paid } } } } } } }`, nil)
	if !ok {
		return false
	}
	var loans []any
	for _, e := range list(d, "me.borrower.loans.edges") {
		if str(e, "node.id") != w.hotLoan { // the hot loan stays ACTIVE: it is checked at the end
			loans = append(loans, get(e, "node"))
		}
	}
	if len(loans) == 0 {
		return false
	}
	l := loans[r.Intn(len(loans))]
	var owed lending.Money
	for _, in := range list(l, "installments") {
		owed += parseMoney(str(in, "total")) - parseMoney(str(in, "paid"))
	}
	if owed <= 0 {
		return false
	}
	var amount lending.Money
	switch q := r.Intn(100); {
	case q < 10: // more than is owed: refused whole
		amount = owed + randMoney(r, 1, 50_00)
	case q < 30: // everything
		amount = owed
	default:
		amount = randMoney(r, 1_00, min(owed, 800_00))
	}
	loanID := str(l, "id")
	q := `mutation($l: ID!, $a: Money!, $k: String!) { repayLoan(loanId: $l, amount: $a, idempotencyKey: $k) { amount loan { id status } } }`
	d, ok = w.mutate(r, mutation{op: "repayLoan", user: u, key: key, query: q, loanID: globalNum(loanID), amount: amount,
		vars: map[string]any{"l": loanID, "a": amount.String(), "k": key},
		alt:  map[string]any{"l": loanID, "a": (amount + 1).String(), "k": key},
		id:   func(d map[string]any) string { return str(d, "repayLoan.loan.id") + "/" + str(d, "repayLoan.amount") },
	})
	if ok && parseMoney(str(d, "repayLoan.amount")) != amount {
		w.fail("repayLoan %s: amount %s, want %v", key, str(d, "repayLoan.amount"), amount)
	}
	return true
}

// ---------------------------------------------------------------- withdrawals

func (w *workload) withdraw(r *rand.Rand, u *wlUser, key string, maxAmount lending.Money) {
	amount := randMoney(r, 1_00, maxAmount)
	pixKey, want := u.email, "COMPLETED"
	if r.Intn(100) < 15 {
		pixKey, want = pix.SandboxFailingKey, "FAILED"
	}
	if amount%100 == pix.SandboxFailingCentavos {
		want = "FAILED"
	}
	q := `mutation($a: Money!, $p: String!, $k: String!) { requestWithdrawal(amount: $a, pixKey: $p, idempotencyKey: $k) { id status amount } }`
	// A replay answers the withdrawal as it is now: PENDING while the first
	// request is still talking to the PSP. Only concurrent calls can see it.
	var statuses []string
	var smu sync.Mutex
	d, ok := w.mutate(r, mutation{op: "requestWithdrawal", user: u, key: key, query: q, amount: amount,
		vars: map[string]any{"a": amount.String(), "p": pixKey, "k": key},
		alt:  map[string]any{"a": (amount + 100).String(), "p": pixKey, "k": key},
		id: func(d map[string]any) string {
			smu.Lock()
			statuses = append(statuses, str(d, "requestWithdrawal.status"))
			smu.Unlock()
			return str(d, "requestWithdrawal.id")
		},
	})
	if !ok {
		return
	}
	final := 0
	for _, s := range statuses {
		switch s {
		case want:
			final++
		case "PENDING":
		default:
			w.fail("requestWithdrawal %s (%v to %s): status %s, want %s", key, amount, pixKey, s, want)
		}
	}
	if final == 0 && len(statuses) > 0 {
		w.fail("requestWithdrawal %s: no call answered the final status %s: %v", key, want, statuses)
	}
	w.mu.Lock()
	w.withdrawals[globalNum(str(d, "requestWithdrawal.id"))] = wlWithdrawal{amount: amount, want: want}
	w.mu.Unlock()
}

// ---------------------------------------------------------------- workers

func (w *workload) worker(ctx context.Context, u *wlUser, worker int, seed int64, hotGate <-chan struct{}) {
	r := rand.New(rand.NewSource(seed))
	seq := 0
	key := func(op string) string {
		seq++
		return fmt.Sprintf("%s-w%d-%d", op, worker, seq)
	}
	if u.investor {
		<-hotGate // every investor goroutine at once
		w.hammerHotLoan(r, u, worker, &seq)
	}
	for ctx.Err() == nil {
		p := r.Intn(100)
		if u.investor {
			switch {
			case p < 18:
				w.deposit(r, u, key("dep"), randMoney(r, 500_00, 5000_00), false)
			case p < 75:
				w.investRandom(r, u, key("inv"))
			case p < 90:
				w.withdraw(r, u, key("wd"), 300_00)
			default:
				w.readWallet(u)
			}
			continue
		}
		switch {
		case p < 15:
			w.deposit(r, u, key("dep"), randMoney(r, 100_00, 1500_00), false)
		case p < 35:
			if !w.requestRandomLoan(r, u, key("loan")) {
				w.repay(r, u, key("pay"))
			}
		case p < 85:
			if !w.repay(r, u, key("pay")) {
				w.readWallet(u)
			}
		default:
			w.withdraw(r, u, key("wd"), 150_00)
		}
	}
}

// readWallet reads the wallet and checks its figures are consistent.
func (w *workload) readWallet(u *wlUser) {
	d, ok := w.query("wallet", u.token, `{ me { wallet { balance available held } } }`, nil)
	w.count("read wallet", map[bool]string{true: "OK", false: "ERROR"}[ok])
	if !ok {
		return
	}
	b, a, h := parseMoney(str(d, "me.wallet.balance")), parseMoney(str(d, "me.wallet.available")), parseMoney(str(d, "me.wallet.held"))
	if b < 0 || a < 0 || h < 0 || a+h != b {
		w.fail("wallet of %s: balance %v available %v held %v", u.email, b, a, h)
	}
}

// scheduler runs the scheduler (sometimes two instances at once) and the
// withdrawal resumer (which races with requests finishing their own
// withdrawals) until the workload ends. In the second half, once the hot
// loan is disbursed, it moves the clock: 15 days on (FUNDING loans past
// their deadline are cancelled while investors race for them) and 40 days
// on (installments become LATE while borrowers repay).
func (w *workload) scheduler(ctx context.Context, seed int64) {
	r := rand.New(rand.NewSource(seed))
	moved := []struct {
		after time.Duration // into the workload
		by    time.Duration
	}{{workloadDuration / 2, 15 * 24 * time.Hour}, {workloadDuration * 3 / 4, 40 * 24 * time.Hour}}
	for ctx.Err() == nil {
		select {
		case <-ctx.Done():
			return
		case <-time.After(time.Duration(300+r.Intn(500)) * time.Millisecond):
		}
		at := time.Now()
		if len(moved) > 0 && time.Since(w.start) > moved[0].after && w.hotLoanDone() {
			at = at.Add(moved[0].by)
			moved = moved[1:]
		}
		instances := 1 + r.Intn(2)
		var wg sync.WaitGroup
		for range instances {
			wg.Add(1)
			go func() {
				defer wg.Done()
				rctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
				defer cancel()
				res, err := w.e.App.Store.RunScheduler(rctx, at)
				w.count("scheduler", "OK")
				if err != nil {
					w.fail("RunScheduler(%s): %v", at.Format(time.RFC3339), err)
				}
				w.mu.Lock()
				w.schedRuns++
				w.tallies["scheduler: loans cancelled"] += res.Cancelled
				w.tallies["scheduler: installments late"] += res.Late
				w.tallies["scheduler: due notices"] += res.DueNotices
				w.tallies["scheduler: loans defaulted"] += res.Defaulted
				w.mu.Unlock()
			}()
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			rctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			n, err := w.e.App.Store.ResumePendingWithdrawals(rctx, w.e.App.PSP, 0)
			w.count("resume withdrawals", "OK")
			if err != nil {
				w.fail("ResumePendingWithdrawals: %v", err)
			}
			w.mu.Lock()
			w.tallies["resumer: withdrawals it finished"] += n
			w.mu.Unlock()
		}()
		wg.Wait()
	}
}

// hotLoanDone reports whether the hot loan has left FUNDING (the moved
// clock must not cancel it).
func (w *workload) hotLoanDone() bool {
	if w.hotActive.Load() {
		return true
	}
	var status string
	if err := w.e.App.Pool.QueryRow(context.Background(), `SELECT status FROM loans WHERE id = $1`, w.hotLoanID).Scan(&status); err != nil {
		w.fail("hot loan status: %v", err)
		return false
	}
	if status != "FUNDING" {
		w.hotActive.Store(true)
	}
	return status != "FUNDING"
}

// ---------------------------------------------------------------- the test

func TestConcurrentMoneyWorkload(t *testing.T) {
	e := newEnv(t)
	seed := time.Now().UnixNano()
	t.Logf("seed %d", seed)
	w := &workload{
		e: e, secret: e.App.Config.PixWebhookSecret,
		client: &http.Client{Timeout: workloadHTTPTimeout, Transport: &http.Transport{
			MaxIdleConns: 256, MaxIdleConnsPerHost: 256, IdleConnTimeout: 30 * time.Second}},
		ops: map[string]int{}, outcomes: map[string]map[string]int{}, tallies: map[string]int{}, withdrawals: map[int64]wlWithdrawal{},
		hotInvests: map[int64]lending.Money{},
	}
	defer w.client.CloseIdleConnections()

	// Users, through the API.
	var users []*wlUser
	for i := range workloadInvestors + workloadBorrowers {
		u := &wlUser{idx: i, investor: i < workloadInvestors}
		if u.investor {
			u.email = fmt.Sprintf("inv%02d@test.dev", i)
			u.token, u.id = signUp(e, fmt.Sprintf("Investidor %02d", i), u.email, []string{"INVESTOR"}, "")
		} else {
			u.email = fmt.Sprintf("bor%02d@test.dev", i)
			u.token, u.id = signUp(e, fmt.Sprintf("Tomador %02d", i), u.email, []string{"BORROWER"}, fmt.Sprintf("%d.00", 4000+1000*(i%5)))
		}
		users = append(users, u)
	}
	investors, borrowers := users[:workloadInvestors], users[workloadInvestors:]

	// Money in, concurrently: every investor enough for the hot loan and more.
	{
		var wg sync.WaitGroup
		for _, u := range users {
			wg.Add(1)
			go func() {
				defer wg.Done()
				r := rand.New(rand.NewSource(seed + int64(1000+u.idx)))
				amount := lending.Money(300_00)
				if u.investor {
					amount = randMoney(r, 20000_00, 40000_00)
				}
				w.deposit(r, u, fmt.Sprintf("setup-dep-%d", u.idx), amount, true)
			}()
		}
		wg.Wait()
		if len(w.unexpected) > 0 {
			t.Fatalf("setup deposits: %v", w.unexpected)
		}
	}

	// The hot loan.
	hot, ok := w.requestLoan(rand.New(rand.NewSource(seed)), borrowers[0], "hot-loan", workloadHotAmount, 6, true)
	if !ok {
		t.Fatalf("hot loan: %v", w.unexpected)
	}
	w.hotLoan, w.hotLoanID, w.hotToken = hot, globalNum(hot), borrowers[0].token

	// The workload.
	w.start = time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), workloadDuration)
	defer cancel()
	hotGate := make(chan struct{})
	var wg sync.WaitGroup
	worker := 0
	for _, u := range users {
		for range workloadPerUser {
			worker++
			wg.Add(1)
			go func(worker int) {
				defer wg.Done()
				w.worker(ctx, u, worker, seed+int64(worker), hotGate)
			}(worker)
		}
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		w.scheduler(ctx, seed-1)
	}()
	close(hotGate)
	wg.Wait()
	elapsed := time.Since(w.start)

	w.summary(t, worker, elapsed, len(investors))
	if n := len(w.unexpected); n > 0 {
		// the first few distinct ones, with how often each happened
		var distinct []string
		times := map[string]int{}
		for _, u := range w.unexpected {
			if times[u]++; times[u] == 1 {
				distinct = append(distinct, u)
			}
		}
		var shown []string
		for _, u := range distinct[:min(len(distinct), 10)] {
			shown = append(shown, fmt.Sprintf("%s (×%d)", u, times[u]))
		}
		t.Errorf("%d unexpected outcomes, %d distinct; the first %d:\n  %s", n, len(distinct), len(shown), strings.Join(shown, "\n  "))
	}

	// Every invariant, exactly.
	bg := context.Background()
	if err := e.App.Store.CheckInvariants(bg); err != nil {
		t.Errorf("after the workload: %v", err)
	}
	w.checkHotLoan(t)
	w.checkKeys(t)
	w.checkMoney(t)
}

func (w *workload) summary(t *testing.T, workers int, elapsed time.Duration, investors int) {
	w.mu.Lock()
	defer w.mu.Unlock()
	var b strings.Builder
	total := 0
	for _, n := range w.ops {
		total += n
	}
	fmt.Fprintf(&b, "workload: %d goroutines (+ scheduler) for %v: %d calls (%.0f/s); %d deposits credited (R$ %v); %d withdrawals; %d scheduler runs; %d investments in the hot loan\n",
		workers, elapsed.Round(time.Millisecond), total, float64(total)/elapsed.Seconds(), w.creditedN, w.credited, len(w.withdrawals), w.schedRuns, len(w.hotInvests))
	ops := make([]string, 0, len(w.ops))
	for op := range w.ops {
		ops = append(ops, op)
	}
	sort.Strings(ops)
	for _, op := range ops {
		var parts []string
		for o, n := range w.outcomes[op] {
			parts = append(parts, fmt.Sprintf("%s %d", o, n))
		}
		sort.Strings(parts)
		fmt.Fprintf(&b, "  %-44s %6d  %s\n", op, w.ops[op], strings.Join(parts, ", "))
	}
	var tallies []string
	for k := range w.tallies {
		tallies = append(tallies, k)
	}
	sort.Strings(tallies)
	for _, k := range tallies {
		fmt.Fprintf(&b, "  %-44s %6d\n", k, w.tallies[k])
	}
	codes := map[string]int{}
	for _, m := range w.outcomes {
		for o, n := range m {
			codes[o] += n
		}
	}
	var cs []string
	for c, n := range codes {
		cs = append(cs, fmt.Sprintf("%s %d", c, n))
	}
	sort.Strings(cs)
	fmt.Fprintf(&b, "  outcomes in all: %s\n", strings.Join(cs, ", "))
	t.Log("\n" + b.String())
}

// checkHotLoan: funded exactly, ACTIVE, disbursed once.
func (w *workload) checkHotLoan(t *testing.T) {
	ctx := context.Background()
	r, err := w.gql(w.hotToken, `query($id: ID!) { loan(id: $id) { status amount fundedAmount investorCount } }`, map[string]any{"id": w.hotLoan})
	if err != nil || len(r.Errors) > 0 {
		t.Fatalf("hot loan: %v %v", err, r)
	}
	if s, a, f := str(r.Data, "loan.status"), parseMoney(str(r.Data, "loan.amount")), parseMoney(str(r.Data, "loan.fundedAmount")); s != "ACTIVE" || a != workloadHotAmount || f != a {
		t.Errorf("hot loan: status %s, amount %v, funded %v; want ACTIVE and funded exactly %v", s, a, f, workloadHotAmount)
	}
	pool := w.e.App.Pool
	var disbursements, disbEntries, fees int
	var invested lending.Money
	var invCount, notActive int
	if err := pool.QueryRow(ctx, `SELECT
		(SELECT count(DISTINCT t.id) FROM transfers t JOIN ledger_entries e ON e.transfer_id = t.id WHERE t.kind = 'DISBURSEMENT' AND e.loan_id = $1),
		(SELECT count(*) FROM ledger_entries WHERE kind = 'DISBURSEMENT' AND loan_id = $1 AND amount > 0),
		(SELECT count(DISTINCT t.id) FROM transfers t JOIN ledger_entries e ON e.transfer_id = t.id WHERE t.kind = 'ORIGINATION_FEE' AND e.loan_id = $1),
		(SELECT coalesce(sum(amount), 0) FROM investments WHERE loan_id = $1),
		(SELECT count(*) FROM investments WHERE loan_id = $1),
		(SELECT count(*) FROM investments WHERE loan_id = $1 AND status <> 'ACTIVE')`, w.hotLoanID).
		Scan(&disbursements, &disbEntries, &fees, &invested, &invCount, &notActive); err != nil {
		t.Fatal(err)
	}
	if disbursements != 1 || disbEntries != 1 || fees != 1 {
		t.Errorf("hot loan disbursed %d times (%d credits to the borrower, %d origination fees); want once", disbursements, disbEntries, fees)
	}
	var seen lending.Money
	for _, a := range w.hotInvests {
		seen += a
	}
	if invested != workloadHotAmount || invCount != len(w.hotInvests) || seen != workloadHotAmount || notActive != 0 {
		t.Errorf("hot loan investments: %d rows summing to %v (%d not ACTIVE); the clients saw %d summing to %v",
			invCount, invested, notActive, len(w.hotInvests), seen)
	}
}

// checkKeys: every idempotency key has exactly the effect the clients saw,
// once.
func (w *workload) checkKeys(t *testing.T) {
	ctx := context.Background()
	pool := w.e.App.Pool
	type dbKey struct {
		op     string
		result *int64
	}
	rows, err := pool.Query(ctx, `SELECT user_id, key, operation, result_id FROM idempotency_keys`)
	if err != nil {
		t.Fatal(err)
	}
	db := map[string]dbKey{}
	for rows.Next() {
		var uid int64
		var key string
		var k dbKey
		if err := rows.Scan(&uid, &key, &k.op, &k.result); err != nil {
			t.Fatal(err)
		}
		db[fmt.Sprintf("%d/%s", uid, key)] = k
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	okPerOp := map[string]int{}
	var bad []string
	seen := map[string]bool{}
	for _, k := range w.keys {
		id := fmt.Sprintf("%d/%s", k.user.id, k.key)
		if seen[id] {
			bad = append(bad, "key used twice by the workload: "+id)
			continue
		}
		seen[id] = true
		got, found := db[id]
		switch {
		case k.ok && !found:
			bad = append(bad, fmt.Sprintf("%s %s succeeded but its key is not recorded", k.op, id))
		case !k.ok && found:
			bad = append(bad, fmt.Sprintf("%s %s never succeeded but its key is recorded (result %v)", k.op, id, got.result))
		case k.ok && got.op != k.op:
			bad = append(bad, fmt.Sprintf("%s %s recorded as %s", k.op, id, got.op))
		case k.ok && got.result == nil:
			bad = append(bad, fmt.Sprintf("%s %s has no result", k.op, id))
		case k.ok && k.op != "repayLoan" && *got.result != k.resultID:
			bad = append(bad, fmt.Sprintf("%s %s: result %d, the client saw %d", k.op, id, *got.result, k.resultID))
		}
		if k.ok {
			okPerOp[k.op]++
		}
	}
	okKeys := 0
	for _, n := range okPerOp {
		okKeys += n
	}
	if len(db) != okKeys {
		bad = append(bad, fmt.Sprintf("%d keys recorded, %d succeeded (of %d the workload used)", len(db), okKeys, len(seen)))
	}
	// One effect per key, and one key per effect, of the key's own user.
	for _, c := range []struct{ op, table, owner string }{
		{"createDeposit", "deposits", "x.user_id"},
		{"requestWithdrawal", "withdrawals", "x.user_id"},
		{"requestLoan", "loans", "(SELECT user_id FROM borrowers WHERE id = x.borrower_id)"},
		{"invest", "investments", "(SELECT user_id FROM investors WHERE id = x.investor_id)"},
		{"repayLoan", "loan_repayments", "x.user_id"},
	} {
		var rowsN, keyed, multi int
		err := pool.QueryRow(ctx, fmt.Sprintf(`SELECT
			(SELECT count(*) FROM %[1]s),
			(SELECT count(*) FROM %[1]s x WHERE (SELECT count(*) FROM idempotency_keys k
				WHERE k.operation = $1 AND k.result_id = x.id AND k.user_id = %[2]s) = 1),
			(SELECT count(*) FROM (SELECT result_id FROM idempotency_keys WHERE operation = $1 GROUP BY result_id HAVING count(*) > 1) d)`,
			c.table, c.owner), c.op).Scan(&rowsN, &keyed, &multi)
		if err != nil {
			t.Fatalf("%s: %v", c.op, err)
		}
		if rowsN != okPerOp[c.op] || keyed != rowsN || multi != 0 {
			bad = append(bad, fmt.Sprintf("%s: %d %s rows, %d of them the result of exactly one key of their user, %d results shared by keys; %d keys succeeded",
				c.op, rowsN, c.table, keyed, multi, okPerOp[c.op]))
		}
	}
	// A repayment key's result is a repayment of that loan and amount.
	for _, k := range w.keys {
		if k.op != "repayLoan" || !k.ok {
			continue
		}
		var loanID int64
		var amount lending.Money
		err := pool.QueryRow(ctx, `SELECT r.loan_id, r.amount FROM idempotency_keys k JOIN loan_repayments r ON r.id = k.result_id
			WHERE k.user_id = $1 AND k.key = $2`, k.user.id, k.key).Scan(&loanID, &amount)
		if err != nil || loanID != k.loanID || amount != k.amount {
			bad = append(bad, fmt.Sprintf("repayLoan %d/%s: repayment of %v to loan %d (%v), want %v to %d", k.user.id, k.key, amount, loanID, err, k.amount, k.loanID))
		}
	}
	if len(bad) > 0 {
		t.Errorf("idempotency: %d problems:\n  %s", len(bad), strings.Join(bad[:min(len(bad), 20)], "\n  "))
	}
}

// checkMoney: deposits credited once each, withdrawals finished as the PSP
// said, and the money inside equals what came in less what went out.
func (w *workload) checkMoney(t *testing.T) {
	ctx := context.Background()
	pool := w.e.App.Pool
	var twice, creditedPix, completed, depositTransfers, badE2E int
	var completedSum lending.Money
	if err := pool.QueryRow(ctx, `SELECT
		(SELECT count(*) FROM (SELECT deposit_id FROM pix_payments WHERE outcome = 'CREDITED' GROUP BY deposit_id HAVING count(*) > 1) d),
		(SELECT count(*) FROM pix_payments WHERE outcome = 'CREDITED'),
		(SELECT count(*) FROM deposits WHERE status = 'COMPLETED'),
		(SELECT coalesce(sum(amount), 0) FROM deposits WHERE status = 'COMPLETED'),
		(SELECT count(*) FROM transfers WHERE kind = 'DEPOSIT'),
		(SELECT count(*) FROM deposits d WHERE (d.status = 'COMPLETED') <> EXISTS (SELECT 1 FROM pix_payments p
			WHERE p.deposit_id = d.id AND p.outcome = 'CREDITED' AND p.end_to_end_id = d.end_to_end_id AND p.amount = d.amount))`).
		Scan(&twice, &creditedPix, &completed, &completedSum, &depositTransfers, &badE2E); err != nil {
		t.Fatal(err)
	}
	w.mu.Lock()
	credited, creditedN := w.credited, w.creditedN
	w.mu.Unlock()
	if twice != 0 || creditedPix != completed || completed != creditedN || depositTransfers != completed || completedSum != credited || badE2E != 0 {
		t.Errorf("deposits: %d credited more than once; %d CREDITED payments, %d COMPLETED deposits summing to %v, %d DEPOSIT transfers, %d deposits whose status disagrees with their payment; the webhook answers credited %d summing to %v",
			twice, creditedPix, completed, completedSum, depositTransfers, badE2E, creditedN, credited)
	}

	type dbWd struct {
		amount     lending.Money
		status     string
		holdStatus string
	}
	rows, err := pool.Query(ctx, `SELECT wd.id, wd.amount, wd.status, coalesce(h.status, '') FROM withdrawals wd LEFT JOIN holds h ON h.withdrawal_id = wd.id`)
	if err != nil {
		t.Fatal(err)
	}
	dbw := map[int64]dbWd{}
	for rows.Next() {
		var id int64
		var d dbWd
		if err := rows.Scan(&id, &d.amount, &d.status, &d.holdStatus); err != nil {
			t.Fatal(err)
		}
		dbw[id] = d
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	var bad []string
	var withdrawn lending.Money
	nCompleted := 0
	if len(dbw) != len(w.withdrawals) {
		bad = append(bad, fmt.Sprintf("%d withdrawals in the database, the clients created %d", len(dbw), len(w.withdrawals)))
	}
	for id, want := range w.withdrawals {
		got, ok := dbw[id]
		wantHold := map[string]string{"COMPLETED": "POSTED", "FAILED": "VOIDED"}[want.want]
		if !ok || got.amount != want.amount || got.status != want.want || got.holdStatus != wantHold {
			bad = append(bad, fmt.Sprintf("withdrawal %d: %+v, want %v %s with its hold %s", id, got, want.amount, want.want, wantHold))
		}
		if want.want == "COMPLETED" {
			withdrawn += want.amount
			nCompleted++
		}
	}
	var withdrawalTransfers int
	var dbWithdrawn, clearing lending.Money
	if err := pool.QueryRow(ctx, `SELECT
		(SELECT count(*) FROM transfers WHERE kind = 'WITHDRAWAL'),
		(SELECT coalesce(sum(amount), 0) FROM withdrawals WHERE status = 'COMPLETED'),
		(SELECT balance FROM wallets WHERE kind = 'PIX_CLEARING')`).Scan(&withdrawalTransfers, &dbWithdrawn, &clearing); err != nil {
		t.Fatal(err)
	}
	if withdrawalTransfers != nCompleted || dbWithdrawn != withdrawn {
		bad = append(bad, fmt.Sprintf("%d WITHDRAWAL transfers and %v withdrawn, want %d and %v", withdrawalTransfers, dbWithdrawn, nCompleted, withdrawn))
	}
	// All the money on the platform came in by Pix and has not gone out.
	if completedSum-dbWithdrawn != -clearing {
		bad = append(bad, fmt.Sprintf("deposits credited %v - withdrawals completed %v = %v, but PIX_CLEARING is %v (want its negation)",
			completedSum, dbWithdrawn, completedSum-dbWithdrawn, clearing))
	}
	var inside lending.Money
	if err := pool.QueryRow(ctx, `SELECT coalesce(sum(balance), 0) FROM wallets WHERE kind <> 'PIX_CLEARING'`).Scan(&inside); err != nil {
		t.Fatal(err)
	}
	if inside != completedSum-dbWithdrawn {
		bad = append(bad, fmt.Sprintf("money inside the platform %v, want deposits - withdrawals = %v", inside, completedSum-dbWithdrawn))
	}
	if len(bad) > 0 {
		t.Errorf("money: %d problems:\n  %s", len(bad), strings.Join(bad[:min(len(bad), 20)], "\n  "))
	}
	t.Logf("money: %d deposits credited (R$ %v), %d withdrawals completed (R$ %v), PIX_CLEARING %v, inside %v",
		completed, completedSum, nCompleted, dbWithdrawn, clearing, inside)
}
