package main

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	_ "github.com/go-sql-driver/mysql"
	_ "github.com/jackc/pgx/v5/stdlib"
	"go.uber.org/goleak"
	"go.uber.org/zap"

	"github.com/pulsegate/pulsegate/config"
	"github.com/pulsegate/pulsegate/test/chaos"
)

const fleetToken = "i11w-fleet-token"

// fleetDB is one real database server for the fleet test: a private
// database created for the test and dropped after it.
type fleetDB struct {
	name, driver, admin, addr string
	dsn                       func(addr, db string) string
}

var fleetDBs = []fleetDB{
	{name: "mariadb", driver: "mysql", admin: "root@tcp(127.0.0.1:3306)/", addr: "127.0.0.1:3306",
		dsn: func(addr, db string) string { return "mysql://root@" + addr + "/" + db }},
	{name: "postgres", driver: "pgx", admin: "postgres://postgres@127.0.0.1:5432/test?sslmode=disable", addr: "127.0.0.1:5432",
		dsn: func(addr, db string) string { return "postgres://postgres@" + addr + "/" + db + "?sslmode=disable" }},
}

func (d fleetDB) exec(t *testing.T, stmt string) {
	t.Helper()
	db, err := sql.Open(d.driver, d.admin)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := db.ExecContext(ctx, stmt); err != nil {
		t.Fatalf("%s: %v", stmt, err)
	}
}

// fleetMember is one in-process sidecar running serve.
type fleetMember struct {
	a      *app
	name   string
	proxy  string // proxy listener
	admin  string // admin listener
	cancel context.CancelFunc
	done   chan int
}

func (m *fleetMember) stop(t *testing.T) {
	t.Helper()
	m.cancel()
	select {
	case code := <-m.done:
		if code != 0 {
			t.Errorf("%s: serve exited %d", m.name, code)
		}
	case <-time.After(30 * time.Second):
		t.Fatalf("%s: serve did not stop", m.name)
	}
}

func (m *fleetMember) get(t *testing.T, path string, into any) int {
	t.Helper()
	req, _ := http.NewRequest("GET", "http://"+m.admin+path, nil)
	req.Header.Set("Authorization", "Bearer "+fleetToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", m.name, path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if into != nil && resp.StatusCode == 200 {
		if err := json.Unmarshal(b, into); err != nil {
			t.Fatalf("%s %s: %v: %s", m.name, path, err, b)
		}
	}
	return resp.StatusCode
}

type fleetPerf struct {
	Scope     string `json:"scope"`
	Reporting string `json:"reporting"`
	PM        struct {
		Throughput float64  `json:"throughput_rps"`
		ErrorRate  float64  `json:"error_rate"`
		Requests   uint64   `json:"requests"`
		P50        *float64 `json:"p50_response_time"`
		P99        *float64 `json:"p99_response_time"`
	} `json:"performance_metrics"`
	Instances []struct {
		Instance   string  `json:"instance"`
		Stale      bool    `json:"stale"`
		Throughput float64 `json:"throughput_rps"`
		Version    int64   `json:"config_version"`
	} `json:"instances"`
}

type fleetHealthDoc struct {
	Status     string            `json:"status"`
	Components map[string]string `json:"components"`
	Reasons    []string          `json:"reasons"`
	Reporting  string            `json:"reporting"`
	Instances  []struct {
		Instance string `json:"instance"`
		Stale    bool   `json:"stale"`
	} `json:"instances"`
}

// quantile is the nearest-rank q-quantile of sorted xs.
func quantile(xs []float64, q float64) float64 {
	i := int(math.Ceil(q*float64(len(xs)))) - 1
	return xs[max(i, 0)]
}

// TestFleetSharedStore: three sidecars share one real MariaDB and one real
// PostgreSQL database (through a TCP switch); traffic spread across their
// proxy ports. The fleet answer on any sidecar sums the throughput and
// reads p50/p99 from the merged histograms (within 2 % of every
// client-measured latency); cutting the store under traffic fails no
// proxied request and shows in the verdict; a stopped sidecar turns stale
// within 3 intervals and leaves the verdict.
func TestFleetSharedStore(t *testing.T) {
	if testing.Short() {
		t.Skip("real databases, ~1 min")
	}
	for _, d := range fleetDBs {
		t.Run(d.name, func(t *testing.T) {
			c, err := net.DialTimeout("tcp", d.addr, time.Second)
			if err != nil {
				t.Skipf("needs %s: %v", d.addr, err)
			}
			c.Close()
			testFleet(t, d)
		})
	}
}

