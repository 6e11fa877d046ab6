package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"math"
	"sort"
	"strconv"
	"strings"
	"time"
)

// The fleet's minute rows (pulsegate_fleet_minutes): one row per fleet and
// minute holding the merge of every heartbeat row of every instance stamped
// in (minute, minute+1m], so the 24 h fleet series reads 1,440 rows instead
// of ~636 per instance. The prune pass writes them (rollupFleetMinutes);
// FleetSeries reads them for the minutes they cover and the heartbeat rows
// for the rest.

const (
	// fleetMinute is a minute row's span.
	fleetMinute = time.Minute
	// minuteSettle is how long after a minute ends it is first rolled up,
	// so the heartbeats stamped in it have been written.
	minuteSettle = 2 * time.Minute
	// minuteBudgetRows bounds the heartbeat rows one prune pass reads to
	// roll minutes up (the first pass over a full day of a large fleet
	// takes a few passes; FleetSeries reads heartbeat rows where minute
	// rows are missing, so answers stay whole meanwhile).
	minuteBudgetRows = 40000
	// minuteChunkRows bounds the heartbeat rows of one read-and-upsert
	// transaction.
	minuteChunkRows = 4000
)

// minuteInst is one instance's share of a minute: what the fleet series
// needs per instance (its rate, its latest gauges).
type minuteInst struct {
	answered uint64
	seconds  float64
	cpu, mem *float64
}

// fleetMinuteRow is one minute row, decoded.
type fleetMinuteRow struct {
	start time.Time
	rows  int
	doc   minuteDoc
	insts map[string]*minuteInst
	// order is insts' names as first seen (row order).
	order []string
	// unit gathers the capacity figures of the heartbeat rows added (nil
	// for a row read back: its doc holds them).
	unit *capUnit
}

// minuteDoc is a minute row's doc column: the merge across instances.
type minuteDoc struct {
	Requests map[string]uint64  `json:"requests,omitempty"`
	Errors   map[string]uint64  `json:"errors,omitempty"`
	Timing   map[string]float64 `json:"timing,omitempty"`
	Latency  Hist               `json:"latency,omitempty"`
	// Status is the minute's worst verdict, the first row's at that rank
	// (the series' rule, so merging minutes in order equals merging rows).
	Status string `json:"status"`
	// Intervals are the rows' monitoring intervals that were a new high
	// in row order (only those can raise a series' step; applying them in
	// order raises it as the rows would).
	Intervals []time.Duration `json:"intervals_ns,omitempty"`
	// Capacity is the fleet's backpressure figures in the minute (or
	// hour): see CapacityFigures; absent when no row measured them.
	Capacity *CapacityFigures `json:"capacity,omitempty"`
}

// newMinuteRow starts an empty minute.
func newMinuteRow(start time.Time) *fleetMinuteRow {
	return &fleetMinuteRow{start: start, doc: minuteDoc{Requests: map[string]uint64{}, Errors: map[string]uint64{},
		Timing: map[string]float64{}, Latency: Hist{}, Status: "ok"}, insts: map[string]*minuteInst{}}
}

// add merges one heartbeat row (rows must come in series order: ts, instance).
func (m *fleetMinuteRow) add(hb Heartbeat) {
	m.rows++
	r := hb.Rollup
	for k, v := range r.Requests {
		m.doc.Requests[k] += v
	}
	for k, v := range r.Errors {
		m.doc.Errors[k] += v
	}
	for k, v := range r.Timing {
		m.doc.Timing[k] += v
	}
	m.doc.Latency.Merge(r.Latency)
	if seriesRank(hb.Status) > seriesRank(m.doc.Status) {
		m.doc.Status = hb.Status
	}
	if n := len(m.doc.Intervals); n == 0 || hb.Interval > m.doc.Intervals[n-1] {
		m.doc.Intervals = append(m.doc.Intervals, hb.Interval)
	}
	if m.unit == nil {
		m.unit = newCapUnit(m.start.UnixMicro())
	}
	m.unit.add(hb.Instance, r.Capacity)
	m.doc.Capacity = m.unit.sum
	in := m.insts[hb.Instance]
	if in == nil {
		in = &minuteInst{}
		m.insts[hb.Instance] = in
		m.order = append(m.order, hb.Instance)
	}
	in.answered += r.Answered()
	in.seconds += r.Seconds
	if r.CPU != nil {
		in.cpu = r.CPU
	}
	if r.Memory != nil {
		in.mem = r.Memory
	}
}

