// Command bareproxy is the benchmark's baseline: the plainest correct Go
// reverse proxy, the "bare httputil.ReverseProxy" of issue 6's reference
// table. It is built from the same Go toolchain as pulsegate, so the ratio
// pulsegate ÷ bareproxy isolates what pulsegate adds or saves.
//
// What it has: httputil.ReverseProxy with Rewrite (SetURL + SetXForwarded, so
// client-sent forwarding headers are not trusted), and a tuned Transport
// (MaxIdleConnsPerHost sized for the benchmark's concurrency, no global idle
// cap, an IdleConnTimeout). What it deliberately lacks: a BufferPool, GC
// tuning, any instrumentation.
//
// It prints one JSON line {"msg":"listening","addr":"..."} on stdout once it
// accepts connections, and exits 0 on SIGINT/SIGTERM after a graceful
// shutdown.
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"time"

	"github.com/pulsegate/pulsegate/bench/internal/serve"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "bareproxy:", err)
		os.Exit(1)
	}
}

// newProxy builds the baseline proxy to target.
func newProxy(target *url.URL, maxIdlePerHost int, idleTimeout time.Duration) *httputil.ReverseProxy {
	transport := &http.Transport{
		DialContext: (&net.Dialer{
			Timeout:   5 * time.Second,
			KeepAlive: 30 * time.Second,
		}).DialContext,
		MaxIdleConns:          0, // no global cap: the per-host cap below rules
		MaxIdleConnsPerHost:   maxIdlePerHost,
		IdleConnTimeout:       idleTimeout,
		ResponseHeaderTimeout: 30 * time.Second,
		ExpectContinueTimeout: time.Second,
	}
	return &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetURL(target)
			pr.SetXForwarded()
		},
		Transport: transport,
		ErrorLog:  log.New(io.Discard, "", 0),
	}
}

func run() error {
	listen := flag.String("listen", "127.0.0.1:0", "listen address")
	upstream := flag.String("upstream", "", "upstream base URL, e.g. http://127.0.0.1:5000")
	maxIdle := flag.Int("max-idle-per-host", 1024, "Transport.MaxIdleConnsPerHost (size it for the benchmark's concurrency)")
	idle := flag.Duration("idle-conn-timeout", 90*time.Second, "Transport.IdleConnTimeout")
	flag.Parse()

	if *upstream == "" {
		return errors.New("flag -upstream is required")
	}
	target, err := url.Parse(*upstream)
	if err != nil || (target.Scheme != "http" && target.Scheme != "https") || target.Host == "" {
		return fmt.Errorf("flag -upstream: %q is not an http(s) URL", *upstream)
	}
	if *maxIdle < 1 {
		return fmt.Errorf("flag -max-idle-per-host: must be at least 1, got %d", *maxIdle)
	}

	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		return fmt.Errorf("listening on %s: %w", *listen, err)
	}
	srv := &http.Server{
		Handler:           newProxy(target, *maxIdle, *idle),
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       120 * time.Second,
		ErrorLog:          log.New(io.Discard, "", 0),
	}
	return serve.Run(srv, ln)
}
