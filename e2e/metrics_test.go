package e2e

import (
	"io"
	"net/http"
	"regexp"
	"strconv"
	"testing"
	"time"
)

// scrape returns the value of one series in /metrics (0 when absent).
func scrape(t *testing.T, e *env, series string) float64 {
	t.Helper()
	resp, err := http.Get(e.URL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	m := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(series) + ` ([0-9.e+-]+)$`).FindSubmatch(b)
	if m == nil {
		return 0
	}
	v, _ := strconv.ParseFloat(string(m[1]), 64)
	return v
}

func TestMetricsMoveWithOperations(t *testing.T) {
	e := newEnv(t)
	w := apiWorld(t, e)
	ok := `mutuo_graphql_operations_total{operation="me",outcome="ok",type="query"}`
	errs := `mutuo_graphql_errors_total{code="UNAUTHENTICATED",operation="me"}`
	hist := `mutuo_graphql_operation_duration_seconds_count{operation="me",type="query"}`
	httpReqs := `mutuo_http_requests_total{method="POST",route="/graphql",status="200"}`
	before := []float64{scrape(t, e, ok), scrape(t, e, errs), scrape(t, e, hist), scrape(t, e, httpReqs)}
	e.ok(w.tokens["inv1"], `{ me { name } }`, nil)
	e.ok(w.tokens["inv1"], `{ me { name } }`, nil)
	e.do("", `{ me { name } }`, nil)
	after := []float64{scrape(t, e, ok), scrape(t, e, errs), scrape(t, e, hist), scrape(t, e, httpReqs)}
	want := []float64{2, 1, 3, 3}
	for i, name := range []string{ok, errs, hist, httpReqs} {
		if after[i]-before[i] != want[i] {
			t.Errorf("%s moved by %v, want %v", name, after[i]-before[i], want[i])
		}
	}
	for _, s := range []string{"mutuo_pg_pool_max_conns", "mutuo_redis_pool_total_conns", "mutuo_outbox_backlog", "mutuo_subscriptions_active"} {
		resp, _ := http.Get(e.URL + "/metrics")
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if !regexp.MustCompile(`(?m)^` + s + ` `).Match(b) {
			t.Errorf("/metrics has no %s", s)
		}
	}
}

// TestMetricsForTheRealtimePath: a subscription's events, the relay's
// commit-to-publish latency, the hub, and socket closes by code.
func TestMetricsForTheRealtimePath(t *testing.T) {
	e := newEnv(t)
	w := apiWorld(t, e)
	delivered := `mutuo_subscription_events_delivered_total{subscription="walletUpdated"}`
	published := `mutuo_outbox_publish_latency_seconds_count`
	dispatched := `mutuo_hub_events_dispatched_total`
	closed := `mutuo_ws_closes_total{code="4409"}`
	before := []float64{scrape(t, e, delivered), scrape(t, e, published), scrape(t, e, dispatched), scrape(t, e, closed)}

	c := wsConnect(t, e.URL, w.tokens["inv1"])
	c.subscribe("w", `subscription { walletUpdated { version } }`, nil)
	c.expectNext("w", 5*time.Second) // the current state
	e.deposit(w.tokens["inv1"], "10.00", "metrics-dep")
	c.expectNext("w", 5*time.Second)                                    // the deposit's change
	c.subscribe("w", `subscription { walletUpdated { version } }`, nil) // a duplicate id: 4409
	if code := c.closeCode(5 * time.Second); code != 4409 {
		t.Fatalf("close code %d, want 4409", code)
	}
	time.Sleep(100 * time.Millisecond)
	after := []float64{scrape(t, e, delivered), scrape(t, e, published), scrape(t, e, dispatched), scrape(t, e, closed)}
	for i, name := range []string{delivered, published, dispatched, closed} {
		if after[i] <= before[i] {
			t.Errorf("%s did not move: %v → %v", name, before[i], after[i])
		}
	}
}