// fingerprint is what the prune pass compares with the heartbeat rows.
func (m *fleetMinuteRow) fingerprint() minuteFP {
	fp := minuteFP{rows: int64(m.rows)}
	for _, in := range m.insts {
		fp.requests += int64(in.answered)
	}
	for _, v := range m.doc.Errors {
		fp.errors += int64(v)
	}
	return fp
}

// minuteFP is a minute's heartbeat rows counted and summed (the requests
// and errors columns): when it differs from the minute row's, the minute
// row is stale (a late row, a compaction).
type minuteFP struct{ rows, requests, errors int64 }

// encodeInsts writes the instances column: one line per instance,
// "answered seconds cpu memory name" (a missing gauge is "-"), in row order.
// It is parsed by hand: a day of a 200-instance fleet holds 288,000 of them.
func (m *fleetMinuteRow) encodeInsts() string {
	var b strings.Builder
	g := func(v *float64) {
		if v == nil {
			b.WriteString("-")
			return
		}
		b.WriteString(strconv.FormatFloat(*v, 'g', -1, 64))
	}
	for _, name := range m.order {
		in := m.insts[name]
		b.WriteString(strconv.FormatUint(in.answered, 10))
		b.WriteByte(' ')
		b.WriteString(strconv.FormatFloat(in.seconds, 'g', -1, 64))
		b.WriteByte(' ')
		g(in.cpu)
		b.WriteByte(' ')
		g(in.mem)
		b.WriteByte(' ')
		b.WriteString(strconv.Quote(name))
		b.WriteByte('\n')
	}
	return b.String()
}

func decodeInsts(s string) (map[string]*minuteInst, []string, error) {
	out := map[string]*minuteInst{}
	var order []string
	gauge := func(f string) (*float64, error) {
		if f == "-" {
			return nil, nil
		}
		v, err := strconv.ParseFloat(f, 64)
		return &v, err
	}
	for line := range strings.SplitSeq(s, "\n") {
		if line == "" {
			continue
		}
		f := strings.SplitN(line, " ", 5)
		if len(f) != 5 {
			return nil, nil, fmt.Errorf("instance line %q: want 5 fields", line)
		}
		var in minuteInst
		var err error
		if in.answered, err = strconv.ParseUint(f[0], 10, 64); err != nil {
			return nil, nil, err
		}
		if in.seconds, err = strconv.ParseFloat(f[1], 64); err != nil {
			return nil, nil, err
		}
		if in.cpu, err = gauge(f[2]); err != nil {
			return nil, nil, err
		}
		if in.mem, err = gauge(f[3]); err != nil {
			return nil, nil, err
		}
		name, err := strconv.Unquote(f[4])
		if err != nil {
			return nil, nil, fmt.Errorf("instance name %s: %w", f[4], err)
		}
		out[name] = &in
		order = append(order, name)
	}
	return out, order, nil
}

// minuteFloor is the start of the minute holding t; minuteCeil the first
// minute start at or after t.
func minuteFloor(us int64) int64 {
	return seriesFloorDiv(us, fleetMinute.Microseconds()) * fleetMinute.Microseconds()
}
func minuteCeil(us int64) int64 { return -minuteFloor(-us) }

