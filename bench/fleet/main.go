// Command fleet benchmarks the shared store (issue 11): N simulated
// sidecars heartbeating every interval into one MariaDB/MySQL or
// PostgreSQL database, while a reader runs the fleet view's query (every
// instance's latest heartbeat and the merge of their last rollups, FleetNow)
// and the trend graph's query (the last minute's rollups merged)
// once a second, and the heartbeat table is pruned once a minute.
//
// The fleet query is what `GET …?scope=fleet` runs on a sidecar: every
// instance's latest heartbeat (SQL.Instances) and the last minute's rollups
// merged (SQL.MergedRollup), on one store kept open as a sidecar keeps it
// (so from the second query on, only rows written since the last one are
// fetched and decoded: the steady state of a dashboard refreshing every
// second).
//
// It reports, per database: heartbeat rows written per second, the write
// latency, the fleet query's latency (p50/p99/max) against a SELECT 1 run
// just before each one (the ratio of the p99s), the database server's
// CPU (from /proc: mariadbd or every postgres process) during the run
// against an idle baseline measured just before it, and the table size per
// row, from which the growth per day and the size held with pruning on
// (24 h of heartbeats kept) follow.
//
// The simulated instances share -conns store connections (a real sidecar
// holds its own; 200 of them need max_connections above 200, see
// docs/store.md). It writes to its own database (created and dropped) and
// prints one JSON object per database on stdout.
//
//	go run ./bench/fleet -instances 200 -interval 10s -duration 5m
package main

import (
	"context"
	"database/sql"
	"encoding/json"
	"flag"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	_ "github.com/go-sql-driver/mysql"
	_ "github.com/jackc/pgx/v5/stdlib"
	"go.uber.org/zap"

	"github.com/pulsegate/pulsegate/store"
)

type target struct {
	name     string
	adminDrv string
	adminDSN string
	storeDSN string
	procName string // process name(s) whose CPU is the server's
}

func main() {
	instances := flag.Int("instances", 200, "simulated sidecars")
	interval := flag.Duration("interval", 10*time.Second, "heartbeat interval of each sidecar")
	duration := flag.Duration("duration", 5*time.Minute, "measured run per database")
	baseline := flag.Duration("baseline", 20*time.Second, "idle CPU baseline measured before each run")
	conns := flag.Int("conns", 16, "store connections shared by the simulated sidecars")
	keep := flag.Duration("keep", 2*time.Minute, "heartbeat retention applied by the pruner during the run (the day figure is computed for 24 h)")
	only := flag.String("db", "mariadb,postgres", "databases to run: mariadb, postgres")
	dbName := flag.String("dbname", "pulsegate_i11_bench", "private database created and dropped for the run")
	mysqlHost := flag.String("mysql", "root@127.0.0.1:3306", "MariaDB/MySQL user[:pass]@host:port (admin: creates the database)")
	pgHost := flag.String("pg", "postgres@127.0.0.1:5432", "PostgreSQL user[:pass]@host:port (admin: creates the database)")
	flag.Parse()

	myUser, myAddr, _ := strings.Cut(*mysqlHost, "@")
	pgUser, pgAddr, _ := strings.Cut(*pgHost, "@")
	targets := map[string]target{
		"mariadb": {name: "mariadb", adminDrv: "mysql", adminDSN: myUser + "@tcp(" + myAddr + ")/",
			storeDSN: "mysql://" + myUser + "@" + myAddr + "/" + *dbName, procName: "mariadbd,mysqld"},
		"postgres": {name: "postgres", adminDrv: "pgx", adminDSN: "postgres://" + pgUser + "@" + pgAddr + "/postgres?sslmode=disable",
			storeDSN: "postgres://" + pgUser + "@" + pgAddr + "/" + *dbName + "?sslmode=disable", procName: "postgres"},
	}
	for _, name := range strings.Split(*only, ",") {
		t, ok := targets[strings.TrimSpace(name)]
		if !ok {
			fmt.Fprintf(os.Stderr, "unknown -db %q\n", name)
			os.Exit(2)
		}
		res, err := run(t, *dbName, *instances, *interval, *duration, *baseline, *conns, *keep)
		if err != nil {
			fmt.Fprintf(os.Stderr, "%s: %v\n", t.name, err)
			os.Exit(1)
		}
		b, _ := json.Marshal(res)
		fmt.Println(string(b))
	}
}

