package limits

import (
	"context"
	"encoding/json"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/99designs/gqlgen/graphql/handler"
	"github.com/redis/go-redis/v9"

	"mutuo/graph"
	"mutuo/internal/testenv"
	"mutuo/lending"
	"mutuo/resolvers"
)

func pq(hash string) map[string]any {
	return map[string]any{"persistedQuery": map[string]any{"version": 1, "sha256Hash": hash}}
}

func TestAPQ(t *testing.T) {
	rd := testenv.NewRedis(t)
	s := newServer(t, DefaultConfig(true), serverOpt{redis: rd})
	ctx := context.Background()
	q := `query Me { me { id name } }`
	h := QueryHash(q)
	key := rd.Prefix + "apq:" + h

	// miss: the protocol's message and code, so the client resends the query
	r := s.post(map[string]any{"extensions": pq(h)})
	s.refused(r, CodePersistedQueryNotFound, MsgPersistedQueryNotFound)
	if r.Errors[0].Message != MsgPersistedQueryNotFound {
		t.Fatalf("the message must be exactly %s: %s", MsgPersistedQueryNotFound, r.Raw)
	}

	// a wrong hash is refused and stores nothing
	s.refused(s.post(map[string]any{"query": q, "extensions": pq(QueryHash(q + " "))}), lending.CodeBadUserInput,
		"persistedQuery.sha256Hash is not the SHA-256 of the query")
	if n, _ := rd.Client.Exists(ctx, key, rd.Prefix+"apq:"+QueryHash(q+" ")).Result(); n != 0 {
		t.Fatal("a mismatched query was stored")
	}

	// a query refused by a limit is not stored either
	deep := nested(13)
	s.refused(s.post(map[string]any{"query": deep, "extensions": pq(QueryHash(deep))}), lending.CodeQueryTooComplex, "too deep")
	if n, _ := rd.Client.Exists(ctx, rd.Prefix+"apq:"+QueryHash(deep)).Result(); n != 0 {
		t.Fatal("a refused query was stored")
	}
	// nor one that does not validate
	bad := `{ me { nope } }`
	s.refused(s.post(map[string]any{"query": bad, "extensions": pq(QueryHash(bad))}), lending.CodeBadUserInput, "Cannot query field")
	if n, _ := rd.Client.Exists(ctx, rd.Prefix+"apq:"+QueryHash(bad)).Result(); n != 0 {
		t.Fatal("an invalid query was stored")
	}

	// register: hash and query run, and the query is stored for 24 h
	passed(t, s.post(map[string]any{"query": q, "extensions": pq(h)}))
	if v, err := rd.Client.Get(ctx, key).Result(); err != nil || v != q {
		t.Fatalf("stored %q, %v", v, err)
	}
	if ttl := rd.Client.TTL(ctx, key).Val(); ttl < 23*time.Hour || ttl > 24*time.Hour {
		t.Fatalf("TTL %v", ttl)
	}

	// hit, by POST and by GET (Apollo's useGETForHashedQueries); a hit
	// renews the TTL
	rd.Client.Expire(ctx, key, time.Hour)
	passed(t, s.post(map[string]any{"extensions": pq(h)}))
	ext, _ := json.Marshal(pq(strings.ToUpper(h)))
	passed(t, s.get(url.Values{"extensions": {string(ext)}}))
	if ttl := rd.Client.TTL(ctx, key).Val(); ttl < 23*time.Hour {
		t.Fatalf("a hit must renew the TTL: %v", ttl)
	}
	// the stored text went through the document limits again
	if c, ok := s.post(map[string]any{"extensions": pq(h)}).Extensions["cost"].(map[string]any); !ok || c["requested"] != float64(1) {
		t.Fatal("a persisted query reports its cost")
	}

	// a tampered entry is a miss, never run
	rd.Client.Set(ctx, key, `{ me { id email } }`, time.Hour)
	s.rootCalls.Store(0)
	s.refused(s.post(map[string]any{"extensions": pq(h)}), CodePersistedQueryNotFound, MsgPersistedQueryNotFound)

	// malformed extensions
	for _, e := range []map[string]any{
		{"persistedQuery": map[string]any{"version": 2, "sha256Hash": h}},
		{"persistedQuery": map[string]any{"version": 1, "sha256Hash": "abc"}},
		{"persistedQuery": map[string]any{"version": 1, "sha256Hash": rd.Prefix + "*"}},
		{"persistedQuery": "yes"},
	} {
		s.refused(s.post(map[string]any{"extensions": e}), lending.CodeBadUserInput, "persistedQuery")
	}
}

func TestAPQDisabled(t *testing.T) {
	cfg := DefaultConfig(true)
	cfg.DisableAPQ = true
	s := newServer(t, cfg)
	q := `{ me { id } }`
	s.refused(s.post(map[string]any{"extensions": pq(QueryHash(q))}), CodePersistedQueryNotSupported, MsgPersistedQueryNotSupported)
	passed(t, s.post(map[string]any{"query": q, "extensions": pq(QueryHash(q))}))
}