// rollupFleetMinutes writes the minute rows of fleet's complete minutes
// still in retention: a minute without a row, or whose heartbeat rows no
// longer match its row (a late row replayed after an outage, a compaction
// that moved fine rows into their window's merged row), is (re)computed
// from its heartbeat rows and upserted, oldest first, up to
// minuteBudgetRows rows read. Minutes older than KeepHeartbeats are
// kept for KeepMinutes (the history's 1 min tier), longer than their
// heartbeat rows; only minutes whose heartbeat rows are still kept are
// (re)computed. touched are the minutes whose window this
// pass compacted (compactingMinutes): recomputed whatever their counts say,
// as a late row with nothing counted can be merged into an old window
// without changing any count. It runs under PruneFleet's lock, after the
// compaction, and returns the minutes written (their starts, µs).
func (s *SQL) rollupFleetMinutes(ctx context.Context, conn *sql.Conn, fleet string, now time.Time, r Retention, touched map[int64]bool) ([]int64, error) {
	const minUS = 60000000 // fleetMinute in µs, as in the queries
	if _, err := conn.ExecContext(ctx, s.rebind(`DELETE FROM pulsegate_fleet_minutes WHERE fleet = ? AND minute_us < ?`),
		fleet, minuteCeil(now.Add(-max(r.KeepMinutes, r.KeepHeartbeats)).UnixMicro())); err != nil {
		return nil, s.classify("deleting from", tableFleetMinutes, err)
	}
	start := minuteCeil(now.Add(-r.KeepHeartbeats).UnixMicro())
	end := minuteFloor(now.Add(-minuteSettle).UnixMicro())
	if end <= start {
		return nil, nil
	}
	div := "(ts_us - 1) / 60000000"
	if s.dialect == dialectMySQL {
		div = "(ts_us - 1) DIV 60000000"
	}
	sum := func(c string) string {
		if s.dialect == dialectMySQL {
			return "CAST(SUM(" + c + ") AS SIGNED)"
		}
		return "SUM(" + c + ")::BIGINT"
	}
	// Only the recent minutes (the fine rows, where late rows land and the
	// compaction front is) are compared each pass: older minutes change
	// only when compacted (touched). Every retained minute is compared
	// when the minute rows do not yet reach back to the first heartbeat
	// row or forward to the recent minutes (a first pass, a pause).
	retained := start
	scanFrom := start
	recent := max(start, minuteFloor(now.Add(-r.KeepFine-2*r.Window).UnixMicro()))
	lo, hi, err := s.fleetMinutesSpan(ctx, fleet)
	if err != nil {
		return nil, err
	}
	if lo < hi && hi >= recent {
		var firstTS sql.NullInt64
		if err := conn.QueryRowContext(ctx, s.rebind(`SELECT MIN(ts_us) FROM pulsegate_heartbeats WHERE fleet = ? AND ts_us > ?`), fleet, start).Scan(&firstTS); err != nil {
			return nil, s.classify("reading", tableHeartbeats, err)
		}
		if !firstTS.Valid || minuteFloor(firstTS.Int64-1) >= lo {
			scanFrom = recent
		}
	}
	have := map[int64]minuteFP{}
	if err := s.scanFP(ctx, conn, have, 1, `SELECT `+div+`, COUNT(*), `+sum("requests")+`, `+sum("errors")+` FROM pulsegate_heartbeats
 WHERE fleet = ? AND ts_us > ? AND ts_us <= ? GROUP BY 1`, fleet, scanFrom, end); err != nil {
		return nil, s.classify("reading", tableHeartbeats, err)
	}
	rolled := map[int64]minuteFP{}
	if err := s.scanFP(ctx, conn, rolled, minUS, `SELECT minute_us, rows_merged, requests, errors FROM pulsegate_fleet_minutes
 WHERE fleet = ? AND minute_us >= ? AND minute_us < ?`, fleet, scanFrom, end); err != nil {
		return nil, s.classify("reading", tableFleetMinutes, err)
	}
	// Minute rows run from the first minute holding a heartbeat row to the
	// last, without a gap (an empty minute between has an empty row).
	first, last := int64(math.MaxInt64), int64(math.MinInt64)
	for k := range have {
		first, last = min(first, k*minUS), max(last, k*minUS)
	}
	if scanFrom == start {
		start = max(start, first)
	} else {
		start = scanFrom
	}
	if len(have) == 0 {
		end = start
	} else {
		end = min(end, last+minUS)
	}
	// A stale minute takes its retention window with it: compaction moves
	// a window's rows into the row stamped at its end, so a late row
	// compacted into an old window changes that minute's row too, maybe
	// without changing its counts.
	window := r.Window.Microseconds()
	if window%minUS != 0 {
		window = minUS
	}
	dirty := map[int64]bool{}
	for m := start; m < end; m += minUS {
		got, ok := rolled[m/minUS]
		if ok && got == have[m/minUS] && !touched[m] {
			continue
		}
		dirty[m] = true
		if ok {
			wEnd := (m + minUS + window - 1) / window * window
			for w := wEnd - window; w < wEnd; w += minUS {
				if w >= start && w < end {
					dirty[w] = true
				}
			}
		}
	}
	// Compacted minutes older than the compared ones.
	for m := range touched {
		if m >= retained && m < start && (lo == hi || m >= lo-window) {
			dirty[m] = true
		}
	}
	ms := make([]int64, 0, len(dirty))
	for m := range dirty {
		ms = append(ms, m)
	}
	sort.Slice(ms, func(i, j int) bool { return ms[i] < ms[j] })
	var written []int64
	budget := minuteBudgetRows
	for len(ms) > 0 && budget > 0 {
		// Leave the pass time to finish: the rest waits for the next one.
		if dl, ok := ctx.Deadline(); ok && time.Until(dl) < 2*s.opTimeout {
			break
		}
		// One chunk: up to an hour of consecutive minutes, up to
		// minuteChunkRows rows (as counted; 0 for an older minute).
		n, rowsIn := 1, int(have[ms[0]/minUS].rows)
		for n < len(ms) && n < 60 && ms[n] == ms[n-1]+minUS && rowsIn+int(have[ms[n]/minUS].rows) <= minuteChunkRows {
			rowsIn += int(have[ms[n]/minUS].rows)
			n++
		}
		read, err := s.rollupMinutes(ctx, conn, fleet, ms[:n])
		if err != nil {
			return written, err
		}
		written = append(written, ms[:n]...)
		budget -= read
		ms = ms[n:]
	}
	return written, nil
}

