package test

// Issue 11's real-component test: three `pulsegate serve` processes, each
// in front of the fixture Flask app under gunicorn, sharing one store in a
// real MariaDB and a real PostgreSQL database (a private one per run,
// reached through the chaos switch so it can be cut), with an httptest
// Alertmanager receiving every sidecar's pushes.

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"net/http/httptrace"
	"os"
	"os/exec"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	_ "github.com/go-sql-driver/mysql"
	_ "github.com/jackc/pgx/v5/stdlib"

	"github.com/pulsegate/pulsegate/internal/fleettest"
	"github.com/pulsegate/pulsegate/store"
	"github.com/pulsegate/pulsegate/test/chaos"
)

// amPush is one POST an Alertmanager received.
type amPush struct {
	at     time.Time
	alerts []struct {
		Labels      map[string]string `json:"labels"`
		Annotations map[string]string `json:"annotations"`
	}
}

// alertmanager records the pushes of each sidecar: sidecar i posts to
// /s<i>/api/v2/alerts.
type alertmanager struct {
	srv    *httptest.Server
	mu     sync.Mutex
	pushes map[string][]amPush
}

func newAlertmanager() *alertmanager {
	am := &alertmanager{pushes: map[string][]amPush{}}
	am.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		who, rest, _ := strings.Cut(strings.TrimPrefix(r.URL.Path, "/"), "/")
		if r.Method != "POST" || rest != "api/v2/alerts" {
			http.NotFound(w, r)
			return
		}
		b, _ := io.ReadAll(r.Body)
		p := amPush{at: time.Now()}
		if err := json.Unmarshal(b, &p.alerts); err != nil {
			http.Error(w, err.Error(), 400)
			return
		}
		am.mu.Lock()
		am.pushes[who] = append(am.pushes[who], p)
		am.mu.Unlock()
		w.WriteHeader(200)
	}))
	return am
}

// acknowledgedSince reports whether sidecar who pushed, at or after since,
// the alert of rule with the acknowledgement annotations.
func (am *alertmanager) acknowledgedSince(who, rule string, since time.Time) bool {
	am.mu.Lock()
	defer am.mu.Unlock()
	for _, p := range am.pushes[who] {
		if p.at.Before(since) {
			continue
		}
		for _, a := range p.alerts {
			if a.Labels["rule"] == rule && a.Annotations["acknowledged_by"] != "" && a.Annotations["acknowledged_at"] != "" {
				return true
			}
		}
	}
	return false
}

// fleetRun is one database's fleet: the sidecars and what they share.
type fleetRun struct {
	d      fleettest.DB
	dbName string
	fleet  string
	token  string
	sw     *chaos.Proxy
	app    *Gunicorn
	am     *alertmanager
	sc     []*Pulsegate
	names  []string
	client *http.Client
	hdr    map[string]string
}

// TestFleetProcesses (issue 11): three pulsegate processes in front of the
// real Flask app share a store in MariaDB and in PostgreSQL.
//   - latency: traffic spread across the three; the fleet's p50/p99 on a
//     sidecar equal those of every client-measured latency within 2 %, the
//     throughput is the instances' sum and the error rate fleet errors ÷
//     fleet answered; the stored heartbeats carry the verdict, components,
//     config version and resources;
//   - config: a POST on #1 is run by #2 and #3 within one interval (C1);
//   - ack: an acknowledgement on #2 shows on #1 and #3, in their APIs and
//     their Alertmanager pushes (A1);
//   - store_down: the store cut for 30 s under traffic fails no proxied
//     request, the verdict names the store, and every audit entry and
//     acknowledgement made meanwhile is in the store afterwards;
//   - sigkill: #3 killed turns stale within 3 intervals and leaves the
//     verdict ("2 of 3 instances reporting"), as `status --fleet` shows.
//
// Not parallel: its figures are timing comparisons within 2 %.
func TestFleetProcesses(t *testing.T) {
	needBinary(t)
	if testing.Short() {
		t.Skip("real databases, three sidecars, a 30 s store outage: ~1.5 min per database")
	}
	fleettest.Each(t, func(t *testing.T, d fleettest.DB, err error) {
		skipOrFail(t, fmt.Sprintf("needs %s at %s: %v", d.Name, d.Addr, err))
	}, testFleetProcesses)
}

