package backpressure

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/pulsegate/pulsegate/config"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"testing"
	"time"
)

func serveFrom(c *Chain, remote, path string, hdr map[string]string) *httptest.ResponseRecorder {
	req := httptest.NewRequest("GET", path, nil)
	req.RemoteAddr = remote
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	rec := httptest.NewRecorder()
	c.ServeHTTP(rec, req)
	return rec
}

func TestGlobalRateLimit(t *testing.T) {
	clk := newFakeClock()
	cfg := baseConfig()
	cfg.Backpressure.RateLimitRPS = 2
	cfg.Backpressure.RateLimitBurst = 2
	c, reg, _ := newTestChain(t, cfg, okHandler)
	c.now = clk.now
	// The clock is frozen: the bucket starts full (2), then is empty.
	for i := range 2 {
		if rec := serveFrom(c, "10.0.0.1:1000", "/", nil); rec.Code != 200 {
			t.Fatalf("request %d: %d, want 200", i, rec.Code)
		}
	}
	rec := serveFrom(c, "10.0.0.1:1000", "/", nil)
	if rec.Code != http.StatusTooManyRequests || rec.Header().Get(HeaderReject) != "rate" || rec.Header().Get("Retry-After") != "1" {
		t.Fatalf("third request: %d %q Retry-After %q, want 429 rate 1", rec.Code, rec.Header().Get(HeaderReject), rec.Header().Get("Retry-After"))
	}
	clk.advance(500 * time.Millisecond) // one token at 2/s
	if rec := serveFrom(c, "10.0.0.1:1000", "/", nil); rec.Code != 200 {
		t.Fatalf("after 0.5 s: %d, want 200", rec.Code)
	}
	if got := metricValue(t, reg, "pulsegate_backpressure_rejections_total", "rate"); got != 1 {
		t.Errorf("rejections_total{rate} = %v, want 1", got)
	}
	st := c.State()
	if st.RateLimit.RPS != 2 || st.RateLimit.Burst != 2 || st.RateLimit.Tokens == nil {
		t.Errorf("rate state = %+v", st.RateLimit)
	}
}

func TestRateRetryAfterWholeSeconds(t *testing.T) {
	clk := newFakeClock()
	cfg := baseConfig()
	cfg.Backpressure.RateLimitRPS = 0.1 // one request per 10 s
	c, _, _ := newTestChain(t, cfg, okHandler)
	c.now = clk.now
	serveFrom(c, "10.0.0.1:1", "/", nil)
	rec := serveFrom(c, "10.0.0.1:1", "/", nil)
	if rec.Header().Get("Retry-After") != "10" {
		t.Errorf("Retry-After = %q, want 10", rec.Header().Get("Retry-After"))
	}
	clk.advance(7500 * time.Millisecond)
	rec = serveFrom(c, "10.0.0.1:1", "/", nil)
	if rec.Header().Get("Retry-After") != "3" {
		t.Errorf("Retry-After after 7.5 s = %q, want 3 (ceil of 2.5)", rec.Header().Get("Retry-After"))
	}
}

// burst 0 with rps > 0 means ceil(rps); rps 0 means off.
func TestRateEdges(t *testing.T) {
	cases := []struct {
		desc    string
		rps     float64
		burst   int
		allowed int // requests allowed at one instant
	}{
		{"rps 0 is off", 0, 0, 50},
		{"rps 0 with a burst is still off", 0, 5, 50},
		{"burst 0 means ceil(rps)", 2.5, 0, 3},
		{"burst 0 with rps < 1 means 1", 0.2, 0, 1},
		{"explicit burst", 10, 4, 4},
	}
	for _, tc := range cases {
		t.Run(tc.desc, func(t *testing.T) {
			clk := newFakeClock()
			cfg := baseConfig()
			cfg.Backpressure.RateLimitRPS = tc.rps
			cfg.Backpressure.RateLimitBurst = tc.burst
			c, _, _ := newTestChain(t, cfg, okHandler)
			c.now = clk.now
			n := 0
			for range 50 {
				if serveFrom(c, "10.0.0.1:1", "/", nil).Code == 200 {
					n++
				}
			}
			if n != tc.allowed {
				t.Errorf("allowed %d of 50 at one instant, want %d", n, tc.allowed)
			}
		})
	}
}