// scanFP reads (key, rows, requests, errors) rows into into[key/div].
// compactingMinutes are the minutes of every window holding a fine row
// that the compaction (fine rows with span_us < window stamped at or
// before `before`) merges: PruneFleet asks before compacting, and the
// rollup recomputes them after.
func (s *SQL) compactingMinutes(ctx context.Context, conn *sql.Conn, fleet string, before, window int64) (map[int64]bool, error) {
	const minUS = 60000000
	w := strconv.FormatInt(window, 10)
	div := "(ts_us + " + w + " - 1) / " + w
	if s.dialect == dialectMySQL {
		div = "(ts_us + " + w + " - 1) DIV " + w
	}
	rows, err := conn.QueryContext(ctx, s.rebind(`SELECT DISTINCT `+div+` FROM pulsegate_heartbeats
 WHERE fleet = ? AND span_us < ? AND ts_us <= ?`), fleet, window, before)
	if err != nil {
		return nil, s.classify("reading", tableHeartbeats, err)
	}
	defer rows.Close()
	out := map[int64]bool{}
	for rows.Next() {
		var k int64
		if err := rows.Scan(&k); err != nil {
			return nil, s.classify("reading", tableHeartbeats, err)
		}
		end := k * window
		for m := minuteFloor(end - window); m < end; m += minUS {
			out[m] = true
		}
	}
	if err := rows.Err(); err != nil {
		return nil, s.classify("reading", tableHeartbeats, err)
	}
	return out, nil
}

func (s *SQL) scanFP(ctx context.Context, conn *sql.Conn, into map[int64]minuteFP, div int64, q string, args ...any) error {
	rows, err := conn.QueryContext(ctx, s.rebind(q), args...)
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
		var k int64
		var fp minuteFP
		if err := rows.Scan(&k, &fp.rows, &fp.requests, &fp.errors); err != nil {
			return err
		}
		into[k/div] = fp
	}
	return rows.Err()
}

// rollupMinutes recomputes the consecutive minutes ms from their heartbeat
// rows and upserts their rows (an empty minute too: the minute rows run
// without a gap up to the newest, which FleetSeries relies on), in one
// transaction. It returns the heartbeat rows read.
func (s *SQL) rollupMinutes(ctx context.Context, conn *sql.Conn, fleet string, ms []int64) (int, error) {
	minUS := fleetMinute.Microseconds()
	read := 0
	err := func() error {
		tx, err := conn.BeginTx(ctx, nil)
		if err != nil {
			return err
		}
		defer tx.Rollback() //nolint:errcheck // after Commit it is a no-op
		hbs, err := s.readHeartbeats(ctx, tx, fleet, ms[0], ms[len(ms)-1]+minUS)
		if err != nil {
			return err
		}
		read = len(hbs)
		byMin := map[int64]*fleetMinuteRow{}
		for _, m := range ms {
			byMin[m] = newMinuteRow(time.UnixMicro(m).UTC())
		}
		for _, hb := range hbs {
			if m := byMin[minuteFloor(hb.Time.UnixMicro()-1)]; m != nil {
				m.add(hb)
			}
		}
		up := s.upsert(tableFleetMinutes, append([]string{"fleet", "minute_us", "rows_merged", "requests", "errors", "doc", "insts"}, capacityColumns...), []string{"fleet", "minute_us"})
		for _, m := range ms {
			row := byMin[m]
			doc, err := json.Marshal(row.doc)
			if err != nil {
				return err
			}
			fp := row.fingerprint()
			args := append([]any{fleet, m, fp.rows, fp.requests, fp.errors, string(doc), row.encodeInsts()}, capacityArgs(row.doc.Capacity)...)
			if _, err := tx.ExecContext(ctx, up, args...); err != nil {
				return err
			}
		}
		return tx.Commit()
	}()
	if err != nil {
		return read, s.classify("rolling up into", tableFleetMinutes, err)
	}
	return read, nil
}