func testFleetProcesses(t *testing.T, d fleettest.DB) {
	f := &fleetRun{d: d, dbName: d.Private(t, "pulsegate_i11e2e"), fleet: "i11e2e-" + d.Name,
		token: randomToken(t), names: []string{"i11e2e-1", "i11e2e-2", "i11e2e-3"}}
	sw, err := chaos.New(d.Addr)
	if err != nil {
		t.Fatal(err)
	}
	f.sw = sw
	// Cleanups run last-in first-out: the sidecars stop (registered later)
	// before the switch and the Alertmanager close.
	t.Cleanup(func() { sw.Close() })
	f.am = newAlertmanager()
	t.Cleanup(f.am.srv.Close)
	// One app for the three sidecars: 3 workers × 8 threads, never the
	// bottleneck of 24 clients.
	f.app = StartGunicorn(t, "gthread-wide")
	f.client = httpClient(t, 60*time.Second)
	f.hdr = map[string]string{"Content-Type": "application/json", "Authorization": "Bearer " + f.token}

	for i, name := range f.names {
		f.sc = append(f.sc, StartPulsegate(t, map[string]string{
			"RESPONSIVENESS_UPSTREAM_URL":            f.app.URL(),
			"RESPONSIVENESS_ADMIN_TOKEN":             f.token,
			"RESPONSIVENESS_MONITORING_INTERVAL":     "1",
			"RESPONSIVENESS_STORE_DSN":               d.DSN(sw.Addr(), f.dbName),
			"RESPONSIVENESS_INSTANCE":                name,
			"RESPONSIVENESS_FLEET":                   f.fleet,
			"RESPONSIVENESS_DB_DSN":                  "mysql://root@127.0.0.1:3306/test", // the app's database, probed
			"RESPONSIVENESS_ALERTS_ALERTMANAGER_URL": fmt.Sprintf("%s/s%d", f.am.srv.URL, i+1),
			"RESPONSIVENESS_ALERTS_MIN_DURATION":     "0",
			// Two alerts from the traffic: error_rate (every 10th request
			// answers 500) and avg_response_time (the sleeps average ~0.5 s).
			"RESPONSIVENESS_ERROR_RATE_WARNING_THRESHOLD":     "0.03",
			"RESPONSIVENESS_ERROR_RATE_CRITICAL_THRESHOLD":    "0.9",
			"RESPONSIVENESS_RESPONSE_TIME_WARNING_THRESHOLD":  "0.1",
			"RESPONSIVENESS_RESPONSE_TIME_CRITICAL_THRESHOLD": "30",
			"RESPONSIVENESS_LOG_LEVEL":                        "info",
		}))
	}
	for _, step := range []struct {
		name string
		fn   func(t *testing.T)
	}{{"latency", f.latency}, {"config", f.config}, {"ack", f.ack}, {"store_down", f.storeDown}, {"sigkill", f.sigkill}} {
		start := time.Now()
		t.Run(step.name, step.fn)
		t.Logf("%s: %s", step.name, time.Since(start).Round(time.Millisecond))
	}
}

// get GETs an admin path on sidecar i; the status and the decoded object.
func (f *fleetRun) get(t testing.TB, i int, path string) (int, map[string]any) {
	t.Helper()
	r := mustDo(t, f.client, "GET", f.sc[i].AdminURL()+path, nil, f.hdr)
	var m map[string]any
	_ = json.Unmarshal(r.Body, &m)
	return r.Status, m
}

func (f *fleetRun) post(t testing.TB, i int, path, body string) *Response {
	t.Helper()
	return mustDo(t, f.client, "POST", f.sc[i].AdminURL()+path, strings.NewReader(body), f.hdr)
}

