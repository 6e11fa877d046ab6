// Package history keeps a bounded ring of monitor ticks for the trend
// graphs (the dashboard's GET /admin/responsiveness/api/history): one
// point per resolution step, the worst value of each figure in the step.
// The monitor feeds it after every tick (Monitor.OnTick(h.Record)).
package history

import (
	"errors"
	"math"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pulsegate/pulsegate/figures"
	"github.com/pulsegate/pulsegate/health"
	"github.com/pulsegate/pulsegate/monitor"
)

// Indexes into point.v, one per series; numSeries counts them.
const (
	sMemory = iota
	sCPU
	sDisk
	sDBPool
	sDBLatency
	sRedisLatency
	sRedisMemory
	sAvg
	sP50
	sP95
	sP99
	sRPS
	sErrorRate
	sApdex
	sSlow
	sQueue
	sInFlight
	sRejections
	sRejRateLimit
	sRejQueue
	sRejShed
	numSeries
)

// The rejection series: pulsegate's own 429/503 answers per second, in
// all and by cause (rejCauses maps backpressure's reasons to them).
const (
	firstRejSeries = sRejections
	numRejSeries   = numSeries - sRejections
)

// seriesNames names each series, in the order of the JSON "series"
// object; the array length makes the compiler keep it in step with the
// indexes. Fractions are 0..1, times in seconds.
var seriesNames = [numSeries]string{
	sMemory:       string(figures.MemoryUsage),
	sCPU:          string(figures.CPUUsage),
	sDisk:         string(figures.DiskUsage),
	sDBPool:       string(figures.ConnectionPoolUtilization),
	sDBLatency:    string(figures.DBLatency),
	sRedisLatency: string(figures.RedisLatency),
	sRedisMemory:  string(figures.RedisMemoryUsage),
	sAvg:          string(figures.AvgResponseTime),
	sP50:          "p50_response_time",
	sP95:          string(figures.P95ResponseTime),
	sP99:          "p99_response_time",
	sRPS:          string(figures.ThroughputRPS),
	sErrorRate:    string(figures.ErrorRate),
	sApdex:        string(figures.Apdex),
	sSlow:         "slow_requests",
	sQueue:        string(figures.QueueDepth),
	sInFlight:     "in_flight",
	// Appended after the series above (their order is the JSON's and the
	// archive's; rows written before these read them as not measured).
	sRejections:   "rejections_rps",
	sRejRateLimit: "rejections_rate_limit_rps",
	sRejQueue:     "rejections_queue_rps",
	sRejShed:      "rejections_shed_rps",
}

// rejCause is the cause series of a backpressure rejection reason
// (backpressure.Reasons): the rate limiters (rate, rate_client), the
// concurrency queue (queue_full, queue_timeout) or shedding
// (overload:<signal>). Every reason also counts in rejections_rps.
func rejCause(reason string) (int, bool) {
	switch {
	case reason == "rate" || reason == "rate_client":
		return sRejRateLimit, true
	case reason == "queue_full" || reason == "queue_timeout":
		return sRejQueue, true
	case strings.HasPrefix(reason, "overload:"):
		return sRejShed, true
	}
	return 0, false
}

// Series names the figures the history keeps, in the order of the JSON
// "series" object.
func Series() []string { return append([]string(nil), seriesNames[:]...) }

// figureSeries maps a monitor figure to the series it feeds.
var figureSeries = map[string]int{
	string(figures.MemoryUsage):               sMemory,
	string(figures.CPUUsage):                  sCPU,
	string(figures.DiskUsage):                 sDisk,
	string(figures.ConnectionPoolUtilization): sDBPool,
	string(figures.DBLatency):                 sDBLatency,
	string(figures.RedisLatency):              sRedisLatency,
	string(figures.RedisMemoryUsage):          sRedisMemory,
	string(figures.QueueDepth):                sQueue,
}

// Health levels as stored in a point; higher is worse.
const (
	healthUnknown uint8 = iota
	healthHealthy
	healthWarning
	healthCritical
)

var healthNames = [...]string{"", "healthy", "warning", "critical"}

