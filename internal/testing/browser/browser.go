// Package browser drives a real headless Chromium over the Chrome DevTools Protocol, for
// end-to-end tests of the pages scopegate serves (the demo idp's sign-in and consent pages).
// It speaks the protocol's JSON messages over the browser's WebSocket directly: the few
// commands a page test needs (open a tab, navigate, evaluate, wait for a load, screenshot)
// do not justify compiling a generated client for the whole protocol into every test run.
package browser

import (
	"bufio"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"sync"
	"time"

	"golang.org/x/net/websocket"
)

// Find returns the Chromium binary: $CHROMIUM, else chromium, chromium-browser or
// google-chrome on PATH.
func Find() (string, error) {
	if p := os.Getenv("CHROMIUM"); p != "" {
		return exec.LookPath(p)
	}
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p, nil
		}
	}
	return "", errors.New("no chromium on PATH (Debian: apt-get install chromium; or set $CHROMIUM)")
}

// Browser is one headless Chromium process with a fresh profile.
type Browser struct {
	cmd     *exec.Cmd
	profile string
	ws      *websocket.Conn
	exited  chan struct{}

	mu      sync.Mutex
	nextID  int
	pending map[int]chan message
	waiters []*waiter
	err     error // the connection's end
}

// message is a protocol message: a command's response, or an event.
type message struct {
	ID        int             `json:"id,omitempty"`
	Method    string          `json:"method,omitempty"`
	SessionID string          `json:"sessionId,omitempty"`
	Params    json.RawMessage `json:"params,omitempty"`
	Result    json.RawMessage `json:"result,omitempty"`
	Error     *struct {
		Code    int    `json:"code"`
		Message string `json:"message"`
	} `json:"error,omitempty"`
}

type waiter struct {
	session, method string
	ch              chan struct{}
}

// Start launches Chromium headless with the flags this machine needs (no sandbox as root,
// nothing that reaches out to the network on its own) and connects to it.
func Start(ctx context.Context, binary string) (*Browser, error) {
	profile, err := os.MkdirTemp("", "scopegate-chromium-")
	if err != nil {
		return nil, err
	}
	b := &Browser{profile: profile, pending: map[int]chan message{}, exited: make(chan struct{})}
	b.cmd = exec.Command(binary, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
		"--disable-background-networking", "--disable-component-update", "--disable-sync", "--disable-extensions",
		"--disable-default-apps", "--mute-audio", "--user-data-dir="+profile,
		"--remote-debugging-address=127.0.0.1", "--remote-debugging-port=0", "--remote-allow-origins=http://127.0.0.1",
		"about:blank")
	stderr, err := b.cmd.StderrPipe()
	if err != nil {
		os.RemoveAll(profile)
		return nil, err
	}
	if err := b.cmd.Start(); err != nil {
		os.RemoveAll(profile)
		return nil, fmt.Errorf("start %s: %w", binary, err)
	}
	go func() { _ = b.cmd.Wait(); close(b.exited) }()
	// Chromium says where its DevTools endpoint is on stderr, once it listens.
	found := make(chan string, 1)
	var seen strings.Builder
	var seenMu sync.Mutex
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			line := sc.Text()
			seenMu.Lock()
			if seen.Len() < 8<<10 {
				seen.WriteString(line + "\n")
			}
			seenMu.Unlock()
			if u, ok := strings.CutPrefix(line, "DevTools listening on "); ok {
				found <- strings.TrimSpace(u)
			}
		}
		_, _ = io.Copy(io.Discard, stderr)
	}()
	var wsURL string
	select {
	case wsURL = <-found:
	case <-b.exited:
		seenMu.Lock()
		defer seenMu.Unlock()
		os.RemoveAll(profile)
		return nil, fmt.Errorf("%s exited before it listened:\n%s", binary, seen.String())
	case <-ctx.Done():
		b.Close()
		return nil, fmt.Errorf("%s: no DevTools endpoint: %w", binary, ctx.Err())
	}
	ws, err := websocket.Dial(wsURL, "", "http://127.0.0.1")
	if err != nil {
		b.Close()
		return nil, fmt.Errorf("connect to %s: %w", wsURL, err)
	}
	ws.MaxPayloadBytes = 64 << 20 // screenshots
	b.ws = ws
	go b.read()
	return b, nil
}

// read dispatches every message: responses to their callers, events to their waiters.
func (b *Browser) read() {
	for {
		var m message
		if err := websocket.JSON.Receive(b.ws, &m); err != nil {
			b.mu.Lock()
			b.err = fmt.Errorf("devtools connection: %w", err)
			for id, ch := range b.pending {
				close(ch)
				delete(b.pending, id)
			}
			for _, w := range b.waiters {
				close(w.ch)
			}
			b.waiters = nil
			b.mu.Unlock()
			return
		}
		b.mu.Lock()
		if m.ID != 0 {
			if ch, ok := b.pending[m.ID]; ok {
				ch <- m
				delete(b.pending, m.ID)
			}
		} else {
			kept := b.waiters[:0]
			for _, w := range b.waiters {
				if w.method == m.Method && w.session == m.SessionID {
					close(w.ch)
				} else {
					kept = append(kept, w)
				}
			}
			b.waiters = kept
		}
		b.mu.Unlock()
	}
}

