package limits

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sort"
	"strings"
	"time"

	"github.com/99designs/gqlgen/graphql"
	"github.com/redis/go-redis/v9"
	"github.com/vektah/gqlparser/v2"
	"github.com/vektah/gqlparser/v2/gqlerror"

	"mutuo/lending"
)

// Persisted-query protocol codes. They are outside the contract's list of
// codes on purpose: the automatic persisted queries protocol (Apollo's,
// which Apollo Client, Apollo Kotlin/iOS and urql implement) tells the
// client "send the full query" with exactly this message and code, and
// clients match on them to retry; any other code would break the
// protocol. Neither is an error about the operation: the retry succeeds.
const (
	CodePersistedQueryNotFound     lending.Code = "PERSISTED_QUERY_NOT_FOUND"
	CodePersistedQueryNotSupported lending.Code = "PERSISTED_QUERY_NOT_SUPPORTED"

	MsgPersistedQueryNotFound     = "PersistedQueryNotFound"
	MsgPersistedQueryNotSupported = "PersistedQueryNotSupported"
)

// Persisted serves persisted operations, before anything is parsed. A
// request names one with extensions.persistedQuery = {"version": 1,
// "sha256Hash": "<lowercase hex SHA-256 of the query text>"}, with or
// without the query itself.
//
// Automatic persisted queries (Cache set): a hash alone runs the query
// stored under it, or is answered PersistedQueryNotFound (code
// PERSISTED_QUERY_NOT_FOUND), upon which the client sends hash and query;
// the hash must then be the query's SHA-256 (else BAD_USER_INPUT) and, once
// the operation has passed every check and is about to run, the query is
// stored. Only documents that parse, validate and pass the limits are ever
// stored. If the cache (Redis) fails, a hash is a miss and the client falls
// back to sending the query: APQ fails open, it is only about bandwidth.
//
// Allow-list mode (AllowList set): only the listed operations run, named by
// hash or sent in full (the text must then be byte-for-byte the listed
// one); anything else is refused with FORBIDDEN before it is parsed, and
// nothing is ever registered. FORBIDDEN rather than QUERY_TOO_COMPLEX or
// BAD_USER_INPUT: the request is well-formed and within the limits, this
// server just does not run operations it does not know, and no change to
// the request (other than sending a listed one) would help, so clients must
// not retry it, as they would PERSISTED_QUERY_NOT_FOUND.
//
// With neither, a hash alone is answered PersistedQueryNotSupported (so
// Apollo clients stop sending hashes) and a hash with a query just runs the
// query.
type Persisted struct {
	Cache     graphql.Cache[string]
	AllowList map[string]string

	check func(context.Context, string) *gqlerror.Error
}

var _ interface {
	graphql.HandlerExtension
	graphql.OperationParameterMutator
	graphql.OperationInterceptor
} = (*Persisted)(nil)

// ExtensionName implements graphql.HandlerExtension.
func (*Persisted) ExtensionName() string { return "MutuoPersistedOperations" }

// Validate checks every allow-listed operation against the schema (and the
// document limits) when the server starts, so that a stale manifest fails
// the deploy instead of the clients.
func (p *Persisted) Validate(es graphql.ExecutableSchema) error {
	if p.AllowList == nil {
		return nil
	}
	hashes := make([]string, 0, len(p.AllowList))
	for h := range p.AllowList {
		hashes = append(hashes, h)
	}
	sort.Strings(hashes)
	var errs []error
	for _, h := range hashes {
		q := p.AllowList[h]
		if p.check != nil {
			if e := p.check(context.Background(), q); e != nil {
				errs = append(errs, fmt.Errorf("persisted operation %s: %s", h, e.Message))
				continue
			}
		}
		if _, list := gqlparser.LoadQuery(es.Schema(), q); len(list) > 0 {
			errs = append(errs, fmt.Errorf("persisted operation %s does not validate against the schema: %s", h, list.Error()))
		}
	}
	return errors.Join(errs...)
}

const persistedStatsKey = "mutuo.limits.persisted"

// PersistedInfo describes how an operation's text was obtained.
type PersistedInfo struct {
	Hash string
	// FromStore: the request sent only the hash.
	FromStore bool
	// Register: the query will be stored (APQ) if it passes every check.
	Register bool
}

