package backpressure

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

// metricValue returns the value of the gauge or counter name whose label
// (any label) equals label ("" = the unlabelled series).
func metricValue(t *testing.T, reg *prometheus.Registry, name, label string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatalf("gather: %v", err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			match := label == "" && len(m.GetLabel()) == 0
			for _, lp := range m.GetLabel() {
				if lp.GetValue() == label {
					match = true
				}
			}
			if !match {
				continue
			}
			switch {
			case m.Gauge != nil:
				return m.Gauge.GetValue()
			case m.Counter != nil:
				return m.Counter.GetValue()
			}
		}
	}
	t.Fatalf("metric %s{%s} not found", name, label)
	return 0
}

// histogramCount returns the sample count of histogram name.
func histogramCount(t *testing.T, reg *prometheus.Registry, name string) uint64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatalf("gather: %v", err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name {
			return mf.GetMetric()[0].GetHistogram().GetSampleCount()
		}
	}
	t.Fatalf("histogram %s not found", name)
	return 0
}

func TestMetricsExposed(t *testing.T) {
	cfg := baseConfig()
	cfg.Backpressure.MaxConcurrency = 3
	c, reg, _ := newTestChain(t, cfg, okHandler)
	_ = c
	if got := metricValue(t, reg, "pulsegate_backpressure_limit", ""); got != 3 {
		t.Errorf("limit = %v, want 3", got)
	}
	if got := metricValue(t, reg, "pulsegate_backpressure_mode", "enforcing"); got != 1 {
		t.Errorf("mode{enforcing} = %v, want 1", got)
	}
	if got := metricValue(t, reg, "pulsegate_backpressure_mode", "off"); got != 0 {
		t.Errorf("mode{off} = %v, want 0", got)
	}
	for _, r := range Reasons {
		if got := metricValue(t, reg, "pulsegate_backpressure_rejections_total", r); got != 0 {
			t.Errorf("rejections_total{%s} = %v, want 0", r, got)
		}
		metricValue(t, reg, "pulsegate_backpressure_dry_run_rejections_total", r)
	}
	for _, name := range []string{"in_flight", "queue_depth", "shed_fraction", "drain_per_second", "queue_abandoned_total", "rate_limit_clients"} {
		metricValue(t, reg, "pulsegate_backpressure_"+name, "")
	}
	// A second chain on the same registry is a clear error, not a panic.
	if _, err := New(cfg, nil, reg, okHandler); err == nil {
		t.Error("New registered twice on one registry without error")
	}
}
