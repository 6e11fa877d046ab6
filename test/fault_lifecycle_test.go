package test

// Fault suite, lifecycle beyond case 31 (RELIABILITY.md §3 C): streams open
// at shutdown (33), a second signal (34), live configuration under load (35),
// starting before the dependencies (36); and connection churn (12).

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/pulsegate/pulsegate/test/chaos"
)

// TestCase33_StreamsOpenAtShutdown: 20 SSE streams that would run for
// minutes are open at SIGTERM. Expect an exit within drain delay +
// shutdown timeout (+ slack), code 0, and every stream ended.
func TestCase33_StreamsOpenAtShutdown(t *testing.T) {
	t.Parallel()
	needBinary(t)
	// A Go upstream: gunicorn's threads would queue some of the streams.
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		rc := http.NewResponseController(w)
		for i := 0; ; i++ {
			if _, err := fmt.Fprintf(w, "data: %d\n\n", i); err != nil {
				return
			}
			if rc.Flush() != nil {
				return
			}
			select {
			case <-r.Context().Done():
				return
			case <-time.After(500 * time.Millisecond):
			}
		}
	}))
	// Close the streams' server side first: Close alone waits for every
	// active connection, and a stream whose peer vanished can look active.
	t.Cleanup(func() { up.CloseClientConnections(); up.Close() })
	p := StartPulsegate(t, map[string]string{
		"RESPONSIVENESS_UPSTREAM_URL":           up.URL,
		"RESPONSIVENESS_PROXY_DRAIN_DELAY":      "1",
		"RESPONSIVENESS_PROXY_SHUTDOWN_TIMEOUT": "3",
	})
	c := httpClient(t, 0)
	const n = 20
	var opened atomic.Int64
	var started, ended sync.WaitGroup
	for range n {
		started.Add(1)
		ended.Add(1)
		go func() {
			defer ended.Done()
			resp, err := c.Get(p.ProxyURL() + "/events")
			if err != nil {
				started.Done()
				return
			}
			br := bufio.NewReader(resp.Body)
			if _, err := br.ReadString('\n'); err == nil {
				opened.Add(1)
			}
			started.Done()
			io.Copy(io.Discard, br)
			resp.Body.Close()
		}()
	}
	started.Wait()
	if opened.Load() != n {
		t.Fatalf("only %d of %d streams opened", opened.Load(), n)
	}
	term := time.Now()
	p.Signal(syscall.SIGTERM)
	select {
	case <-p.Exited():
	case <-time.After(30 * time.Second):
		t.Fatal("pulsegate still running 30 s after SIGTERM with streams open (drain 1 s + shutdown 3 s)")
	}
	took := p.ExitedAt().Sub(term)
	p.mu.Lock()
	p.stopped = true
	p.mu.Unlock()
	if code := p.ExitCode(); code != 0 {
		t.Errorf("exit code %d with streams open at SIGTERM, want 0", code)
	}
	done := make(chan struct{})
	go func() { ended.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Error("SSE clients still receiving 10 s after pulsegate exited")
	}
	report(t, "33", fmt.Sprintf("exit with %d SSE streams open (drain 1 s + shutdown timeout 3 s)", n), took.Round(10*time.Millisecond).String(), "≤ 4 s + slack")
}

// TestCase34_SecondSignalShortensDrain: a second SIGTERM during a long drain
// delay ends it early; exit 0.
func TestCase34_SecondSignalShortensDrain(t *testing.T) {
	t.Parallel()
	needBinary(t)
	p := StartPulsegate(t, map[string]string{
		"RESPONSIVENESS_UPSTREAM_URL":      "http://127.0.0.1:9",
		"RESPONSIVENESS_PROXY_DRAIN_DELAY": "30",
	})
	term := time.Now()
	p.Signal(syscall.SIGTERM)
	p.WaitLog(t, 10*time.Second, func(l LogLine) bool { return l.Str("msg") == "draining" })
	time.Sleep(time.Second)
	p.Signal(syscall.SIGTERM)
	select {
	case <-p.Exited():
	case <-time.After(20 * time.Second):
		t.Fatal("a second SIGTERM did not cut a 30 s drain delay short")
	}
	p.mu.Lock()
	p.stopped = true
	p.mu.Unlock()
	if code := p.ExitCode(); code != 0 {
		t.Errorf("exit code %d after two SIGTERMs, want 0", code)
	}
	report(t, "34", "exit after SIGTERM, SIGTERM again 1 s later (drain delay 30 s)", p.ExitedAt().Sub(term).Round(10*time.Millisecond).String(), "well under the 30 s drain")
}

