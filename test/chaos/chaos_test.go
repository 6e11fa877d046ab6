package chaos

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// upstream serves /hello, /big (1 MiB with a Content-Length) and /upload
// (reads the whole body).
func upstream(t *testing.T) *httptest.Server {
	t.Helper()
	mux := http.NewServeMux()
	mux.HandleFunc("/hello", func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "hello")
	})
	mux.HandleFunc("/big", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", "1048576")
		w.Write(bytes.Repeat([]byte("x"), 1<<20))
	})
	mux.HandleFunc("/upload", func(w http.ResponseWriter, r *http.Request) {
		n, _ := io.Copy(io.Discard, r.Body)
		io.WriteString(w, strings.Repeat("y", int(n%7)))
	})
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv
}

func newProxy(t *testing.T, target string) *Proxy {
	t.Helper()
	p, err := New(target)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	return p
}

func client() *http.Client {
	return &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
}

func get(ctx context.Context, c *http.Client, url string) (string, error) {
	req, _ := http.NewRequestWithContext(ctx, "GET", url, nil)
	resp, err := c.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return string(b), err
}

func TestPass(t *testing.T) {
	srv := upstream(t)
	p := newProxy(t, srv.Listener.Addr().String())
	body, err := get(context.Background(), client(), "http://"+p.Addr()+"/hello")
	if err != nil || body != "hello" {
		t.Fatalf("got %q, %v; want hello", body, err)
	}
	if p.Accepted() != 1 {
		t.Fatalf("accepted %d, want 1", p.Accepted())
	}
}