// PersistedOf returns how the operation in ctx used persisted queries.
func PersistedOf(ctx context.Context) (PersistedInfo, bool) {
	if !graphql.HasOperationContext(ctx) {
		return PersistedInfo{}, false
	}
	i, ok := graphql.GetOperationContext(ctx).Stats.GetExtension(persistedStatsKey).(*PersistedInfo)
	if !ok {
		return PersistedInfo{}, false
	}
	return *i, true
}

// MutateOperationParameters resolves a persisted operation's text.
func (p *Persisted) MutateOperationParameters(ctx context.Context, raw *graphql.RawParams) *gqlerror.Error {
	hash, present, perr := persistedHash(raw.Extensions)
	if perr != nil {
		return perr
	}
	info := &PersistedInfo{Hash: hash}
	switch {
	case p.AllowList != nil:
		if !present {
			if raw.Query == "" {
				return nil // gqlgen answers "no operation provided"
			}
			hash = QueryHash(raw.Query)
		} else if raw.Query != "" && QueryHash(raw.Query) != hash {
			return refuse(lending.CodeBadUserInput, nil, "persistedQuery.sha256Hash is not the SHA-256 of the query")
		}
		q, ok := p.AllowList[hash]
		if !ok {
			return refuse(lending.CodeForbidden, nil,
				"operation not allowed: this server only runs registered persisted operations, and %s is not one", hash)
		}
		info.Hash, info.FromStore = hash, raw.Query == ""
		raw.Query = q
	case !present:
		return nil
	case p.Cache != nil:
		if raw.Query == "" {
			q, ok := p.Cache.Get(ctx, hash)
			if !ok || QueryHash(q) != hash {
				return refuse(CodePersistedQueryNotFound, nil, MsgPersistedQueryNotFound)
			}
			raw.Query, info.FromStore = q, true
		} else {
			if QueryHash(raw.Query) != hash {
				return refuse(lending.CodeBadUserInput, nil, "persistedQuery.sha256Hash is not the SHA-256 of the query")
			}
			info.Register = true
		}
	default:
		if raw.Query == "" {
			return refuse(CodePersistedQueryNotSupported, nil, MsgPersistedQueryNotSupported)
		}
		return nil
	}
	if graphql.HasOperationContext(ctx) {
		graphql.GetOperationContext(ctx).Stats.SetExtension(persistedStatsKey, info)
	}
	return nil
}

// InterceptOperation stores an automatic persisted query once its operation
// has passed every check and is about to run.
func (p *Persisted) InterceptOperation(ctx context.Context, next graphql.OperationHandler) graphql.ResponseHandler {
	if info, ok := PersistedOf(ctx); ok && info.Register && p.Cache != nil {
		p.Cache.Add(ctx, info.Hash, graphql.GetOperationContext(ctx).RawQuery)
	}
	return next(ctx)
}

// persistedHash reads extensions.persistedQuery.
func persistedHash(ext map[string]any) (hash string, present bool, err *gqlerror.Error) {
	v, ok := ext["persistedQuery"]
	if !ok || v == nil {
		return "", false, nil
	}
	pq, ok := v.(map[string]any)
	if !ok {
		return "", false, refuse(lending.CodeBadUserInput, nil, "extensions.persistedQuery must be an object with version and sha256Hash")
	}
	if ver, ok := toInt(pq["version"]); !ok || ver != 1 {
		return "", false, refuse(lending.CodeBadUserInput, nil, "unsupported persistedQuery version: only version 1 is supported")
	}
	h, _ := pq["sha256Hash"].(string)
	h = strings.ToLower(h)
	if b, err := hex.DecodeString(h); err != nil || len(b) != sha256.Size {
		return "", false, refuse(lending.CodeBadUserInput, nil, "persistedQuery.sha256Hash must be a SHA-256 in hexadecimal")
	}
	return h, true, nil
}

// QueryHash is the lowercase hex SHA-256 of a query's text, the persisted
// query id.
func QueryHash(query string) string {
	s := sha256.Sum256([]byte(query))
	return hex.EncodeToString(s[:])
}