// TestCase35_ConfigChangesUnderLoad: 50 rps while the config is POSTed
// every 300 ms, a third of the bodies invalid. Expect no failed request,
// valid changes applied, invalid ones 400 with the config kept.
func TestCase35_ConfigChangesUnderLoad(t *testing.T) {
	t.Parallel()
	_, p, token := startWithToken(t, "gthread")
	c := httpClient(t, 30*time.Second)
	var sent, failed atomic.Int64
	stop := make(chan struct{})
	var load sync.WaitGroup
	load.Add(1)
	go func() {
		defer load.Done()
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		var inflight sync.WaitGroup
		defer inflight.Wait()
		for {
			select {
			case <-stop:
				return
			case <-tick.C:
			}
			sent.Add(1)
			inflight.Add(1)
			go func() {
				defer inflight.Done()
				r, err := do(t, c, "GET", p.ProxyURL()+"/ok", nil, nil)
				if err != nil || r.Status != 200 {
					failed.Add(1)
				}
			}()
		}
	}()
	hdr := map[string]string{"Content-Type": "application/json", "Authorization": "Bearer " + token}
	var applied float64
	var ok, refused int
	for i := range size(20, 200) {
		time.Sleep(300 * time.Millisecond)
		v := 1 + float64(i%7)/10
		body := fmt.Sprintf(`{"responsiveness":{"slow_request_threshold":%g}}`, v)
		want := 200
		if i%3 == 2 {
			body = fmt.Sprintf(`{"responsiveness":{"slow_request_threshold":%g,"memory_warning_threshold":0.95,"memory_critical_threshold":0.9}}`, v)
			want = 400
		}
		r := mustDo(t, c, "POST", p.AdminURL()+configPath, strings.NewReader(body), hdr)
		if r.Status != want {
			t.Errorf("POST %s: %d %.200s, want %d", body, r.Status, r.Body, want)
		}
		if r.Status == 200 {
			ok++
			applied = v
		} else {
			refused++
		}
		if got := p.slowThreshold(t); got != applied && applied != 0 {
			t.Errorf("after POST %d: slow_request_threshold %v, want the last valid value %v", i, got, applied)
		}
	}
	close(stop)
	load.Wait()
	report(t, "35", fmt.Sprintf("requests failed at 50 rps during %d config POSTs (%d refused as invalid)", ok+refused, refused), fmt.Sprintf("%d of %d", failed.Load(), sent.Load()), "0")
	if failed.Load() != 0 {
		t.Errorf("%d of %d requests failed while the config changed", failed.Load(), sent.Load())
	}
}

// TestCase36_StartBeforeDependencies: the app, the database and Redis are
// all down at start. Expect the listeners up, /readyz 503 with a reason,
// failing components with reasons and visible backoff, no crash and no
// reconnect storm; once they come up, ready and healthy.
func TestCase36_StartBeforeDependencies(t *testing.T) {
	t.Parallel()
	needBinary(t)
	reachable(t, "127.0.0.1:3306", "MariaDB")
	reachable(t, "127.0.0.1:6379", "Redis")
	g := StartGunicorn(t, "gthread")
	g.Stop() // its address is reserved for later
	dbAddr, redisAddr := freeAddr(t), freeAddr(t)
	p := StartPulsegate(t, map[string]string{
		"RESPONSIVENESS_UPSTREAM_URL":        g.URL(),
		"RESPONSIVENESS_MONITORING_INTERVAL": "1",
		"RESPONSIVENESS_DB_DSN":              "mysql://root@" + dbAddr + "/test",
		"RESPONSIVENESS_REDIS_URL":           "redis://" + redisAddr + "/0",
	})
	c := httpClient(t, 30*time.Second)
	if r := mustDo(t, c, "GET", p.AdminURL()+"/healthz", nil, nil); r.Status != 200 {
		t.Errorf("/healthz with everything down: %d", r.Status)
	}
	r := mustDo(t, c, "GET", p.AdminURL()+"/readyz", nil, nil)
	if r.Status != 503 {
		t.Errorf("/readyz before the app ever answered: %d, want 503", r.Status)
	}
	t.Logf("/readyz: %d %s", r.Status, strings.TrimSpace(string(r.Body)))
	if r := mustDo(t, c, "GET", p.ProxyURL()+"/ok", nil, nil); r.Status != 502 {
		t.Errorf("/ok with the app down: %d, want 502", r.Status)
	}
	var h map[string]any
	eventually(t, 30*time.Second, "database and Redis components failing with backoff visible", func() bool {
		h = p.health(t)
		return bad(component(h, "database_manager")) && bad(component(h, "session_monitoring")) &&
			strings.Contains(mustJSON(h), "backing off")
	})
	time.Sleep(5 * time.Second)
	select {
	case <-p.Exited():
		t.Fatalf("pulsegate exited with everything down (code %d)", p.ExitCode())
	default:
	}
	failedLines := 0
	for _, l := range p.Logs() {
		if l.Str("msg") == "probe_failed" {
			failedLines++
		}
	}
	report(t, "36", "probe_failed log lines in ~10 s with the database and Redis down (interval 1 s)", strconv.Itoa(failedLines), "one per outage, no storm")
	if failedLines > 6 {
		t.Errorf("%d probe_failed lines while the dependencies stayed down: a reconnect storm", failedLines)
	}

	// Everything comes up.
	g.Restart(t)
	for addr, target := range map[string]string{dbAddr: "127.0.0.1:3306", redisAddr: "127.0.0.1:6379"} {
		ch, err := chaos.Listen(addr, target)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { ch.Close() })
	}
	up := time.Now()
	eventually(t, 60*time.Second, "ready and healthy after the dependencies came up", func() bool {
		r, err := do(t, c, "GET", p.AdminURL()+"/readyz", nil, nil)
		if err != nil || r.Status != 200 {
			return false
		}
		h = p.health(t)
		return !bad(component(h, "database_manager")) && !bad(component(h, "session_monitoring"))
	})
	report(t, "36", "ready and healthy after the app, database and Redis came up (backoff capped)", time.Since(up).Round(100*time.Millisecond).String(), "prompt, bounded by the backoff cap")
	if r := mustDo(t, c, "GET", p.ProxyURL()+"/ok", nil, nil); r.Status != 200 {
		t.Errorf("/ok after the app came up: %d", r.Status)
	}
}

