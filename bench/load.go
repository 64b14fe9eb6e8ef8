package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"slices"
	"sync"
	"time"
)

// loadResult is one measured window.
type loadResult struct {
	Requests int
	Errors   int
	FirstErr error
	Elapsed  time.Duration   // from the window's start until the last request ended
	Lat      []time.Duration // sorted
}

// RPS is completed requests (errors included) per second.
func (r loadResult) RPS() float64 {
	if r.Elapsed <= 0 {
		return 0
	}
	return float64(r.Requests) / r.Elapsed.Seconds()
}

// Pct is the p-th percentile latency (0 < p <= 100).
func (r loadResult) Pct(p float64) time.Duration {
	if len(r.Lat) == 0 {
		return 0
	}
	i := int(float64(len(r.Lat))*p/100+0.5) - 1
	return r.Lat[max(0, min(i, len(r.Lat)-1))]
}

// Mean latency.
func (r loadResult) Mean() time.Duration {
	if len(r.Lat) == 0 {
		return 0
	}
	var s time.Duration
	for _, d := range r.Lat {
		s += d
	}
	return s / time.Duration(len(r.Lat))
}

// loadHooks run at the measured window's edges (snapshot counters, start
// and stop a profile); either may be nil.
type loadHooks struct {
	Start, Stop func()
}

// runLoad runs do from c workers: first for warmup (not recorded), then,
// after every worker has finished, for d (recorded). do gets its worker
// number, the worker's request number and a buffer to reuse for the body.
func runLoad(ctx context.Context, c int, warmup, d time.Duration, h loadHooks,
	do func(ctx context.Context, worker, seq int, buf *bytes.Buffer) error) loadResult {
	seqs := make([]int, c)
	bufs := make([]*bytes.Buffer, c)
	for i := range bufs {
		bufs[i] = new(bytes.Buffer)
	}
	phase := func(dur time.Duration, record bool) loadResult {
		var (
			wg   sync.WaitGroup
			mu   sync.Mutex
			res  loadResult
			lats = make([][]time.Duration, c)
		)
		start := time.Now()
		deadline := start.Add(dur)
		for w := 0; w < c; w++ {
			wg.Add(1)
			go func(w int) {
				defer wg.Done()
				var lat []time.Duration
				if record {
					lat = make([]time.Duration, 0, 4096)
				}
				n, errs := 0, 0
				var first error
				for ctx.Err() == nil && time.Now().Before(deadline) {
					t := time.Now()
					err := do(ctx, w, seqs[w], bufs[w])
					seqs[w]++
					if record {
						lat = append(lat, time.Since(t))
					}
					n++
					if err != nil && ctx.Err() == nil {
						errs++
						if first == nil {
							first = err
						}
					}
				}
				lats[w] = lat
				mu.Lock()
				res.Requests += n
				res.Errors += errs
				if res.FirstErr == nil {
					res.FirstErr = first
				}
				mu.Unlock()
			}(w)
		}
		wg.Wait()
		res.Elapsed = time.Since(start)
		for _, l := range lats {
			res.Lat = append(res.Lat, l...)
		}
		slices.Sort(res.Lat)
		return res
	}
	if warmup > 0 {
		phase(warmup, false)
	}
	if h.Start != nil {
		h.Start()
	}
	res := phase(d, true)
	if h.Stop != nil {
		h.Stop()
	}
	return res
}

// fetch sends req, reads the body into buf and fails unless the status is
// 200 and check (if any) accepts the body.
func fetch(client *http.Client, req *http.Request, buf *bytes.Buffer, check func([]byte) error) error {
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	buf.Reset()
	if _, err := io.Copy(buf, resp.Body); err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("HTTP %d: %.200s", resp.StatusCode, buf.Bytes())
	}
	if check != nil {
		return check(buf.Bytes())
	}
	return nil
}

// ms formats a duration in milliseconds.
func ms(d time.Duration) string { return fmt.Sprintf("%.2fms", float64(d)/float64(time.Millisecond)) }