// point is one step of history: the worst value of each figure over the
// ticks that fell into the step (the highest; for Apdex the lowest).
// The rejection series are the exception: their value is the rate over
// the time the step's ticks covered (rejSecs), not the worst tick.
// NaN means not measured. 8 + 4 + 21×4 + 4 + 16 = 120 bytes.
type point struct {
	step    int64 // unix seconds ÷ resolution; 0 = empty slot
	ticks   uint16
	health  uint8
	v       [numSeries]float32
	rejSecs float32 // seconds of counter growth behind the rejection rates (0 = none)
	ver     string  // the app version at the step's last tick ("" unknown)
}

// History is a bounded in-memory ring of monitor ticks for the trend
// graphs: one point per resolution step over the retention period
// (24 h at 10 s = 8640 points of 120 bytes, about 1 MB). It is safe for concurrent use.
type History struct {
	res     time.Duration
	version atomic.Pointer[func() string] // the app's version at a tick (SetVersion)
	mu      sync.RWMutex
	ring    []point
	last    int64 // newest step recorded
	// The previous tick's rejection counters (total, then by cause) and
	// its time: Record turns their growth into the rejection rates. A
	// zero rejAt means no baseline (before the first tick with counters).
	rejPrev [numRejSeries]uint64
	rejAt   time.Time
}

// New returns an empty ring of retention ÷ resolution points.
func New(resolution, retention time.Duration) (*History, error) {
	if resolution < time.Second || resolution%time.Second != 0 {
		return nil, errors.New("history resolution: want a whole number of seconds, at least 1")
	}
	if retention < resolution {
		return nil, errors.New("history retention: want at least one resolution step")
	}
	n := int(retention / resolution)
	if n > 1_000_000 {
		return nil, errors.New("history retention: more than 1 000 000 points")
	}
	return &History{res: resolution, ring: make([]point, n)}, nil
}

// SetVersion makes every later tick record the app version f returns
// (the proxy's current version): history rows carry it.
func (h *History) SetVersion(f func() string) { h.version.Store(&f) }

// Resolution is the length of one step.
func (h *History) Resolution() time.Duration { return h.res }

// Capacity is the number of points the ring holds.
func (h *History) Capacity() int { return len(h.ring) }

func (h *History) stepOf(t time.Time) int64 { return t.Unix() / int64(h.res/time.Second) }

// Record adds a tick (monitor.Monitor.OnTick calls it after every tick).
func (h *History) Record(t *monitor.Tick) {
	if t == nil || t.Time.IsZero() {
		return
	}
	var v [numSeries]float32
	for i := range v {
		v[i] = float32(math.NaN())
	}
	for name, val := range t.Figures {
		if i, ok := figureSeries[name]; ok && !math.IsNaN(val) && !math.IsInf(val, 0) {
			v[i] = float32(val)
		}
	}
	r := t.Requests
	set := func(i int, p *float64) {
		if p != nil {
			v[i] = float32(*p)
		}
	}
	set(sAvg, r.AvgResponseTime)
	set(sP50, r.P50)
	set(sP95, r.P95)
	set(sP99, r.P99)
	set(sApdex, r.Apdex)
	if r.Window != "" {
		v[sRPS] = float32(r.ThroughputRPS)
		v[sErrorRate] = float32(r.ErrorRate)
		v[sSlow] = float32(r.SlowRequests)
	}
	var rejNow [numRejSeries]uint64
	rejMeasured := false
	if bp := t.Backpressure; bp != nil {
		v[sInFlight] = float32(bp.InFlight)
		v[sQueue] = float32(bp.Queued)
		if bp.Rejections != nil {
			rejMeasured = true
			for reason, n := range bp.Rejections {
				rejNow[0] += n
				if i, ok := rejCause(reason); ok {
					rejNow[i-firstRejSeries] += n
				}
			}
		}
	}
	hl := healthUnknown
	switch t.Verdict.Status {
	case health.Healthy:
		hl = healthHealthy
	case health.Warning:
		hl = healthWarning
	case health.Critical:
		hl = healthCritical
	}

	var ver string
	if f := h.version.Load(); f != nil {
		ver = (*f)()
	}
	step := h.stepOf(t.Time)
	h.mu.Lock()
	defer h.mu.Unlock()
	secs := h.rejectionRates(&v, rejMeasured, rejNow, t.Time)
	if step <= h.last-int64(len(h.ring)) {
		return // older than the whole ring (a clock step backwards)
	}
	p := &h.ring[step%int64(len(h.ring))]
	if p.step != step {
		if p.step > step {
			return // the slot already holds a newer step
		}
		*p = point{step: step, v: v, health: hl, ticks: 1, ver: ver, rejSecs: secs}
	} else {
		p.mergeTick(v, hl, secs)
		if ver != "" {
			p.ver = ver
		}
	}
	h.last = max(h.last, step)
}

