package deploy

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// sidecar is a running pulsegate binary started by a test.
type sidecar struct {
	cmd       *exec.Cmd
	logPath   string
	proxy     string // host:port
	admin     string // host:port
	done      chan struct{}
	exitErr   error
	client    *http.Client
	transport *http.Transport
}

// startSidecar runs `pulsegate serve` with env on loopback ports chosen by
// the kernel, waits for its "listening" log line and returns the addresses.
func startSidecar(t *testing.T, env []string) *sidecar {
	t.Helper()
	bin := pulsegateBinary(t)
	dir := t.TempDir()
	s := &sidecar{logPath: filepath.Join(dir, "stderr.log"), done: make(chan struct{})}
	logf, err := os.Create(s.logPath)
	if err != nil {
		t.Fatal(err)
	}
	s.cmd = exec.Command(bin, "serve")
	s.cmd.Env = append(cleanEnviron(),
		"RESPONSIVENESS_LISTEN_ADDR=127.0.0.1:0",
		"RESPONSIVENESS_ADMIN_ADDR=127.0.0.1:0",
		"RESPONSIVENESS_DATA_DIR="+filepath.Join(dir, "data"))
	s.cmd.Env = append(s.cmd.Env, env...)
	s.cmd.Dir = dir
	s.cmd.Stdout = logf
	s.cmd.Stderr = logf
	if err := s.cmd.Start(); err != nil {
		logf.Close()
		t.Fatalf("starting pulsegate: %v", err)
	}
	go func() {
		s.exitErr = s.cmd.Wait()
		logf.Close()
		close(s.done)
	}()
	s.transport = &http.Transport{DisableKeepAlives: true}
	s.client = &http.Client{Transport: s.transport, Timeout: 20 * time.Second}
	t.Cleanup(func() {
		s.transport.CloseIdleConnections()
		select {
		case <-s.done:
		default:
			s.cmd.Process.Kill()
			<-s.done
		}
		if t.Failed() {
			t.Logf("pulsegate log:\n%s", tail(readFile(t, s.logPath), 40))
		}
	})
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		if line, ok := s.logLine(t, "listening"); ok {
			s.proxy, _ = line["proxy_addr"].(string)
			s.admin, _ = line["admin_addr"].(string)
			if s.proxy == "" || s.admin == "" {
				t.Fatalf("listening line without proxy_addr/admin_addr: %v", line)
			}
			return s
		}
		select {
		case <-s.done:
			t.Fatalf("pulsegate exited before listening (%v):\n%s", s.exitErr, readFile(t, s.logPath))
		case <-time.After(50 * time.Millisecond):
		}
	}
	t.Fatalf("no \"listening\" log line within 30 s:\n%s", readFile(t, s.logPath))
	return nil
}

// logLine returns the first JSON log line whose msg is msg.
func (s *sidecar) logLine(t *testing.T, msg string) (map[string]any, bool) {
	t.Helper()
	b, err := os.ReadFile(s.logPath)
	if err != nil {
		return nil, false
	}
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for sc.Scan() {
		var m map[string]any
		if json.Unmarshal(sc.Bytes(), &m) == nil && m["msg"] == msg {
			return m, true
		}
	}
	return nil, false
}

func tail(b []byte, n int) string {
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// get sends a GET with an optional Host header and returns status and body.
func (s *sidecar) get(t *testing.T, url, host string) (int, []byte) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	if host != "" {
		req.Host = host
	}
	resp, err := s.client.Do(req)
	if err != nil {
		return 0, []byte(err.Error())
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, body
}

// upstream is a stand-in Flask app: fast, failing and slow routes.
func upstream(t *testing.T) *httptest.Server {
	t.Helper()
	mux := http.NewServeMux()
	mux.HandleFunc("/ok", func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok\n") })
	mux.HandleFunc("/fail", func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "boom", http.StatusInternalServerError)
	})
	mux.HandleFunc("/slow", func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-time.After(150 * time.Millisecond):
		case <-r.Context().Done():
		}
		io.WriteString(w, "slow\n")
	})
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv
}

// localServiceUp reports whether something accepts TCP connections at addr.
func localServiceUp(addr string) bool {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return false
	}
	c.Close()
	return true
}