type result struct {
	DB               string  `json:"db"`
	Instances        int     `json:"instances"`
	IntervalSeconds  float64 `json:"interval_seconds"`
	DurationSeconds  float64 `json:"duration_seconds"`
	Rows             int64   `json:"rows"`
	RowsPerSecond    float64 `json:"rows_per_second"`
	WriteP50Ms       float64 `json:"write_p50_ms"`
	WriteP99Ms       float64 `json:"write_p99_ms"`
	WriteErrors      int64   `json:"write_errors"`
	Queries          int     `json:"fleet_queries"`
	QueryP50Ms       float64 `json:"fleet_query_p50_ms"`
	QueryP99Ms       float64 `json:"fleet_query_p99_ms"`
	QueryMaxMs       float64 `json:"fleet_query_max_ms"`
	QueryErrors      int     `json:"fleet_query_errors"`
	QueryInstances   int     `json:"fleet_query_instances"`
	QueryP99Ratio    float64 `json:"fleet_query_p99_over_select1_p99"`
	FleetNowP50Ms    float64 `json:"fleet_now_p50_ms"`
	FleetNowP99Ms    float64 `json:"fleet_now_p99_ms"`
	Select1P50Ms     float64 `json:"baseline_select1_p50_ms"`
	Select1P99Ms     float64 `json:"baseline_select1_p99_ms"`
	ServerCPUIdle    float64 `json:"server_cpu_baseline_cores"`
	ServerCPURun     float64 `json:"server_cpu_run_cores"`
	HeartbeatRowsNow int64   `json:"heartbeat_rows_at_end"`
	CompactedRows    int64   `json:"compacted_rows"`
	TableBytes       int64   `json:"table_bytes_at_end"`
	FineDocBytes     float64 `json:"fine_row_doc_bytes"`
	CoarseDocBytes   float64 `json:"compacted_row_doc_bytes"`
	BytesPerRow      float64 `json:"table_bytes_per_row"`
	RowsPerDay       float64 `json:"rows_written_per_day"`
	GBWrittenPerDay  float64 `json:"gb_written_per_day"`
	HeldRows         float64 `json:"rows_held_default_retention"`
	GBHeld           float64 `json:"table_gb_held_default_retention"`
	GBHeldNoCompact  float64 `json:"table_gb_held_24h_without_compaction"`
}

