package app

import (
	"strings"
	"testing"
	"time"
)

func env(kv ...string) func(string) string {
	m := map[string]string{}
	for i := 0; i+1 < len(kv); i += 2 {
		m[kv[i]] = kv[i+1]
	}
	return func(k string) string { return m[k] }
}

func TestConfigDefaults(t *testing.T) {
	c, err := ConfigFromEnv(env())
	if err != nil {
		t.Fatal(err)
	}
	if c.Env != Development || c.HTTPAddr != ":8080" || !c.DemoData || !c.JWTGenerated || len(c.JWTSecret) != 32 ||
		c.RedisPrefix != "mutuo:" || c.AdminEmail != "admin@mutuo.dev" || c.LoaderWait != 2*time.Millisecond {
		t.Fatalf("defaults: %+v", c)
	}
	other, _ := ConfigFromEnv(env())
	if string(other.JWTSecret) == string(c.JWTSecret) {
		t.Fatal("the development secret must be random per start")
	}
}

func TestConfigBadValuesNameTheVariable(t *testing.T) {
	for _, c := range []struct {
		kv   []string
		name string
	}{
		{[]string{"MUTUO_ENV", "staging"}, "MUTUO_ENV"},
		{[]string{"DATABASE_URL", "mysql://x"}, "DATABASE_URL"},
		{[]string{"REDIS_URL", "http://x"}, "REDIS_URL"},
		{[]string{"HTTP_ADDR", "8080"}, "HTTP_ADDR"},
		{[]string{"JWT_SECRET", "short"}, "JWT_SECRET"},
		{[]string{"JWT_PRIVATE_KEY_FILE", "/nonexistent/key.pem"}, "JWT_PRIVATE_KEY_FILE"},
		{[]string{"DEMO_DATA", "maybe"}, "DEMO_DATA"},
		{[]string{"ADMIN_EMAIL", "a@b.c"}, "ADMIN_EMAIL"},
		{[]string{"ADMIN_EMAIL", "a@b.c", "ADMIN_PASSWORD", "short"}, "ADMIN_PASSWORD"},
		{[]string{"REDIS_PREFIX", "a b"}, "REDIS_PREFIX"},
		{[]string{"LOADER_WAIT", "soon"}, "LOADER_WAIT"},
		{[]string{"MUTUO_ENV", "production", "PIX_WEBHOOK_SECRET", "x"}, "JWT_SECRET"},
		{[]string{"MUTUO_ENV", "production", "JWT_SECRET", strings.Repeat("s", 32)}, "PIX_WEBHOOK_SECRET"},
	} {
		_, err := ConfigFromEnv(env(c.kv...))
		if err == nil || !strings.Contains(err.Error(), c.name) {
			t.Errorf("%v: error %v does not name %s", c.kv, err, c.name)
		}
	}
}

func TestConfigProduction(t *testing.T) {
	c, err := ConfigFromEnv(env("MUTUO_ENV", "production", "JWT_SECRET", strings.Repeat("s", 32), "PIX_WEBHOOK_SECRET", "w"))
	if err != nil {
		t.Fatal(err)
	}
	if c.DemoData || c.AdminEmail != "" || c.JWTGenerated {
		t.Fatalf("production defaults: %+v", c)
	}
}
