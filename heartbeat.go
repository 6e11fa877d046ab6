package main

import (
	"maps"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/pulsegate/pulsegate/backpressure"
	"github.com/pulsegate/pulsegate/figures"
	"github.com/pulsegate/pulsegate/health"
	"github.com/pulsegate/pulsegate/monitor"
	"github.com/pulsegate/pulsegate/probes"
	"github.com/pulsegate/pulsegate/proxy"
	"github.com/pulsegate/pulsegate/store"
)

// heartbeats turns monitor ticks into the shared store's heartbeat rows:
// the verdict, the configuration version and the rollup of the interval
// since the previous tick (exact differences of the proxy's totals).
type heartbeats struct {
	mu   sync.Mutex
	prev proxy.Counters
	at   time.Time
	// rej is backpressure's rejection counters at the previous heartbeat.
	rej map[string]uint64
}

// heartbeat is the monitor's tick hook: it builds one heartbeat and hands
// it to the Writer (never waiting on the store).
func (a *app) heartbeat(t *monitor.Tick) {
	if a.writer == nil {
		return
	}
	a.writer.Heartbeat(a.buildHeartbeat(t))
}

func (a *app) buildHeartbeat(t *monitor.Tick) store.Heartbeat {
	cfg, _ := a.holder.Get()
	now := t.Time
	cur := a.proxy.Stats().Counters()
	a.hb.mu.Lock()
	prev, since := a.hb.prev, a.hb.at
	a.hb.prev, a.hb.at = cur, now
	a.hb.mu.Unlock()
	if since.IsZero() {
		since = a.started
	}
	d := cur.Sub(prev)
	interval := cfg.Responsiveness.MonitoringInterval.Duration()
	hb := store.Heartbeat{
		Fleet: a.fleetName, Instance: a.instance, Time: now, Interval: interval,
		ConfigVersion: a.configVersion(), // the fleet version it runs
	}
	v := a.withStore(t.Verdict)
	hb.Status, hb.Components = string(v.Status), components(v)
	r := &hb.Rollup
	r.Seconds = max(now.Sub(since).Seconds(), 0)
	// Rollups count answered requests: a client that went away got no answer.
	delete(d.Classes, "client_closed")
	delete(d.Errors, "client_closed")
	r.Requests, r.Errors = d.Classes, d.Errors
	r.Latency = store.Hist(d.Buckets)
	if d.Timed > 0 {
		r.Timing = map[string]float64{"count": float64(d.Timed), "total": float64(d.SumUS) / 1e6,
			"upstream_ttfb": float64(d.TTFBUS) / 1e6, "transfer": float64(d.TransferUS) / 1e6, "queue_wait": float64(d.QueueUS) / 1e6}
	}
	r.InFlight = int(a.proxy.Stats().InFlight())
	if bp := t.Backpressure; bp != nil {
		r.Queued, r.BackpressureMode = int(bp.Queued), bp.Mode
		if bp.Rejections != nil && a.chain != nil {
			r.Capacity = a.capacity(bp)
		}
	}
	fig := func(n figures.Name) *float64 {
		if v, ok := t.Figures[string(n)]; ok {
			return &v
		}
		return nil
	}
	r.CPU, r.Memory, r.Disk = fig(figures.CPUUsage), fig(figures.MemoryUsage), fig(figures.DiskUsage)
	if res, ok := a.runner.Store().Get(probes.DatabaseProbeName); ok {
		db := &store.DBFigures{PoolUtilization: fig(figures.ConnectionPoolUtilization), LatencySeconds: fig(figures.DBLatency)}
		if det, ok := res.Details.(*probes.DatabaseDetails); ok && det != nil {
			if det.AppPool != nil {
				db.PoolInUse, db.PoolSize = det.AppPool.Connections, det.AppPool.PoolSize
			} else if det.Connections != nil {
				db.PoolInUse, db.PoolSize = det.Connections.InUse, det.Connections.Limit
			}
		}
		r.DB = db
	}
	if lat, mem := fig(figures.RedisLatency), fig(figures.RedisMemoryUsage); lat != nil || mem != nil {
		rf := &store.RedisFigures{LatencySeconds: lat, MemoryUsage: mem}
		if q := fig(figures.JobQueueDepth); q != nil {
			n := int(*q)
			rf.QueueDepth = &n
		}
		r.Redis = rf
	}
	return hb
}

// capacity is backpressure's figures over the heartbeat's span: the
// growth of the rejection counters since the previous heartbeat (since
// start for the first; a counter lower than before, a restarted limiter,
// counts from zero), the peaks the limiter saw since then and the limit
// in force now.
func (a *app) capacity(bp *backpressure.State) *store.CapacityFigures {
	c := &store.CapacityFigures{ConcurrencyLimit: int64(bp.Limit)}
	c.PeakInFlight, c.PeakQueued = a.chain.TakePeaks()
	a.hb.mu.Lock()
	prev := a.hb.rej
	a.hb.rej = maps.Clone(bp.Rejections)
	a.hb.mu.Unlock()
	for reason, n := range bp.Rejections {
		if p := prev[reason]; n >= p {
			n -= p
		}
		c.Rejections += n
		// The causes of the history's rejection series (docs/history.md).
		switch {
		case reason == "rate" || reason == "rate_client":
			c.RejectedRateLimit += n
		case reason == "queue_full" || reason == "queue_timeout":
			c.RejectedQueue += n
		case strings.HasPrefix(reason, "overload:"):
			c.RejectedShed += n
		}
	}
	return c
}

// components are the verdict's components with their reasons (a reason
// "name level: text" belongs to component name).
func components(v health.Verdict) []store.Component {
	out := make([]store.Component, 0, len(v.Components))
	for name, lvl := range v.Components {
		c := store.Component{Name: name, Status: string(lvl)}
		var rs []string
		for _, r := range v.Reasons {
			if strings.HasPrefix(r, name+" ") {
				rs = append(rs, r)
			}
		}
		c.Reason = strings.Join(rs, "; ")
		out = append(out, c)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}
