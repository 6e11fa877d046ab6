// Command loadgen is the benchmark's open-loop load generator: it sends GET
// requests at a fixed rate on a pool of keep-alive connections and measures
// each request's latency from its scheduled send time, so that queueing in
// the server is not hidden by the generator waiting for it (coordinated
// omission). It prints one JSON object (see Result) on stdout.
//
// Example:
//
//	loadgen -url http://127.0.0.1:8080/ -rate 6000 -duration 10s -conns 64
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"
)

func main() {
	var cfg Config
	flag.StringVar(&cfg.URL, "url", "", "target URL (http://host:port/path)")
	flag.Float64Var(&cfg.Rate, "rate", 1000, "fixed arrival rate, requests per second")
	flag.DurationVar(&cfg.Duration, "duration", 10*time.Second, "how long requests are scheduled for")
	flag.IntVar(&cfg.Conns, "conns", 64, "keep-alive connections (a request waits when all are busy, and that wait counts)")
	flag.DurationVar(&cfg.Timeout, "timeout", 10*time.Second, "per-request timeout")
	flag.Parse()

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	res, err := Run(ctx, cfg)
	if err != nil {
		fmt.Fprintln(os.Stderr, "loadgen:", err)
		os.Exit(1)
	}
	enc := json.NewEncoder(os.Stdout)
	if err := enc.Encode(res); err != nil {
		fmt.Fprintln(os.Stderr, "loadgen: writing result:", err)
		os.Exit(1)
	}
}