// traffic sends n requests (n < 0: until stop is closed) spread
// round-robin over the sidecars in live, conc at a time: /sleep with a
// random 20–1000 ms, every 10th /status/500. It returns every
// client-measured latency of an answered request, the 500s and the
// failures (transport errors, any status but the one asked for). The
// client measures from the request written to the first byte of the
// answer (httptrace), the span that holds the sidecar's own measure and
// the least of the client's: time to get a connection, to be scheduled
// after the answer and to read the body add nothing, so on a loaded
// machine the client's figure stays within the histogram's ±1.6 % plus a
// little (a whole Get and body read measured up to 3.8 % more than the
// fleet's figure at load average ~20).
func (f *fleetRun) traffic(n, conc int, live []int, stop <-chan struct{}) (lat []float64, boom, failed int, failures []string) {
	var mu sync.Mutex
	var next atomic.Int64
	var wg sync.WaitGroup
	for range conc {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1)) - 1
				if n >= 0 && i >= n {
					return
				}
				if stop != nil {
					select {
					case <-stop:
						return
					default:
					}
				}
				path, want := fmt.Sprintf("/sleep?ms=%d", 20+rand.IntN(981)), 200
				if i%10 == 9 {
					path, want = "/status/500", 500
				}
				var wrote, first atomic.Int64 // monotonic ns since t0 (the trace runs on the Transport's goroutines)
				t0 := time.Now()
				trace := &httptrace.ClientTrace{
					WroteRequest:         func(httptrace.WroteRequestInfo) { wrote.Store(int64(time.Since(t0))) },
					GotFirstResponseByte: func() { first.Store(int64(time.Since(t0))) },
				}
				req, _ := http.NewRequestWithContext(httptrace.WithClientTrace(context.Background(), trace),
					"GET", f.sc[live[i%len(live)]].ProxyURL()+path, nil)
				resp, err := f.client.Do(req)
				if err == nil {
					_, err = io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
				}
				el := time.Duration(first.Load() - wrote.Load()).Seconds()
				if wrote.Load() == 0 || first.Load() == 0 {
					el = time.Since(t0).Seconds() // no trace (cannot happen on an answered request)
				}
				mu.Lock()
				switch {
				case err != nil:
					failed++
					failures = append(failures, fmt.Sprintf("%s via #%d: %v", path, live[i%len(live)]+1, err))
				case resp.StatusCode != want:
					failed++
					failures = append(failures, fmt.Sprintf("%s via #%d: %d", path, live[i%len(live)]+1, resp.StatusCode))
				default:
					lat = append(lat, el)
					if want == 500 {
						boom++
					}
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	return lat, boom, failed, failures
}

// nearestRank is the nearest-rank q-quantile of sorted xs.
func nearestRank(xs []float64, q float64) float64 {
	i := int(math.Ceil(q*float64(len(xs)))) - 1
	return xs[max(i, 0)]
}

func (f *fleetRun) latency(t *testing.T) {
	const n = 600
	lat, boom, failed, failures := f.traffic(n, 24, []int{0, 1, 2}, nil)
	if failed != 0 {
		t.Fatalf("%d of %d proxied requests failed: %q", failed, n, failures[:min(len(failures), 5)])
	}
	sort.Float64s(lat)
	// Every request in the fleet's merged rollups (the last minute's).
	var perf map[string]any
	eventually(t, 20*time.Second, fmt.Sprintf("the fleet answer on #2 counts all %d requests", n), func() bool {
		code, m := f.get(t, 1, "/admin/api/performance/responsiveness?scope=fleet")
		perf = m
		got, _ := num(m, "performance_metrics.requests")
		return code == 200 && got == n
	})
	if perf["scope"] != "fleet" || perf["reporting"] != "3 of 3 instances reporting" || len(asList(perf["instances"])) != 3 {
		t.Fatalf("fleet answer: scope %v, reporting %v, %d instances", perf["scope"], perf["reporting"], len(asList(perf["instances"])))
	}
	var sum float64
	for _, in := range asList(perf["instances"]) {
		v, _ := num(in.(map[string]any), "throughput_rps")
		sum += v
	}
	if got, _ := num(perf, "performance_metrics.throughput_rps"); math.Abs(got-sum) > 1e-9 {
		t.Errorf("fleet throughput %v; want the sum of the instances' %v", got, sum)
	}
	if got, _ := num(perf, "performance_metrics.error_rate"); math.Abs(got-float64(boom)/n) > 1e-9 {
		t.Errorf("fleet error rate %v; want %d/%d", got, boom, n)
	}
	for _, q := range []struct {
		name string
		q    float64
	}{{"p50", 0.50}, {"p99", 0.99}} {
		want := nearestRank(lat, q.q)
		got, ok := num(perf, "performance_metrics."+q.name+"_response_time")
		dev := (got - want) / want * 100
		report(t, "i11 fleet", fmt.Sprintf("%s: fleet %s (3 processes, %d requests) vs every client-measured latency", f.d.Name, q.name, n),
			fmt.Sprintf("%.4f s vs %.4f s (%+.2f %%)", got, want, dev), "within 2 %")
		if !ok || math.Abs(dev) > 2 {
			t.Errorf("fleet %s %v; client-measured %.4f s (2 %% allowed)", q.name, got, want)
		}
	}

	// The heartbeats as stored: the verdict with components and reasons,
	// the config version, resources, the probed database's pool.
	_, cfg := f.get(t, 0, configPath)
	cfgVer, _ := num(cfg, "version")
	db := f.openStore(t)
	rows, err := db.Query("SELECT doc FROM pulsegate_instances WHERE fleet = "+f.ph(1), f.fleet)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	seen := 0
	for rows.Next() {
		var doc string
		if err := rows.Scan(&doc); err != nil {
			t.Fatal(err)
		}
		var hb store.Heartbeat
		if err := json.Unmarshal([]byte(doc), &hb); err != nil {
			t.Fatalf("heartbeat doc: %v", err)
		}
		seen++
		comps := map[string]string{}
		for _, c := range hb.Components {
			comps[c.Name] = c.Status
		}
		if hb.Status == "" || comps["store"] == "" || comps["request_performance"] == "" || hb.ConfigVersion != int64(cfgVer) ||
			hb.Interval != time.Second || hb.Rollup.CPU == nil || hb.Rollup.Memory == nil ||
			hb.Rollup.DB == nil || hb.Rollup.DB.PoolSize == 0 || hb.Rollup.DB.LatencySeconds == nil {
			t.Errorf("%s heartbeat: status %q components %v config %d interval %s cpu %v memory %v db %+v", hb.Instance, hb.Status, comps,
				hb.ConfigVersion, hb.Interval, hb.Rollup.CPU, hb.Rollup.Memory, hb.Rollup.DB)
		}
	}
	if seen != 3 {
		t.Errorf("%d instances in pulsegate_instances, want 3", seen)
	}
}