func testFleet(t *testing.T, d fleetDB) {
	leaks := goleak.IgnoreCurrent()
	dbName := fmt.Sprintf("pulsegate_i11w_fleet_%d", os.Getpid())
	d.exec(t, "DROP DATABASE IF EXISTS "+dbName)
	d.exec(t, "CREATE DATABASE "+dbName)
	t.Cleanup(func() {
		stmt := "DROP DATABASE IF EXISTS " + dbName
		if d.driver == "pgx" {
			stmt += " WITH (FORCE)"
		}
		d.exec(t, stmt)
	})
	sw, err := chaos.New(d.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer sw.Close()

	// The app: every request sleeps a random 20–1000 ms (so that the
	// client's own scheduling on a busy machine stays well under 2 %);
	// /boom answers 500.
	upstream := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		time.Sleep(time.Duration(20+rand.IntN(981)) * time.Millisecond)
		if r.URL.Path == "/boom" {
			w.WriteHeader(http.StatusInternalServerError)
			return
		}
		w.WriteHeader(http.StatusOK)
	}))
	defer upstream.Close()

	fleet := "i11w-" + d.name
	var members []*fleetMember
	for _, name := range []string{"i11w-a", "i11w-b", "i11w-c"} {
		cfg := config.Defaults()
		cfg.Proxy.UpstreamURL = upstream.URL
		cfg.Proxy.ListenAddr, cfg.Admin.Addr = "127.0.0.1:0", "127.0.0.1:0"
		cfg.Proxy.DrainDelay = 0
		cfg.Admin.Token = config.Secret(fleetToken)
		cfg.DataDir = t.TempDir()
		cfg.Responsiveness.MonitoringInterval = 1
		cfg.Store.DSN = config.Secret(d.dsn(sw.Addr(), dbName))
		cfg.Instance, cfg.Fleet = name, fleet
		cfg.Database.DSN = "mysql://root@127.0.0.1:3306/test" // the app's database, probed
		if err := cfg.Validate(); err != nil {
			t.Fatal(err)
		}
		a, err := build(cfg, zap.NewNop(), zap.NewAtomicLevel(), nil)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		m := &fleetMember{a: a, name: name, proxy: a.proxyLn.Addr().String(), admin: a.adminLn.Addr().String(),
			cancel: cancel, done: make(chan int, 1)}
		go func() { m.done <- a.serve(ctx, nil) }()
		members = append(members, m)
	}
	stopped := map[*fleetMember]bool{}
	defer func() {
		for _, m := range members {
			if !stopped[m] {
				m.stop(t)
			}
		}
		upstream.Close()
		sw.Close()
		goleak.VerifyNone(t, leaks, goleak.IgnoreTopFunction("database/sql.(*DB).connectionOpener"))
	}()

	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}}
	defer client.CloseIdleConnections()
	// traffic sends n requests spread round-robin over the live members'
	// proxy ports, 40 at a time; every 20th is /boom. It returns the
	// client-measured latencies, the 500s and the failures.
	traffic := func(n int, live []*fleetMember) (lat []float64, boom, failed int) {
		var mu sync.Mutex
		var next atomic.Int64
		var wg sync.WaitGroup
		for range 40 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for {
					i := int(next.Add(1)) - 1
					if i >= n {
						return
					}
					path := "/ok"
					if i%20 == 19 {
						path = "/boom"
					}
					start := time.Now()
					resp, err := client.Get("http://" + live[i%len(live)].proxy + path)
					if err == nil {
						io.Copy(io.Discard, resp.Body)
						resp.Body.Close()
					}
					el := time.Since(start).Seconds()
					mu.Lock()
					switch {
					case err != nil || (resp.StatusCode != 200 && !(path == "/boom" && resp.StatusCode == 500)):
						failed++
					default:
						lat = append(lat, el)
						if path == "/boom" {
							boom++
						}
					}
					mu.Unlock()
				}
			}()
		}
		wg.Wait()
		return lat, boom, failed
	}

	const n = 900
	lat, boom, failed := traffic(n, members)
	if failed != 0 {
		t.Fatalf("%d of %d proxied requests failed", failed, n)
	}
	sort.Float64s(lat)

	// Wait until every request is in the fleet's merged rollups.
	var fp fleetPerf
	deadline := time.Now().Add(20 * time.Second)
	for {
		if code := members[1].get(t, "/admin/api/performance/responsiveness?scope=fleet", &fp); code == 200 && fp.PM.Requests == n {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("fleet requests %d; want %d (%+v)", fp.PM.Requests, n, fp)
		}
		time.Sleep(200 * time.Millisecond)
	}
	if fp.Scope != "fleet" || len(fp.Instances) != 3 || fp.Reporting != "3 of 3 instances reporting" {
		t.Fatalf("fleet answer %+v", fp)
	}
	// The heartbeats as stored: verdict with components and reasons, the
	// config version, resources, and rollups whose counts add up to the traffic.
	insts, err := members[0].a.link.Fleet().Instances(context.Background(), fleet, time.Now())
	if err != nil || len(insts) != 3 {
		t.Fatalf("instances %v, %v", insts, err)
	}
	for _, in := range insts {
		hb := in.Heartbeat
		comps := map[string]string{}
		for _, c := range hb.Components {
			comps[c.Name] = c.Status
		}
		if hb.Status == "" || comps["store"] != "healthy" || comps["request_performance"] == "" || hb.ConfigVersion != 0 ||
			hb.Interval != time.Second || hb.Rollup.CPU == nil || hb.Rollup.Memory == nil ||
			hb.Rollup.DB == nil || hb.Rollup.DB.PoolSize == 0 || hb.Rollup.DB.PoolInUse == 0 || hb.Rollup.DB.LatencySeconds == nil {
			t.Errorf("%s heartbeat: status %q components %v config %d interval %s cpu %v memory %v db %+v", in.Instance, hb.Status, comps,
				hb.ConfigVersion, hb.Interval, hb.Rollup.CPU, hb.Rollup.Memory, hb.Rollup.DB)
		}
	}
	var sum float64
	for _, in := range fp.Instances {
		sum += in.Throughput
	}
	if math.Abs(fp.PM.Throughput-sum) > 1e-9 {
		t.Errorf("fleet throughput %v; want the sum of the instances' %v", fp.PM.Throughput, sum)
	}
	if want := float64(boom) / float64(n); math.Abs(fp.PM.ErrorRate-want) > 1e-9 {
		t.Errorf("fleet error rate %v; want %d/%d = %v", fp.PM.ErrorRate, boom, n, want)
	}
	for _, q := range []struct {
		name string
		got  *float64
		q    float64
	}{{"p50", fp.PM.P50, 0.50}, {"p99", fp.PM.P99, 0.99}} {
		want := quantile(lat, q.q)
		if q.got == nil || math.Abs(*q.got-want)/want > 0.02 {
			t.Errorf("fleet %s %v; client-measured %v (2 %% allowed)", q.name, fmtPtr(q.got), want)
		} else {
			t.Logf("%s: fleet %s %.4fs, client-measured %.4fs (%+.2f %%)", d.name, q.name, *q.got, want, (*q.got-want)/want*100)
		}
	}

	// The store cut under traffic: no proxied request fails, the verdict
	// names the store; when it is back the store component is healthy.
	sw.Set(chaos.Fault{Mode: chaos.Blackhole})
	sw.ResetAll()
	var cutFailed atomic.Int64
	cutDone := make(chan struct{})
	go func() {
		defer close(cutDone)
		for i := 0; i < 5; i++ {
			_, _, f := traffic(120, members)
			cutFailed.Add(int64(f))
		}
	}()
	var h fleetHealthDoc
	deadline = time.Now().Add(30 * time.Second)
	for {
		members[0].get(t, "/admin/api/health/responsiveness", &h)
		if h.Components["store"] == "warning" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("store cut: verdict %+v; want the store component warning", h)
		}
		time.Sleep(300 * time.Millisecond)
	}
	if !strings.Contains(strings.Join(h.Reasons, "|"), "store warning:") {
		t.Errorf("store cut: reasons %q lack the store's", h.Reasons)
	}
	<-cutDone
	if f := cutFailed.Load(); f != 0 {
		t.Fatalf("store cut: %d proxied requests failed", f)
	}
	sw.Set(chaos.Fault{Mode: chaos.Pass})
	// Every writer retries with backoff (up to 30 s): wait until each
	// sidecar's store is healthy again and the fleet sees all three.
	deadline = time.Now().Add(60 * time.Second)
	for _, m := range members {
		for {
			m.get(t, "/admin/api/health/responsiveness", &h)
			if h.Components["store"] == "healthy" {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("store back: %s verdict %+v; want the store healthy again", m.name, h)
			}
			time.Sleep(300 * time.Millisecond)
		}
	}
	for {
		members[0].get(t, "/admin/api/health/responsiveness?scope=fleet", &h)
		if h.Reporting == "3 of 3 instances reporting" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("store back: fleet %+v; want 3 of 3 reporting", h)
		}
		time.Sleep(300 * time.Millisecond)
	}

	// Stop #3: stale within 3 monitoring intervals of its last heartbeat,
	// and out of the verdict.
	members[2].stop(t)
	stopped[members[2]] = true
	stoppedAt := time.Now()
	for {
		members[0].get(t, "/admin/api/health/responsiveness?scope=fleet", &h)
		if h.Reporting == "2 of 3 instances reporting" {
			break
		}
		// 3 intervals, plus the writer's flush (1 s) and this poll.
		if time.Since(stoppedAt) > 3*time.Second+2*time.Second {
			t.Fatalf("stopped instance not stale after %s: %+v", time.Since(stoppedAt), h)
		}
		time.Sleep(100 * time.Millisecond)
	}
	for _, in := range h.Instances {
		if in.Stale != (in.Instance == "i11w-c") {
			t.Errorf("instance %s stale=%v", in.Instance, in.Stale)
		}
	}
	for _, r := range h.Reasons {
		if strings.HasPrefix(r, "i11w-c:") {
			t.Errorf("the stale instance is still in the verdict: %q", r)
		}
	}
	code, out, errOut := runCmd(t, []string{"RESPONSIVENESS_ADMIN_TOKEN=" + fleetToken}, "status", "--fleet", "--admin", "http://"+members[0].admin)
	if code == statusUnreachable || !strings.Contains(out, "instances (2 of 3 instances reporting)") || !strings.Contains(out, "stale") {
		t.Errorf("status --fleet: exit %d, %s\n%s", code, errOut, out)
	}
	t.Logf("%s: status --fleet:\n%s", d.name, out)
}

func fmtPtr(p *float64) string {
	if p == nil {
		return "null"
	}
	return fmt.Sprint(*p)
}
