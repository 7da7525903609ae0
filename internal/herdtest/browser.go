package herdtest

import (
	"bufio"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Browser is a headless Chromium (Debian's chromium package) driven over the DevTools
// protocol on a pipe (--remote-debugging-pipe: commands on its fd 3, answers on its fd 4,
// each message a JSON object ended by a NUL byte). No websocket and no driver binary.
type Browser struct {
	t      testing.TB
	cmd    *exec.Cmd
	toCh   *os.File // our end of its fd 3
	nextID int

	mu      sync.Mutex
	pending map[int]chan cdpReply
	closed  bool
	readErr error
	done    chan struct{} // closed when the reader ends (Chromium's pipe closed)
}

type cdpReply struct {
	Result json.RawMessage `json:"result"`
	Error  *struct {
		Code    int    `json:"code"`
		Message string `json:"message"`
	} `json:"error"`
}

// StartBrowser starts Chromium with a fresh profile and no network beyond what the page
// asks for; it is killed at cleanup. The test skips (or fails under HERD_REQUIRE_ALL)
// without the chromium package.
func StartBrowser(t testing.TB) *Browser {
	t.Helper()
	path := RequireTool(t, "chromium", "chromium")
	cmdR, cmdW, err := os.Pipe() // we write commands, it reads fd 3
	if err != nil {
		t.Fatal(err)
	}
	ansR, ansW, err := os.Pipe() // it writes answers on fd 4, we read
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(path, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
		"--disable-background-networking", "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage",
		"--mute-audio", "--hide-scrollbars", "--user-data-dir="+t.TempDir(), "--remote-debugging-pipe", "about:blank")
	cmd.ExtraFiles = []*os.File{cmdR, ansW}
	// Its own process group: Chromium's helpers (zygote, renderers, crashpad) are killed
	// with it, and none keeps writing into the profile directory being removed.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start chromium: %v", err)
	}
	cmdR.Close()
	ansW.Close()
	b := &Browser{t: t, cmd: cmd, toCh: cmdW, pending: map[int]chan cdpReply{}, done: make(chan struct{})}
	go b.read(ansR)
	t.Cleanup(func() {
		_ = b.call("", "Browser.close", map[string]any{}, nil)
		exited := make(chan struct{})
		go func() { _ = cmd.Wait(); close(exited) }()
		select {
		case <-exited:
		case <-time.After(5 * time.Second):
		}
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) // its helpers, whatever became of it
		<-exited
		_ = cmdW.Close()
		<-b.done
		ansR.Close()
	})
	return b
}

// read hands each answer to the command waiting for it; events are dropped.
func (b *Browser) read(r *os.File) {
	defer close(b.done)
	br := bufio.NewReaderSize(r, 1<<20)
	for {
		msg, err := br.ReadBytes(0)
		if err != nil {
			b.mu.Lock()
			b.closed, b.readErr = true, err
			for _, ch := range b.pending {
				close(ch)
			}
			b.pending = nil
			b.mu.Unlock()
			return
		}
		var head struct {
			ID int `json:"id"`
		}
		if json.Unmarshal(msg[:len(msg)-1], &head) != nil || head.ID == 0 {
			continue
		}
		var rep cdpReply
		_ = json.Unmarshal(msg[:len(msg)-1], &rep)
		b.mu.Lock()
		ch := b.pending[head.ID]
		delete(b.pending, head.ID)
		b.mu.Unlock()
		if ch != nil {
			ch <- rep
		}
	}
}

// call sends one command (to a page's session when session is set) and waits for its answer.
func (b *Browser) call(session, method string, params any, result any) error {
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return fmt.Errorf("cdp %s: chromium is gone: %v", method, b.readErr)
	}
	b.nextID++
	id := b.nextID
	ch := make(chan cdpReply, 1)
	b.pending[id] = ch
	b.mu.Unlock()
	msg := map[string]any{"id": id, "method": method, "params": params}
	if session != "" {
		msg["sessionId"] = session
	}
	data, err := json.Marshal(msg)
	if err != nil {
		return err
	}
	if _, err := b.toCh.Write(append(data, 0)); err != nil {
		return fmt.Errorf("cdp %s: %w", method, err)
	}
	select {
	case rep, ok := <-ch:
		if !ok {
			return fmt.Errorf("cdp %s: chromium closed the pipe", method)
		}
		if rep.Error != nil {
			return fmt.Errorf("cdp %s: %s (%d)", method, rep.Error.Message, rep.Error.Code)
		}
		if result != nil {
			return json.Unmarshal(rep.Result, result)
		}
		return nil
	case <-time.After(30 * time.Second):
		return fmt.Errorf("cdp %s: no answer in 30 s", method)
	}
}

// Page is one tab.
type Page struct {
	b       *Browser
	session string
}

// Open opens url in a new tab of width x height CSS pixels.
func (b *Browser) Open(url string, width, height int) *Page {
	b.t.Helper()
	var target struct {
		TargetID string `json:"targetId"`
	}
	if err := b.call("", "Target.createTarget", map[string]any{"url": "about:blank"}, &target); err != nil {
		b.t.Fatal(err)
	}
	var att struct {
		SessionID string `json:"sessionId"`
	}
	if err := b.call("", "Target.attachToTarget", map[string]any{"targetId": target.TargetID, "flatten": true}, &att); err != nil {
		b.t.Fatal(err)
	}
	p := &Page{b: b, session: att.SessionID}
	if err := b.call(p.session, "Emulation.setDeviceMetricsOverride", map[string]any{
		"width": width, "height": height, "deviceScaleFactor": 1, "mobile": false}, nil); err != nil {
		b.t.Fatal(err)
	}
	if err := b.call(p.session, "Page.navigate", map[string]any{"url": url}, nil); err != nil {
		b.t.Fatal(err)
	}
	return p
}

// Eval evaluates a JavaScript expression in the page and decodes its value into out.
func (p *Page) Eval(expr string, out any) error {
	var res struct {
		Result struct {
			Value json.RawMessage `json:"value"`
		} `json:"result"`
		ExceptionDetails *struct {
			Text string `json:"text"`
		} `json:"exceptionDetails"`
	}
	if err := p.b.call(p.session, "Runtime.evaluate", map[string]any{"expression": expr, "returnByValue": true}, &res); err != nil {
		return err
	}
	if res.ExceptionDetails != nil {
		return fmt.Errorf("javascript %q: %s", expr, res.ExceptionDetails.Text)
	}
	if len(res.Result.Value) == 0 {
		return fmt.Errorf("javascript %q: no value", expr)
	}
	return json.Unmarshal(res.Result.Value, out)
}

// WaitFor evaluates a JavaScript condition until it is true, or fails the test.
func (p *Page) WaitFor(timeout time.Duration, what, cond string) {
	p.b.t.Helper()
	EventuallyNil(p.b.t, timeout, "page: "+what, func() error {
		var ok bool
		if err := p.Eval(cond, &ok); err != nil {
			return err
		}
		if !ok {
			return fmt.Errorf("%s is false", cond)
		}
		return nil
	})
}

// Screenshot saves the page as a PNG file.
func (p *Page) Screenshot(path string) {
	p.b.t.Helper()
	var shot struct {
		Data string `json:"data"`
	}
	if err := p.b.call(p.session, "Page.captureScreenshot", map[string]any{"format": "png"}, &shot); err != nil {
		p.b.t.Fatal(err)
	}
	png, err := base64.StdEncoding.DecodeString(shot.Data)
	if err != nil {
		p.b.t.Fatal(err)
	}
	if err := os.WriteFile(path, png, 0o644); err != nil {
		p.b.t.Fatal(err)
	}
}
