// Package testenv gives each test its own PostgreSQL database, cloned from a
// migrated template, and its own Redis key prefix. Under CI=true a missing
// Postgres or Redis fails the test; elsewhere too, since the Makefile starts
// them: nothing is ever skipped silently.
package testenv

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/redis/go-redis/v9"

	"mutuo/store"
)

// AdminURL is the server-level connection string used to create databases.
func AdminURL() string {
	if u := os.Getenv("TEST_DATABASE_URL"); u != "" {
		return u
	}
	return "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable"
}

// RedisURL is the Redis used by tests.
func RedisURL() string {
	if u := os.Getenv("TEST_REDIS_URL"); u != "" {
		return u
	}
	return "redis://127.0.0.1:6379/0"
}

var (
	templateOnce sync.Once
	templateName string
	templateErr  error
)

// template creates (once per test binary) a migrated template database. Its
// name is unique to this process so parallel test binaries don't collide.
func template(ctx context.Context) (string, error) {
	templateOnce.Do(func() {
		templateName = "mutuo_template_" + randHex(6)
		conn, err := pgx.Connect(ctx, AdminURL())
		if err != nil {
			templateErr = fmt.Errorf("postgres unreachable at %s (run `make test`, which starts it): %w", AdminURL(), err)
			return
		}
		defer conn.Close(ctx)
		if _, err := conn.Exec(ctx, "CREATE DATABASE "+templateName); err != nil {
			templateErr = err
			return
		}
		pool, err := pgxpool.New(ctx, withDB(AdminURL(), templateName))
		if err != nil {
			templateErr = err
			return
		}
		templateErr = store.Migrate(ctx, pool)
		pool.Close()
	})
	return templateName, templateErr
}

// DB is a test's own database.
type DB struct {
	Name string
	URL  string
	Pool *pgxpool.Pool
}

// NewDB creates a fresh migrated database for t and drops it when t ends.
func NewDB(t testing.TB) *DB {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	tmpl, err := template(ctx)
	if err != nil {
		t.Fatalf("test database: %v", err)
	}
	name := "t_" + randHex(8)
	conn, err := pgx.Connect(ctx, AdminURL())
	if err != nil {
		t.Fatalf("postgres: %v", err)
	}
	defer conn.Close(ctx)
	// CREATE DATABASE … TEMPLATE fails if another session is connected to the
	// template; retry briefly.
	for i := 0; ; i++ {
		_, err = conn.Exec(ctx, fmt.Sprintf("CREATE DATABASE %s TEMPLATE %s", name, tmpl))
		if err == nil || i > 50 {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err != nil {
		t.Fatalf("create test database: %v", err)
	}
	url := withDB(AdminURL(), name)
	pool, err := pgxpool.New(ctx, url)
	if err != nil {
		t.Fatalf("connect test database: %v", err)
	}
	t.Cleanup(func() {
		pool.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		c, err := pgx.Connect(ctx, AdminURL())
		if err != nil {
			return
		}
		defer c.Close(ctx)
		_, _ = c.Exec(ctx, "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)")
	})
	return &DB{Name: name, URL: url, Pool: pool}
}

// Redis is a test's Redis client and its own prefix.
type Redis struct {
	Client *redis.Client
	Prefix string
}

// NewRedis connects to the test Redis and gives t a unique key prefix whose
// keys are deleted when t ends.
func NewRedis(t testing.TB) *Redis {
	t.Helper()
	opt, err := redis.ParseURL(RedisURL())
	if err != nil {
		t.Fatalf("TEST_REDIS_URL: %v", err)
	}
	c := redis.NewClient(opt)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := c.Ping(ctx).Err(); err != nil {
		t.Fatalf("redis unreachable at %s (run `make test`, which starts it): %v", RedisURL(), err)
	}
	prefix := "test:" + randHex(6) + ":"
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		iter := c.Scan(ctx, 0, prefix+"*", 1000).Iterator()
		for iter.Next(ctx) {
			c.Del(ctx, iter.Val())
		}
		_ = c.Close()
	})
	return &Redis{Client: c, Prefix: prefix}
}

func withDB(url, db string) string {
	// postgres://user@host:port/dbname?params
	base, params, _ := strings.Cut(url, "?")
	i := strings.LastIndex(base, "/")
	if i > len("postgres://") {
		base = base[:i]
	}
	out := base + "/" + db
	if params != "" {
		out += "?" + params
	}
	return out
}

func randHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// Main runs a package's tests and then drops its template database. Use it
// as `func TestMain(m *testing.M) { testenv.Main(m) }`.
func Main(m interface{ Run() int }) {
	code := m.Run()
	if templateName != "" {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		if c, err := pgx.Connect(ctx, AdminURL()); err == nil {
			_, _ = c.Exec(ctx, "DROP DATABASE IF EXISTS "+templateName+" WITH (FORCE)")
			_ = c.Close(ctx)
		}
		cancel()
	}
	os.Exit(code)
}