// timeWait counts TIME_WAIT sockets whose remote end is port (IPv4).
func timeWait(port int) int {
	b, err := os.ReadFile("/proc/net/tcp")
	if err != nil {
		return -1
	}
	want := fmt.Sprintf(":%04X", port)
	n := 0
	for _, l := range strings.Split(string(b), "\n")[1:] {
		f := strings.Fields(l)
		if len(f) > 3 && strings.HasSuffix(f[2], want) && f[3] == "06" {
			n++
		}
	}
	return n
}

// TestCase12_ConnectionChurn: 50 concurrent clients for 8 s (60 s long)
// against gthread gunicorn, through pulsegate's tuned Transport and through
// a bare ReverseProxy with Go's default Transport (MaxIdleConnsPerHost 2).
// Reports TIME_WAIT sockets towards the app for each.
func TestCase12_ConnectionChurn(t *testing.T) {
	needBinary(t)
	g := StartGunicorn(t, "gthread-wide")
	_, portS, _ := strings.Cut(g.Addr, ":")
	port, _ := strconv.Atoi(portS)
	p := StartPulsegate(t, map[string]string{"RESPONSIVENESS_UPSTREAM_URL": g.URL()})
	target, _ := url.Parse(g.URL())
	defTr := http.DefaultTransport.(*http.Transport).Clone()
	t.Cleanup(defTr.CloseIdleConnections)
	bare := httptest.NewServer(&httputil.ReverseProxy{
		Rewrite:   func(pr *httputil.ProxyRequest) { pr.SetURL(target) },
		Transport: defTr,
	})
	t.Cleanup(bare.Close)
	dur := time.Duration(size(8, 60)) * time.Second
	measure := func(base string) (reqs int64, tw int) {
		c := httpClient(t, 30*time.Second)
		c.Transport.(*http.Transport).MaxIdleConnsPerHost = 64
		// Let earlier TIME_WAITs (2·MSL = 60 s) not count: measure the rise.
		before := timeWait(port)
		ctx, cancel := context.WithTimeout(context.Background(), dur)
		defer cancel()
		var wg sync.WaitGroup
		var n atomic.Int64
		for range 50 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for ctx.Err() == nil {
					req, _ := http.NewRequestWithContext(ctx, "GET", base+"/ok", nil)
					resp, err := c.Do(req)
					if err == nil {
						io.Copy(io.Discard, resp.Body)
						resp.Body.Close()
						n.Add(1)
					}
				}
			}()
		}
		wg.Wait()
		return n.Load(), timeWait(port) - before
	}
	tunedN, tunedTW := measure(p.ProxyURL())
	bareN, bareTW := measure(bare.URL)
	report(t, "12", fmt.Sprintf("new TIME_WAIT sockets to the app, 50 clients for %v: pulsegate (tuned) vs bare ReverseProxy (default Transport)", dur),
		fmt.Sprintf("%d (%d requests) vs %d (%d requests)", tunedTW, tunedN, bareTW, bareN), "tuned near zero")
	if tunedTW > bareTW && bareTW > 0 {
		t.Errorf("pulsegate left %d TIME_WAIT sockets to the app, more than a default Transport (%d)", tunedTW, bareTW)
	}
}