// TestMonitoringMetricsExistInRealMetrics builds and runs the real binary
// with the local MariaDB and Redis configured, sends ordinary, failing,
// slow and rate-limited requests through its proxy port, and scrapes
// /metrics until every metric the PrometheusRule and the Grafana dashboard
// query is there (or fails naming the missing ones and who uses them).
// It also checks what the Kubernetes manifests rely on: /healthz, /readyz
// and /metrics answer without a token even with one configured, whatever
// Host header the kubelet or Prometheus sends (the pod IP).
func TestMonitoringMetricsExistInRealMetrics(t *testing.T) {
	want := monitoringMetricNames(t)
	env := []string{
		"RESPONSIVENESS_MONITORING_INTERVAL=1",
		"RESPONSIVENESS_SLOW_REQUEST_THRESHOLD=0.1",
		"RESPONSIVENESS_RATE_LIMIT_RPS=20",
		"RESPONSIVENESS_RATE_LIMIT_BURST=20",
		"RESPONSIVENESS_MAX_CONCURRENCY=8",
		"RESPONSIVENESS_ADMIN_TOKEN=" + canaryToken,
		"RESPONSIVENESS_REDIS_QUEUE_KEYS=pulsegate-deploy-test:queue",
		// A busy test machine's CPU must not shed the requests counted here.
		"RESPONSIVENESS_BACKPRESSURE_SHEDDING_ENABLED=false",
	}
	if localServiceUp("127.0.0.1:3306") {
		env = append(env, "RESPONSIVENESS_DB_DSN=mysql://root@127.0.0.1:3306/test")
	} else {
		t.Log("MariaDB is not listening on 127.0.0.1:3306: database metrics cannot appear")
	}
	if localServiceUp("127.0.0.1:6379") {
		env = append(env, "RESPONSIVENESS_REDIS_URL=redis://127.0.0.1:6379/0")
	} else {
		t.Log("Redis is not listening on 127.0.0.1:6379: Redis metrics cannot appear")
	}
	app := upstream(t)
	env = append(env, "RESPONSIVENESS_UPSTREAM_URL="+app.URL)
	s := startSidecar(t, env)

	// Traffic: ok, app errors, slow requests, then a burst past the rate limit.
	statuses := map[int]int{}
	var mu sync.Mutex
	send := func(path string) {
		code, _ := s.get(t, "http://"+s.proxy+path, "")
		mu.Lock()
		statuses[code]++
		mu.Unlock()
	}
	send("/slow")
	for range 10 {
		send("/ok")
		send("/fail")
	}
	var wg sync.WaitGroup
	for range 60 {
		wg.Go(func() { send("/ok") })
	}
	wg.Wait()
	t.Logf("statuses seen through the proxy: %v", statuses)
	if statuses[http.StatusOK] == 0 || statuses[http.StatusInternalServerError] == 0 || statuses[http.StatusTooManyRequests] == 0 {
		t.Errorf("want 200s, the app's 500s and rate-limited 429s through the proxy, got %v", statuses)
	}

	// What the kubelet and Prometheus do: no token, Host = pod IP:port.
	podHost := "10.244.1.7:9901"
	for _, p := range []string{"/healthz", "/readyz", "/metrics"} {
		if code, body := s.get(t, "http://"+s.admin+p, podHost); code != http.StatusOK {
			t.Errorf("GET %s with Host %s and no token: %d %s (kubelet probes and scrapes would fail)", p, podHost, code, firstLine(body))
		}
	}

	// Poll /metrics until every queried name exists.
	var missing []string
	deadline := time.Now().Add(60 * time.Second)
	for {
		code, body := s.get(t, "http://"+s.admin+"/metrics", "")
		if code != http.StatusOK {
			t.Fatalf("/metrics: %d %s", code, firstLine(body))
		}
		have := metricFamilies(body)
		missing = missing[:0]
		for name := range want {
			if !have[name] {
				missing = append(missing, name)
			}
		}
		if len(missing) == 0 || time.Now().After(deadline) {
			break
		}
		time.Sleep(500 * time.Millisecond)
	}
	sort.Strings(missing)
	for _, name := range missing {
		users := want[name]
		slices.Sort(users)
		t.Errorf("%s is queried by %s but is not in pulsegate's /metrics", name, strings.Join(users, "; "))
	}
	t.Logf("%d metric names used by the rules and the dashboard, %d missing", len(want), len(missing))
}

func firstLine(b []byte) string {
	s, _, _ := strings.Cut(string(b), "\n")
	return s
}

// TestSIGTERMDrainAsTheManifestsAssume checks the lifecycle the drain
// arithmetic relies on, with the real binary: on SIGTERM /readyz turns 503
// at once while the proxy keeps serving through the drain delay, and the
// process exits 0 within drain delay + shutdown timeout.
func TestSIGTERMDrainAsTheManifestsAssume(t *testing.T) {
	app := upstream(t)
	const drain, shutdown = 3 * time.Second, 5 * time.Second
	s := startSidecar(t, []string{
		"RESPONSIVENESS_UPSTREAM_URL=" + app.URL,
		fmt.Sprintf("RESPONSIVENESS_PROXY_DRAIN_DELAY=%g", drain.Seconds()),
		fmt.Sprintf("RESPONSIVENESS_PROXY_SHUTDOWN_TIMEOUT=%g", shutdown.Seconds()),
		"RESPONSIVENESS_MONITORING_ENABLED=false",
		"RESPONSIVENESS_BACKPRESSURE_SHEDDING_ENABLED=false",
	})
	// Ready before the signal (the upstream answers).
	deadline := time.Now().Add(20 * time.Second)
	for {
		code, _ := s.get(t, "http://"+s.admin+"/readyz", "")
		if code == http.StatusOK {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("/readyz never turned 200 before SIGTERM (last %d)", code)
		}
		time.Sleep(100 * time.Millisecond)
	}
	signalled := time.Now()
	if err := s.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	// /readyz 503 while the proxy still answers.
	var sawNotReady, servedWhileDraining bool
	for time.Since(signalled) < drain-500*time.Millisecond {
		if code, _ := s.get(t, "http://"+s.admin+"/readyz", ""); code == http.StatusServiceUnavailable {
			sawNotReady = true
		}
		if code, _ := s.get(t, "http://"+s.proxy+"/ok", ""); code == http.StatusOK && sawNotReady {
			servedWhileDraining = true
		}
		if sawNotReady && servedWhileDraining {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if !sawNotReady {
		t.Error("/readyz did not answer 503 during the drain delay after SIGTERM")
	}
	if !servedWhileDraining {
		t.Error("the proxy stopped serving before the drain delay ended (Kubernetes still sends traffic then)")
	}
	select {
	case <-s.done:
	case <-time.After(drain + shutdown + 15*time.Second):
		t.Fatalf("pulsegate still running %s after SIGTERM (drain %s + shutdown %s)", time.Since(signalled).Round(time.Millisecond), drain, shutdown)
	}
	if s.exitErr != nil {
		t.Errorf("exit after SIGTERM: %v, want status 0", s.exitErr)
	}
	t.Logf("exited %s after SIGTERM (drain delay %s)", time.Since(signalled).Round(10*time.Millisecond), drain)
	if _, ok := s.logLine(t, "draining"); !ok {
		t.Error("no draining log line")
	}
}
