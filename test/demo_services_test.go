package test

// `pulsegate demo` against the real MariaDB, PostgreSQL and Redis (issue 14):
// the database and session components are measured, the leaked connection
// and the TTL-less sessions are detected, a database or session alert fires
// with the product's recommendation, and everything the demo created is gone
// after it stops. And with nothing reachable, the demo starts as before and
// says what is missing and how to enable it.

import (
	"bufio"
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/stdlib"
	"github.com/redis/go-redis/v9"
)

const demoName = "pulsegate_demo"

// demoRun is one `pulsegate demo` subprocess.
type demoRun struct {
	cmd    *exec.Cmd
	out    *lockedBuffer
	errb   *lockedBuffer
	done   chan struct{}
	admin  string
	token  string
	client *http.Client
}

var signInLink = regexp.MustCompile(`(http://[0-9.:]+)/admin/responsiveness/login#token=([0-9a-f]+)`)

// startDemo runs the demo with args and only the RESPONSIVENESS_* variables
// given (the caller's own are dropped), on free ports.
func startDemo(t *testing.T, env []string, args ...string) *demoRun {
	t.Helper()
	needBinary(t)
	var base []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "RESPONSIVENESS_") {
			base = append(base, kv)
		}
	}
	base = append(base, "RESPONSIVENESS_LISTEN_ADDR=127.0.0.1:0", "RESPONSIVENESS_ADMIN_ADDR=127.0.0.1:0", "RESPONSIVENESS_LOG_LEVEL=warn")
	d := &demoRun{out: &lockedBuffer{}, errb: &lockedBuffer{}, done: make(chan struct{}),
		client: &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}}
	d.cmd = exec.Command(binPath, append([]string{"demo"}, args...)...)
	d.cmd.Env = append(base, env...)
	d.cmd.Stderr = d.errb
	stdout, err := d.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := d.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	found := make(chan struct{})
	go func() {
		defer close(d.done)
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			line := sc.Text()
			d.out.Write([]byte(line + "\n"))
			if m := signInLink.FindStringSubmatch(line); m != nil && d.admin == "" {
				d.admin, d.token = m[1], m[2]
				close(found)
			}
		}
		io.Copy(io.Discard, stdout)
		d.cmd.Wait()
	}()
	t.Cleanup(func() { d.stop(t) })
	select {
	case <-found:
	case <-d.done:
		t.Fatalf("the demo exited before printing its sign-in link:\nstdout:\n%s\nstderr:\n%s", d.out.String(), d.errb.String())
	case <-time.After(60 * time.Second):
		t.Fatalf("no sign-in link printed within 60 s:\nstdout:\n%s\nstderr:\n%s", d.out.String(), d.errb.String())
	}
	return d
}

// stop sends sigs (SIGTERM when none) and waits for the demo to exit.
func (d *demoRun) stop(t *testing.T, sigs ...os.Signal) {
	t.Helper()
	select {
	case <-d.done:
		return
	default:
	}
	if len(sigs) == 0 {
		sigs = []os.Signal{syscall.SIGTERM}
	}
	for _, sig := range sigs {
		d.cmd.Process.Signal(sig)
		time.Sleep(50 * time.Millisecond)
	}
	select {
	case <-d.done:
	case <-time.After(90 * time.Second):
		d.cmd.Process.Kill()
		<-d.done
		t.Errorf("the demo did not stop within 90 s of SIGTERM:\n%s", d.out.String())
	}
}

