// Package app wires Mutuo together: configuration from the environment, the
// store, auth, the GraphQL server and the HTTP routes. server.go runs it;
// tests and benchmarks start it in-process.
package app

import (
	"crypto/rand"
	"fmt"
	"net"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"mutuo/limits"
	"mutuo/ratelimit"
)

// Env is the deployment environment.
type Env string

// Environments.
const (
	Development Env = "development"
	Production  Env = "production"
)

// Config is everything Mutuo reads from the environment.
type Config struct {
	DatabaseURL      string
	RedisURL         string
	HTTPAddr         string
	Env              Env
	JWTSecret        []byte // HS256 secret, or
	JWTPrivateKeyPEM []byte // an Ed25519 private key (PEM) for EdDSA
	JWTGenerated     bool   // the secret was generated for this run (development)
	JWTIssuer        string
	JWTAudience      string
	RedisPrefix      string
	DemoData         bool
	AdminEmail       string
	AdminPassword    string
	PixWebhookSecret []byte
	LoaderWait       time.Duration
	Playground       bool // GraphiQL at /
	// AllowedOrigins (ALLOWED_ORIGINS, comma-separated scheme://host[:port])
	// may open websockets from a browser; development also allows localhost.
	AllowedOrigins []string
	// WSMaxSocketsPerUser (WS_MAX_SOCKETS_PER_USER): 0 is the default (10),
	// negative no limit.
	WSMaxSocketsPerUser int
	Limits              limits.Config
	RateLimit           ratelimit.Config

	ShutdownTimeout time.Duration
	// ShutdownDrainDelay (SHUTDOWN_DRAIN_DELAY, default 1s): on SIGTERM the
	// instance reports not ready and keeps serving this long before it
	// stops accepting connections; the rest of ShutdownTimeout drains.
	ShutdownDrainDelay time.Duration
}

