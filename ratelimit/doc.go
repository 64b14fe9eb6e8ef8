// Package ratelimit enforces Mutuo's request budgets and protects signIn. All
// state lives in Redis under the configured prefix, so every instance behind
// a load balancer enforces one budget.
//
// # Query budgets
//
// Every GraphQL operation (query, mutation, and subscription) is charged its
// query cost, as package limits measures it (a subscription once, when it
// starts), against two GCRA buckets (the algorithm of go-redis/redis_rate,
// run as one Lua script so that a refusal charges nothing):
//
//   - per signed-in user (key rl:u:<id>): default 10,000 points a minute,
//     burst 5,000;
//   - per client IP (key rl:ip:<ip>; IPv6 per /64): default 20,000 points a
//     minute, burst 10,000.
//
// The websocket transport (realtime.WSTransport) creates each operation
// through the executor, with the socket's viewer and the upgrade request's
// context. So the Extension charges websocket operations too, and
// Middleware, which wraps the upgrade, supplies the IP. Transports that
// bypass the executor call Allow.
//
// A signed-in request must fit both. An anonymous request has only the IP
// budget. An operation that is refused is not charged to either bucket. A cost
// below 1 is charged 1, so cheap requests still count. A cost above a bucket's
// burst is charged the whole burst: it empties the bucket but can still run,
// rather than being refused forever. Set the burst to at least the largest
// cost that package limits accepts. The defaults match: the user burst
// equals limits.DefaultMaxCost, 5,000.
//
// Why these defaults: by the costs measured in package limits, a screen of the
// app costs 42 (a marketplace page) to 819 (an investor's dashboard). A burst
// of 5,000 covers the costliest accepted query, or about six dashboards at
// once. 10,000 a minute sustains a dozen dashboards or hundreds of marketplace
// pages a minute, which is more than a person clicks through. A scraper
// walking 100-item pages inside 100-item pages (4,000+ a query) is slowed to
// two or three queries a minute. For comparison, GitHub
// allows 5,000 points an hour and Shopify refills 50 points a second. The IP
// budget is twice the user budget for two reasons. Offices and mobile
// carriers (CGNAT) put many users behind one address. And one attacker with
// many accounts on one address should get no more than about two users'
// worth. Anonymous clients have only the IP budget, because the only public
// operations are signUp, signIn and a few cheap reads.
//
// Refusals have extensions.code RATE_LIMITED and a message that gives the
// delay ("rate limit exceeded for this user: retry in 3s"). Over HTTP,
// Middleware adds a Retry-After header. The status code follows
// GraphQL-over-HTTP: a refusal is a request error, and the decision depends on
// the operation's cost, which is part of the request. So the response is:
//
//   - 200 for Accept: application/json, because the specification says a
//     well-formed request answered as application/json SHOULD get 200 whatever
//     its GraphQL errors are; and
//   - 429 Too Many Requests for application/graphql-response+json, where
//     request errors are 4xx and 429 is the specific one.
//
// Retry-After is sent in both cases, so HTTP-aware clients and proxies can
// back off either way.
//
// # Client IP
//
// The client is the TCP peer (RemoteAddr). X-Forwarded-For is read only when
// the peer is in TrustedProxies (CIDRs, env TRUSTED_PROXIES; the default is
// empty, so no proxy is trusted). The header is then read right to left, and
// the first address that is not a trusted proxy is the client. Anything a
// client writes to the left of that address is ignored, so a client cannot
// choose its own IP. Put the load balancer's addresses in TRUSTED_PROXIES,
// and nothing else.
//
// # signIn
//
// BeforeSignIn runs before the password is checked. AfterSignIn records the
// outcome. The protection has these parts:
//
//   - attempts per IP: 20 a minute, burst 20. This limits credential stuffing
//     and the Argon2 CPU that one address can use;
//   - attempts per email (lower-cased, trimmed, stored as a SHA-256 hash):
//     5 a minute, burst 5. It counts only attempts from IPs that are not
//     known for that email, and it limits slow guessing from many IPs;
//   - lockout per (email, IP) pair: 10 failures within 15 minutes lock that
//     pair for 15 minutes. An attacker locks only their own address;
//   - lockout per email, for distributed attacks: 20 failures within 15
//     minutes from IPs not known for the email lock the email for those IPs.
//     The lock lasts 1 minute and doubles each time it recurs within 24 hours,
//     up to 15 minutes. While it is locked no password is checked, so no
//     failures are counted and the attacker cannot extend it;
//   - known IPs: a successful sign-in records the IP (up to 10 per email, for
//     30 days). A known IP bypasses the per-email budget and the per-email
//     lock. The pair lockout and the per-IP budget still apply to it.
//
// So an attacker cannot keep a user out of their account. From the
// attacker's own addresses the attacker locks only those pairs. A
// distributed attack makes the per-email lock and budget refuse new
// addresses, but never for more than 15 minutes at a time, and never the
// addresses from which the user has signed in before. The remaining cost is
// that a user on a brand-new address, during a sustained distributed attack
// on that user's email, may have to wait up to 15 minutes or sign in from a
// known address. That trade keeps guessing down to about 5 passwords a
// minute per email, however many addresses the attacker has. Refusals look
// the same for known and unknown emails, so they do not reveal which emails
// have accounts.
//
// # Redis failures
//
// Every Redis call has its own deadline (Timeout, default 200 ms). The
// deadline bounds socket I/O only when the client has ContextTimeoutEnabled,
// so use RedisOptions for the limiter's client. After a failure, Redis is
// left alone for 1 s and the policy below answers at once. An outage then
// adds up to Timeout only to the requests that probe Redis, about once a
// second, rather than to every request.
// Errors are logged at most once every 10 s.
//
//   - Query budgets fail OPEN by default (FailClosed=false). The API stays
//     up. Authenticated requests already fail closed when Redis is down (the
//     token denylist in auth). The limits that need no Redis still hold:
//     cost, depth, size and time per operation. With FailClosed=true,
//     operations are refused as INTERNAL ("rate limiter unavailable").
//   - signIn fails CLOSED by default (SignIn.FailOpen=false). Sign-in is the
//     place where passwords are guessed, and an outage, perhaps caused by an
//     attacker, must not lift the guessing limits. Refusals are INTERNAL
//     ("sign-in is temporarily unavailable"), not RATE_LIMITED.
//
// # Redis deployment
//
// Each decision is one Lua script over several keys. Those keys are not
// hash-tagged together, so the scripts need a single Redis node (with or
// without Sentinel), not Redis Cluster.
package ratelimit