// waitOut waits until the demo's stdout contains s.
func (d *demoRun) waitOut(t *testing.T, s string, timeout time.Duration) string {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		out := d.out.String()
		if strings.Contains(out, s) {
			return out
		}
		if time.Now().After(deadline) {
			t.Fatalf("%q not printed within %s:\nstdout:\n%s\nstderr:\n%s", s, timeout, out, d.errb.String())
		}
		select {
		case <-d.done:
			t.Fatalf("the demo exited before printing %q:\nstdout:\n%s\nstderr:\n%s", s, out, d.errb.String())
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func (d *demoRun) get(path string, v any) error {
	req, _ := http.NewRequest(http.MethodGet, d.admin+path, nil)
	req.Header.Set("Authorization", "Bearer "+d.token)
	resp, err := d.client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(resp.Body)
		return fmt.Errorf("GET %s: %d %s", path, resp.StatusCode, b)
	}
	return json.NewDecoder(resp.Body).Decode(v)
}

type demoProbe struct {
	Status  string             `json:"status"`
	Figures map[string]float64 `json:"figures"`
	Details json.RawMessage    `json:"details"`
}

type demoPerf struct {
	TotalRequests int                  `json:"total_requests"`
	Probes        map[string]demoProbe `json:"probes"`
	Actions       []struct {
		Name        string `json:"name"`
		Count       int    `json:"count"`
		DryRun      bool   `json:"dry_run"`
		LastOutcome string `json:"last_outcome"`
		LastDetail  string `json:"last_detail"`
	} `json:"actions"`
}

type demoAlert struct {
	Rule           string `json:"rule"`
	Severity       string `json:"severity"`
	Message        string `json:"message"`
	Recommendation string `json:"recommendation"`
}

func TestDemoWithRealServices(t *testing.T) {
	reachable(t, "127.0.0.1:3306", "MariaDB")
	reachable(t, "127.0.0.1:5432", "PostgreSQL")
	reachable(t, "127.0.0.1:6379", "Redis")
	for _, engine := range []string{"mysql", "postgres"} {
		t.Run(engine, func(t *testing.T) { testDemoWithServices(t, engine) })
	}
}

func testDemoWithServices(t *testing.T, engine string) {
	// Speed 6: the 3-minute cycle takes 30 s; leak age 7.5 s.
	d := startDemo(t, nil, "--speed", "6", "--db", engine, "--rps", "10")
	out := d.waitOut(t, "is removed when it stops", 10*time.Second)
	want := map[string]string{"mysql": "used       MariaDB", "postgres": "used       PostgreSQL"}[engine]
	if !strings.Contains(out, want) || !strings.Contains(out, "used       Redis") {
		t.Fatalf("the demo does not say it uses %s and Redis:\n%s", engine, out)
	}
	other := map[string]string{"mysql": "--db postgres", "postgres": "--db mysql"}[engine]
	if !strings.Contains(out, other) {
		t.Errorf("the demo does not say how to choose the other database (%s):\n%s", other, out)
	}
	if !demoDatabaseExists(t, engine) {
		t.Fatalf("no %s database on %s while the demo runs", demoName, engine)
	}

	var (
		dbStatus, sessStatus string
		leakSource           string
		withoutTTL           float64
		alert                *demoAlert
		responses            = map[string]string{}
		health               struct {
			Components map[string]string `json:"components"`
		}
	)
	deadline := time.Now().Add(75 * time.Second)
	for time.Now().Before(deadline) {
		time.Sleep(time.Second)
		var perf demoPerf
		if err := d.get("/admin/api/performance/responsiveness", &perf); err != nil {
			t.Logf("performance: %v", err)
			continue
		}
		dbStatus, sessStatus = perf.Probes["database_manager"].Status, perf.Probes["session_monitoring"].Status
		var details struct {
			LeakSuspects *struct {
				BySource []struct {
					Source string `json:"source"`
				} `json:"by_source"`
			} `json:"leak_suspects"`
		}
		json.Unmarshal(perf.Probes["database_manager"].Details, &details)
		if details.LeakSuspects != nil {
			for _, s := range details.LeakSuspects.BySource {
				if strings.HasPrefix(s.Source, demoName+"@") {
					leakSource = s.Source
				}
			}
		}
		for _, a := range perf.Actions {
			if a.Count > 0 && a.DryRun && a.LastOutcome == "dry_run" {
				responses[a.Name] = a.LastDetail
			}
		}
		if v, ok := perf.Probes["session_monitoring"].Figures["session_without_ttl"]; ok && v > withoutTTL {
			withoutTTL = v
		}
		var alerts struct {
			Alerts []demoAlert `json:"alerts"`
		}
		if err := d.get("/admin/api/alerts/responsiveness", &alerts); err == nil {
			for _, a := range alerts.Alerts {
				switch a.Rule {
				case "db_connection_leak", "db_idle_in_transaction_oldest", "db_long_queries", "session_without_ttl", "job_queue_depth":
					if a.Recommendation != "" && alert == nil {
						alert = &a
					}
				}
			}
		}
		d.get("/admin/api/health/responsiveness", &health)
		if leakSource != "" && withoutTTL > 0 && alert != nil && responses["session_ttl_repair"] != "" && responses["cleanup"] != "" &&
			health.Components["database_manager"] != "disabled" && health.Components["session_monitoring"] != "disabled" {
			break
		}
	}
	for _, c := range []struct{ name, status string }{
		{"database_manager", dbStatus}, {"session_monitoring", sessStatus},
		{"database_manager (health)", health.Components["database_manager"]}, {"session_monitoring (health)", health.Components["session_monitoring"]},
	} {
		if c.status == "" || c.status == "disabled" || c.status == "down" {
			t.Errorf("%s is %q, want measured", c.name, c.status)
		}
	}
	if leakSource == "" {
		t.Errorf("the leaked connection (user %s) was never among the leak suspects", demoName)
	}
	if withoutTTL == 0 {
		t.Errorf("no session without TTL detected")
	}
	if !strings.Contains(responses["session_ttl_repair"], "would repair") {
		t.Errorf("the session TTL repair did not run in dry-run (actions seen: %v)", responses)
	}
	if _, ok := responses["cleanup"]; !ok {
		t.Errorf("the cleanup hook did not run (in dry-run) (actions seen: %v)", responses)
	}
	if alert == nil {
		t.Errorf("no database or session alert with a recommendation")
	} else {
		t.Logf("alert %s (%s): %q; recommendation %q; leak source %s; sessions without TTL %v", alert.Rule, alert.Severity, alert.Message, alert.Recommendation, leakSource, withoutTTL)
	}
	if t.Failed() {
		t.Logf("demo stdout:\n%s", d.out.String())
	}

	// Stopping: SIGTERM for one engine; for the other, Ctrl-C pressed
	// twice, as an impatient user does: the cleanup must still happen.
	if engine == "mysql" {
		d.stop(t, syscall.SIGINT, syscall.SIGINT)
	} else {
		d.stop(t)
	}
	if code := d.cmd.ProcessState.ExitCode(); code != 0 {
		t.Errorf("the demo exited %d after being stopped; stderr:\n%s", code, d.errb.String())
	}
	if !strings.Contains(d.out.String(), "removed what the demo created") {
		t.Errorf("the demo did not report its cleanup:\n%s", d.out.String())
	}
	if demoDatabaseExists(t, engine) {
		t.Errorf("database or user %s left on %s after the demo stopped", demoName, engine)
	}
	rdb := redis.NewClient(&redis.Options{Addr: "127.0.0.1:6379"})
	defer rdb.Close()
	keys, _, err := rdb.Scan(context.Background(), 0, demoName+":*", 100000).Result()
	if err != nil {
		t.Fatal(err)
	}
	if len(keys) > 0 {
		t.Errorf("%d Redis keys %s:* left after the demo stopped, e.g. %s", len(keys), demoName, keys[0])
	}
}

// demoDatabaseExists reports whether the demo's database or user exists.
func demoDatabaseExists(t *testing.T, engine string) bool {
	t.Helper()
	var db *sql.DB
	var q string
	if engine == "mysql" {
		c := mysql.NewConfig()
		c.Net, c.Addr, c.User = "tcp", "127.0.0.1:3306", "root"
		conn, err := mysql.NewConnector(c)
		if err != nil {
			t.Fatal(err)
		}
		db = sql.OpenDB(conn)
		q = "SELECT (SELECT COUNT(*) FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = 'pulsegate_demo') + (SELECT COUNT(*) FROM mysql.user WHERE User = 'pulsegate_demo')"
	} else {
		cfg, err := pgx.ParseConfig("postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable")
		if err != nil {
			t.Fatal(err)
		}
		db = stdlib.OpenDB(*cfg)
		q = "SELECT (SELECT COUNT(*) FROM pg_database WHERE datname = 'pulsegate_demo') + (SELECT COUNT(*) FROM pg_roles WHERE rolname = 'pulsegate_demo')"
	}
	defer db.Close()
	var n int
	if err := db.QueryRow(q).Scan(&n); err != nil {
		t.Fatalf("checking for %s on %s: %v", demoName, engine, err)
	}
	return n > 0
}

// Parallel: it uses no service, so it cannot meet the pulsegate_demo
// database, user or keys of the tests that do.
func TestDemoWithoutServices(t *testing.T) {
	t.Parallel()
	closed := freeAddr(t) // nothing listens there
	d := startDemo(t, nil, "--mysql-addr", closed, "--postgres-addr", closed, "--redis-addr", closed, "--rps", "10")
	out := d.waitOut(t, "Without them the dashboard shows", 10*time.Second)
	for _, s := range []string{"MySQL/MariaDB", "PostgreSQL", "Redis"} {
		if !regexp.MustCompile(`not found +` + regexp.QuoteMeta(s) + ` +` + regexp.QuoteMeta(closed)).MatchString(out) {
			t.Errorf("the demo does not say %s was not found at %s:\n%s", s, closed, out)
		}
	}
	if n := strings.Count(out, "to enable: "); n != 3 {
		t.Errorf("%d 'to enable' lines, want 3 (one per missing service):\n%s", n, out)
	}
	for _, s := range []string{"RESPONSIVENESS_DB_DSN=", "RESPONSIVENESS_REDIS_URL=", "docker run"} {
		if !strings.Contains(out, s) {
			t.Errorf("the enable lines do not mention %s:\n%s", s, out)
		}
	}
	// It runs as before: traffic through the proxy, the probes it has.
	var perf demoPerf
	var health struct {
		Components map[string]string `json:"components"`
	}
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		time.Sleep(time.Second)
		if d.get("/admin/api/performance/responsiveness", &perf) == nil && perf.TotalRequests > 0 && d.get("/admin/api/health/responsiveness", &health) == nil {
			break
		}
	}
	if perf.TotalRequests == 0 {
		t.Errorf("no traffic through the proxy")
	}
	if health.Components["database_manager"] != "disabled" || health.Components["session_monitoring"] != "disabled" {
		t.Errorf("components %v; want database_manager and session_monitoring disabled", health.Components)
	}
	d.stop(t)
	if code := d.cmd.ProcessState.ExitCode(); code != 0 {
		t.Errorf("exit %d after SIGTERM; stderr:\n%s", code, d.errb.String())
	}
	if strings.Contains(d.out.String(), "removed what the demo created") {
		t.Errorf("the demo claims to have removed something it never created:\n%s", d.out.String())
	}
}