// ConfigFromEnv reads the configuration. getenv is os.Getenv in production
// and a map in tests. A bad value is an error naming the variable.
func ConfigFromEnv(getenv func(string) string) (Config, error) {
	c := Config{
		DatabaseURL:     or(getenv("DATABASE_URL"), "postgres://postgres@127.0.0.1:5432/mutuo?sslmode=disable"),
		RedisURL:        or(getenv("REDIS_URL"), "redis://127.0.0.1:6379/0"),
		HTTPAddr:        or(getenv("HTTP_ADDR"), ":8080"),
		Env:             Env(or(getenv("MUTUO_ENV"), string(Development))),
		JWTIssuer:       or(getenv("JWT_ISSUER"), "mutuo"),
		JWTAudience:     or(getenv("JWT_AUDIENCE"), "mutuo-api"),
		RedisPrefix:     or(getenv("REDIS_PREFIX"), "mutuo:"),
		AdminEmail:      strings.TrimSpace(getenv("ADMIN_EMAIL")),
		AdminPassword:   getenv("ADMIN_PASSWORD"),
		ShutdownTimeout: 10 * time.Second,
	}
	if c.Env != Development && c.Env != Production {
		return c, fmt.Errorf("MUTUO_ENV must be development or production, got %q", c.Env)
	}
	if u, err := url.Parse(c.DatabaseURL); err != nil || (u.Scheme != "postgres" && u.Scheme != "postgresql") {
		return c, fmt.Errorf("DATABASE_URL must be a postgres:// URL")
	}
	if u, err := url.Parse(c.RedisURL); err != nil || (u.Scheme != "redis" && u.Scheme != "rediss") {
		return c, fmt.Errorf("REDIS_URL must be a redis:// or rediss:// URL")
	}
	if _, _, err := net.SplitHostPort(c.HTTPAddr); err != nil {
		return c, fmt.Errorf("HTTP_ADDR must be host:port or :port, got %q", c.HTTPAddr)
	}
	if strings.ContainsAny(c.RedisPrefix, " \t\r\n*?[]") {
		return c, fmt.Errorf("REDIS_PREFIX must not contain spaces or glob characters")
	}
	prod := c.Env == Production

	// JWT keys: a secret (HS256) or an Ed25519 key pair (EdDSA).
	if f := getenv("JWT_PRIVATE_KEY_FILE"); f != "" {
		pem, err := os.ReadFile(f)
		if err != nil {
			return c, fmt.Errorf("JWT_PRIVATE_KEY_FILE: %v", err)
		}
		c.JWTPrivateKeyPEM = pem
	} else if s := getenv("JWT_SECRET"); s != "" {
		if len(s) < 32 {
			return c, fmt.Errorf("JWT_SECRET must be at least 32 characters")
		}
		c.JWTSecret = []byte(s)
	} else if prod {
		return c, fmt.Errorf("JWT_SECRET or JWT_PRIVATE_KEY_FILE is required in production")
	} else {
		c.JWTSecret = make([]byte, 32)
		_, _ = rand.Read(c.JWTSecret)
		c.JWTGenerated = true
	}

	demo, err := boolVar(getenv, "DEMO_DATA", !prod)
	if err != nil {
		return c, err
	}
	c.DemoData = demo
	if c.Limits, err = limits.FromEnv(getenv, prod); err != nil {
		return c, err
	}
	if err := c.RateLimit.ApplyEnv(getenv); err != nil {
		return c, err
	}

	if (c.AdminEmail == "") != (c.AdminPassword == "") {
		return c, fmt.Errorf("ADMIN_EMAIL and ADMIN_PASSWORD must be set together")
	}
	if c.AdminEmail == "" && !prod {
		c.AdminEmail, c.AdminPassword = "admin@mutuo.dev", "mutuo-admin-123"
	}
	if c.AdminPassword != "" && len(c.AdminPassword) < 10 {
		return c, fmt.Errorf("ADMIN_PASSWORD must be at least 10 characters")
	}

	if s := getenv("PIX_WEBHOOK_SECRET"); s != "" {
		c.PixWebhookSecret = []byte(s)
	} else if prod {
		return c, fmt.Errorf("PIX_WEBHOOK_SECRET is required in production")
	} else {
		c.PixWebhookSecret = []byte("mutuo-dev-webhook-secret")
	}

	if c.Playground, err = boolVar(getenv, "PLAYGROUND", !prod); err != nil {
		return c, err
	}
	if c.ShutdownDrainDelay, err = durationVar(getenv, "SHUTDOWN_DRAIN_DELAY", time.Second); err != nil {
		return c, err
	}
	if c.ShutdownDrainDelay >= c.ShutdownTimeout {
		return c, fmt.Errorf("SHUTDOWN_DRAIN_DELAY must be shorter than the 10s shutdown budget")
	}
	if c.LoaderWait, err = durationVar(getenv, "LOADER_WAIT", 2*time.Millisecond); err != nil {
		return c, err
	}
	for _, o := range strings.Split(getenv("ALLOWED_ORIGINS"), ",") {
		if o = strings.TrimRight(strings.TrimSpace(o), "/"); o != "" {
			if !strings.HasPrefix(o, "https://") && !strings.HasPrefix(o, "http://") {
				return c, fmt.Errorf("ALLOWED_ORIGINS must list scheme://host[:port] origins, got %q", o)
			}
			c.AllowedOrigins = append(c.AllowedOrigins, o)
		}
	}
	if v := strings.TrimSpace(getenv("WS_MAX_SOCKETS_PER_USER")); v != "" {
		if c.WSMaxSocketsPerUser, err = strconv.Atoi(v); err != nil {
			return c, fmt.Errorf("WS_MAX_SOCKETS_PER_USER must be an integer, got %q", v)
		}
	}
	return c, nil
}

func or(v, def string) string {
	if strings.TrimSpace(v) == "" {
		return def
	}
	return strings.TrimSpace(v)
}

func boolVar(getenv func(string) string, name string, def bool) (bool, error) {
	v := strings.TrimSpace(getenv(name))
	if v == "" {
		return def, nil
	}
	b, err := strconv.ParseBool(v)
	if err != nil {
		return false, fmt.Errorf("%s must be true or false, got %q", name, v)
	}
	return b, nil
}

func durationVar(getenv func(string) string, name string, def time.Duration) (time.Duration, error) {
	v := strings.TrimSpace(getenv(name))
	if v == "" {
		return def, nil
	}
	d, err := time.ParseDuration(v)
	if err != nil || d < 0 {
		return 0, fmt.Errorf("%s must be a duration such as 2ms, got %q", name, v)
	}
	return d, nil
}
