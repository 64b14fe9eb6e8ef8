package main

import (
	"context"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
)

// CPU accounting for a measured window: this process's CPU time (the
// server and the load generator) and the CPU time of the Postgres backends
// serving the benchmark's database. CPU per request is steadier than
// requests per second on a shared, noisy machine.

const clockTicks = 100 // USER_HZ: /proc/<pid>/stat times are in 1/100 s on Linux

// selfCPU is this process's user + system time.
func selfCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// procCPU is a local process's user + system time from /proc.
func procCPU(pid int) (time.Duration, bool) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, false
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0, false
	}
	f := strings.Fields(s[i+1:]) // f[0] is field 3 (state); utime is 14, stime 15
	if len(f) < 13 {
		return 0, false
	}
	u, err1 := strconv.ParseInt(f[11], 10, 64)
	st, err2 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, false
	}
	return time.Duration(u+st) * time.Second / clockTicks, true
}

// dbCPU snapshots the CPU time of the backends connected to database name,
// when Postgres runs on this machine.
type dbCPU struct {
	pool *pgxpool.Pool // any pool on the server
	name string
}

// snapshot maps backend pid → CPU time; nil when not measurable.
func (d dbCPU) snapshot(ctx context.Context) map[int]time.Duration {
	rows, err := d.pool.Query(ctx, `SELECT pid FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()`, d.name)
	if err != nil {
		return nil
	}
	defer rows.Close()
	out := map[int]time.Duration{}
	for rows.Next() {
		var pid int
		if rows.Scan(&pid) != nil {
			return nil
		}
		if t, ok := procCPU(pid); ok {
			out[pid] = t
		}
	}
	if rows.Err() != nil || len(out) == 0 {
		return nil
	}
	return out
}

// since sums the CPU used since before by backends present in both
// snapshots (the pools' connections live through a window).
func since(before, after map[int]time.Duration) (time.Duration, bool) {
	if before == nil || after == nil {
		return 0, false
	}
	var sum time.Duration
	n := 0
	for pid, t := range after {
		if b, ok := before[pid]; ok {
			sum += t - b
			n++
		}
	}
	return sum, n > 0
}

// loadAvg is the 1-minute load average ("-" where /proc/loadavg is missing):
// on a shared machine it says how much else was running.
func loadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "-"
	}
	f := strings.Fields(string(b))
	if len(f) == 0 {
		return "-"
	}
	return f[0]
}