func TestDemoNoServicesFlag(t *testing.T) {
	t.Parallel() // no service either
	d := startDemo(t, nil, "--no-services", "--rps", "5")
	if out := d.waitOut(t, "health=", 30*time.Second); strings.Contains(out, "Services (") {
		t.Errorf("--no-services still looks for services:\n%s", d.out.String())
	}
	d.stop(t)
}

// The demo writes only to what it created: a pulsegate_demo database it did
// not create (no marker table) is left alone, with the reason printed; one
// left by an earlier run that was killed (it has the marker) is replaced.
func TestDemoLeavesForeignDatabaseAlone(t *testing.T) {
	reachable(t, "127.0.0.1:3306", "MariaDB")
	c := mysql.NewConfig()
	c.Net, c.Addr, c.User = "tcp", "127.0.0.1:3306", "root"
	conn, err := mysql.NewConnector(c)
	if err != nil {
		t.Fatal(err)
	}
	db := sql.OpenDB(conn)
	defer db.Close()
	if demoDatabaseExists(t, "mysql") {
		t.Fatalf("a %s database or user exists before the test (another demo running?)", demoName)
	}
	exec := func(q string) {
		t.Helper()
		if _, err := db.Exec(q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	defer db.Exec("DROP DATABASE IF EXISTS " + demoName)

	// Not the demo's: a user's database that happens to have the name.
	exec("CREATE DATABASE " + demoName)
	exec("CREATE TABLE " + demoName + ".precious (v INT)")
	exec("INSERT INTO " + demoName + ".precious VALUES (42)")
	d := startDemo(t, nil, "--db", "mysql", "--rps", "5")
	out := d.waitOut(t, "is removed when it stops", 15*time.Second)
	if !strings.Contains(out, "exists that the demo did not create: left alone") {
		t.Errorf("the demo does not say it leaves the foreign database alone:\n%s", out)
	}
	if strings.Contains(out, "used       MariaDB") {
		t.Errorf("the demo uses a server whose %s database it did not create:\n%s", demoName, out)
	}
	d.stop(t)
	var v int
	if err := db.QueryRow("SELECT v FROM " + demoName + ".precious").Scan(&v); err != nil || v != 42 {
		t.Fatalf("the foreign database was touched: %v (v=%d)", err, v)
	}
	exec("DROP DATABASE " + demoName)

	// Not the demo's either: a user of that name without the demo's database.
	exec("CREATE USER '" + demoName + "'@'%' IDENTIFIED BY 'users-own-password'")
	defer db.Exec("DROP USER IF EXISTS '" + demoName + "'@'%'")
	d = startDemo(t, nil, "--db", "mysql", "--rps", "5")
	out = d.waitOut(t, "is removed when it stops", 15*time.Second)
	if !strings.Contains(out, "a database user "+demoName+" exists that the demo did not create: left alone") {
		t.Errorf("the demo does not say it leaves the foreign user alone:\n%s", out)
	}
	d.stop(t)
	var users int
	db.QueryRow("SELECT COUNT(*) FROM mysql.user WHERE User = ?", demoName).Scan(&users)
	if users != 1 {
		t.Fatalf("the foreign user %s was removed", demoName)
	}
	exec("DROP USER '" + demoName + "'@'%'")

	// The demo's own leftover: replaced, used, and removed at the end.
	exec("CREATE DATABASE " + demoName)
	exec("CREATE TABLE " + demoName + ".pulsegate_demo_marker (created_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP, pid INT)")
	exec("CREATE TABLE " + demoName + ".stale (v INT)")
	d = startDemo(t, nil, "--db", "mysql", "--rps", "5")
	out = d.waitOut(t, "is removed when it stops", 15*time.Second)
	if !strings.Contains(out, "used       MariaDB") {
		t.Errorf("the demo did not reuse the server after its own leftover:\n%s", out)
	}
	var n int
	db.QueryRow("SELECT COUNT(*) FROM information_schema.TABLES WHERE TABLE_SCHEMA = ? AND TABLE_NAME = 'stale'", demoName).Scan(&n)
	if n != 0 {
		t.Errorf("the leftover database was not replaced (table stale still there)")
	}
	d.stop(t)
	if demoDatabaseExists(t, "mysql") {
		t.Errorf("%s left after the demo stopped", demoName)
	}
}

// A demo killed outright (SIGKILL) cannot clean up; the next run removes
// what it left (database, role, keys) and cleans up after itself.
func TestDemoKilledLeftoversRemovedByNextRun(t *testing.T) {
	reachable(t, "127.0.0.1:5432", "PostgreSQL")
	reachable(t, "127.0.0.1:6379", "Redis")
	d := startDemo(t, nil, "--db", "postgres", "--rps", "10", "--speed", "6")
	d.waitOut(t, "is removed when it stops", 15*time.Second)
	time.Sleep(2 * time.Second) // some sessions written
	d.cmd.Process.Kill()
	<-d.done
	if !demoDatabaseExists(t, "postgres") {
		t.Fatalf("no leftover after SIGKILL: the test proves nothing")
	}
	d = startDemo(t, nil, "--db", "postgres", "--rps", "10", "--speed", "6")
	out := d.waitOut(t, "is removed when it stops", 15*time.Second)
	if !strings.Contains(out, "used       PostgreSQL") {
		t.Errorf("the next run did not take over its own leftovers:\n%s", out)
	}
	d.stop(t)
	if demoDatabaseExists(t, "postgres") {
		t.Errorf("database or role %s left after the second run stopped", demoName)
	}
	rdb := redis.NewClient(&redis.Options{Addr: "127.0.0.1:6379"})
	defer rdb.Close()
	if keys, _, err := rdb.Scan(context.Background(), 0, demoName+":*", 100000).Result(); err != nil || len(keys) > 0 {
		t.Errorf("Redis keys %s:* left: %d (%v)", demoName, len(keys), err)
	}
}