// openStore opens the fleet's database directly (not through the switch).
func (f *fleetRun) openStore(t testing.TB) *sql.DB {
	t.Helper()
	db, err := sql.Open(f.d.Driver, f.d.Open(f.dbName))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

// ph is the i-th placeholder of the dialect.
func (f *fleetRun) ph(i int) string {
	if f.d.Driver == "pgx" {
		return fmt.Sprintf("$%d", i)
	}
	return "?"
}

// config (contract C1): a POST on #1 writes a new fleet version that #2
// and #3 run within one monitoring interval, as GET config's "fleet" shows.
func (f *fleetRun) config(t *testing.T) {
	code, cfg := f.get(t, 0, configPath)
	if code != 200 {
		t.Fatalf("GET config on #1: %d", code)
	}
	if _, ok := cfg["fleet"].(map[string]any); !ok {
		skipOrFail(t, fmt.Sprintf("needs fleet config (i11cfg, contract C1): GET %s with a shared store has no \"fleet\" object (fleet: %v)", configPath, cfg["fleet"]))
	}
	ver, _ := num(cfg, "version")
	r := f.post(t, 0, configPath, fmt.Sprintf(`{"version": %d, "responsiveness": {"cpu_warning_threshold": 0.97, "cpu_critical_threshold": 0.99}}`, int64(ver)))
	posted := time.Now()
	if r.Status != 200 {
		t.Fatalf("POST config on #1: %d %.300s", r.Status, r.Body)
	}
	newVer, _ := num(r.JSON(t), "version")
	if newVer != ver+1 {
		t.Errorf("POST answered version %v; want %v", newVer, ver+1)
	}
	// Within one interval (1 s), plus a poll's slack on a loaded machine.
	for _, i := range []int{1, 2} {
		var took time.Duration
		eventually(t, 10*time.Second, fmt.Sprintf("#%d runs fleet version %v", i+1, newVer), func() bool {
			_, c := f.get(t, i, configPath)
			fv, _ := num(c, "fleet.version")
			cpu, _ := num(c, "responsiveness.cpu_warning_threshold")
			if fv == newVer && cpu == 0.97 && runsVersion(c, f.names[i], newVer) {
				took = time.Since(posted)
				return true
			}
			return false
		})
		report(t, "i11 fleet", fmt.Sprintf("%s: config POSTed on #1 applied on #%d", f.d.Name, i+1), took.Round(time.Millisecond).String(), "within one interval (1 s)")
		if took > time.Second+time.Second {
			t.Errorf("#%d ran version %v %s after the POST; want within one interval (1 s, plus 1 s for the polls)", i+1, newVer, took)
		}
	}
	// Every instance is listed with the version it runs (as its latest
	// heartbeat says: #1's next one may still be a flush away).
	var c map[string]any
	eventually(t, 10*time.Second, fmt.Sprintf("GET config on #3 lists every instance at version %v", newVer), func() bool {
		_, c = f.get(t, 2, configPath)
		for _, name := range f.names {
			if !runsVersion(c, name, newVer) {
				return false
			}
		}
		return true
	})
}

// runsVersion: GET config's fleet.instances lists name at version v, fresh.
func runsVersion(cfg map[string]any, name string, v float64) bool {
	fl, _ := cfg["fleet"].(map[string]any)
	for _, e := range asList(fl["instances"]) {
		m, _ := e.(map[string]any)
		if m["instance"] == name {
			cv, _ := m["config_version"].(float64)
			stale, _ := m["stale"].(bool)
			return cv == v && !stale
		}
	}
	return false
}

// alertByRule finds the active alert of rule on sidecar i (scope "" or
// "fleet"); nil when none.
func (f *fleetRun) alertByRule(t testing.TB, i int, scope, rule string) map[string]any {
	t.Helper()
	path := "/admin/api/alerts/responsiveness"
	if scope != "" {
		path += "?scope=" + scope
	}
	code, l := f.get(t, i, path)
	if code != 200 {
		return nil
	}
	for _, e := range asList(l["alerts"]) {
		if m, ok := e.(map[string]any); ok && (m["rule"] == rule || m["metric"] == rule) && m["state"] != "resolved" {
			return m
		}
	}
	return nil
}

// ack (contract A1): the error_rate alert firing on all three is one fleet
// alert; acknowledged on #2 it is acknowledged on #1 and #3, in their
// APIs and in their Alertmanager pushes.
func (f *fleetRun) ack(t *testing.T) {
	if code, _ := f.get(t, 1, "/admin/api/alerts/responsiveness?scope=fleet"); code != 200 {
		skipOrFail(t, fmt.Sprintf("needs fleet alerts (i11alerts, contract A1): GET /admin/api/alerts/responsiveness?scope=fleet answers %d", code))
	}
	// Keep the error rate up while the alert is acknowledged.
	stop := make(chan struct{})
	done := make(chan int)
	go func() {
		_, _, failed, _ := f.traffic(-1, 6, []int{0, 1, 2}, stop)
		done <- failed
	}()
	defer func() {
		close(stop)
		if n := <-done; n != 0 {
			t.Errorf("%d proxied requests failed during the ack", n)
		}
	}()
	var fa map[string]any
	eventually(t, 30*time.Second, "the error_rate fleet alert lists all three instances", func() bool {
		fa = f.alertByRule(t, 1, "fleet", "error_rate")
		return fa != nil && len(asList(fa["instances"])) == 3
	})
	id, _ := fa["id"].(string)
	for i := range 3 {
		if a := f.alertByRule(t, i, "fleet", "error_rate"); a == nil || a["id"] != id {
			t.Errorf("#%d: fleet alert %v; want the same id %s on every sidecar", i+1, a, id)
		}
	}
	acked := time.Now()
	r := f.post(t, 1, "/admin/api/alerts/responsiveness/acknowledge", `{"alert_ids":["`+id+`"],"note":"i11e2e fleet ack"}`)
	if r.Status != 200 {
		t.Fatalf("acknowledge %s on #2: %d %.300s", id, r.Status, r.Body)
	}
	for _, i := range []int{0, 2} {
		eventually(t, 10*time.Second, fmt.Sprintf("#%d shows %s acknowledged (fleet and instance scope)", i+1, id), func() bool {
			fl := f.alertByRule(t, i, "fleet", "error_rate")
			in := f.alertByRule(t, i, "", "error_rate")
			return fl != nil && fl["id"] == id && fl["state"] == "acknowledged" && fl["ack_note"] == "i11e2e fleet ack" &&
				in != nil && in["state"] == "acknowledged"
		})
		eventually(t, 70*time.Second, fmt.Sprintf("#%d pushes %s to Alertmanager with the acknowledgement", i+1, id), func() bool {
			return f.am.acknowledgedSince(fmt.Sprintf("s%d", i+1), "error_rate", acked)
		})
		report(t, "i11 fleet", fmt.Sprintf("%s: ack on #2 pushed to Alertmanager by #%d", f.d.Name, i+1), time.Since(acked).Round(time.Millisecond).String(), "acknowledged in every sidecar's pushes")
	}
}

// storeDown: the store cut (blackholed) for 30 s under traffic. No proxied
// request fails; the verdict names the store; logins (audited) and an
// acknowledgement made meanwhile are all in the store once it is back.
func (f *fleetRun) storeDown(t *testing.T) {
	// An alert to acknowledge while the store is down.
	var alert map[string]any
	eventually(t, 30*time.Second, "an avg_response_time alert on #1", func() bool {
		alert = f.alertByRule(t, 0, "", "avg_response_time")
		return alert != nil
	})
	stop := make(chan struct{})
	type result struct {
		n, failed int
		failures  []string
	}
	done := make(chan result)
	go func() {
		lat, _, failed, failures := f.traffic(-1, 12, []int{0, 1, 2}, stop)
		done <- result{len(lat), failed, failures}
	}()
	time.Sleep(time.Second)

	f.sw.Set(chaos.Fault{Mode: chaos.Blackhole})
	f.sw.ResetAll()
	cutAt := time.Now()
	t.Logf("store cut at %s", cutAt.Format(time.RFC3339Nano))
	// The verdict names the store.
	eventually(t, 20*time.Second, "#1's verdict names the store", func() bool {
		_, h := f.get(t, 0, "/admin/api/health/responsiveness")
		comps, _ := h["components"].(map[string]any)
		return comps["store"] == "warning" || comps["store"] == "critical"
	})
	// Audited actions while it is down: a login and a refused one on
	// every sidecar, and the acknowledgement on #1.
	audited := map[string]int{}
	for i := range 3 {
		for _, tok := range []string{f.token, "wrong-" + f.token} {
			r := mustDo(t, f.client, "POST", f.sc[i].AdminURL()+"/admin/responsiveness/login",
				strings.NewReader(`{"token":"`+tok+`","name":"i11e2e"}`), map[string]string{"Content-Type": "application/json"})
			outcome := "ok"
			if r.Status != 200 {
				outcome = "rejected"
			}
			audited[f.names[i]+" session.login "+outcome]++
		}
	}
	id, _ := alert["id"].(string)
	r := f.post(t, 0, "/admin/api/alerts/responsiveness/acknowledge", `{"alert_ids":["`+id+`"],"note":"i11e2e while the store is down"}`)
	ackStatus := r.Status
	if r.Status != 200 {
		t.Errorf("acknowledge %s on #1 while the store is down: %d %.300s; want 200 (kept and replayed)", id, r.Status, r.Body)
	} else {
		audited[f.names[0]+" "+store.ActionAlertAcknowledge+" ok"]++
	}
	if time.Since(cutAt) < 30*time.Second {
		time.Sleep(30*time.Second - time.Since(cutAt))
	}
	f.sw.Set(chaos.Fault{Mode: chaos.Pass})
	back := time.Now()
	// Traffic goes on until every sidecar writes to the store again.
	deadline := time.Now().Add(60 * time.Second)
	for i := range 3 {
		for {
			_, h := f.get(t, i, "/admin/api/health/responsiveness")
			comps, _ := h["components"].(map[string]any)
			if comps["store"] == "healthy" {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("store back: #%d's store component %v after %s", i+1, comps["store"], time.Since(back))
			}
			time.Sleep(300 * time.Millisecond)
		}
	}
	report(t, "i11 fleet", fmt.Sprintf("%s: store back after a 30 s cut: every sidecar's store component healthy", f.d.Name), time.Since(back).Round(time.Millisecond).String(), "replayed, healthy")
	close(stop)
	res := <-done
	report(t, "i11 fleet", fmt.Sprintf("%s: proxied requests failed during the 30 s store cut (3 sidecars)", f.d.Name), fmt.Sprintf("%d of %d", res.failed, res.n+res.failed), "0")
	if res.failed != 0 {
		t.Errorf("%d of %d proxied requests failed while the store was down: %q", res.failed, res.n+res.failed, res.failures[:min(len(res.failures), 5)])
	}

	// The audit entries and the acknowledgement, in the store.
	db := f.openStore(t)
	found := map[string]int{}
	eventually(t, 30*time.Second, "every audit entry made while the store was down is in pulsegate_audit", func() bool {
		rows, err := db.Query("SELECT entry FROM pulsegate_audit WHERE fleet = "+f.ph(1)+" AND time_us >= "+f.ph(2), f.fleet, cutAt.UnixMicro())
		if err != nil {
			t.Fatal(err)
		}
		defer rows.Close()
		found = map[string]int{}
		for rows.Next() {
			var raw string
			var e store.AuditEntry
			if rows.Scan(&raw) != nil || json.Unmarshal([]byte(raw), &e) != nil {
				continue
			}
			if e.Time.Before(back) {
				found[e.Instance+" "+e.Action+" "+e.Outcome]++
			}
		}
		for k, n := range audited {
			if found[k] < n {
				return false
			}
		}
		return true
	})
	t.Logf("audited while the store was down: %v; in the store: %v", audited, found)
	if ackStatus != 200 {
		return
	}
	eventually(t, 30*time.Second, "the acknowledgement made while the store was down is in the store", func() bool {
		return f.ackStored(t, db, id)
	})
}

// ackStored: alert id is stored acknowledged, as the instance's alert
// (pulsegate_alerts) or as the fleet alert (pulsegate_fleet_alerts).
func (f *fleetRun) ackStored(t testing.TB, db *sql.DB, id string) bool {
	for _, q := range []string{
		"SELECT record FROM pulsegate_alerts WHERE fleet = " + f.ph(1) + " AND id = " + f.ph(2),
		"SELECT record FROM pulsegate_fleet_alerts WHERE fleet = " + f.ph(1) + " AND id = " + f.ph(2),
	} {
		rows, err := db.Query(q, f.fleet, id)
		if err != nil {
			t.Fatal(err)
		}
		for rows.Next() {
			var raw string
			var a store.AlertRecord
			if rows.Scan(&raw) == nil && json.Unmarshal([]byte(raw), &a) == nil && a.AcknowledgedAt != nil && a.AckNote == "i11e2e while the store is down" {
				rows.Close()
				return true
			}
		}
		rows.Close()
	}
	return false
}

// sigkill: #3 killed turns stale within 3 monitoring intervals of its last
// heartbeat and leaves the fleet's verdict.
func (f *fleetRun) sigkill(t *testing.T) {
	eventually(t, 20*time.Second, "3 of 3 instances reporting", func() bool {
		_, h := f.get(t, 0, "/admin/api/health/responsiveness?scope=fleet")
		return h["reporting"] == "3 of 3 instances reporting"
	})
	f.sc[2].Signal(syscall.SIGKILL)
	<-f.sc[2].Exited()
	killed := time.Now()
	f.sc[2].Kill() // marks it stopped: the cleanup expects no exit code 0
	var h map[string]any
	eventually(t, 15*time.Second, "#3 stale and out of the verdict", func() bool {
		_, h = f.get(t, 0, "/admin/api/health/responsiveness?scope=fleet")
		return h["reporting"] == "2 of 3 instances reporting"
	})
	took := time.Since(killed)
	report(t, "i11 fleet", fmt.Sprintf("%s: SIGKILLed sidecar stale (interval 1 s)", f.d.Name), took.Round(time.Millisecond).String(), "within 3 intervals")
	// 3 intervals after its last heartbeat, plus a poll's slack.
	if took > 3*time.Second+1500*time.Millisecond {
		t.Errorf("#3 turned stale %s after SIGKILL; want within 3 intervals (3 s)", took)
	}
	for _, e := range asList(h["instances"]) {
		m, _ := e.(map[string]any)
		if stale, _ := m["stale"].(bool); stale != (m["instance"] == f.names[2]) {
			t.Errorf("instance %v stale=%v", m["instance"], m["stale"])
		}
	}
	for _, r := range asList(h["reasons"]) {
		if s, _ := r.(string); strings.HasPrefix(s, f.names[2]+":") {
			t.Errorf("the stale instance is still in the verdict: %q", s)
		}
	}
	// The fleet's performance leaves it out too.
	_, perf := f.get(t, 1, "/admin/api/performance/responsiveness?scope=fleet")
	if perf["reporting"] != "2 of 3 instances reporting" {
		t.Errorf("fleet performance: reporting %v", perf["reporting"])
	}
	cmd := exec.Command(binPath, "status", "--fleet", "--admin", f.sc[0].AdminURL())
	cmd.Env = append(os.Environ(), "RESPONSIVENESS_ADMIN_TOKEN="+f.token)
	out, _ := cmd.CombinedOutput()
	if !strings.Contains(string(out), "instances (2 of 3 instances reporting)") || !strings.Contains(string(out), "stale") {
		t.Errorf("status --fleet:\n%s", out)
	}
}