func run(t target, dbName string, n int, interval, duration, baseline time.Duration, nconns int, keep time.Duration) (*result, error) {
	admin, err := sql.Open(t.adminDrv, t.adminDSN)
	if err != nil {
		return nil, err
	}
	defer admin.Close()
	drop := "DROP DATABASE IF EXISTS " + dbName
	if t.adminDrv == "pgx" {
		drop += " WITH (FORCE)"
	}
	if _, err := admin.Exec(drop); err != nil {
		return nil, fmt.Errorf("dropping the bench database: %w", err)
	}
	if _, err := admin.Exec("CREATE DATABASE " + dbName); err != nil {
		return nil, fmt.Errorf("creating the bench database: %w", err)
	}
	defer admin.Exec(drop) //nolint:errcheck // best effort at the end of the run

	const fleet = "bench"
	stores := make([]*store.SQL, nconns)
	for i := range stores {
		s, err := store.OpenSQL(context.Background(), t.storeDSN, zap.NewNop(), store.WithInstance(fleet, fmt.Sprintf("conn-%d", i)))
		if err != nil {
			return nil, err
		}
		defer s.Close()
		stores[i] = s
	}
	// The reader is a sidecar's store of its own: its pool is not shared
	// with the simulated writers (a sidecar's pool serves one writer).
	reader, err := store.OpenSQL(context.Background(), t.storeDSN, zap.NewNop(), store.WithInstance(fleet, "reader"))
	if err != nil {
		return nil, err
	}
	defer reader.Close()

	res := &result{DB: t.name, Instances: n, IntervalSeconds: interval.Seconds()}
	cpu0, err := serverCPU(t.procName)
	if err != nil {
		return nil, err
	}
	time.Sleep(baseline)
	cpu1, _ := serverCPU(t.procName)
	res.ServerCPUIdle = (cpu1 - cpu0) / baseline.Seconds()

	ctx, cancel := context.WithTimeout(context.Background(), duration)
	defer cancel()
	start := time.Now()
	cpuStart, _ := serverCPU(t.procName)

	var rows, writeErrs, pruned atomic.Int64
	var mu sync.Mutex
	var writeLat, queryLat, select1Lat, nowLat []float64
	var queryErrs, seenInst int
	var docBytes int
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(i), 7))
			s := stores[i%nconns]
			name := fmt.Sprintf("web-%03d", i)
			// Sidecars start spread over the interval, as pods do.
			first := time.Duration(rng.Int64N(int64(interval)))
			timer := time.NewTimer(first)
			defer timer.Stop()
			for {
				select {
				case <-ctx.Done():
					return
				case <-timer.C:
				}
				timer.Reset(interval)
				hb := heartbeat(rng, fleet, name, time.Now(), interval)
				if i == 0 {
					b, _ := json.Marshal(hb)
					mu.Lock()
					docBytes = len(b)
					mu.Unlock()
				}
				t0 := time.Now()
				err := s.WriteHeartbeats(ctx, []store.Heartbeat{hb})
				d := time.Since(t0).Seconds() * 1000
				if err != nil {
					if ctx.Err() == nil {
						writeErrs.Add(1)
					}
					continue
				}
				rows.Add(1)
				mu.Lock()
				writeLat = append(writeLat, d)
				mu.Unlock()
			}
		}()
	}
	// The fleet view's query, once a second, on a connection of its own.
	wg.Add(1)
	go func() {
		defer wg.Done()
		tick := time.NewTicker(time.Second)
		defer tick.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
			// Baseline in the same run: one trivial round trip, just before,
			// so the machine's load shows in both figures alike.
			b0 := time.Now()
			if err := reader.Ping(ctx); err == nil {
				mu.Lock()
				select1Lat = append(select1Lat, time.Since(b0).Seconds()*1000)
				mu.Unlock()
			}
			// The fleet answer's query: the instances and the minute merged.
			now := time.Now()
			t0 := time.Now()
			inst, err := reader.Instances(ctx, fleet, now)
			if err == nil {
				_, err = reader.MergedRollup(ctx, fleet, now.Add(-time.Minute), now)
			}
			d := time.Since(t0).Seconds() * 1000
			// FleetNow: the instances and the merge of their latest rollups.
			w0 := time.Now()
			if _, _, werr := reader.FleetNow(ctx, fleet, now); werr == nil {
				mu.Lock()
				nowLat = append(nowLat, time.Since(w0).Seconds()*1000)
				mu.Unlock()
			}
			mu.Lock()
			if err != nil {
				if ctx.Err() == nil {
					queryErrs++
				}
			} else {
				queryLat = append(queryLat, d)
				seenInst = len(inst)
			}
			mu.Unlock()
		}
	}()
	// The pruner, once a minute, as sidecars run it.
	wg.Add(1)
	go func() {
		defer wg.Done()
		tick := time.NewTicker(time.Minute)
		defer tick.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
			r, err := reader.PruneFleet(ctx, fleet, time.Now(), store.Retention{KeepFine: keep, KeepHeartbeats: 24 * time.Hour})
			if err == nil {
				pruned.Add(r.Compacted)
			}
		}
	}()
	wg.Wait()
	elapsed := time.Since(start)
	cpuEnd, _ := serverCPU(t.procName)

	res.DurationSeconds = elapsed.Seconds()
	res.Rows = rows.Load()
	res.RowsPerSecond = float64(res.Rows) / elapsed.Seconds()
	res.WriteErrors = writeErrs.Load()
	res.WriteP50Ms, res.WriteP99Ms = pct(writeLat, 0.5), pct(writeLat, 0.99)
	res.Queries, res.QueryErrors, res.QueryInstances = len(queryLat), queryErrs, seenInst
	res.QueryP50Ms, res.QueryP99Ms, res.QueryMaxMs = pct(queryLat, 0.5), pct(queryLat, 0.99), pct(queryLat, 1)
	res.Select1P50Ms, res.Select1P99Ms = pct(select1Lat, 0.5), pct(select1Lat, 0.99)
	res.FleetNowP50Ms, res.FleetNowP99Ms = pct(nowLat, 0.5), pct(nowLat, 0.99)
	if res.Select1P99Ms > 0 {
		res.QueryP99Ratio = math.Round(res.QueryP99Ms/res.Select1P99Ms*100) / 100
	}
	res.ServerCPURun = (cpuEnd - cpuStart) / elapsed.Seconds()
	res.CompactedRows = pruned.Load()
	_ = docBytes

	sz, err := tableSize(admin, t, dbName)
	if err != nil {
		return nil, err
	}
	res.HeartbeatRowsNow, res.TableBytes = sz.rows, sz.bytes
	res.FineDocBytes, res.CoarseDocBytes = sz.fineDoc, sz.coarseDoc
	if sz.rows > 0 {
		res.BytesPerRow = float64(sz.bytes) / float64(sz.rows)
	}
	// Per-day figures at this rate, from the measured per-row sizes: rows
	// written, and the table held by the default retention (every row for
	// 1 h, then one row per instance and 5 minutes for 24 h).
	day := (24 * time.Hour).Seconds()
	// A compacted row takes the table's bytes per row scaled by its
	// document's size against a fine row's (PostgreSQL compresses documents
	// over 2 kB, so the table can be smaller than its documents).
	fineRow, coarseRow := res.BytesPerRow, res.BytesPerRow
	if res.FineDocBytes > 0 && res.CoarseDocBytes > 0 {
		coarseRow = res.BytesPerRow * res.CoarseDocBytes / res.FineDocBytes
	}
	res.RowsPerDay = float64(n) * day / interval.Seconds()
	res.GBWrittenPerDay = res.RowsPerDay * fineRow / 1e9
	ret := store.DefaultRetention
	fineHeld := float64(n) * ret.KeepFine.Seconds() / interval.Seconds()
	coarseHeld := float64(n) * (ret.KeepHeartbeats - ret.KeepFine).Seconds() / ret.Window.Seconds()
	res.HeldRows = fineHeld + coarseHeld
	res.GBHeld = (fineHeld*fineRow + coarseHeld*coarseRow) / 1e9
	res.GBHeldNoCompact = res.RowsPerDay * fineRow / 1e9
	return res, nil
}

