package listener

import (
	"bufio"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// TestHandOverToChild passes two listeners (one behind a ProxyListener) to a child process,
// as a re-executing master or herd as PID 1 does, and checks that the child's FromEnv gets
// them back with their names (which hold colons, as --http addresses do) and can serve them.
func TestHandOverToChild(t *testing.T) {
	if os.Getenv("HERD_TEST_HANDOVER_CHILD") == "1" {
		handOverChild()
		return
	}
	a, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	b, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	files, env, err := HandOver([]Activated{{Name: "127.0.0.1:8000", Listener: a}, {Name: "lb%3A", Listener: &ProxyListener{Listener: b}}})
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestHandOverToChild$")
	cmd.Env = append(append(os.Environ(), env...), "HERD_TEST_HANDOVER_CHILD=1")
	cmd.ExtraFiles = files
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	for _, f := range files {
		f.Close()
	}
	defer cmd.Wait()
	// The parent stops accepting; connections now reach the child through the same sockets.
	a.Close()
	b.Close()
	sc := bufio.NewScanner(out)
	if !sc.Scan() {
		t.Fatalf("no word from the child: %v", sc.Err())
	}
	if got, want := sc.Text(), "127.0.0.1:8000 lb%3A"; got != want {
		t.Fatalf("child got sockets %q, want %q", got, want)
	}
	for _, addr := range []string{a.Addr().String(), b.Addr().String()} {
		c, err := net.DialTimeout("tcp", addr, 5*time.Second)
		if err != nil {
			t.Fatalf("dial %s after the hand-over: %v", addr, err)
		}
		_ = c.SetDeadline(time.Now().Add(10 * time.Second))
		line, err := bufio.NewReader(c).ReadString('\n')
		c.Close()
		if err != nil || line != "child\n" {
			t.Errorf("%s: %q, %v", addr, line, err)
		}
	}
}

// handOverChild is the child's side: it takes the sockets and greets two connections.
func handOverChild() {
	got, err := FromEnv()
	if err != nil {
		fmt.Fprintln(os.Stderr, "child:", err)
		os.Exit(1)
	}
	var names []string
	for _, s := range got {
		names = append(names, s.Name)
	}
	fmt.Println(strings.Join(names, " "))
	if os.Getenv(EnvFDs) != "" || os.Getenv(EnvFromParent) != "" {
		fmt.Fprintln(os.Stderr, "child: the variables are still set")
		os.Exit(1)
	}
	for _, s := range got {
		c, err := s.Listener.Accept()
		if err != nil {
			os.Exit(1)
		}
		_, _ = c.Write([]byte("child\n"))
		c.Close()
		s.Listener.Close()
	}
	os.Exit(0)
}
