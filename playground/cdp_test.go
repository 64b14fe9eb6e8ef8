package playground_test

// A small Chrome DevTools Protocol client for the browser test: it starts
// Debian's headless Chromium with the network closed to anything but
// localhost, and speaks CDP over a websocket (gorilla/websocket, already a
// module dependency) to one page.

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

const chromiumPath = "/usr/bin/chromium"

// chromium starts a headless Chromium for t and returns a CDP session on a
// new page. The process (and its process group) is ended when t ends.
func chromium(t *testing.T, ctx context.Context) *page {
	t.Helper()
	dir := t.TempDir()
	args := []string{
		"--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
		"--disable-background-networking", "--disable-component-update", "--disable-sync",
		"--disable-extensions", "--disable-default-apps", "--disable-dev-shm-usage", "--mute-audio", "--hide-scrollbars",
		"--user-data-dir=" + dir,
		"--remote-debugging-address=127.0.0.1", "--remote-debugging-port=0",
		// The network is closed to anything but this machine: no name
		// resolves but localhost, and no proxy, so a CDN fetch would fail.
		"--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE localhost, EXCLUDE 127.0.0.1",
		"--no-proxy-server",
		"--window-size=1440,900",
		"about:blank",
	}
	cmd := exec.Command(chromiumPath, args...)
	var stderr syncBuffer
	cmd.Stdout, cmd.Stderr = &stderr, &stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true} // its helpers go with it
	if err := cmd.Start(); err != nil {
		t.Fatalf("start chromium: %v", err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		// Ask nicely, then end the process group this test started.
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(5 * time.Second):
			_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			<-exited
		}
	})

	// Chromium writes the port it chose and the browser target's path.
	var wsURL string
	deadline := time.Now().Add(30 * time.Second)
	for wsURL == "" {
		if b, err := os.ReadFile(filepath.Join(dir, "DevToolsActivePort")); err == nil {
			if lines := strings.Split(strings.TrimSpace(string(b)), "\n"); len(lines) == 2 {
				wsURL = "ws://" + net.JoinHostPort("127.0.0.1", lines[0]) + lines[1]
			}
		}
		select {
		case <-exited:
			t.Fatalf("chromium exited at start:\n%s", stderr.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("chromium did not open its DevTools port in 30s:\n%s", stderr.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	conn, _, err := websocket.DefaultDialer.DialContext(ctx, wsURL, nil)
	if err != nil {
		t.Fatalf("connect to chromium's DevTools (%s): %v\n%s", wsURL, err, stderr.String())
	}
	conn.SetReadLimit(64 << 20) // screenshots
	p := &page{t: t, stderr: &stderr}
	c := &cdp{conn: conn, pending: map[int64]chan cdpMessage{}, closed: make(chan struct{}), onEvent: p.event}
	p.c = c
	go c.read()
	t.Cleanup(func() { _ = conn.Close() })

	var target struct{ TargetID string }
	if err := c.call(ctx, "", "Target.createTarget", map[string]any{"url": "about:blank"}, &target); err != nil {
		t.Fatal(err)
	}
	var attached struct{ SessionID string }
	if err := c.call(ctx, "", "Target.attachToTarget", map[string]any{"targetId": target.TargetID, "flatten": true}, &attached); err != nil {
		t.Fatal(err)
	}
	p.mu.Lock()
	p.session = attached.SessionID
	p.mu.Unlock()
	for _, domain := range []string{"Page.enable", "Runtime.enable", "Log.enable", "Network.enable"} {
		p.must(ctx, domain, nil, nil)
	}
	p.must(ctx, "Emulation.setDeviceMetricsOverride", map[string]any{"width": 1440, "height": 900, "deviceScaleFactor": 1, "mobile": false}, nil)
	return p
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}
func (s *syncBuffer) String() string { s.mu.Lock(); defer s.mu.Unlock(); return s.b.String() }

type cdpMessage struct {
	ID        int64           `json:"id,omitempty"`
	SessionID string          `json:"sessionId,omitempty"`
	Method    string          `json:"method,omitempty"`
	Params    json.RawMessage `json:"params,omitempty"`
	Result    json.RawMessage `json:"result,omitempty"`
	Error     *struct {
		Code    int    `json:"code"`
		Message string `json:"message"`
	} `json:"error,omitempty"`
}

type cdp struct {
	conn    *websocket.Conn
	wmu     sync.Mutex
	nextID  atomic.Int64
	mu      sync.Mutex
	pending map[int64]chan cdpMessage
	onEvent func(cdpMessage)
	closed  chan struct{}
	err     error
}

func (c *cdp) read() {
	defer close(c.closed)
	for {
		var m cdpMessage
		if err := c.conn.ReadJSON(&m); err != nil {
			c.err = err
			return
		}
		if m.ID != 0 {
			c.mu.Lock()
			ch := c.pending[m.ID]
			delete(c.pending, m.ID)
			c.mu.Unlock()
			if ch != nil {
				ch <- m
			}
			continue
		}
		if c.onEvent != nil {
			c.onEvent(m)
		}
	}
}

func (c *cdp) call(ctx context.Context, session, method string, params, result any) error {
	id := c.nextID.Add(1)
	ch := make(chan cdpMessage, 1)
	c.mu.Lock()
	c.pending[id] = ch
	c.mu.Unlock()
	if params == nil {
		params = map[string]any{}
	}
	msg := map[string]any{"id": id, "method": method, "params": params}
	if session != "" {
		msg["sessionId"] = session
	}
	c.wmu.Lock()
	err := c.conn.WriteJSON(msg)
	c.wmu.Unlock()
	if err != nil {
		return fmt.Errorf("%s: %w", method, err)
	}
	select {
	case m := <-ch:
		if m.Error != nil {
			return fmt.Errorf("%s: %s (%d)", method, m.Error.Message, m.Error.Code)
		}
		if result != nil {
			return json.Unmarshal(m.Result, result)
		}
		return nil
	case <-c.closed:
		return fmt.Errorf("%s: devtools connection closed: %v", method, c.err)
	case <-ctx.Done():
		return fmt.Errorf("%s: %w", method, ctx.Err())
	}
}

// page is one browser tab, with what it logged and every URL it requested.
type page struct {
	t       *testing.T
	c       *cdp
	session string
	stderr  *syncBuffer

	mu       sync.Mutex // guards session (written once) and what the page did
	problems []string   // console errors, exceptions, CSP violations, failed loads
	requests []string
}

func (p *page) event(m cdpMessage) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if m.SessionID != p.session {
		return
	}
	switch m.Method {
	case "Runtime.consoleAPICalled":
		var e struct {
			Type string
			Args []struct {
				Value       any
				Description string
			}
		}
		_ = json.Unmarshal(m.Params, &e)
		if e.Type == "error" || e.Type == "assert" {
			var parts []string
			for _, a := range e.Args {
				if a.Description != "" {
					parts = append(parts, a.Description)
				} else {
					parts = append(parts, fmt.Sprint(a.Value))
				}
			}
			p.problems = append(p.problems, "console."+e.Type+": "+strings.Join(parts, " "))
		}
	case "Runtime.exceptionThrown":
		var e struct {
			ExceptionDetails struct {
				Text      string
				Exception struct{ Description string }
			}
		}
		_ = json.Unmarshal(m.Params, &e)
		p.problems = append(p.problems, "exception: "+e.ExceptionDetails.Text+" "+e.ExceptionDetails.Exception.Description)
	case "Log.entryAdded":
		var e struct {
			Entry struct{ Source, Level, Text, URL string }
		}
		_ = json.Unmarshal(m.Params, &e)
		if e.Entry.Level == "error" || e.Entry.Source == "security" {
			p.problems = append(p.problems, fmt.Sprintf("log (%s/%s): %s %s", e.Entry.Source, e.Entry.Level, e.Entry.Text, e.Entry.URL))
		}
	case "Network.requestWillBeSent":
		var e struct{ Request struct{ URL string } }
		_ = json.Unmarshal(m.Params, &e)
		p.requests = append(p.requests, e.Request.URL)
	case "Network.webSocketCreated":
		var e struct{ URL string }
		_ = json.Unmarshal(m.Params, &e)
		p.requests = append(p.requests, e.URL)
	case "Network.loadingFailed":
		var e struct {
			ErrorText     string
			BlockedReason string
			Canceled      bool
		}
		_ = json.Unmarshal(m.Params, &e)
		if !e.Canceled {
			p.problems = append(p.problems, "load failed: "+e.ErrorText+" "+e.BlockedReason)
		}
	}
}

func (p *page) must(ctx context.Context, method string, params, result any) {
	p.t.Helper()
	if err := p.c.call(ctx, p.session, method, params, result); err != nil {
		p.t.Fatalf("%v\nchromium said:\n%s", err, p.stderr.String())
	}
}

// eval runs a JavaScript expression (awaiting a promise) and decodes its
// JSON-able value into out.
func (p *page) eval(ctx context.Context, expr string, out any) error {
	var r struct {
		Result struct {
			Type  string
			Value json.RawMessage
		}
		ExceptionDetails *struct {
			Text      string
			Exception struct{ Description string }
		}
	}
	if err := p.c.call(ctx, p.session, "Runtime.evaluate", map[string]any{
		"expression": expr, "awaitPromise": true, "returnByValue": true, "userGesture": true,
	}, &r); err != nil {
		return err
	}
	if r.ExceptionDetails != nil {
		return fmt.Errorf("javascript: %s %s", r.ExceptionDetails.Text, r.ExceptionDetails.Exception.Description)
	}
	if out == nil || len(r.Result.Value) == 0 {
		return nil
	}
	return json.Unmarshal(r.Result.Value, out)
}

func (p *page) mustEval(ctx context.Context, expr string, out any) {
	p.t.Helper()
	if err := p.eval(ctx, expr, out); err != nil {
		p.t.Fatalf("%v\nin: %s", err, expr)
	}
}

// waitFor polls a JavaScript expression until it returns a truthy string or
// true, and returns that value.
func (p *page) waitFor(ctx context.Context, what, expr string, timeout time.Duration) string {
	p.t.Helper()
	deadline := time.Now().Add(timeout)
	var last any
	var lastErr error
	for {
		var v any
		lastErr = p.eval(ctx, expr, &v)
		if lastErr == nil {
			last = v
			switch x := v.(type) {
			case string:
				if x != "" {
					return x
				}
			case bool:
				if x {
					return "true"
				}
			}
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			p.screenshot(ctx, "failure.png")
			p.t.Fatalf("timed out after %v waiting for %s (last value %v, error %v)\npage problems: %v", timeout, what, last, lastErr, p.seenProblems())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func (p *page) seenProblems() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]string(nil), p.problems...)
}

func (p *page) seenRequests() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]string(nil), p.requests...)
}

