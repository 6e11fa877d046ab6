package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestSplitMeaningsCarryOldSettings: a configuration written before the
// split (one queue_critical for threshold, bound and job queue; one
// db_query_* for the database, Redis and long queries) behaves as it did,
// with a deprecation naming what to set; a new setting given wins.
func TestSplitMeaningsCarryOldSettings(t *testing.T) {
	path := filepath.Join(t.TempDir(), "old.yaml")
	yaml := "thresholds:\n  queue_critical: 200\n  db_query_critical: 8\n"
	if err := os.WriteFile(path, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, deps, err := LoadWithDeprecations(LoadOptions{File: path, Environ: []string{"RESPONSIVENESS_THRESHOLDS_REDIS_LATENCY_CRITICAL=3"}})
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Backpressure.QueueSize != 200 || cfg.Thresholds.JobQueueCritical != 200 || cfg.Thresholds.QueueCritical != 200 {
		t.Errorf("queue_critical 200 carried to queue_size %d, job_queue_critical %d", cfg.Backpressure.QueueSize, cfg.Thresholds.JobQueueCritical)
	}
	if cfg.Database.LongQueryThreshold != 8 || cfg.Thresholds.RedisLatencyCritical != 3 {
		t.Errorf("db_query_critical 8: long query %v (want 8), redis latency %v (given 3, want 3)", cfg.Database.LongQueryThreshold, cfg.Thresholds.RedisLatencyCritical)
	}
	if len(deps) != 2 {
		t.Fatalf("deprecations %v, want 2", deps)
	}
	text := deps[0].String() + "\n" + deps[1].String()
	for _, want := range []string{"thresholds.db_query_critical (RESPONSIVENESS_DB_QUERY_CRITICAL_THRESHOLD)", "database.long_query_threshold",
		"thresholds.queue_critical", "backpressure.queue_size", "thresholds.job_queue_critical"} {
		if !strings.Contains(text, want) {
			t.Errorf("deprecations do not name %s:\n%s", want, text)
		}
	}
	if strings.Contains(text, "redis_latency_critical") {
		t.Errorf("redis_latency_critical was given, yet named as carried:\n%s", text)
	}
	if _, deps, _ := LoadWithDeprecations(LoadOptions{}); len(deps) != 0 {
		t.Errorf("defaults alone gave deprecations %v", deps)
	}
}
