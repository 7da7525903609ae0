// Package control is the master's control socket: `herd status`, `herd reload` and
// `herd stop` talk to a running master through it, and any command can be added with Handle.
//
// The protocol is line-delimited JSON over a Unix stream socket (mode 0600, so only the
// master's user may use it). The client writes one request per line and reads one response
// per line; a connection may carry several in turn:
//
//	-> {"cmd":"status"}
//	<- {"ok":true,"result":{...}}
//	-> {"cmd":"stop","args":{"graceful":true}}
//	<- {"ok":true}
//	-> {"cmd":"nosuch"}
//	<- {"ok":false,"error":"unknown command \"nosuch\" (known: reload, status, stop)"}
//
// The package knows nothing of what the commands do: the master registers them. It never
// starts or stops workers itself.
package control

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/rs/zerolog"
)

// Request is one line from a client.
type Request struct {
	Cmd  string          `json:"cmd"`
	Args json.RawMessage `json:"args,omitempty"`
}

// Response is the line the master answers with.
type Response struct {
	OK     bool            `json:"ok"`
	Result json.RawMessage `json:"result,omitempty"`
	Error  string          `json:"error,omitempty"`
}

// HandlerFunc serves one command: args as the client sent them (may be empty), a result
// that is marshalled to JSON, or an error whose text the client shows.
type HandlerFunc func(ctx context.Context, args json.RawMessage) (any, error)

// maxLine bounds a request line: commands are small.
const maxLine = 1 << 20

// Server accepts control connections on one Unix socket.
type Server struct {
	path string
	ln   *net.UnixListener
	log  zerolog.Logger

	mu       sync.Mutex
	handlers map[string]HandlerFunc
	conns    map[net.Conn]struct{}
	closed   bool

	ctx    context.Context // cancelled by Close: handlers waiting on something give up
	cancel context.CancelFunc
	wg     sync.WaitGroup // the accept loop and one goroutine per connection
}

// Listen creates the socket at path with mode 0600. The socket is bound under a temporary
// name and renamed into place after the chmod, so it is never reachable with wider rights.
// A socket file left at path by a master that died is replaced; a live one is an error.
func Listen(path string, log zerolog.Logger) (*Server, error) {
	if err := removeStale(path); err != nil {
		return nil, err
	}
	tmp := filepath.Join(filepath.Dir(path), fmt.Sprintf(".%s.%d.tmp", filepath.Base(path), os.Getpid()))
	_ = os.Remove(tmp)
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: tmp, Net: "unix"})
	if err != nil {
		return nil, fmt.Errorf("control socket: %w", err)
	}
	ln.SetUnlinkOnClose(false) // the file is renamed; Close removes the final path itself
	if err := os.Chmod(tmp, 0o600); err != nil {
		_ = ln.Close()
		_ = os.Remove(tmp)
		return nil, fmt.Errorf("control socket: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		_ = ln.Close()
		_ = os.Remove(tmp)
		return nil, fmt.Errorf("control socket: %w", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	s := &Server{
		path: path, ln: ln, log: log.With().Str("component", "control").Logger(),
		handlers: map[string]HandlerFunc{}, conns: map[net.Conn]struct{}{}, ctx: ctx, cancel: cancel,
	}
	s.wg.Add(1)
	go s.accept()
	return s, nil
}

func removeStale(path string) error {
	fi, err := os.Lstat(path)
	if err != nil {
		return nil // nothing there
	}
	if fi.Mode()&os.ModeSocket == 0 {
		return fmt.Errorf("control socket: %s exists and is not a socket", path)
	}
	if c, err := net.DialTimeout("unix", path, time.Second); err == nil {
		_ = c.Close()
		return fmt.Errorf("control socket: %s is in use by another herd master", path)
	}
	return os.Remove(path)
}

// Path is where the socket is.
func (s *Server) Path() string { return s.path }

// Handle registers the command cmd. Registering a name twice replaces the handler.
func (s *Server) Handle(cmd string, h HandlerFunc) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.handlers[cmd] = h
}

// Close stops accepting, ends every connection, waits for their goroutines and removes the
// socket file.
func (s *Server) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	for c := range s.conns {
		_ = c.Close()
	}
	s.mu.Unlock()
	s.cancel()
	err := s.ln.Close()
	s.wg.Wait()
	_ = os.Remove(s.path)
	return err
}

