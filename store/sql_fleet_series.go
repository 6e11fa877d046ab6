package store

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"time"
)

// FleetStep is one step of the fleet's trend series: the heartbeat rows of
// every instance stamped in (Start, Start+step], merged.
type FleetStep struct {
	// Start is the step's start (its rows are stamped after it, up to Start+step).
	Start time.Time
	// Merged holds the step's counts summed and latency buckets merged;
	// its percentiles and error rate come from the merge.
	Merged MergedRollup
	// ThroughputRPS is the sum over the instances of each one's rate in
	// the step (its answered requests ÷ the seconds its rows cover).
	ThroughputRPS float64
	// CPU and Memory are the highest instance's latest gauge in the step
	// (the one to watch, as the fleet's performance answer shows); nil
	// when no instance measured it.
	CPU, Memory *float64
	// Status is the worst instance verdict in the step (ok, warning, critical).
	Status string
}

// FleetSeries is the fleet's trend series over a range: one FleetStep per
// step that holds at least one heartbeat row, oldest first.
type FleetSeries struct {
	From, To time.Time
	// Step is the steps' length: the asked step, raised to the longest
	// monitoring interval among the rows so no step falls between two
	// heartbeats of an instance.
	Step  time.Duration
	Steps []FleetStep
	// Instances are the instances with rows in the range, sorted.
	Instances []string
}

// FleetSeries reads fleet's heartbeat rows stamped in (from, to] and
// merges them per step (see FleetStep): percentiles from merged buckets,
// never an average of percentiles. Rows older than the retention's
// KeepFine are the compacted per-window rows, so older steps are as coarse
// as Retention.Window.
func (s *SQL) FleetSeries(ctx context.Context, fleet string, from, to time.Time, step time.Duration) (FleetSeries, error) {
	if step <= 0 {
		return FleetSeries{}, fmt.Errorf("fleet series: step must be positive, got %s", step)
	}
	ctx, cancel := s.opCtx(ctx)
	defer cancel()
	rows, err := s.db.QueryContext(ctx, s.rebind(`SELECT doc FROM pulsegate_heartbeats
 WHERE fleet = ? AND ts_us > ? AND ts_us <= ? ORDER BY ts_us, instance`),
		fleet, from.UnixMicro(), to.UnixMicro())
	if err != nil {
		return FleetSeries{}, s.classify("reading", tableHeartbeats, err)
	}
	defer rows.Close()
	var hbs []Heartbeat
	for rows.Next() {
		var doc string
		if err := rows.Scan(&doc); err != nil {
			return FleetSeries{}, s.classify("reading", tableHeartbeats, err)
		}
		var hb Heartbeat
		if err := json.Unmarshal([]byte(doc), &hb); err != nil {
			return FleetSeries{}, fmt.Errorf("decoding heartbeat from %s: %w", tableHeartbeats, err)
		}
		hbs = append(hbs, hb)
	}
	if err := rows.Err(); err != nil {
		return FleetSeries{}, s.classify("reading", tableHeartbeats, err)
	}
	return seriesOf(hbs, from, to, step), nil
}

// seriesOf merges heartbeat rows (oldest first) into steps of at least
// step, aligned on multiples of the step since the Unix epoch.
func seriesOf(hbs []Heartbeat, from, to time.Time, step time.Duration) FleetSeries {
	// A step shorter than an instance's interval would leave every other
	// step empty for it and halve its rate in the ones it lands in.
	for _, hb := range hbs {
		if hb.Interval > step {
			step = (hb.Interval + step - 1) / step * step
		}
	}
	out := FleetSeries{From: from, To: to, Step: step, Steps: []FleetStep{}, Instances: []string{}}
	type inst struct {
		answered uint64
		seconds  float64
		cpu, mem *float64
	}
	var (
		cur      *FleetStep
		perInst  map[string]*inst
		inStep   map[string]bool
		everyone = map[string]bool{}
	)
	flush := func() {
		if cur == nil {
			return
		}
		cur.Merged.finish(inStep)
		for _, in := range perInst {
			if in.seconds > 0 {
				cur.ThroughputRPS += float64(in.answered) / in.seconds
			}
			cur.CPU, cur.Memory = seriesMax(cur.CPU, in.cpu), seriesMax(cur.Memory, in.mem)
		}
		out.Steps = append(out.Steps, *cur)
		cur = nil
	}
	stepUS := step.Microseconds()
	for _, hb := range hbs {
		// A row stamped t covers (t−seconds, t]: it belongs to the step
		// holding t−1 µs, so a row stamped on a boundary closes its step.
		us := hb.Time.UnixMicro() - 1
		start := time.UnixMicro(seriesFloorDiv(us, stepUS) * stepUS).UTC()
		if cur == nil || !cur.Start.Equal(start) {
			flush()
			cur = &FleetStep{Start: start, Merged: newMerged(start, start.Add(step)), Status: "ok"}
			perInst, inStep = map[string]*inst{}, map[string]bool{}
		}
		cur.Merged.add(hb)
		inStep[hb.Instance], everyone[hb.Instance] = true, true
		in := perInst[hb.Instance]
		if in == nil {
			in = &inst{}
			perInst[hb.Instance] = in
		}
		in.answered += hb.Rollup.Answered()
		in.seconds += hb.Rollup.Seconds
		// Rows come oldest first: the last gauge of the step wins.
		if hb.Rollup.CPU != nil {
			in.cpu = hb.Rollup.CPU
		}
		if hb.Rollup.Memory != nil {
			in.mem = hb.Rollup.Memory
		}
		if seriesRank(hb.Status) > seriesRank(cur.Status) {
			cur.Status = hb.Status
		}
	}
	flush()
	for name := range everyone {
		out.Instances = append(out.Instances, name)
	}
	sort.Strings(out.Instances)
	return out
}

func seriesMax(a, b *float64) *float64 {
	if a == nil || (b != nil && *b > *a) {
		return b
	}
	return a
}

// statusRank orders instance verdicts; anything unknown ranks as warning.
func seriesRank(s string) int {
	switch s {
	case "ok", "healthy", "":
		return 0
	case "critical", "down":
		return 2
	}
	return 1
}

func seriesFloorDiv(a, b int64) int64 {
	q := a / b
	if a%b != 0 && (a < 0) != (b < 0) {
		q--
	}
	return q
}