// call sends a command (to a page's session, or to the browser with session "") and
// decodes its result into out.
func (b *Browser) call(ctx context.Context, session, method string, params, out any) error {
	raw, err := json.Marshal(params)
	if err != nil {
		return err
	}
	ch := make(chan message, 1)
	b.mu.Lock()
	if b.err != nil {
		b.mu.Unlock()
		return b.err
	}
	b.nextID++
	id := b.nextID
	b.pending[id] = ch
	b.mu.Unlock()
	if err := websocket.JSON.Send(b.ws, message{ID: id, Method: method, SessionID: session, Params: raw}); err != nil {
		return fmt.Errorf("%s: %w", method, err)
	}
	select {
	case m, ok := <-ch:
		if !ok {
			return fmt.Errorf("%s: %w", method, b.err)
		}
		if m.Error != nil {
			return fmt.Errorf("%s: %s (%d)", method, m.Error.Message, m.Error.Code)
		}
		if out != nil {
			return json.Unmarshal(m.Result, out)
		}
		return nil
	case <-ctx.Done():
		b.mu.Lock()
		delete(b.pending, id)
		b.mu.Unlock()
		return fmt.Errorf("%s: %w", method, ctx.Err())
	}
}

// expect registers interest in the next event method of session; wait on the channel it
// returns (closed on the event, or when the connection ends).
func (b *Browser) expect(session, method string) <-chan struct{} {
	w := &waiter{session: session, method: method, ch: make(chan struct{})}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.err != nil {
		close(w.ch)
	} else {
		b.waiters = append(b.waiters, w)
	}
	return w.ch
}

// Close ends the browser and removes its profile.
func (b *Browser) Close() {
	if b.ws != nil {
		_ = b.ws.Close()
	}
	if b.cmd.Process != nil {
		_ = b.cmd.Process.Kill()
		select {
		case <-b.exited:
		case <-time.After(10 * time.Second):
		}
	}
	_ = os.RemoveAll(b.profile)
}

// Page is one tab.
type Page struct {
	b       *Browser
	session string
}

// NewPage opens a tab on about:blank.
func (b *Browser) NewPage(ctx context.Context) (*Page, error) {
	var target struct {
		TargetID string `json:"targetId"`
	}
	if err := b.call(ctx, "", "Target.createTarget", map[string]any{"url": "about:blank"}, &target); err != nil {
		return nil, err
	}
	var att struct {
		SessionID string `json:"sessionId"`
	}
	if err := b.call(ctx, "", "Target.attachToTarget", map[string]any{"targetId": target.TargetID, "flatten": true}, &att); err != nil {
		return nil, err
	}
	p := &Page{b: b, session: att.SessionID}
	if err := b.call(ctx, p.session, "Page.enable", struct{}{}, nil); err != nil {
		return nil, err
	}
	return p, nil
}

// Navigate loads url and waits for its load event.
func (p *Page) Navigate(ctx context.Context, url string) error {
	return p.AndWait(ctx, func() error {
		var r struct {
			ErrorText string `json:"errorText"`
		}
		if err := p.b.call(ctx, p.session, "Page.navigate", map[string]any{"url": url}, &r); err != nil {
			return err
		}
		if r.ErrorText != "" {
			return fmt.Errorf("navigate %s: %s", url, r.ErrorText)
		}
		return nil
	})
}

// AndWait runs action (a click that submits a form, say) and waits for the next page's
// load event.
func (p *Page) AndWait(ctx context.Context, action func() error) error {
	loaded := p.b.expect(p.session, "Page.loadEventFired")
	if err := action(); err != nil {
		return err
	}
	select {
	case <-loaded:
		p.b.mu.Lock()
		defer p.b.mu.Unlock()
		return p.b.err
	case <-ctx.Done():
		return fmt.Errorf("waiting for the page to load: %w", ctx.Err())
	}
}

// Eval evaluates a JavaScript expression in the page and decodes its value into out.
func (p *Page) Eval(ctx context.Context, expr string, out any) error {
	var r struct {
		Result struct {
			Value json.RawMessage `json:"value"`
		} `json:"result"`
		Exception *struct {
			Text      string `json:"text"`
			Exception struct {
				Description string `json:"description"`
			} `json:"exception"`
		} `json:"exceptionDetails"`
	}
	if err := p.b.call(ctx, p.session, "Runtime.evaluate", map[string]any{"expression": expr, "returnByValue": true, "awaitPromise": true}, &r); err != nil {
		return err
	}
	if r.Exception != nil {
		return fmt.Errorf("evaluate %q: %s %s", expr, r.Exception.Text, r.Exception.Exception.Description)
	}
	if out == nil || len(r.Result.Value) == 0 {
		return nil
	}
	return json.Unmarshal(r.Result.Value, out)
}

// Screenshot is a PNG of the page as it is rendered.
func (p *Page) Screenshot(ctx context.Context) ([]byte, error) {
	var r struct {
		Data string `json:"data"`
	}
	if err := p.b.call(ctx, p.session, "Page.captureScreenshot", map[string]any{"format": "png", "captureBeyondViewport": true}, &r); err != nil {
		return nil, err
	}
	return base64.StdEncoding.DecodeString(r.Data)
}
