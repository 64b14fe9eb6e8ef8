package main

// The fan-out benchmark's server process: `bench fanout -server` (started
// by the benchmark itself through os.Executable, never by hand) runs the
// app on a real TCP port with the outbox relay and the broker, so that its
// resident memory, goroutines and CPU can be read apart from the 10,000
// clients' (which live in the parent). It prints "READY <base URL>" on
// stdout once the realtime pipeline is ready, and exits when its stdin
// closes (or on SIGINT/SIGTERM).
//
// Besides the app it serves, on the same listener:
//
//	GET /bench/stats[?gc=1][&groups=1]  runtime, RSS, socket and hub figures (JSON);
//	                                    gc=1 collects and returns freed memory to the OS first,
//	                                    groups=1 adds goroutine counts by entry function
//	POST /bench/cpu/start?path=F        start a CPU profile into F
//	POST /bench/cpu/stop                stop it
//	POST /bench/heap?path=F             write a heap profile (after a GC) into F

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"runtime"
	"runtime/debug"
	"runtime/pprof"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"mutuo/app"
)

// fanoutServerStats is what /bench/stats returns.
type fanoutServerStats struct {
	PID        int   `json:"pid"`
	Goroutines int   `json:"goroutines"`
	Threads    int   `json:"threads"`
	RSS        int64 `json:"rss"` // VmRSS, bytes

	HeapAlloc    uint64 `json:"heapAlloc"`
	HeapInuse    uint64 `json:"heapInuse"`
	HeapIdle     uint64 `json:"heapIdle"`
	HeapReleased uint64 `json:"heapReleased"`
	StackInuse   uint64 `json:"stackInuse"`
	Sys          uint64 `json:"sys"`
	NumGC        uint32 `json:"numGC"`

	Sockets        int64 `json:"sockets"`
	Operations     int64 `json:"operations"`
	HubSubscribers int   `json:"hubSubscribers"`
	HubDelivered   int64 `json:"hubDelivered"`
	HubLagged      int64 `json:"hubLagged"`
	BrokerReceived int64 `json:"brokerReceived"`

	Groups []fanoutGoroutineGroup `json:"groups,omitempty"`
}

// fanoutGoroutineGroup counts goroutines by the function they were started with.
type fanoutGoroutineGroup struct {
	Func  string `json:"func"`
	Count int    `json:"count"`
}

// fanoutProcStatus reads a field of /proc/<pid>/status ("VmRSS", "Threads"); kB
// fields are returned in bytes.
func fanoutProcStatus(pid int, field string) (int64, error) {
	f, err := os.Open("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if !ok || k != field {
			continue
		}
		fs := strings.Fields(v)
		if len(fs) == 0 {
			break
		}
		n, err := strconv.ParseInt(fs[0], 10, 64)
		if err != nil {
			return 0, err
		}
		if len(fs) > 1 && fs[1] == "kB" {
			n *= 1024
		}
		return n, nil
	}
	return 0, fmt.Errorf("/proc/%d/status: no %s", pid, field)
}

// fanoutRaiseNoFile lifts RLIMIT_NOFILE to want (the hard limit too when the
// process may); it returns the limit in force afterwards and an error when
// it is still below want.
func fanoutRaiseNoFile(want uint64) (syscall.Rlimit, error) {
	var r syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &r); err != nil {
		return r, err
	}
	if r.Cur >= want {
		return r, nil
	}
	n := syscall.Rlimit{Cur: want, Max: max(r.Max, want)}
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &n); err != nil {
		// unprivileged: as far as the hard limit allows
		n = syscall.Rlimit{Cur: r.Max, Max: r.Max}
		_ = syscall.Setrlimit(syscall.RLIMIT_NOFILE, &n)
	}
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &r); err != nil {
		return r, err
	}
	if r.Cur < want {
		return r, fmt.Errorf("RLIMIT_NOFILE is %d, want %d (raise the hard limit: ulimit -Hn)", r.Cur, want)
	}
	return r, nil
}

// fanoutGoroutineGroups counts the goroutines by their outermost function.
func fanoutGoroutineGroups() []fanoutGoroutineGroup {
	var buf bytes.Buffer
	if err := pprof.Lookup("goroutine").WriteTo(&buf, 1); err != nil {
		return nil
	}
	counts := map[string]int{}
	for _, block := range strings.Split(buf.String(), "\n\n") {
		lines := strings.Split(strings.TrimSpace(block), "\n")
		if len(lines) > 0 && strings.HasPrefix(lines[0], "goroutine profile:") {
			lines = lines[1:]
		}
		if len(lines) < 2 {
			continue
		}
		head, _, ok := strings.Cut(lines[0], " @ ")
		n, err := strconv.Atoi(head)
		if !ok || err != nil {
			continue
		}
		fn := "?"
		for _, l := range lines[1:] {
			if f := strings.Split(l, "\t"); len(f) >= 3 && f[0] == "#" {
				fn = f[2]
				if i := strings.LastIndex(fn, "+0x"); i > 0 {
					fn = fn[:i]
				}
			}
		}
		counts[fn] += n
	}
	out := make([]fanoutGoroutineGroup, 0, len(counts))
	for f, n := range counts {
		out = append(out, fanoutGoroutineGroup{f, n})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Count > out[j].Count })
	return out
}

