// Package playground serves GraphiQL for the Mutuo API: index.html at "/"
// and its JavaScript, CSS, fonts and images, all embedded in the binary from
// dist/ (built from the npm packages by scripts/build-playground.sh and
// committed), so the page needs no CDN and no network beyond this server.
//
// The page talks to same-origin /graphql: HTTP for queries and mutations, a
// websocket (graphql-transport-ws) for subscriptions, with the token from its
// headers editor in the Authorization header and in the connection_init
// payload.
package playground

import (
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"io/fs"
	"net/http"
	"path"
	"strings"
	"sync"
	"time"
)

//go:embed dist
var dist embed.FS

// ContentSecurityPolicy is sent with every response: scripts, styles, fonts
// and images from this origin only, requests to this origin only (ws: and
// wss: for the subscription websocket, which CSP does not count as 'self' in
// every browser). GraphiQL's editor and dialogs add <style> elements at run
// time, hence 'unsafe-inline' for styles (and only for styles).
const ContentSecurityPolicy = "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; " +
	"font-src 'self'; img-src 'self'; connect-src 'self' ws: wss:; " +
	"base-uri 'none'; form-action 'none'; frame-ancestors 'none'"

// The cache policies: index.html is revalidated on every load (it names the
// current assets); the assets it names carry their content hash in the URL
// and never change.
const (
	cacheIndex     = "no-cache"
	cacheImmutable = "public, max-age=31536000, immutable"
	cacheOther     = "public, max-age=86400"
)

var contentTypes = map[string]string{
	".html":  "text/html; charset=utf-8",
	".js":    "text/javascript; charset=utf-8",
	".css":   "text/css; charset=utf-8",
	".svg":   "image/svg+xml",
	".png":   "image/png",
	".gif":   "image/gif",
	".woff2": "font/woff2",
	".woff":  "font/woff",
	".ttf":   "font/ttf",
	".txt":   "text/plain; charset=utf-8",
}

type file struct {
	name  string
	body  []byte
	ctype string
	cache string
	etag  string

	gzOnce sync.Once
	gz     []byte // nil when not worth compressing
}

type site struct {
	index  *file
	assets map[string]*file // by URL path without the leading "/"
}

var (
	loadOnce sync.Once
	loaded   *site
	loadErr  error
)

func load() (*site, error) {
	loadOnce.Do(func() {
		s := &site{assets: map[string]*file{}}
		loadErr = fs.WalkDir(dist, "dist", func(p string, d fs.DirEntry, err error) error {
			if err != nil || d.IsDir() {
				return err
			}
			body, err := dist.ReadFile(p)
			if err != nil {
				return err
			}
			name := strings.TrimPrefix(p, "dist/")
			ctype, ok := contentTypes[path.Ext(name)]
			if !ok {
				ctype = "application/octet-stream"
			}
			sum := sha256.Sum256(body)
			f := &file{name: name, body: body, ctype: ctype, etag: `"` + hex.EncodeToString(sum[:12]) + `"`}
			switch {
			case name == "index.html":
				f.cache = cacheIndex
				s.index = f
				return nil
			case name == "playground.js", name == "playground.css", strings.HasPrefix(name, "assets/"):
				f.cache = cacheImmutable
			default:
				f.cache = cacheOther
			}
			s.assets[name] = f
			return nil
		})
		if loadErr == nil && s.index == nil {
			loadErr = fs.ErrNotExist
		}
		loaded = s
	})
	return loaded, loadErr
}

// Handler serves the playground: index.html at exactly "/", the embedded
// assets at their paths, 404 for anything else and 405 for methods other
// than GET and HEAD. Mount it at "/" (more specific routes such as /graphql
// take precedence in an http.ServeMux).
func Handler() http.Handler {
	s, err := load()
	if err != nil {
		// Only a broken build gets here (dist/index.html missing).
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			http.Error(w, "playground not built: run scripts/build-playground.sh", http.StatusInternalServerError)
		})
	}
	return s
}

func (s *site) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	var f *file
	if r.URL.Path == "/" {
		f = s.index
	} else if name, ok := strings.CutPrefix(r.URL.Path, "/"); ok {
		f = s.assets[name]
	}
	h := w.Header()
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Content-Security-Policy", ContentSecurityPolicy)
	if f == nil {
		http.NotFound(w, r)
		return
	}
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		h.Set("Allow", "GET, HEAD")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("X-Frame-Options", "DENY")
	h.Set("Cross-Origin-Opener-Policy", "same-origin")
	h.Set("Content-Type", f.ctype)
	h.Set("Cache-Control", f.cache)
	body, etag := f.body, f.etag
	if gz := f.gzipped(); gz != nil {
		h.Add("Vary", "Accept-Encoding")
		if acceptsGzip(r.Header.Values("Accept-Encoding")) {
			body, etag = gz, strings.TrimSuffix(etag, `"`)+`-gz"`
			h.Set("Content-Encoding", "gzip")
		}
	}
	h.Set("ETag", etag)
	// ServeContent answers If-None-Match (304), Range and HEAD.
	http.ServeContent(w, r, f.name, time.Time{}, bytes.NewReader(body))
}

// gzipped compresses text files once, on first use.
func (f *file) gzipped() []byte {
	if !strings.HasPrefix(f.ctype, "text/") && f.ctype != "image/svg+xml" || len(f.body) < 1024 {
		return nil
	}
	f.gzOnce.Do(func() {
		var b bytes.Buffer
		zw, _ := gzip.NewWriterLevel(&b, gzip.BestCompression)
		_, _ = zw.Write(f.body)
		_ = zw.Close()
		if b.Len() < len(f.body)*9/10 {
			f.gz = b.Bytes()
		}
	})
	return f.gz
}

// acceptsGzip reports whether Accept-Encoding allows gzip: named with q > 0,
// or not named and "*" with q > 0.
func acceptsGzip(values []string) bool {
	gz, star := -1, -1 // -1 not named, 0 refused, 1 accepted
	for _, v := range values {
		for _, part := range strings.Split(v, ",") {
			coding, params, _ := strings.Cut(strings.TrimSpace(part), ";")
			ok := 1
			if q, found := strings.CutPrefix(strings.ReplaceAll(strings.ToLower(params), " ", ""), "q="); found &&
				strings.Trim(q, "0.") == "" {
				ok = 0
			}
			switch strings.ToLower(strings.TrimSpace(coding)) {
			case "gzip", "x-gzip":
				gz = ok
			case "*":
				star = ok
			}
		}
	}
	return gz == 1 || gz == -1 && star == 1
}