// Per-client buckets are keyed by the socket peer only: rotating
// X-Forwarded-For neither bypasses the limit nor grows the map.
func TestPerClientKeyedByPeer(t *testing.T) {
	clk := newFakeClock()
	cfg := baseConfig()
	cfg.Backpressure.PerClientRPS = 1
	cfg.Backpressure.PerClientBurst = 2
	c, _, _ := newTestChain(t, cfg, okHandler)
	c.now = clk.now
	ok := 0
	for i := range 10 {
		rec := serveFrom(c, "192.0.2.7:5555", "/", map[string]string{"X-Forwarded-For": fmt.Sprintf("10.9.9.%d", i), "X-Real-Ip": "1.2.3.4"})
		if rec.Code == 200 {
			ok++
		} else if rec.Header().Get(HeaderReject) != "rate_client" || rec.Code != 429 {
			t.Fatalf("got %d %q, want 429 rate_client", rec.Code, rec.Header().Get(HeaderReject))
		}
	}
	if ok != 2 {
		t.Errorf("one peer with rotating X-Forwarded-For got %d through, want its burst of 2", ok)
	}
	if n := c.client.size(); n != 1 {
		t.Errorf("client map has %d entries, want 1", n)
	}
	// Another peer has its own bucket; IPv4-mapped IPv6 is the same client.
	if serveFrom(c, "192.0.2.8:1", "/", nil).Code != 200 {
		t.Error("a second peer was limited by the first one's bucket")
	}
	if serveFrom(c, "[::ffff:192.0.2.8]:2", "/", nil).Code != 200 {
		t.Error("second request of peer .8 (mapped form) rejected, want its burst of 2")
	}
	if serveFrom(c, "192.0.2.8:3", "/", nil).Code != 429 {
		t.Error("third request of peer .8 not limited: mapped and plain forms are different keys")
	}
}

// Catalogue case 26: 100 000 distinct peers keep the map at its cap.
func TestPerClientMapBounded(t *testing.T) {
	cfg := baseConfig()
	cfg.Backpressure.PerClientRPS = 5
	cfg.Backpressure.PerClientMaxClients = 1000
	c, reg, _ := newTestChain(t, cfg, okHandler)
	now := time.Unix(1e9, 0)
	for i := range 100000 {
		a := netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)})
		if ok, _ := c.client.allow(a, now); !ok {
			t.Fatalf("new peer %v rejected", a)
		}
	}
	n := c.client.size()
	// Per-shard caps round up: at most 32·ceil(1000/32) = 1024.
	if n > 1024 || n < 900 {
		t.Errorf("client map has %d entries after 100 000 peers, want ≈1000 (≤ 1024)", n)
	}
	if got := metricValue(t, reg, "pulsegate_backpressure_rate_limit_clients", ""); int(got) != n {
		t.Errorf("rate_limit_clients = %v, want %d", got, n)
	}
	// Shrinking the cap evicts at once.
	cfg2 := *cfg
	cfg2.Backpressure.PerClientMaxClients = 64
	if err := c.Apply(&cfg2); err != nil {
		t.Fatal(err)
	}
	if n := c.client.size(); n > 64 {
		t.Errorf("after shrinking the cap to 64 the map has %d entries", n)
	}
	// Turning per-client limiting off forgets every peer.
	cfg3 := *cfg
	cfg3.Backpressure.PerClientRPS = 0
	if err := c.Apply(&cfg3); err != nil {
		t.Fatal(err)
	}
	if n := c.client.size(); n != 0 {
		t.Errorf("after turning per-client off the map has %d entries", n)
	}
}