// With Redis down, APQ fails open: a hash is a miss, the full query runs.
func TestAPQRedisDown(t *testing.T) {
	down := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1", DialTimeout: 100 * time.Millisecond, MaxRetries: -1})
	defer down.Close()
	c := NewRedisCache(down, "x:", time.Hour, nil)
	c.Add(context.Background(), "k", "v")
	if _, ok := c.Get(context.Background(), "k"); ok {
		t.Fatal("a failed Get is a miss")
	}
	s := newServer(t, DefaultConfig(true), serverOpt{redis: &testenv.Redis{Client: down, Prefix: "x:"}})
	q := `{ me { id } }`
	s.refused(s.post(map[string]any{"extensions": pq(QueryHash(q))}), CodePersistedQueryNotFound, MsgPersistedQueryNotFound)
	passed(t, s.post(map[string]any{"query": q, "extensions": pq(QueryHash(q))}))
}

func writeManifest(t *testing.T, content string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "operations.json")
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestAllowList(t *testing.T) {
	me := `query Me { me { id name } }`
	loans := `query Loans($n: Int) { loans(first: $n) { edges { node { id } } } }`
	manifest, _ := json.Marshal(map[string]string{QueryHash(me): me, QueryHash(loans): loans})
	cfg := DefaultConfig(true)
	cfg.AllowListFile = writeManifest(t, string(manifest))
	rd := testenv.NewRedis(t)
	s := newServer(t, cfg, serverOpt{redis: rd})

	// listed: by hash (POST and GET) and in full
	passed(t, s.post(map[string]any{"extensions": pq(QueryHash(me))}))
	ext, _ := json.Marshal(pq(QueryHash(loans)))
	passed(t, s.get(url.Values{"extensions": {string(ext)}, "variables": {`{"n": 5}`}}))
	passed(t, s.query(me))
	passed(t, s.post(map[string]any{"query": me, "extensions": pq(QueryHash(me))}))

	// anything else is refused before it is parsed
	s.rootCalls.Store(0)
	other := `query Me { me { id name email } }`
	s.refused(s.query(other), lending.CodeForbidden, "operation not allowed: this server only runs registered persisted operations, and "+QueryHash(other)+" is not one")
	s.refused(s.post(map[string]any{"extensions": pq(QueryHash(other))}), lending.CodeForbidden, "operation not allowed")
	s.refused(s.post(map[string]any{"query": other, "extensions": pq(QueryHash(other))}), lending.CodeForbidden, "operation not allowed")
	s.refused(s.query(me+" "), lending.CodeForbidden, "operation not allowed") // byte for byte
	s.refused(s.post(map[string]any{"query": other, "extensions": pq(QueryHash(me))}), lending.CodeBadUserInput, "is not the SHA-256 of the query")
	s.refused(s.query(introspectionQuery), lending.CodeForbidden, "operation not allowed")
	// and nothing is ever registered
	if keys, _ := rd.Client.Keys(context.Background(), rd.Prefix+"*").Result(); len(keys) != 0 {
		t.Fatalf("allow-list mode stored %v", keys)
	}
}

func TestManifest(t *testing.T) {
	me := `query Me { me { id } }`
	apollo := `{"format":"apollo-persisted-query-manifest","version":1,"operations":[{"id":"` + QueryHash(me) + `","name":"Me","type":"query","body":` + mustJSON(me) + `}]}`
	m, err := ParseManifest([]byte(apollo))
	if err != nil || m[QueryHash(me)] != me || len(m) != 1 {
		t.Fatalf("%v %v", m, err)
	}
	m, err = ParseManifest([]byte(`{"` + QueryHash(me) + `":` + mustJSON(me) + `}`))
	if err != nil || m[QueryHash(me)] != me {
		t.Fatalf("%v %v", m, err)
	}
	for content, want := range map[string]string{
		`[]`: "JSON object",
		`{"` + QueryHash(me) + `":` + mustJSON(me+" ") + `}`: "must be the SHA-256 of its text",
		`{"abc": 1}`:                         "must be the query text",
		`{"format":"relay","operations":[]}`: "unknown manifest format",
		`{"format":"apollo-persisted-query-manifest","version":2,"operations":[]}`:   "version 2",
		`{"format":"apollo-persisted-query-manifest","version":1,"operations":[{}]}`: "has no text",
	} {
		if _, err := ParseManifest([]byte(content)); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: %v, want %q", content, err, want)
		}
	}

	// a manifest operation that does not validate against the schema (or
	// breaks a limit) fails Install, not the clients
	stale := `query Old { me { nickname } }`
	deep := `{ me {` + strings.Repeat(" id", 100) + ` } }`
	for _, q := range []string{stale, deep} {
		cfg := DefaultConfig(true)
		cfg.AllowList = map[string]string{QueryHash(q): q}
		srv := handler.New(graph.NewExecutableSchema(graph.Config{Resolvers: &resolvers.Resolver{}}))
		if err := Install(srv, cfg, nil, ""); err == nil || !strings.Contains(err.Error(), QueryHash(q)) {
			t.Errorf("Install with %q: %v", q, err)
		}
	}
	if err := Install(handler.New(graph.NewExecutableSchema(graph.Config{Resolvers: &resolvers.Resolver{}})),
		Config{AllowListFile: "/nonexistent.json"}, nil, ""); err == nil {
		t.Error("a missing manifest fails Install")
	}
	if err := Install(handler.New(graph.NewExecutableSchema(graph.Config{Resolvers: &resolvers.Resolver{}})),
		Config{}, nil, ""); err == nil {
		t.Error("APQ without Redis fails Install")
	}
}

func mustJSON(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}
