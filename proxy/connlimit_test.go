package proxy

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

// rawGet sends one keep-alive GET on c and reads the answer.
func rawGet(t *testing.T, c net.Conn, br *bufio.Reader) (int, error) {
	t.Helper()
	if _, err := io.WriteString(c, "GET / HTTP/1.1\r\nHost: x\r\n\r\n"); err != nil {
		return 0, err
	}
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		return 0, err
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode, nil
}

// TestConnLimitEvictsIdleThenQueues: at the cap, the connection idle
// longest is closed to make room for a new one; while every connection is
// busy a new one waits, and is served when one closes.
func TestConnLimitEvictsIdleThenQueues(t *testing.T) {
	release := make(chan struct{})
	held := make(chan struct{}, 2)
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/hold" {
			held <- struct{}{}
			<-release
		}
		io.WriteString(w, "ok")
	})}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	lim := NewConnLimit(2)
	srv.ConnState = lim.ConnState
	go srv.Serve(lim.Listener(ln))
	defer srv.Close()
	addr := ln.Addr().String()

	dial := func() (net.Conn, *bufio.Reader) {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c, bufio.NewReader(c)
	}
	a, abr := dial()
	if s, err := rawGet(t, a, abr); err != nil || s != 200 {
		t.Fatalf("first connection: %d %v", s, err)
	}
	b, bbr := dial()
	if s, err := rawGet(t, b, bbr); err != nil || s != 200 {
		t.Fatalf("second connection: %d %v", s, err)
	}
	// Both idle at the cap: a third connection closes an idle one.
	c, cbr := dial()
	if s, err := rawGet(t, c, cbr); err != nil || s != 200 {
		t.Fatalf("third connection at the cap: %d %v; want served after an idle one was closed", s, err)
	}
	if lim.Evicted() != 1 || lim.Open() != 2 {
		t.Fatalf("evicted %d, open %d; want 1, 2", lim.Evicted(), lim.Open())
	}
	closed := func(c net.Conn, br *bufio.Reader) bool {
		c.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
		_, err := br.ReadByte()
		c.SetReadDeadline(time.Time{})
		return err == io.EOF
	}
	survivor := a
	switch ca, cb := closed(a, abr), closed(b, bbr); {
	case ca && !cb:
		survivor = b
	case cb && !ca:
	default:
		t.Fatalf("a closed: %v, b closed: %v; want exactly one of the idle connections closed", ca, cb)
	}

	// Both busy: a fourth connection waits, then is served once one closes.
	go io.WriteString(survivor, "GET /hold HTTP/1.1\r\nHost: x\r\n\r\n")
	go io.WriteString(c, "GET /hold HTTP/1.1\r\nHost: x\r\n\r\n")
	<-held
	<-held
	d, dbr := dial()
	got := make(chan string, 1)
	go func() {
		s, err := rawGet(t, d, dbr)
		if err != nil {
			got <- err.Error()
			return
		}
		got <- http.StatusText(s)
	}()
	select {
	case s := <-got:
		t.Fatalf("fourth connection answered (%s) while the cap was full of busy connections", s)
	case <-time.After(200 * time.Millisecond): // it may only wait; this cannot fail spuriously
	}
	close(release)
	survivor.Close()
	select {
	case s := <-got:
		if !strings.EqualFold(s, "OK") {
			t.Fatalf("fourth connection: %s", s)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("fourth connection never served after a slot freed")
	}
}