// use makes t the test that p's failures fail (for subtests); call the
// returned function to switch back.
func (p *page) use(t *testing.T) func() {
	prev := p.t
	p.t = t
	return func() { p.t = prev }
}

// click presses and releases the left mouse button on the middle of the
// element a JavaScript expression returns, as a user would.
func (p *page) click(ctx context.Context, element string) {
	p.t.Helper()
	var at struct{ X, Y float64 }
	p.mustEval(ctx, `(el => { el.scrollIntoView({block: 'nearest'}); const r = el.getBoundingClientRect(); `+
		`return {x: r.x + r.width / 2, y: r.y + r.height / 2} })(`+element+`)`, &at)
	for _, ev := range []map[string]any{
		{"type": "mouseMoved", "x": at.X, "y": at.Y},
		{"type": "mousePressed", "x": at.X, "y": at.Y, "button": "left", "buttons": 1, "clickCount": 1},
		{"type": "mouseReleased", "x": at.X, "y": at.Y, "button": "left", "buttons": 0, "clickCount": 1},
	} {
		p.must(ctx, "Input.dispatchMouseEvent", ev, nil)
	}
}

// insertText types text at the focus, as a keyboard or a paste would.
func (p *page) insertText(ctx context.Context, text string) {
	p.must(ctx, "Input.insertText", map[string]any{"text": text}, nil)
}