// LRU: a peer seen recently survives eviction of older ones.
func TestPerClientLRU(t *testing.T) {
	cl := newClientLimiter(1, 1, clientShards) // one entry per shard
	now := time.Unix(1e9, 0)
	a := netip.MustParseAddr("10.0.0.1")
	cl.allow(a, now)
	// Fill a's shard with another address → a is evicted and gets a fresh bucket.
	sh := shardOf(a)
	var b netip.Addr
	for i := 2; ; i++ {
		b = netip.AddrFrom4([4]byte{10, 0, byte(i >> 8), byte(i)})
		if shardOf(b) == sh {
			break
		}
	}
	cl.allow(b, now)
	if ok, _ := cl.allow(a, now); !ok {
		t.Error("evicted peer should start with a full bucket")
	}
	if ok, _ := cl.allow(a, now); ok {
		t.Error("peer's bucket should be empty after its burst")
	}
}

// Rate changes under load take effect at once (SetLimit/SetBurst) and keep
// the bucket's state.
func TestApplyRateLive(t *testing.T) {
	clk := newFakeClock()
	cfg := baseConfig()
	cfg.Backpressure.RateLimitRPS = 1
	cfg.Backpressure.RateLimitBurst = 1
	c, _, _ := newTestChain(t, cfg, okHandler)
	c.now = clk.now
	serveFrom(c, "10.0.0.1:1", "/", nil)
	if serveFrom(c, "10.0.0.1:1", "/", nil).Code != 429 {
		t.Fatal("second request at 1/s burst 1 should be limited")
	}
	cfg2 := *cfg
	cfg2.Backpressure.RateLimitRPS = 100
	cfg2.Backpressure.RateLimitBurst = 10
	if err := c.Apply(&cfg2); err != nil {
		t.Fatal(err)
	}
	clk.advance(100 * time.Millisecond) // 10 tokens at 100/s
	n := 0
	for range 20 {
		if serveFrom(c, "10.0.0.1:1", "/", nil).Code == 200 {
			n++
		}
	}
	if n != 10 {
		t.Errorf("after raising to 100/s burst 10 and 100 ms: %d allowed, want 10", n)
	}
	off := *cfg
	off.Backpressure.RateLimitRPS = 0
	if err := c.Apply(&off); err != nil {
		t.Fatal(err)
	}
	if serveFrom(c, "10.0.0.1:1", "/", nil).Code != 200 {
		t.Error("rate 0 must turn the limit off")
	}
}

func TestCriticalRoutesNotRateLimited(t *testing.T) {
	clk := newFakeClock()
	cfg := baseConfig()
	cfg.Backpressure.RateLimitRPS = 1
	cfg.Backpressure.RateLimitBurst = 1
	cfg.Backpressure.CriticalRoutes = []string{"/login", "/static/"}
	c, _, _ := newTestChain(t, cfg, okHandler)
	c.now = clk.now
	serveFrom(c, "10.0.0.1:1", "/", nil)
	for _, p := range []string{"/login", "/login/sso", "/static/app.js"} {
		if rec := serveFrom(c, "10.0.0.1:1", p, nil); rec.Code != 200 {
			t.Errorf("critical route %s got %d", p, rec.Code)
		}
	}
	if rec := serveFrom(c, "10.0.0.1:1", "/loginx", nil); rec.Code != 429 {
		t.Errorf("/loginx is not under /login, got %d", rec.Code)
	}
}

func TestMatchPrefix(t *testing.T) {
	cases := []struct {
		path, prefix string
		want         bool
	}{
		{"/api", "/api", true},
		{"/api/x", "/api", true},
		{"/apix", "/api", false},
		{"/static/a.js", "/static/", true},
		{"/static", "/static/", false},
		{"/", "/", true},
		{"/anything", "/", true},
	}
	for _, tc := range cases {
		if got := matchPrefix(tc.path, tc.prefix); got != tc.want {
			t.Errorf("matchPrefix(%q, %q) = %v, want %v", tc.path, tc.prefix, got, tc.want)
		}
	}
}

type configT = config.Config

func newReg() *prometheus.Registry { return prometheus.NewRegistry() }
