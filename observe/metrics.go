// Package observe is Mutuo's observability: Prometheus metrics
// (prometheus/client_golang, one registry per instance), and structured JSON
// logs (log/slog) with the request id, user id and operation name.
package observe

import (
	"bufio"
	"fmt"
	"net"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/99designs/gqlgen/graphql"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/redis/go-redis/v9"
	"github.com/vektah/gqlparser/v2/ast"
)

// Metrics holds the instance's registry and the series the code records.
// Labels are bounded: operations are named by their root fields (from the
// schema), never by client-chosen operation names.
type Metrics struct {
	Registry *prometheus.Registry

	Operations       *prometheus.CounterVec   // operation, type, outcome
	OperationSeconds *prometheus.HistogramVec // operation, type
	Errors           *prometheus.CounterVec   // operation, code
	HTTPRequests     *prometheus.CounterVec   // route, method, status
	HTTPSeconds      *prometheus.HistogramVec // route
	EventsDelivered  *prometheus.CounterVec   // subscription
	WSCloses         *prometheus.CounterVec   // code: why sockets closed (4008: slow consumer, dropped)
	PublishSeconds   prometheus.Histogram     // outbox commit → published to Redis
}

var latencyBuckets = []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10}

// NewMetrics registers the series, the Go and process collectors, and the
// Postgres pool and Redis client statistics.
func NewMetrics(pool *pgxpool.Pool, rdb *redis.Client) *Metrics {
	r := prometheus.NewRegistry()
	m := &Metrics{
		Registry: r,
		Operations: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "mutuo_graphql_operations_total",
			Help: "GraphQL operations by root fields, type and outcome (ok, error)."}, []string{"operation", "type", "outcome"}),
		OperationSeconds: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "mutuo_graphql_operation_duration_seconds",
			Help: "GraphQL operation latency (subscriptions: time to the first response).", Buckets: latencyBuckets}, []string{"operation", "type"}),
		Errors: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "mutuo_graphql_errors_total",
			Help: "GraphQL errors by operation and extensions.code."}, []string{"operation", "code"}),
		HTTPRequests: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "mutuo_http_requests_total",
			Help: "HTTP requests by route, method and status."}, []string{"route", "method", "status"}),
		HTTPSeconds: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "mutuo_http_request_duration_seconds",
			Help: "HTTP request latency by route.", Buckets: latencyBuckets}, []string{"route"}),
		EventsDelivered: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "mutuo_subscription_events_delivered_total",
			Help: "Subscription events sent to clients."}, []string{"subscription"}),
		WSCloses: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "mutuo_ws_closes_total",
			Help: "Websockets closed, by close code (4008: a slow consumer dropped, 1012: shutdown, 4403: auth)."}, []string{"code"}),
		PublishSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "mutuo_outbox_publish_latency_seconds",
			Help: "From the outbox row's commit to its publication on Redis.", Buckets: latencyBuckets}),
	}
	r.MustRegister(m.Operations, m.OperationSeconds, m.Errors, m.HTTPRequests, m.HTTPSeconds,
		m.EventsDelivered, m.WSCloses, m.PublishSeconds,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	if pool != nil {
		r.MustRegister(poolCollector{pool})
	}
	if rdb != nil {
		r.MustRegister(redisCollector{rdb})
	}
	return m
}

// Gauge registers a gauge read from f at scrape time (websocket
// connections, active subscriptions, outbox backlog).
func (m *Metrics) Gauge(name, help string, f func() float64) {
	m.Registry.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: name, Help: help}, f))
}

// Counter registers a counter read from f at scrape time.
func (m *Metrics) Counter(name, help string, f func() float64) {
	m.Registry.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{Name: name, Help: help}, f))
}

// Handler serves /metrics.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.Registry, promhttp.HandlerOpts{Registry: m.Registry})
}

// OperationName names an operation by its root fields, sorted and joined
// with "+" ("invest", "me+notifications"); introspection is "__schema".
func OperationName(op *ast.OperationDefinition) string {
	if op == nil {
		return "unknown"
	}
	seen := map[string]bool{}
	var names []string
	var walk func(ast.SelectionSet, int)
	walk = func(ss ast.SelectionSet, depth int) {
		for _, s := range ss {
			switch s := s.(type) {
			case *ast.Field:
				if !seen[s.Name] {
					seen[s.Name] = true
					names = append(names, s.Name)
				}
			case *ast.InlineFragment:
				if depth < 4 {
					walk(s.SelectionSet, depth+1)
				}
			case *ast.FragmentSpread:
				if s.Definition != nil && depth < 4 {
					walk(s.Definition.SelectionSet, depth+1)
				}
			}
		}
	}
	walk(op.SelectionSet, 0)
	if len(names) == 0 {
		return "unknown"
	}
	sort.Strings(names)
	if len(names) > 4 {
		names = append(names[:4], "…")
	}
	return strings.Join(names, "+")
}

// Middleware records HTTP requests by route (the mux pattern).
func (m *Metrics) Middleware(route string, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		sw := &statusWriter{ResponseWriter: w, status: http.StatusOK}
		next.ServeHTTP(sw, r)
		m.HTTPRequests.WithLabelValues(route, r.Method, strconv.Itoa(sw.status)).Inc()
		m.HTTPSeconds.WithLabelValues(route).Observe(time.Since(start).Seconds())
	})
}

type statusWriter struct {
	http.ResponseWriter
	status      int
	wroteHeader bool
}

func (w *statusWriter) WriteHeader(code int) {
	if !w.wroteHeader {
		w.status, w.wroteHeader = code, true
	}
	w.ResponseWriter.WriteHeader(code)
}

// Unwrap lets http.ResponseController reach the underlying writer.
func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// Hijack passes a websocket upgrade through (gorilla/websocket asserts
// http.Hijacker on the writer itself); a hijacked request is recorded as 101.
func (w *statusWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	h, ok := w.ResponseWriter.(http.Hijacker)
	if !ok {
		return nil, nil, fmt.Errorf("observe: %T cannot be hijacked", w.ResponseWriter)
	}
	w.status, w.wroteHeader = http.StatusSwitchingProtocols, true
	return h.Hijack()
}

// Flush passes flushes through.
func (w *statusWriter) Flush() {
	if f, ok := w.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

// operationTypeName is the label for an operation type.
func operationTypeName(op *ast.OperationDefinition) string {
	if op == nil {
		return "unknown"
	}
	return string(op.Operation)
}

// errorCodes lists the extensions.code of each error ("UNKNOWN" when none).
func errorCodes(resp *graphql.Response) []string {
	if resp == nil {
		return nil
	}
	out := make([]string, 0, len(resp.Errors))
	for _, e := range resp.Errors {
		c, _ := e.Extensions["code"].(string)
		if c == "" {
			c = "UNKNOWN"
		}
		out = append(out, c)
	}
	return out
}