func TestListenOnGivenAddress(t *testing.T) {
	srv := upstream(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	p, err := Listen(addr, srv.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	if p.Addr() != addr {
		t.Fatalf("listening on %s, want %s", p.Addr(), addr)
	}
	if body, err := get(context.Background(), client(), "http://"+addr+"/hello"); err != nil || body != "hello" {
		t.Fatalf("got %q, %v", body, err)
	}
}

func TestLatencyDelaysReply(t *testing.T) {
	srv := upstream(t)
	p := newProxy(t, srv.Listener.Addr().String())
	p.Set(Fault{Mode: Latency, Latency: 300 * time.Millisecond})
	start := time.Now()
	body, err := get(context.Background(), client(), "http://"+p.Addr()+"/hello")
	if err != nil || body != "hello" {
		t.Fatalf("got %q, %v", body, err)
	}
	// Request and reply each waited once: a lower bound, never an upper one.
	if d := time.Since(start); d < 600*time.Millisecond {
		t.Fatalf("reply after %v, want at least 600ms of injected latency", d)
	}
}

func TestBlackholeHoldsUntilModeChanges(t *testing.T) {
	srv := upstream(t)
	p := newProxy(t, srv.Listener.Addr().String())
	p.Set(Fault{Mode: Blackhole})

	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	if _, err := get(ctx, client(), "http://"+p.Addr()+"/hello"); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("blackhole: got err %v, want deadline exceeded", err)
	}

	// A request that is being held completes once the fault is lifted.
	done := make(chan string, 1)
	go func() {
		b, _ := get(context.Background(), client(), "http://"+p.Addr()+"/hello")
		done <- b
	}()
	waitFor(t, func() bool { return p.Accepted() >= 2 })
	select {
	case b := <-done:
		t.Fatalf("reply %q arrived through a blackhole", b)
	case <-time.After(200 * time.Millisecond):
	}
	p.Set(Fault{Mode: Pass})
	select {
	case b := <-done:
		if b != "hello" {
			t.Fatalf("after pass: %q", b)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("held request never completed after switching to pass")
	}
}

func TestHeadersThenStall(t *testing.T) {
	srv := upstream(t)
	p := newProxy(t, srv.Listener.Addr().String())
	p.Set(Fault{Mode: HeadersThenStall})

	c, err := net.Dial("tcp", p.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	io.WriteString(c, "GET /big HTTP/1.1\r\nHost: x\r\n\r\n")
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatalf("headers did not arrive: %v", err)
	}
	if resp.StatusCode != 200 || resp.ContentLength != 1<<20 {
		t.Fatalf("status %d length %d", resp.StatusCode, resp.ContentLength)
	}
	c.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
	n, err := io.Copy(io.Discard, resp.Body)
	var ne net.Error
	if !errors.As(err, &ne) || !ne.Timeout() {
		t.Fatalf("body read ended with %v after %d bytes, want a timeout (stall)", err, n)
	}
	if n != 0 {
		t.Fatalf("%d body bytes leaked past the stall", n)
	}
	p.Set(Fault{Mode: Pass})
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	n, err = io.Copy(io.Discard, resp.Body)
	if err != nil || n != 1<<20 {
		t.Fatalf("after pass: %d bytes, %v", n, err)
	}
}

func TestResetAfterBytesToClient(t *testing.T) {
	srv := upstream(t)
	p := newProxy(t, srv.Listener.Addr().String())
	const limit = 10000
	p.Set(Fault{Mode: Reset, Bytes: limit, Dir: ToClient})
	c, err := net.Dial("tcp", p.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	io.WriteString(c, "GET /big HTTP/1.1\r\nHost: x\r\n\r\n")
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	n, err := io.Copy(io.Discard, c)
	if !errors.Is(err, syscall.ECONNRESET) {
		t.Fatalf("read ended with %v, want ECONNRESET", err)
	}
	if n > limit {
		t.Fatalf("received %d bytes, more than the %d allowed", n, limit)
	}
}

func TestResetMidUpload(t *testing.T) {
	srv := upstream(t)
	p := newProxy(t, srv.Listener.Addr().String())
	p.Set(Fault{Mode: Reset, Bytes: 256 << 10, Dir: ToTarget})
	body := bytes.NewReader(bytes.Repeat([]byte("z"), 8<<20))
	resp, err := client().Post("http://"+p.Addr()+"/upload", "application/octet-stream", body)
	if err == nil {
		resp.Body.Close()
		t.Fatalf("upload through a reset succeeded with %s", resp.Status)
	}
}

func TestHalfCloseGivesClientEOF(t *testing.T) {
	srv := upstream(t)
	p := newProxy(t, srv.Listener.Addr().String())
	p.Set(Fault{Mode: HalfClose})
	c, err := net.Dial("tcp", p.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	b, err := io.ReadAll(c)
	if err != nil || len(b) != 0 {
		t.Fatalf("want a clean EOF and no bytes, got %d bytes, %v", len(b), err)
	}
	// The request direction still flows: writing does not fail.
	if _, err := io.WriteString(c, "GET /hello HTTP/1.1\r\nHost: x\r\n\r\n"); err != nil {
		t.Fatalf("write after half-close: %v", err)
	}
}

func TestBandwidthCap(t *testing.T) {
	srv := upstream(t)
	p := newProxy(t, srv.Listener.Addr().String())
	p.Set(Fault{Mode: Bandwidth, BytesPerSec: 512 << 10})
	start := time.Now()
	body, err := get(context.Background(), client(), "http://"+p.Addr()+"/big")
	if err != nil || len(body) != 1<<20 {
		t.Fatalf("got %d bytes, %v", len(body), err)
	}
	// 1 MiB at 512 KiB/s cannot arrive in much under 2 s (lower bound only).
	if d := time.Since(start); d < 1500*time.Millisecond {
		t.Fatalf("1 MiB arrived in %v through a 512 KiB/s cap", d)
	}
}

func TestDialFailureResetsClient(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := ln.Addr().String()
	ln.Close()
	p := newProxy(t, dead)
	if _, err := get(context.Background(), client(), "http://"+p.Addr()+"/hello"); err == nil {
		t.Fatal("request to a dead target succeeded")
	}
	waitFor(t, func() bool { return p.DialErrors() == 1 })
}

func TestCloseEndsHeldConnections(t *testing.T) {
	srv := upstream(t)
	p, err := New(srv.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	p.Set(Fault{Mode: Blackhole})
	var conns []net.Conn
	for range 5 {
		c, err := net.Dial("tcp", p.Addr())
		if err != nil {
			t.Fatal(err)
		}
		conns = append(conns, c)
	}
	waitFor(t, func() bool { return p.Open() == 5 })
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	for _, c := range conns {
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		if _, err := c.Read(make([]byte, 1)); err == nil {
			t.Fatal("connection still open after Close")
		}
		c.Close()
	}
	if p.Open() != 0 {
		t.Fatalf("%d connections tracked after Close", p.Open())
	}
}

func TestModeString(t *testing.T) {
	for m, want := range map[Mode]string{Pass: "pass", Blackhole: "blackhole", Reset: "reset", Mode(99): "mode(99)"} {
		if m.String() != want {
			t.Errorf("%d: %q, want %q", int(m), m.String(), want)
		}
	}
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met within 10s")
		}
		time.Sleep(10 * time.Millisecond)
	}
}
