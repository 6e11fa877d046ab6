package proxy

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httptrace"
	"net/textproto"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pulsegate/pulsegate/config"
)

// TestInlineDropsConnectionsTheAppClosed: the app closes idle connections
// sooner than the proxy's idle timeout; the next request does not get the
// dead connection (no 502), it dials again.
func TestInlineDropsConnectionsTheAppClosed(t *testing.T) {
	up := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") }))
	up.Config.IdleTimeout = 50 * time.Millisecond
	up.Start()
	defer up.Close()
	f := newFixture(t, up.URL, func(c *config.Config) { c.Proxy.UpstreamIdleTimeout = 10 })
	for i := range 3 {
		resp := f.get(t, "/x", nil)
		if body := readAll(t, resp); resp.StatusCode != 200 || body != "ok" {
			t.Fatalf("request %d after the app closed the idle connection: %d %q", i, resp.StatusCode, body)
		}
		time.Sleep(150 * time.Millisecond)
	}
	if d := f.p.UpstreamDials(); d != 3 {
		t.Fatalf("%d dials; want 3 (each idle connection closed by the app)", d)
	}
}

// rawUpstream answers the first request on each connection and closes the
// connection without a word when a second one arrives on it: the race of a
// keep-alive connection closing as a request is sent.
func rawUpstream(t *testing.T) (url string, requests *atomic.Int64) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	requests = new(atomic.Int64)
	var wg sync.WaitGroup
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				br := bufio.NewReader(c)
				for n := 0; ; n++ {
					req, err := http.ReadRequest(br)
					if err != nil {
						return
					}
					if n > 0 {
						return // the second request on a connection: closed unanswered
					}
					requests.Add(1)
					io.Copy(io.Discard, req.Body)
					io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
				}
			}()
		}
	}()
	return "http://" + ln.Addr().String(), requests
}

// TestInlineRetriesIdempotentRequestsOnce: a GET that finds its reused
// connection closed before any answer is sent again on a new connection
// (as http.Transport does); a DELETE is not replayed and is a 502 reset.
func TestInlineRetriesIdempotentRequestsOnce(t *testing.T) {
	url, requests := rawUpstream(t)
	f := newFixture(t, url, nil)
	readAll(t, f.get(t, "/first", nil)) // leaves one idle connection
	resp := f.get(t, "/again", nil)
	if body := readAll(t, resp); resp.StatusCode != 200 || body != "ok" {
		t.Fatalf("GET on a connection closed under it: %d %q; want the retry's 200", resp.StatusCode, body)
	}
	if n := requests.Load(); n != 2 {
		t.Fatalf("the app answered %d requests; want 2", n)
	}
	req, _ := http.NewRequest(http.MethodDelete, f.frontend.URL+"/item", nil)
	resp, err := f.client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	readAll(t, resp)
	if resp.StatusCode != http.StatusBadGateway {
		t.Fatalf("DELETE on a connection closed under it: %d; want 502 (not replayed)", resp.StatusCode)
	}
	if n := requests.Load(); n != 2 {
		t.Fatalf("the DELETE reached the app %d times; want 0", n-2)
	}
	if v := f.p.stats.totalErrors[errUpstreamReset].Load(); v != 1 {
		t.Fatalf("upstream_reset = %d; want 1", v)
	}
}

// TestInlineForwardsInformationalAnswers: 103 Early Hints reach the client
// before the final answer.
func TestInlineForwardsInformationalAnswers(t *testing.T) {
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Link", "</style.css>; rel=preload; as=style")
		w.WriteHeader(http.StatusEarlyHints)
		w.Header().Del("Link")
		io.WriteString(w, "page")
	}))
	defer up.Close()
	f := newFixture(t, up.URL, nil)
	var got []int
	var link string
	trace := &httptrace.ClientTrace{Got1xxResponse: func(code int, h textproto.MIMEHeader) error {
		got = append(got, code)
		link = h.Get("Link")
		return nil
	}}
	req, _ := http.NewRequest("GET", f.frontend.URL+"/page", nil)
	req = req.WithContext(httptrace.WithClientTrace(req.Context(), trace))
	resp, err := f.client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	if body := readAll(t, resp); resp.StatusCode != 200 || body != "page" {
		t.Fatalf("final answer %d %q", resp.StatusCode, body)
	}
	if len(got) != 1 || got[0] != 103 || !strings.Contains(link, "style.css") {
		t.Fatalf("informational answers %v (Link %q); want one 103 with the Link header", got, link)
	}
}

