package config

import (
	"fmt"
	"strings"
)

// Deprecation is a setting given with a meaning it no longer has alone:
// its value was carried to the settings that took that meaning over, this
// once, and the user should set those explicitly.
type Deprecation struct {
	// Key is the setting given (e.g. thresholds.queue_critical) and Env its variable.
	Key string `json:"key"`
	Env string `json:"env"`
	// Carried are the settings that took its value because they were not given.
	Carried []string `json:"carried"`
}

// String is the one-line notice check-config prints and serve logs.
func (d Deprecation) String() string {
	return fmt.Sprintf("%s (%s) no longer sets %s; its value was carried over this time: set %s explicitly",
		d.Key, d.Env, strings.Join(d.Carried, " and "), strings.Join(d.Carried, " and "))
}

// splitMeanings are settings that used to carry several meanings, and the
// settings each meaning moved to (issue 10): the database query threshold
// was also the Redis PING threshold and the long-query cutoff; the request
// queue thresholds were also the job-queue thresholds, and the critical one
// the queue's bound.
var splitMeanings = []struct {
	from string
	to   []string
}{
	{"thresholds.db_query_warning", []string{"thresholds.redis_latency_warning"}},
	{"thresholds.db_query_critical", []string{"thresholds.redis_latency_critical", "database.long_query_threshold"}},
	{"thresholds.queue_warning", []string{"thresholds.job_queue_warning"}},
	{"thresholds.queue_critical", []string{"thresholds.job_queue_critical", "backpressure.queue_size"}},
}

// carrySplitMeanings gives each setting that took over a meaning the value
// of the old setting, when the old one was given (file or environment) and
// the new one was not, so a configuration written before the split behaves
// as it did. It returns one Deprecation per old setting carried.
func carrySplitMeanings(c *Config, given func(key string) bool) []Deprecation {
	byKey := map[string]field{}
	for _, f := range configFields() {
		byKey[f.key] = f
	}
	env := envByKey()
	var out []Deprecation
	for _, s := range splitMeanings {
		if !given(s.from) {
			continue
		}
		d := Deprecation{Key: s.from, Env: env[s.from]}
		from := byKey[s.from].value(c)
		for _, to := range s.to {
			if given(to) {
				continue
			}
			byKey[to].value(c).Set(from)
			d.Carried = append(d.Carried, to)
		}
		if len(d.Carried) > 0 {
			out = append(out, d)
		}
	}
	return out
}
