package store

import (
	"context"
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
	// Capacity is the fleet's backpressure figures in the step (the
	// fleet rules of CapacityFigures; minutes are the step itself when
	// it is shorter than a minute); nil when no row in the step measured
	// them (rows from before schema version 5).
	Capacity *CapacityFigures
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
//
// When the step is a whole number of hours, the hours that the fleet's
// hour rows cover (pulsegate_fleet_hours, kept for history.retention_1h)
// are read from them, and the rest as below.
// When the step is a whole number of minutes, the minutes that the fleet's
// minute rows cover (pulsegate_fleet_minutes, written by PruneFleet) are
// read from them, each already the merge of its heartbeat rows, and only
// the partial first minute and the minutes not yet rolled up from the
// heartbeat rows: the same answer from ~1/(rows per minute) of the reading.
func (s *SQL) FleetSeries(ctx context.Context, fleet string, from, to time.Time, step time.Duration) (FleetSeries, error) {
	if step <= 0 {
		return FleetSeries{}, fmt.Errorf("fleet series: step must be positive, got %s", step)
	}
	ctx, cancel := s.opCtx(ctx)
	defer cancel()
	f, t := from.UnixMicro(), to.UnixMicro()
	if step%fleetHour == 0 {
		lo, hi, err := s.fleetHoursSpan(ctx, fleet)
		if err != nil {
			return FleetSeries{}, err
		}
		lo, hi = max(lo, hourCeil(f)), min(hi, hourFloor(t))
		if lo < hi {
			before, err := s.minuteParts(ctx, fleet, f, lo)
			if err != nil {
				return FleetSeries{}, err
			}
			hours, err := s.readMergedRows(ctx, s.db, tableFleetHours, fleet, lo, hi)
			if err != nil {
				return FleetSeries{}, err
			}
			after, err := s.minuteParts(ctx, fleet, hi, t)
			if err != nil {
				return FleetSeries{}, err
			}
			parts := append(append(before, seriesPart{rows: hours}), after...)
			return seriesOfParts(parts, from, to, step), nil
		}
	}
	if step%fleetMinute == 0 {
		parts, err := s.minuteParts(ctx, fleet, f, t)
		if err != nil {
			return FleetSeries{}, err
		}
		return seriesOfParts(parts, from, to, step), nil
	}
	hbs, err := s.readHeartbeats(ctx, s.db, fleet, f, t)
	if err != nil {
		return FleetSeries{}, err
	}
	return seriesOf(hbs, from, to, step), nil
}

// seriesPart is a run of the series' input, oldest first: heartbeat rows
// or merged (minute or hour) rows.
type seriesPart struct {
	hbs  []Heartbeat
	rows []*fleetMinuteRow
}

// minuteParts reads what stands for fleet's heartbeat rows stamped in
// (f, t] (µs): the minute rows of the whole minutes they cover, and the
// heartbeat rows before and after them.
func (s *SQL) minuteParts(ctx context.Context, fleet string, f, t int64) ([]seriesPart, error) {
	lo, hi, err := s.fleetMinutesSpan(ctx, fleet)
	if err != nil {
		return nil, err
	}
	lo, hi = max(lo, minuteCeil(f)), min(hi, minuteFloor(t))
	if lo >= hi {
		hbs, err := s.readHeartbeats(ctx, s.db, fleet, f, t)
		return []seriesPart{{hbs: hbs}}, err
	}
	head, err := s.readHeartbeats(ctx, s.db, fleet, f, lo)
	if err != nil {
		return nil, err
	}
	mins, err := s.readFleetMinutes(ctx, fleet, lo, hi)
	if err != nil {
		return nil, err
	}
	tail, err := s.readHeartbeats(ctx, s.db, fleet, hi, t)
	if err != nil {
		return nil, err
	}
	return []seriesPart{{hbs: head}, {rows: mins}, {hbs: tail}}, nil
}

// seriesOf merges heartbeat rows (oldest first) into steps of at least
// step, aligned on multiples of the step since the Unix epoch.
func seriesOf(hbs []Heartbeat, from, to time.Time, step time.Duration) FleetSeries {
	return seriesOfParts([]seriesPart{{hbs: hbs}}, from, to, step)
}

// seriesOfParts merges, in order, runs of heartbeat rows and of merged
// rows (each the merge of its minute's or hour's heartbeat rows; step is
// then a whole number of their span), as seriesOf would merge the
// heartbeat rows the merged rows stand for.
func seriesOfParts(parts []seriesPart, from, to time.Time, step time.Duration) FleetSeries {
	// A step shorter than an instance's interval would leave every other
	// step empty for it and halve its rate in the ones it lands in.
	raise := func(iv time.Duration) {
		if iv > step {
			step = (iv + step - 1) / step * step
		}
	}
	for _, p := range parts {
		for _, hb := range p.hbs {
			raise(hb.Interval)
		}
		for _, m := range p.rows {
			for _, iv := range m.doc.Intervals {
				raise(iv)
			}
		}
	}
	out := FleetSeries{From: from, To: to, Step: step, Steps: []FleetStep{}, Instances: []string{}}
	var (
		cur      *FleetStep
		perInst  map[string]*minuteInst
		inStep   map[string]bool
		everyone = map[string]bool{}
		// unit gathers the capacity figures of the heartbeat rows of one
		// minute (or one step, when shorter), folded into the step whole.
		unit   *capUnit
		unitUS = fleetMinute.Microseconds()
	)
	if step%fleetMinute != 0 && step < fleetMinute {
		unitUS = step.Microseconds()
	}
	foldUnit := func() {
		if unit != nil && cur != nil {
			foldFleet(&cur.Capacity, unit.sum)
		}
		unit = nil
	}
	flush := func() {
		if cur == nil {
			return
		}
		foldUnit()
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
	// into moves to the step holding us (a row stamped t covers
	// (t−seconds, t]: it belongs to the step holding t−1 µs, so a row
	// stamped on a boundary closes its step).
	into := func(us int64) {
		start := time.UnixMicro(seriesFloorDiv(us, stepUS) * stepUS).UTC()
		if cur == nil || !cur.Start.Equal(start) {
			flush()
			cur = &FleetStep{Start: start, Merged: newMerged(start, start.Add(step)), Status: "ok"}
			perInst, inStep = map[string]*minuteInst{}, map[string]bool{}
		}
	}
	instance := func(name string) *minuteInst {
		inStep[name], everyone[name] = true, true
		in := perInst[name]
		if in == nil {
			in = &minuteInst{}
			perInst[name] = in
		}
		return in
	}
	status := func(st string) {
		if seriesRank(st) > seriesRank(cur.Status) {
			cur.Status = st
		}
	}
	addRow := func(hb Heartbeat) {
		into(hb.Time.UnixMicro() - 1)
		cur.Merged.add(hb)
		if u := seriesFloorDiv(hb.Time.UnixMicro()-1, unitUS) * unitUS; unit == nil || unit.start != u {
			foldUnit()
			unit = newCapUnit(u)
		}
		unit.add(hb.Instance, hb.Rollup.Capacity)
		in := instance(hb.Instance)
		in.answered += hb.Rollup.Answered()
		in.seconds += hb.Rollup.Seconds
		// Rows come oldest first: the last gauge of the step wins.
		if hb.Rollup.CPU != nil {
			in.cpu = hb.Rollup.CPU
		}
		if hb.Rollup.Memory != nil {
			in.mem = hb.Rollup.Memory
		}
		status(hb.Status)
	}
	addMerged := func(m *fleetMinuteRow) {
		if m.rows == 0 {
			return
		}
		into(m.start.UnixMicro())
		foldUnit()
		foldFleet(&cur.Capacity, m.doc.Capacity)
		mg := &cur.Merged
		mg.Rows += m.rows
		for k, v := range m.doc.Requests {
			mg.Requests[k] += v
		}
		for k, v := range m.doc.Errors {
			mg.Errors[k] += v
		}
		for k, v := range m.doc.Timing {
			mg.Timing[k] += v
		}
		mg.Latency.Merge(m.doc.Latency)
		for _, name := range m.order {
			mi, in := m.insts[name], instance(name)
			in.answered += mi.answered
			in.seconds += mi.seconds
			if mi.cpu != nil {
				in.cpu = mi.cpu
			}
			if mi.mem != nil {
				in.mem = mi.mem
			}
		}
		status(m.doc.Status)
	}
	for _, p := range parts {
		for _, hb := range p.hbs {
			addRow(hb)
		}
		for _, m := range p.rows {
			addMerged(m)
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