func (s *Server) accept() {
	defer s.wg.Done()
	for {
		c, err := s.ln.Accept()
		if err != nil {
			if !errors.Is(err, net.ErrClosed) {
				s.log.Error().Err(err).Msg("control socket accept failed")
			}
			return
		}
		s.mu.Lock()
		if s.closed {
			s.mu.Unlock()
			_ = c.Close()
			return
		}
		s.conns[c] = struct{}{}
		s.wg.Add(1)
		s.mu.Unlock()
		go s.serveConn(c)
	}
}

func (s *Server) serveConn(c net.Conn) {
	defer s.wg.Done()
	defer func() {
		s.mu.Lock()
		delete(s.conns, c)
		s.mu.Unlock()
		_ = c.Close()
	}()
	sc := bufio.NewScanner(c)
	sc.Buffer(make([]byte, 0, 4096), maxLine)
	enc := json.NewEncoder(c) // Encode ends each value with a newline: one response a line
	for sc.Scan() {
		if err := enc.Encode(s.dispatch(sc.Bytes())); err != nil {
			return
		}
	}
}

func (s *Server) dispatch(line []byte) Response {
	var req Request
	if err := json.Unmarshal(line, &req); err != nil {
		return Response{Error: fmt.Sprintf("bad request: %v", err)}
	}
	s.mu.Lock()
	h, ok := s.handlers[req.Cmd]
	var known []string
	for name := range s.handlers {
		known = append(known, name)
	}
	s.mu.Unlock()
	if !ok {
		slices.Sort(known)
		return Response{Error: fmt.Sprintf("unknown command %q (known: %s)", req.Cmd, strings.Join(known, ", "))}
	}
	result, err := h(s.ctx, req.Args)
	if err != nil {
		return Response{Error: err.Error()}
	}
	resp := Response{OK: true}
	if result != nil {
		b, err := json.Marshal(result)
		if err != nil {
			return Response{Error: fmt.Sprintf("encode result of %s: %v", req.Cmd, err)}
		}
		resp.Result = b
	}
	return resp
}

// Call sends one command to the master listening at path and decodes its result into
// result (which may be nil). timeout bounds the whole exchange.
func Call(path, cmd string, args, result any, timeout time.Duration) error {
	c, err := net.DialTimeout("unix", path, timeout)
	if err != nil {
		return fmt.Errorf("connect to the herd master at %s: %w", path, err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(timeout))
	req := Request{Cmd: cmd}
	if args != nil {
		if req.Args, err = json.Marshal(args); err != nil {
			return fmt.Errorf("%s: encode args: %w", cmd, err)
		}
	}
	if err := json.NewEncoder(c).Encode(req); err != nil {
		return fmt.Errorf("%s: send: %w", cmd, err)
	}
	sc := bufio.NewScanner(c)
	sc.Buffer(make([]byte, 0, 64<<10), 64<<20)
	if !sc.Scan() {
		err := sc.Err()
		if err == nil {
			err = errors.New("the master closed the connection")
		}
		return fmt.Errorf("%s: no answer: %w", cmd, err)
	}
	var resp Response
	if err := json.Unmarshal(sc.Bytes(), &resp); err != nil {
		return fmt.Errorf("%s: bad answer: %w", cmd, err)
	}
	if !resp.OK {
		return fmt.Errorf("%s: %s", cmd, resp.Error)
	}
	if result != nil && len(resp.Result) > 0 {
		if err := json.Unmarshal(resp.Result, result); err != nil {
			return fmt.Errorf("%s: decode result: %w", cmd, err)
		}
	}
	return nil
}
