// Command upstream is the benchmark's stand-in for the app: the cheapest
// HTTP/1.1 server Go can offer, so that what the benchmark measures on top of
// it is the proxy.
//
// Routes: "/16k" answers 200 with a 16 KiB body; every other path answers 200
// with a 12-byte body ("hello world\n"). Keep-alive is on (Go's default) with
// a long idle timeout so that proxies' pooled connections are never cut
// during a run.
//
// It prints one JSON line {"msg":"listening","addr":"..."} on stdout once it
// accepts connections, and exits 0 on SIGINT/SIGTERM after a graceful
// shutdown.
package main

import (
	"bytes"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"strconv"
	"time"

	"github.com/pulsegate/pulsegate/bench/internal/serve"
)

// smallBody is the answer to every path but /16k.
var smallBody = []byte("hello world\n")

// bigBody is the /16k answer: 16 KiB of printable bytes.
var bigBody = bytes.Repeat([]byte("0123456789abcdef"), 1024)

// handler serves the two bodies with precomputed headers.
type handler struct {
	smallLen string
	bigLen   string
}

func newHandler() *handler {
	return &handler{smallLen: strconv.Itoa(len(smallBody)), bigLen: strconv.Itoa(len(bigBody))}
}

// ServeHTTP answers /16k with bigBody and anything else with smallBody.
func (h *handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	hdr := w.Header()
	hdr["Content-Type"] = []string{"text/plain"}
	if r.URL.Path == "/16k" {
		hdr["Content-Length"] = []string{h.bigLen}
		w.WriteHeader(http.StatusOK)
		_, _ = w.Write(bigBody)
		return
	}
	hdr["Content-Length"] = []string{h.smallLen}
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(smallBody)
}

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "upstream:", err)
		os.Exit(1)
	}
}

func run() error {
	addr := flag.String("addr", "127.0.0.1:0", "listen address")
	flag.Parse()

	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		return fmt.Errorf("listening on %s: %w", *addr, err)
	}
	srv := &http.Server{
		Handler:           newHandler(),
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       10 * time.Minute,
	}
	return serve.Run(srv, ln)
}
