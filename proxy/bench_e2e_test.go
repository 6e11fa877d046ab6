package proxy

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/pulsegate/pulsegate/config"
)

// closingUpstream is a minimal app server that answers every request with a
// small body and "Connection: close", then closes, as gunicorn's sync
// workers do. It allocates little itself, so the allocations the benchmark
// reports are mostly the proxy's (client and upstream are constant between
// two versions of the proxy).
func closingUpstream(b *testing.B, keepAlive bool) string {
	b.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	var wg sync.WaitGroup
	b.Cleanup(func() { ln.Close(); wg.Wait() })
	resp := "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 42\r\nConnection: close\r\n\r\n" +
		`{"id":42,"name":"widget","tags":["a","b"]}`
	if keepAlive {
		resp = strings.Replace(resp, "Connection: close\r\n", "", 1)
	}
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
				for {
					// The request has no body: read up to the blank line.
					for {
						line, err := br.ReadSlice('\n')
						if err != nil {
							return
						}
						if len(line) <= 2 {
							break
						}
					}
					if _, err := io.WriteString(c, resp); err != nil || !keepAlive {
						return
					}
				}
			}()
		}
	}()
	return "http://" + ln.Addr().String()
}

// benchEndToEnd sends b.N GETs one after the other on one keep-alive
// client connection through a real proxy server (Instrument + Forwarder,
// the inline transport) to a real upstream socket.
func benchEndToEnd(b *testing.B, keepAliveUpstream bool) {
	up := closingUpstream(b, keepAliveUpstream)
	cfg := config.Defaults()
	cfg.Proxy.UpstreamURL = up
	p, err := New(cfg, zap.NewNop(), prometheus.NewRegistry())
	if err != nil {
		b.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	srv := &http.Server{Handler: p.Instrument(p.Forwarder())}
	go srv.Serve(ln)
	defer func() { srv.Close(); p.CloseIdleConnections() }()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	br := bufio.NewReader(c)
	req := []byte("GET /api/item HTTP/1.1\r\nHost: app\r\nUser-Agent: bench\r\nAccept: */*\r\n\r\n")
	buf := make([]byte, 4096)
	one := func() {
		if _, err := c.Write(req); err != nil {
			b.Fatal(err)
		}
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			b.Fatal(err)
		}
		for {
			if _, err := resp.Body.Read(buf); err != nil {
				break
			}
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			b.Fatalf("status %d", resp.StatusCode)
		}
	}
	for range 100 {
		one()
	}
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		one()
	}
}

// BenchmarkEndToEndClosingApp: the app closes every connection (gunicorn
// sync workers), so every request dials.
func BenchmarkEndToEndClosingApp(b *testing.B) { benchEndToEnd(b, false) }

// BenchmarkEndToEndKeepAliveApp: the app keeps connections alive.
func BenchmarkEndToEndKeepAliveApp(b *testing.B) { benchEndToEnd(b, true) }