// TestInlineTrailersAndHead: chunked bodies keep their trailers; HEAD
// answers keep their Content-Length and leave the connection reusable.
func TestInlineTrailersAndHead(t *testing.T) {
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodHead {
			w.Header().Set("Content-Length", "1234")
			return
		}
		w.Header().Set("Trailer", "X-Checksum")
		io.WriteString(w, "part one, ")
		w.(http.Flusher).Flush()
		io.WriteString(w, "part two")
		w.Header().Set("X-Checksum", "abc123")
	}))
	defer up.Close()
	f := newFixture(t, up.URL, nil)
	resp := f.get(t, "/stream", map[string][]string{"Te": {"trailers"}})
	if body := readAll(t, resp); body != "part one, part two" || resp.Trailer.Get("X-Checksum") != "abc123" {
		t.Fatalf("body %q trailer %v; want the whole body and X-Checksum", body, resp.Trailer)
	}
	for range 3 {
		req, _ := http.NewRequest(http.MethodHead, f.frontend.URL+"/file", nil)
		resp, err := f.client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		readAll(t, resp)
		if resp.StatusCode != 200 || resp.ContentLength != 1234 {
			t.Fatalf("HEAD: %d, Content-Length %d; want 200, 1234", resp.StatusCode, resp.ContentLength)
		}
	}
	if d := f.p.UpstreamDials(); d != 1 {
		t.Fatalf("%d dials for 4 sequential requests; want 1 (reused)", d)
	}
}

// TestMaxConnsPerHostCoversUploads: the cap holds across the inline path
// (GETs) and http.Transport (requests with bodies) together.
func TestMaxConnsPerHostCoversUploads(t *testing.T) {
	var cur, peak atomic.Int64
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := cur.Add(1)
		for {
			p := peak.Load()
			if n <= p || peak.CompareAndSwap(p, n) {
				break
			}
		}
		io.Copy(io.Discard, r.Body)
		time.Sleep(20 * time.Millisecond)
		cur.Add(-1)
		io.WriteString(w, "ok")
	}))
	defer up.Close()
	f := newFixture(t, up.URL, func(c *config.Config) { c.Proxy.MaxConnsPerHost = 3 })
	var wg sync.WaitGroup
	var failed atomic.Int64
	for i := range 12 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var resp *http.Response
			var err error
			if i%2 == 0 {
				resp, err = f.client().Post(f.frontend.URL+"/up", "text/plain", strings.NewReader("payload"))
			} else {
				resp, err = f.client().Get(f.frontend.URL + "/x")
			}
			if err != nil {
				failed.Add(1)
				return
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 200 {
				failed.Add(1)
			}
		}()
	}
	wg.Wait()
	if n := failed.Load(); n != 0 {
		t.Fatalf("%d requests failed", n)
	}
	if p := peak.Load(); p > 3 {
		t.Fatalf("the app saw %d requests at once; want ≤ 3 (max_conns_per_host)", p)
	}
}

// TestInlineIdleConnectionsHoldNoBuffer: connections kept for the next
// request hold no read buffer (4 KiB each, times every connection the pool
// keeps), and a connection taken again still reads its answer.
func TestInlineIdleConnectionsHoldNoBuffer(t *testing.T) {
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok "+r.URL.Path) }))
	defer up.Close()
	f := newFixture(t, up.URL, nil)
	for i := range 3 {
		resp := f.get(t, "/x", nil)
		if body := readAll(t, resp); resp.StatusCode != 200 || body != "ok /x" {
			t.Fatalf("request %d: %d %q", i, resp.StatusCode, body)
		}
		in := f.p.rt.cur.Load().inline
		in.mu.Lock()
		idle := len(in.idle)
		var held int
		for _, c := range in.idle {
			if c.br != nil {
				held++
			}
		}
		in.mu.Unlock()
		if idle != 1 || held != 0 {
			t.Fatalf("after request %d: %d idle connections, %d holding a read buffer; want 1 and 0", i, idle, held)
		}
	}
	if d := f.p.UpstreamDials(); d != 1 {
		t.Fatalf("%d dials; want 1 (the idle connection reused)", d)
	}
}
