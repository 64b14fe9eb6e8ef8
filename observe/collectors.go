package observe

import (
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
)

var (
	pgAcquired = prometheus.NewDesc("mutuo_pg_pool_acquired_conns", "Postgres connections in use.", nil, nil)
	pgIdle     = prometheus.NewDesc("mutuo_pg_pool_idle_conns", "Idle Postgres connections.", nil, nil)
	pgTotal    = prometheus.NewDesc("mutuo_pg_pool_total_conns", "Postgres connections.", nil, nil)
	pgMax      = prometheus.NewDesc("mutuo_pg_pool_max_conns", "The pool's maximum size.", nil, nil)
	pgWaits    = prometheus.NewDesc("mutuo_pg_pool_empty_acquire_total", "Acquires that had to wait for a connection.", nil, nil)
	pgWaitSec  = prometheus.NewDesc("mutuo_pg_pool_acquire_wait_seconds_total", "Time spent waiting for a connection.", nil, nil)
	rdHits     = prometheus.NewDesc("mutuo_redis_pool_hits_total", "Redis pool hits.", nil, nil)
	rdMisses   = prometheus.NewDesc("mutuo_redis_pool_misses_total", "Redis pool misses.", nil, nil)
	rdTimeouts = prometheus.NewDesc("mutuo_redis_pool_timeouts_total", "Redis pool wait timeouts.", nil, nil)
	rdTotal    = prometheus.NewDesc("mutuo_redis_pool_total_conns", "Redis connections.", nil, nil)
	rdIdle     = prometheus.NewDesc("mutuo_redis_pool_idle_conns", "Idle Redis connections.", nil, nil)
)

type poolCollector struct{ pool *pgxpool.Pool }

func (poolCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{pgAcquired, pgIdle, pgTotal, pgMax, pgWaits, pgWaitSec} {
		ch <- d
	}
}

func (c poolCollector) Collect(ch chan<- prometheus.Metric) {
	s := c.pool.Stat()
	ch <- prometheus.MustNewConstMetric(pgAcquired, prometheus.GaugeValue, float64(s.AcquiredConns()))
	ch <- prometheus.MustNewConstMetric(pgIdle, prometheus.GaugeValue, float64(s.IdleConns()))
	ch <- prometheus.MustNewConstMetric(pgTotal, prometheus.GaugeValue, float64(s.TotalConns()))
	ch <- prometheus.MustNewConstMetric(pgMax, prometheus.GaugeValue, float64(s.MaxConns()))
	ch <- prometheus.MustNewConstMetric(pgWaits, prometheus.CounterValue, float64(s.EmptyAcquireCount()))
	ch <- prometheus.MustNewConstMetric(pgWaitSec, prometheus.CounterValue, s.EmptyAcquireWaitTime().Seconds())
}

type redisCollector struct{ rdb *redis.Client }

func (redisCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{rdHits, rdMisses, rdTimeouts, rdTotal, rdIdle} {
		ch <- d
	}
}

func (c redisCollector) Collect(ch chan<- prometheus.Metric) {
	s := c.rdb.PoolStats()
	ch <- prometheus.MustNewConstMetric(rdHits, prometheus.CounterValue, float64(s.Hits))
	ch <- prometheus.MustNewConstMetric(rdMisses, prometheus.CounterValue, float64(s.Misses))
	ch <- prometheus.MustNewConstMetric(rdTimeouts, prometheus.CounterValue, float64(s.Timeouts))
	ch <- prometheus.MustNewConstMetric(rdTotal, prometheus.GaugeValue, float64(s.TotalConns))
	ch <- prometheus.MustNewConstMetric(rdIdle, prometheus.GaugeValue, float64(s.IdleConns))
}
