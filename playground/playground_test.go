package playground_test

import (
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"path"
	"regexp"
	"strings"
	"testing"

	"mutuo/playground"
)

func get(t *testing.T, h http.Handler, method, target string, header ...string) *http.Response {
	t.Helper()
	req := httptest.NewRequest(method, target, nil)
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec.Result()
}

func body(t *testing.T, r *http.Response) []byte {
	t.Helper()
	b, err := io.ReadAll(r.Body)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func embedded(t *testing.T, name string) []byte {
	t.Helper()
	b, err := fs.ReadFile(playground.Dist, name)
	if err != nil {
		t.Fatalf("%s is not embedded (run scripts/build-playground.sh): %v", name, err)
	}
	if len(b) == 0 {
		t.Fatalf("%s is empty", name)
	}
	return b
}

func TestEmbeddedBuild(t *testing.T) {
	index := string(embedded(t, "index.html"))
	js := embedded(t, "playground.js")
	css := embedded(t, "playground.css")
	embedded(t, "favicon.svg")
	embedded(t, "THIRD-PARTY-NOTICES.txt")
	if len(js) < 500_000 {
		t.Errorf("playground.js is only %d bytes; GraphiQL is not in it", len(js))
	}
	for _, s := range []string{"graphiql", "graphql-transport-ws", "connection_init", "/graphql"} {
		if !bytes.Contains(js, []byte(s)) {
			t.Errorf("playground.js does not contain %q", s)
		}
	}
	if !bytes.Contains(css, []byte(".graphiql-container")) {
		t.Error("playground.css does not contain GraphiQL's styles")
	}
	// index.html names the assets by content hash, so it matches this build.
	version := func(b []byte) string { s := sha256.Sum256(b); return hex.EncodeToString(s[:])[:16] }
	for _, want := range []string{"./playground.js?v=" + version(js), "./playground.css?v=" + version(css)} {
		if !strings.Contains(index, want) {
			t.Errorf("index.html does not reference %s (stale build? run scripts/build-playground.sh)", want)
		}
	}
}

// TestOnlyLocalReferences: the page loads nothing from another host.
func TestOnlyLocalReferences(t *testing.T) {
	index := string(embedded(t, "index.html"))
	if m := regexp.MustCompile(`(?i)(https?:)?//[a-z0-9.-]+`).FindAllString(index, -1); len(m) > 0 {
		t.Errorf("index.html references other hosts: %v", m)
	}
	h := playground.Handler()
	refs := regexp.MustCompile(`(?i)\b(?:src|href)\s*=\s*"([^"]*)"`).FindAllStringSubmatch(index, -1)
	if len(refs) < 3 {
		t.Fatalf("index.html has %d src/href attributes, want the script, the stylesheet and the icon", len(refs))
	}
	for _, m := range refs {
		ref := m[1]
		if !strings.HasPrefix(ref, "./") {
			t.Errorf("index.html: %q is not a relative URL to a local asset", ref)
			continue
		}
		p, _, _ := strings.Cut(strings.TrimPrefix(ref, "."), "?")
		if r := get(t, h, "GET", ref[1:]); r.StatusCode != http.StatusOK {
			t.Errorf("index.html references %s, served with %d", p, r.StatusCode)
		}
	}
	// The stylesheet's url(...)s are local files too (the fonts and images
	// GraphiQL ships as data: URLs are written out by the build).
	css := string(embedded(t, "playground.css"))
	urls := regexp.MustCompile(`url\(\s*["']?([^"')]+)`).FindAllStringSubmatch(css, -1)
	if len(urls) == 0 {
		t.Fatal("playground.css has no url(): where are GraphiQL's fonts?")
	}
	for _, m := range urls {
		u := m[1]
		if strings.Contains(u, ":") || strings.HasPrefix(u, "/") {
			t.Errorf("playground.css: url(%s) is not a relative local URL", u)
			continue
		}
		if r := get(t, h, "GET", "/"+path.Clean(u)); r.StatusCode != http.StatusOK {
			t.Errorf("playground.css references %s, served with %d", u, r.StatusCode)
		}
	}
}

func TestServesIndex(t *testing.T) {
	h := playground.Handler()
	r := get(t, h, "GET", "/")
	if r.StatusCode != http.StatusOK {
		t.Fatalf("GET / = %d", r.StatusCode)
	}
	if got := r.Header.Get("Content-Type"); got != "text/html; charset=utf-8" {
		t.Errorf("Content-Type = %q", got)
	}
	if got, want := string(body(t, r)), string(embedded(t, "index.html")); got != want {
		t.Error("GET / is not index.html")
	}
	if got := r.Header.Get("Cache-Control"); got != "no-cache" {
		t.Errorf("index Cache-Control = %q, want no-cache", got)
	}
	csp := r.Header.Get("Content-Security-Policy")
	for _, want := range []string{"default-src 'none'", "script-src 'self';", "connect-src 'self' ws: wss:", "font-src 'self';",
		"img-src 'self';", "style-src 'self' 'unsafe-inline';", "frame-ancestors 'none'"} {
		if !strings.Contains(csp, want) {
			t.Errorf("Content-Security-Policy %q lacks %q", csp, want)
		}
	}
	if strings.Contains(csp, "unsafe-eval") || strings.Count(csp, "unsafe-inline") != 1 || strings.Contains(csp, "*") ||
		strings.Contains(csp, "http") {
		t.Errorf("Content-Security-Policy is too lax: %q", csp)
	}
	if got := r.Header.Get("X-Content-Type-Options"); got != "nosniff" {
		t.Errorf("X-Content-Type-Options = %q", got)
	}
	if r := get(t, h, "HEAD", "/"); r.StatusCode != http.StatusOK || len(body(t, r)) != 0 {
		t.Errorf("HEAD / = %d", r.StatusCode)
	}
	etag := r.Header.Get("ETag")
	if r := get(t, h, "GET", "/", "If-None-Match", etag); etag == "" || r.StatusCode != http.StatusNotModified {
		t.Errorf("GET / with If-None-Match %s = %d, want 304", etag, r.StatusCode)
	}
}

func TestAssetContentTypes(t *testing.T) {
	h := playground.Handler()
	want := map[string]string{
		".js":    "text/javascript; charset=utf-8",
		".css":   "text/css; charset=utf-8",
		".svg":   "image/svg+xml",
		".png":   "image/png",
		".woff2": "font/woff2",
		".woff":  "font/woff",
		".txt":   "text/plain; charset=utf-8",
	}
	n := 0
	err := fs.WalkDir(playground.Dist, ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || p == "index.html" {
			return err
		}
		n++
		ct, ok := want[path.Ext(p)]
		if !ok {
			t.Errorf("%s: unexpected kind of file in dist", p)
			return nil
		}
		r := get(t, h, "GET", "/"+p)
		if r.StatusCode != http.StatusOK {
			t.Errorf("GET /%s = %d", p, r.StatusCode)
			return nil
		}
		if got := r.Header.Get("Content-Type"); got != ct {
			t.Errorf("GET /%s: Content-Type = %q, want %q", p, got, ct)
		}
		if got := r.Header.Get("X-Content-Type-Options"); got != "nosniff" {
			t.Errorf("GET /%s: X-Content-Type-Options = %q", p, got)
		}
		if !bytes.Equal(body(t, r), embedded(t, p)) {
			t.Errorf("GET /%s: body differs from the embedded file", p)
		}
		cache := r.Header.Get("Cache-Control")
		versioned := p == "playground.js" || p == "playground.css" || strings.HasPrefix(p, "assets/")
		if versioned && cache != "public, max-age=31536000, immutable" {
			t.Errorf("GET /%s: Cache-Control = %q, want a year, immutable", p, cache)
		}
		if !versioned && (cache == "" || strings.Contains(cache, "immutable")) {
			t.Errorf("GET /%s: Cache-Control = %q; its URL has no version, so it must not be immutable", p, cache)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if n < 5 {
		t.Errorf("only %d assets embedded", n)
	}
	// The version query string does not change what is served.
	if r := get(t, h, "GET", "/playground.js?v=whatever"); r.StatusCode != http.StatusOK {
		t.Errorf("GET /playground.js?v= = %d", r.StatusCode)
	}
}

func TestGzip(t *testing.T) {
	h := playground.Handler()
	js := embedded(t, "playground.js")
	r := get(t, h, "GET", "/playground.js", "Accept-Encoding", "br, gzip;q=0.8")
	if r.Header.Get("Content-Encoding") != "gzip" || !strings.Contains(r.Header.Get("Vary"), "Accept-Encoding") {
		t.Fatalf("Content-Encoding %q, Vary %q", r.Header.Get("Content-Encoding"), r.Header.Get("Vary"))
	}
	zr, err := gzip.NewReader(r.Body)
	if err != nil {
		t.Fatal(err)
	}
	plain, err := io.ReadAll(zr)
	if err != nil || !bytes.Equal(plain, js) {
		t.Fatalf("gzipped playground.js does not decompress to the file (err %v)", err)
	}
	gzTag := r.Header.Get("ETag")
	for _, ae := range []string{"", "identity", "gzip;q=0", "*;q=0", "gzip;q=0.0, *"} {
		r := get(t, h, "GET", "/playground.js", "Accept-Encoding", ae)
		if r.Header.Get("Content-Encoding") != "" || !bytes.Equal(body(t, r), js) {
			t.Errorf("Accept-Encoding %q: got Content-Encoding %q", ae, r.Header.Get("Content-Encoding"))
		}
		if r.Header.Get("ETag") == gzTag {
			t.Errorf("Accept-Encoding %q: the plain and the gzipped file share the ETag %s", ae, gzTag)
		}
	}
	if r := get(t, h, "GET", "/playground.js", "Accept-Encoding", "*"); r.Header.Get("Content-Encoding") != "gzip" {
		t.Error("Accept-Encoding * did not get gzip")
	}
}

func TestNotFoundAndMethods(t *testing.T) {
	h := playground.Handler()
	for _, p := range []string{"/index.html", "/nope", "/graphiql", "/playground.js/", "/assets/", "/assets", "/dist/index.html",
		"/web/package.json", "/playground.go", "//playground.js", "/./playground.js", "/favicon.ico", "/%2e%2e/go.mod"} {
		if r := get(t, h, "GET", p); r.StatusCode != http.StatusNotFound {
			t.Errorf("GET %s = %d, want 404", p, r.StatusCode)
		}
	}
	for _, m := range []string{"POST", "PUT", "DELETE", "OPTIONS"} {
		r := get(t, h, m, "/")
		if r.StatusCode != http.StatusMethodNotAllowed || r.Header.Get("Allow") != "GET, HEAD" {
			t.Errorf("%s / = %d (Allow %q), want 405", m, r.StatusCode, r.Header.Get("Allow"))
		}
	}
}

// TestMountedAtRoot: mounted at "/" in a mux, the playground leaves the
// other routes alone and answers 404 for unknown paths.
func TestMountedAtRoot(t *testing.T) {
	mux := http.NewServeMux()
	mux.Handle("/graphql", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { _, _ = io.WriteString(w, "api") }))
	mux.Handle("/", playground.Handler())
	if r := get(t, mux, "POST", "/graphql"); string(body(t, r)) != "api" {
		t.Error("/graphql did not reach the API")
	}
	if r := get(t, mux, "GET", "/"); r.StatusCode != http.StatusOK || r.Header.Get("Content-Type") != "text/html; charset=utf-8" {
		t.Errorf("GET / = %d", r.StatusCode)
	}
	if r := get(t, mux, "GET", "/metricz"); r.StatusCode != http.StatusNotFound {
		t.Errorf("GET /metricz = %d, want 404", r.StatusCode)
	}
}