// rejectionRates sets v's rejection series to the growth of the
// backpressure counters since the previous tick, per second, and returns
// the seconds they cover (0 when not measured: no counters, no earlier
// tick with counters, or the clock went backwards). A counter lower than
// before (a restarted limiter) counts from zero. Called with h.mu held.
func (h *History) rejectionRates(v *[numSeries]float32, measured bool, now [numRejSeries]uint64, at time.Time) float32 {
	if !measured {
		h.rejAt = time.Time{}
		return 0
	}
	prev, prevAt := h.rejPrev, h.rejAt
	h.rejPrev, h.rejAt = now, at
	if prevAt.IsZero() || !at.After(prevAt) {
		return 0
	}
	dt := at.Sub(prevAt).Seconds()
	for i := range now {
		d := now[i]
		if d >= prev[i] {
			d -= prev[i]
		}
		v[firstRejSeries+i] = float32(float64(d) / dt)
	}
	return float32(dt)
}

func (p *point) merge(v [numSeries]float32, hl uint8) {
	for i, x := range v {
		p.v[i] = worst(i, p.v[i], x)
	}
	p.health = max(p.health, hl)
	if p.ticks < math.MaxUint16 {
		p.ticks++
	}
}

// mergeTick adds a tick to its step: the worst value of each series, but
// the rejection rates over the seconds both cover together (secs is the
// tick's share; so two 5 s ticks give the rate over the 10 s step).
func (p *point) mergeTick(v [numSeries]float32, hl uint8, secs float32) {
	rej, rejSecs := p.v, p.rejSecs
	p.merge(v, hl)
	if secs <= 0 {
		copy(p.v[firstRejSeries:], rej[firstRejSeries:])
		return
	}
	if rejSecs <= 0 {
		copy(p.v[firstRejSeries:], v[firstRejSeries:])
		p.rejSecs = secs
		return
	}
	for i := firstRejSeries; i < numSeries; i++ {
		p.v[i] = (rej[i]*rejSecs + v[i]*secs) / (rejSecs + secs)
	}
	p.rejSecs = rejSecs + secs
}

// worst keeps the worse of two observations: the lower Apdex, the higher
// anything else; a measured value beats NaN.
func worst(i int, a, b float32) float32 {
	switch {
	case a != a:
		return b
	case b != b:
		return a
	case i == sApdex:
		return min(a, b)
	}
	return max(a, b)
}

// ringRanges are the time ranges the in-memory ring serves (RingRange).
var ringRanges = map[string]time.Duration{"15m": 15 * time.Minute, "1h": time.Hour, "24h": 24 * time.Hour}

// RingRange is the length of a range the in-memory ring serves (15m, 1h, 24h).
func RingRange(name string) (time.Duration, bool) {
	d, ok := ringRanges[name]
	return d, ok
}

// MaxPoints bounds the points of one answer: longer ranges are merged into
// coarser steps (the worst value per step, as the ring itself keeps).
const MaxPoints = 720