// screenshot saves a PNG of the page in the artifacts directory and returns
// its path.
func (p *page) screenshot(ctx context.Context, name string) string {
	var r struct{ Data []byte }
	if err := p.c.call(ctx, p.session, "Page.captureScreenshot", map[string]any{"format": "png"}, &r); err != nil {
		p.t.Logf("screenshot %s: %v", name, err)
		return ""
	}
	dir := artifactsDir(p.t)
	file := filepath.Join(dir, name)
	if err := os.WriteFile(file, r.Data, 0o644); err != nil {
		p.t.Logf("screenshot %s: %v", name, err)
		return ""
	}
	p.t.Logf("screenshot: %s", file)
	return file
}

// artifactsDir is $TEST_ARTIFACTS_DIR/playground, else
// playground/testdata/artifacts (ignored by git).
func artifactsDir(t *testing.T) string {
	dir := "testdata/artifacts"
	if d := os.Getenv("TEST_ARTIFACTS_DIR"); d != "" {
		dir = filepath.Join(d, "playground")
	}
	if abs, err := filepath.Abs(dir); err == nil {
		dir = abs
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatalf("artifacts directory: %v", err)
	}
	return dir
}

var errNoChromium = errors.New("chromium is not installed at " + chromiumPath)

func haveChromium() error {
	if fi, err := os.Stat(chromiumPath); err != nil || fi.IsDir() {
		return errNoChromium
	}
	return nil
}