type rowsQueryer interface {
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
}

// readHeartbeats reads fleet's heartbeat rows stamped in (from, to]
// (microseconds), in series order.
func (s *SQL) readHeartbeats(ctx context.Context, q rowsQueryer, fleet string, from, to int64) ([]Heartbeat, error) {
	rows, err := q.QueryContext(ctx, s.rebind(`SELECT doc FROM pulsegate_heartbeats
 WHERE fleet = ? AND ts_us > ? AND ts_us <= ? ORDER BY ts_us, instance`), fleet, from, to)
	if err != nil {
		return nil, s.classify("reading", tableHeartbeats, err)
	}
	defer rows.Close()
	var hbs []Heartbeat
	for rows.Next() {
		var doc string
		if err := rows.Scan(&doc); err != nil {
			return nil, s.classify("reading", tableHeartbeats, err)
		}
		var hb Heartbeat
		if err := json.Unmarshal([]byte(doc), &hb); err != nil {
			return nil, fmt.Errorf("decoding heartbeat from %s: %w", tableHeartbeats, err)
		}
		hbs = append(hbs, hb)
	}
	if err := rows.Err(); err != nil {
		return nil, s.classify("reading", tableHeartbeats, err)
	}
	return hbs, nil
}

// readFleetMinutes reads fleet's minute rows starting in [from, to)
// (microseconds, whole minutes), oldest first.
func (s *SQL) readFleetMinutes(ctx context.Context, fleet string, from, to int64) ([]*fleetMinuteRow, error) {
	return s.readMergedRows(ctx, s.db, tableFleetMinutes, fleet, from, to)
}

// readMergedRows reads fleet's rows of table (pulsegate_fleet_minutes or
// pulsegate_fleet_hours, same columns) starting in [from, to), oldest first.
func (s *SQL) readMergedRows(ctx context.Context, q rowsQueryer, table, fleet string, from, to int64) ([]*fleetMinuteRow, error) {
	key := "minute_us"
	if table == tableFleetHours {
		key = "hour_us"
	}
	rows, err := q.QueryContext(ctx, s.rebind(`SELECT `+key+`, rows_merged, doc, insts FROM `+table+`
 WHERE fleet = ? AND `+key+` >= ? AND `+key+` < ? AND rows_merged > 0 ORDER BY `+key), fleet, from, to)
	if err != nil {
		return nil, s.classify("reading", table, err)
	}
	defer rows.Close()
	var out []*fleetMinuteRow
	for rows.Next() {
		var us int64
		var doc, insts string
		m := &fleetMinuteRow{}
		if err := rows.Scan(&us, &m.rows, &doc, &insts); err != nil {
			return nil, s.classify("reading", table, err)
		}
		m.start = time.UnixMicro(us).UTC()
		if err := json.Unmarshal([]byte(doc), &m.doc); err != nil {
			return nil, fmt.Errorf("decoding row from %s: %w", table, err)
		}
		if m.insts, m.order, err = decodeInsts(insts); err != nil {
			return nil, fmt.Errorf("decoding row from %s: %w", table, err)
		}
		out = append(out, m)
	}
	if err := rows.Err(); err != nil {
		return nil, s.classify("reading", table, err)
	}
	return out, nil
}

// fleetMinutesSpan is the minutes fleet's minute rows cover, [lo, hi)
// microseconds (lo == hi when none).
func (s *SQL) fleetMinutesSpan(ctx context.Context, fleet string) (lo, hi int64, err error) {
	var a, b sql.NullInt64
	if err := s.db.QueryRowContext(ctx, s.rebind(`SELECT MIN(minute_us), MAX(minute_us) FROM pulsegate_fleet_minutes WHERE fleet = ?`), fleet).Scan(&a, &b); err != nil {
		return 0, 0, s.classify("reading", tableFleetMinutes, err)
	}
	if !a.Valid {
		return 0, 0, nil
	}
	return a.Int64, b.Int64 + fleetMinute.Microseconds(), nil
}