// View is the history endpoint's JSON: column arrays, one entry
// per step that saw at least one tick, oldest first. Steps without ticks
// are left out, so a gap in Time is a gap in the data.
type View struct {
	// Range is the requested range, e.g. "1h" ("" for a from/to query).
	Range string `json:"range"`
	// Tier is the stored resolution the answer was read from: "10s"
	// (the in-memory ring, restored from the archive at start), "1m" or
	// "1h" (the archive's rollups).
	Tier string `json:"tier"`
	// StepSeconds is the length of one returned step.
	StepSeconds int64 `json:"step_seconds"`
	// ResolutionSeconds is the ring's own step.
	ResolutionSeconds int64 `json:"resolution_seconds"`
	// From and To bound the range (unix seconds).
	From int64 `json:"from"`
	To   int64 `json:"to"`
	// Time is each step's start (unix seconds).
	Time []int64 `json:"time"`
	// Health is the worst verdict in each step ("" before the first verdict).
	Health []string `json:"health"`
	// Series holds one column per name in Series; null = not measured.
	Series map[string][]*float64 `json:"series"`
	// Versions is the app version of each step (its last tick's; null =
	// unknown): app.version or the app's version header.
	Versions []*string `json:"versions"`
}

// Query returns the points of the last d before now, merged into steps of
// at least the resolution so that at most MaxPoints are returned.
func (h *History) Query(name string, d time.Duration, now time.Time) View {
	toStep := h.stepOf(now)
	return h.query(name, toStep-int64(d/h.res)+1, toStep)
}

// query answers the steps fromStep..toStep (inclusive).
func (h *History) query(name string, fromStep, toStep int64) View {
	resSec := int64(h.res / time.Second)
	per := int64(1)
	if n := toStep - fromStep + 1; n > MaxPoints {
		per = (n + MaxPoints - 1) / MaxPoints
	}
	stepSec := resSec * per
	out := View{Tier: "10s", Range: name, StepSeconds: stepSec, ResolutionSeconds: resSec,
		From: fromStep * resSec, To: (toStep + 1) * resSec, Series: make(map[string][]*float64, numSeries)}

	h.mu.RLock()
	var pts []point
	if n := int64(len(h.ring)); toStep-fromStep+1 > n {
		fromStep = toStep - n + 1
	}
	var cur point
	for s := fromStep; s <= toStep; s++ {
		p := h.ring[((s%int64(len(h.ring)))+int64(len(h.ring)))%int64(len(h.ring))]
		if p.step != s || p.ticks == 0 {
			continue
		}
		bucket := floorDiv(s, per) * per
		if cur.ticks > 0 && cur.step != bucket {
			pts = append(pts, cur)
			cur = point{}
		}
		if cur.ticks == 0 {
			cur = point{step: bucket, v: p.v, health: p.health, ticks: p.ticks, ver: p.ver}
		} else {
			cur.merge(p.v, p.health)
			if p.ver != "" {
				cur.ver = p.ver
			}
		}
	}
	if cur.ticks > 0 {
		pts = append(pts, cur)
	}
	h.mu.RUnlock()

	fillView(&out, len(pts), func(j int) (int64, uint8, *string, *[numSeries]float32) {
		p := &pts[j]
		return p.step * resSec, p.health, &p.ver, &p.v
	})
	return out
}

func floorDiv(a, b int64) int64 {
	q := a / b
	if (a%b != 0) && ((a < 0) != (b < 0)) {
		q--
	}
	return q
}

// round6 trims float32 noise (0.1 stored as 0.10000000149) for the JSON.
func round6(x float64) float64 {
	if math.Abs(x) >= 1e9 {
		return x
	}
	return math.Round(x*1e6) / 1e6
}

// fillView sets out's columns from n points: at(j) gives point j's start
// (unix seconds), health, app version ("" unknown) and values (NaN = not
// measured). The ring and the archive tiers answer through it.
func fillView(out *View, n int, at func(j int) (start int64, health uint8, ver *string, v *[numSeries]float32)) {
	out.Time = make([]int64, n)
	out.Health = make([]string, n)
	out.Versions = make([]*string, n)
	cols := make([][]*float64, numSeries)
	vals := make([]float64, n*numSeries) // one allocation for every value
	for i := range cols {
		cols[i] = make([]*float64, n)
	}
	for j := range n {
		start, health, ver, v := at(j)
		out.Time[j] = start
		out.Health[j] = healthNames[health]
		if *ver != "" {
			out.Versions[j] = ver
		}
		for i, x := range v {
			if x == x {
				k := j*numSeries + i
				vals[k] = round6(float64(x))
				cols[i][j] = &vals[k]
			}
		}
	}
	for i, name := range seriesNames {
		out.Series[name] = cols[i]
	}
}