type sizes struct {
	rows, bytes, docBytes int64
	fineDoc, coarseDoc    float64
}

// tableSize is the heartbeat table's rows, its on-disk size (data and
// indexes, after the server's statistics are refreshed), the bytes of its
// documents and their average size per kind (fine rows, compacted rows).
func tableSize(admin *sql.DB, t target, dbName string) (sizes, error) {
	var z sizes
	db := admin
	prefix := dbName + "."
	if t.adminDrv == "mysql" {
		if _, err := admin.Exec("ANALYZE TABLE " + dbName + ".pulsegate_heartbeats"); err != nil {
			return z, err
		}
		if err := admin.QueryRow(`SELECT DATA_LENGTH + INDEX_LENGTH FROM information_schema.TABLES WHERE TABLE_SCHEMA = ? AND TABLE_NAME = 'pulsegate_heartbeats'`, dbName).Scan(&z.bytes); err != nil {
			return z, err
		}
	} else {
		pg, err := sql.Open("pgx", strings.Replace(t.adminDSN, "/postgres?", "/"+dbName+"?", 1))
		if err != nil {
			return z, err
		}
		defer pg.Close()
		db, prefix = pg, ""
		if _, err := db.Exec("VACUUM ANALYZE pulsegate_heartbeats"); err != nil {
			return z, err
		}
		if err := db.QueryRow(`SELECT pg_total_relation_size('pulsegate_heartbeats')`).Scan(&z.bytes); err != nil {
			return z, err
		}
	}
	rows, err := db.Query(`SELECT span_us >= 300000000, COUNT(*), SUM(LENGTH(doc)) FROM ` + prefix + `pulsegate_heartbeats GROUP BY span_us >= 300000000`)
	if err != nil {
		return z, err
	}
	defer rows.Close()
	for rows.Next() {
		var coarse bool
		var n, b int64
		if err := rows.Scan(&coarse, &n, &b); err != nil {
			return z, err
		}
		z.rows += n
		z.docBytes += b
		if coarse {
			z.coarseDoc = float64(b) / float64(n)
		} else {
			z.fineDoc = float64(b) / float64(n)
		}
	}
	return z, rows.Err()
}