// runFanoutServer is the server process.
func runFanoutServer(ctx context.Context, dbURL string, env envFlag, conns int) error {
	if _, err := fanoutRaiseNoFile(uint64(conns) + 2048); err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var a atomic.Pointer[app.App]
	var cpuMu sync.Mutex
	var cpuFile *os.File
	post := func(h func(w http.ResponseWriter, r *http.Request) error) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.Method != http.MethodPost {
				http.Error(w, "POST", http.StatusMethodNotAllowed)
				return
			}
			if err := h(w, r); err != nil {
				http.Error(w, err.Error(), http.StatusInternalServerError)
			}
		})
	}
	raw := newFanoutRawServer()
	mount := map[string]http.Handler{
		"/bench/raw":      raw,
		"/bench/raw/send": http.HandlerFunc(raw.send),
		"/bench/stats": http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Query().Get("gc") == "1" {
				runtime.GC()
				debug.FreeOSMemory()
			}
			st := fanoutServerStats{PID: os.Getpid(), Goroutines: runtime.NumGoroutine()}
			var ms runtime.MemStats
			runtime.ReadMemStats(&ms)
			st.HeapAlloc, st.HeapInuse, st.HeapIdle, st.HeapReleased = ms.HeapAlloc, ms.HeapInuse, ms.HeapIdle, ms.HeapReleased
			st.StackInuse, st.Sys, st.NumGC = ms.StackInuse, ms.Sys, ms.NumGC
			st.RSS, _ = fanoutProcStatus(st.PID, "VmRSS")
			th, _ := fanoutProcStatus(st.PID, "Threads")
			st.Threads = int(th)
			if ap := a.Load(); ap != nil {
				ws := ap.WS.Stats()
				st.Sockets, st.Operations = ws.Sockets, ws.Operations
				hs := ap.Hub.Stats()
				st.HubSubscribers, st.HubDelivered, st.HubLagged = ap.Hub.Subscribers(), hs.Delivered, hs.Lagged
				st.BrokerReceived = ap.Broker.Received()
			}
			if r.URL.Query().Get("groups") == "1" {
				st.Groups = fanoutGoroutineGroups()
			}
			w.Header().Set("Content-Type", "application/json")
			_ = json.NewEncoder(w).Encode(st)
		}),
		"/bench/cpu/start": post(func(w http.ResponseWriter, r *http.Request) error {
			cpuMu.Lock()
			defer cpuMu.Unlock()
			if cpuFile != nil {
				return errors.New("a CPU profile is running")
			}
			f, err := os.Create(r.URL.Query().Get("path"))
			if err != nil {
				return err
			}
			if err := pprof.StartCPUProfile(f); err != nil {
				f.Close()
				return err
			}
			cpuFile = f
			return nil
		}),
		"/bench/cpu/stop": post(func(w http.ResponseWriter, r *http.Request) error {
			cpuMu.Lock()
			defer cpuMu.Unlock()
			if cpuFile == nil {
				return errors.New("no CPU profile is running")
			}
			pprof.StopCPUProfile()
			err := cpuFile.Close()
			cpuFile = nil
			return err
		}),
		"/bench/heap": post(func(w http.ResponseWriter, r *http.Request) error {
			f, err := os.Create(r.URL.Query().Get("path"))
			if err != nil {
				return err
			}
			runtime.GC()
			if err := pprof.Lookup("heap").WriteTo(f, 0); err != nil {
				f.Close()
				return err
			}
			return f.Close()
		}),
	}
	s, err := startServer(ctx, dbURL, serverOpts{LoaderWait: 2 * time.Millisecond, Env: env, Mount: mount})
	if err != nil {
		return err
	}
	a.Store(s.App)
	rtCtx, stopRealtime := context.WithCancel(context.Background())
	s.App.RunRealtime(rtCtx)
	defer func() {
		stopRealtime()
		s.Close()
	}()
	deadline := time.Now().Add(30 * time.Second)
	for !(s.App.Relay.Ready() && s.App.Broker.Ready()) {
		if time.Now().After(deadline) {
			return errors.New("the outbox relay and the broker were not ready within 30s")
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		time.Sleep(20 * time.Millisecond)
	}
	fmt.Printf("READY %s\n", s.URL)
	go func() {
		_, _ = io.Copy(io.Discard, os.Stdin)
		cancel()
	}()
	<-ctx.Done()
	return nil
}