// RedisCache is a graphql.Cache[string] in Redis, for automatic persisted
// queries: keys are prefix+hash, each kept for TTL after its last use
// (GETEX, Redis ≥ 6.2). Redis failures are logged and treated as misses.
type RedisCache struct {
	rdb     redis.Cmdable
	prefix  string
	ttl     time.Duration
	timeout time.Duration
	log     *slog.Logger
}

var _ graphql.Cache[string] = (*RedisCache)(nil)

// NewRedisCache returns a cache in rdb under prefix (e.g. "mutuo:apq:").
func NewRedisCache(rdb redis.Cmdable, prefix string, ttl time.Duration, log *slog.Logger) *RedisCache {
	if ttl <= 0 {
		ttl = DefaultAPQTTL
	}
	if log == nil {
		log = slog.Default()
	}
	return &RedisCache{rdb: rdb, prefix: prefix, ttl: ttl, timeout: 250 * time.Millisecond, log: log}
}

// Get implements graphql.Cache.
func (c *RedisCache) Get(ctx context.Context, key string) (string, bool) {
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	v, err := c.rdb.GetEx(ctx, c.prefix+key, c.ttl).Result()
	if err != nil {
		if !errors.Is(err, redis.Nil) {
			c.log.WarnContext(ctx, "persisted query cache: get failed", "err", err)
		}
		return "", false
	}
	return v, true
}

// Add implements graphql.Cache.
func (c *RedisCache) Add(ctx context.Context, key, value string) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), c.timeout)
	defer cancel()
	if err := c.rdb.Set(ctx, c.prefix+key, value, c.ttl).Err(); err != nil {
		c.log.WarnContext(ctx, "persisted query cache: set failed", "err", err)
	}
}

// LoadManifest reads an allow-list manifest (see ParseManifest).
func LoadManifest(path string) (map[string]string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	m, err := ParseManifest(b)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return m, nil
}

// ParseManifest parses an allow-list manifest, in either of two JSON
// formats:
//
//   - an object mapping each operation's id to its text:
//     {"<sha256>": "query Me { me { id } }", …}
//   - Apollo's persisted query manifest, as written by
//     @apollo/generate-persisted-query-manifest:
//     {"format": "apollo-persisted-query-manifest", "version": 1,
//     "operations": [{"id": "<sha256>", "name": "Me", "type": "query",
//     "body": "query Me { me { id } }"}, …]}
//
// An id is the lowercase hex SHA-256 of the operation's exact text (what
// Apollo's tools and the APQ protocol use by default); an id that is not is
// an error, so that a hand-edited text cannot silently stop matching.
func ParseManifest(b []byte) (map[string]string, error) {
	var probe map[string]json.RawMessage
	if err := json.Unmarshal(b, &probe); err != nil {
		return nil, fmt.Errorf("a manifest must be a JSON object: %w", err)
	}
	ops := map[string]string{}
	if f, ok := probe["format"]; ok {
		var apollo struct {
			Format     string `json:"format"`
			Version    int    `json:"version"`
			Operations []struct {
				ID   string `json:"id"`
				Name string `json:"name"`
				Body string `json:"body"`
			} `json:"operations"`
		}
		var format string
		_ = json.Unmarshal(f, &format)
		if format != "apollo-persisted-query-manifest" {
			return nil, fmt.Errorf("unknown manifest format %q", format)
		}
		if err := json.Unmarshal(b, &apollo); err != nil {
			return nil, fmt.Errorf("apollo-persisted-query-manifest: %w", err)
		}
		if apollo.Version != 1 {
			return nil, fmt.Errorf("apollo-persisted-query-manifest version %d is not supported (only 1)", apollo.Version)
		}
		for _, op := range apollo.Operations {
			ops[op.ID] = op.Body
		}
	} else {
		for id, raw := range probe {
			var q string
			if err := json.Unmarshal(raw, &q); err != nil {
				return nil, fmt.Errorf("operation %s: the value must be the query text", id)
			}
			ops[id] = q
		}
	}
	for id, q := range ops {
		if q == "" {
			return nil, fmt.Errorf("operation %s has no text", id)
		}
		if h := QueryHash(q); id != h {
			return nil, fmt.Errorf("operation %s: its id must be the SHA-256 of its text, %s", id, h)
		}
	}
	return ops, nil
}
