package figures

import (
	"encoding/json"
	"testing"

	"github.com/pulsegate/pulsegate/config"
)

func TestCompareDirections(t *testing.T) {
	above := Thresholds{Warning: 0.8, Critical: 0.9, WarningOn: true, CriticalOn: true}
	below := Thresholds{Warning: 0.85, Critical: 0.7, WarningOn: true, CriticalOn: true}
	for _, tc := range []struct {
		v    float64
		dir  Direction
		t    Thresholds
		want Level
	}{
		{0.5, Above, above, OK}, {0.8, Above, above, Warning}, {0.95, Above, above, Critical},
		{0.95, Below, below, OK}, {0.85, Below, below, Warning}, {0.6, Below, below, Critical},
		{0.95, Above, Thresholds{Warning: 0.8, WarningOn: true}, Warning}, // critical off
	} {
		if got := Compare(tc.v, tc.dir, tc.t); got != tc.want {
			t.Errorf("Compare(%v, %s, %+v) = %s, want %s", tc.v, tc.dir, tc.t, got, tc.want)
		}
	}
}

// TestJudgeAllFollowsConfig: every figure is judged with the configuration
// it is given, and figures of an unconfigured source are disabled with why.
func TestJudgeAllFollowsConfig(t *testing.T) {
	cfg := config.Defaults()
	in := Inputs{Values: map[string]float64{"memory_usage": 0.85, "apdex": 0.8},
		Off: map[Source]string{Database: "set RESPONSIVENESS_DB_DSN to measure the database"}}
	j := JudgeAll(cfg, in)
	if m := j[MemoryUsage]; m.Level != Warning || *m.Warning != 0.8 || *m.Critical != 0.9 || m.Unit != Ratio || m.BadWhen != Above {
		t.Errorf("memory: %+v", m)
	}
	if a := j[Apdex]; a.Level != Warning || a.BadWhen != Below || *a.Critical != 0.7 {
		t.Errorf("apdex: %+v", a)
	}
	if d := j[DBLatency]; d.Level != Disabled || d.WhyNotMeasured == "" || d.Value != nil {
		t.Errorf("db_latency without a DSN: %+v", d)
	}
	if c := j[CPUUsage]; c.Level != NotMeasured || c.WhyNotMeasured == "" {
		t.Errorf("cpu not measured: %+v", c)
	}
	cfg2 := config.Defaults()
	cfg2.Responsiveness.MemoryCriticalThreshold = 0.84
	cfg2.Responsiveness.MemoryWarningThreshold = 0.5
	if m := JudgeAll(cfg2, in)[MemoryUsage]; m.Level != Critical || *m.Critical != 0.84 {
		t.Errorf("memory after a threshold change: %+v", m)
	}
	b, err := json.Marshal(j[MemoryUsage])
	if err != nil {
		t.Fatal(err)
	}
	var back map[string]any
	_ = json.Unmarshal(b, &back)
	for _, k := range []string{"value", "unit", "level", "warning", "critical", "bad_when", "window", "label", "source"} {
		if _, ok := back[k]; !ok {
			t.Errorf("judgement JSON lacks %q: %s", k, b)
		}
	}
}

// TestEveryFigureHasItsParts: a figure added to the table is complete.
func TestEveryFigureHasItsParts(t *testing.T) {
	seen := map[Name]bool{}
	for _, f := range All() {
		if seen[f.Name] {
			t.Errorf("%s listed twice", f.Name)
		}
		seen[f.Name] = true
		if f.Unit == "" || f.Source == "" || f.BadWhen == "" || f.Window == "" || f.Label == "" {
			t.Errorf("%s is incomplete: %+v", f.Name, f)
		}
		th := f.Thresholds(config.Defaults())
		if th.WarningOn && th.CriticalOn && Compare(th.Critical, f.BadWhen, th) != Critical {
			t.Errorf("%s: its critical threshold does not judge critical", f.Name)
		}
	}
}