// heartbeat is a realistic row: four components with reasons, requests by
// class, a latency histogram of a few hundred requests (sparse buckets),
// timing sums, gauges, DB and Redis figures.
func heartbeat(rng *rand.Rand, fleet, inst string, now time.Time, interval time.Duration) store.Heartbeat {
	h := store.Hist{}
	reqs := 200 + rng.IntN(400)
	for range reqs {
		h.Record(time.Duration(0.03 * math.Exp(rng.NormFloat64()*0.7) * float64(time.Second)))
	}
	f := func(v float64) *float64 { return &v }
	q := rng.IntN(5)
	return store.Heartbeat{
		Fleet: fleet, Instance: inst, Time: now, Interval: interval, Status: "ok", ConfigVersion: 4,
		Components: []store.Component{
			{Name: "system", Status: "ok", Reason: "cpu 41%, memory 52% of the container limit"},
			{Name: "database", Status: "ok", Reason: "pool 4/20, query 3 ms"},
			{Name: "redis", Status: "ok", Reason: "ping 0.4 ms, memory 12%"},
			{Name: "proxy", Status: "ok", Reason: "p95 82 ms, errors 0.2%"},
		},
		Rollup: store.Rollup{
			Seconds:  interval.Seconds(),
			Requests: map[string]uint64{"2xx": uint64(reqs - 3), "3xx": 1, "4xx": 1, "5xx": 1},
			Errors:   map[string]uint64{"app_5xx": 1},
			Latency:  h,
			Timing: map[string]float64{"upstream_connect": 0.01 * float64(reqs) / 100, "upstream_wait": 0.02 * float64(reqs),
				"app": 0.03 * float64(reqs), "response_write": 0.001 * float64(reqs), "queue": 0},
			InFlight: rng.IntN(20), Queued: 0, BackpressureMode: "open",
			CPU: f(0.41), Memory: f(0.52), Disk: f(0.33),
			DB:    &store.DBFigures{PoolInUse: 4, PoolSize: 20, PoolUtilization: f(0.2), LatencySeconds: f(0.003)},
			Redis: &store.RedisFigures{LatencySeconds: f(0.0004), MemoryUsage: f(0.12), QueueDepth: &q},
		},
	}
}

func pct(v []float64, q float64) float64 {
	if len(v) == 0 {
		return 0
	}
	s := append([]float64(nil), v...)
	sort.Float64s(s)
	i := int(math.Ceil(q*float64(len(s)))) - 1
	return math.Round(s[max(0, min(i, len(s)-1))]*100) / 100
}

// serverCPU sums user+system CPU seconds of every process named one of
// names (comma-separated), from /proc.
func serverCPU(names string) (float64, error) {
	want := map[string]bool{}
	for _, n := range strings.Split(names, ",") {
		want[n] = true
	}
	dirs, err := filepath.Glob("/proc/[0-9]*")
	if err != nil {
		return 0, err
	}
	var ticks float64
	found := false
	for _, d := range dirs {
		comm, err := os.ReadFile(filepath.Join(d, "comm"))
		if err != nil || !want[strings.TrimSpace(string(comm))] {
			continue
		}
		stat, err := os.ReadFile(filepath.Join(d, "stat"))
		if err != nil {
			continue
		}
		// Fields after the ")" closing comm: state is field 3; utime 14, stime 15.
		s := string(stat)
		rest := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
		if len(rest) < 13 {
			continue
		}
		u, _ := strconv.ParseFloat(rest[11], 64)
		st, _ := strconv.ParseFloat(rest[12], 64)
		ticks += u + st
		found = true
	}
	if !found {
		return 0, fmt.Errorf("no process named %s in /proc (is the server on this machine?)", names)
	}
	return ticks / 100, nil // USER_HZ is 100 on Linux
}
