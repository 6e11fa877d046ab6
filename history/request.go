package history

import (
	"errors"
	"fmt"
	"net/url"
	"time"
)

// longRanges are every range the history endpoint serves: the ring's
// (ringRanges) and the archive's.
var longRanges = map[string]time.Duration{
	"15m": 15 * time.Minute, "1h": time.Hour, "24h": 24 * time.Hour,
	"7d": 7 * 24 * time.Hour, "30d": 30 * 24 * time.Hour, "90d": 90 * 24 * time.Hour, "365d": 365 * 24 * time.Hour,
}

// RangeNames lists longRanges in order, for error messages and docs.
const RangeNames = "15m, 1h, 24h, 7d, 30d, 90d or 365d"

// Request is one history query: a named range ending now, or from/to.
type Request struct {
	Name     string // "" for from/to
	From, To time.Time
}

// ParamError is a bad query parameter; Param names it.
type ParamError struct{ Param, Problem string }

func (e *ParamError) Error() string { return e.Param + ": " + e.Problem }

// ParseRequest reads range, or from and to (RFC 3339; to defaults to
// now), from q. No parameter means range=15m.
func ParseRequest(q url.Values, now time.Time) (Request, error) {
	fromS, toS, name := q.Get("from"), q.Get("to"), q.Get("range")
	if fromS == "" && toS == "" {
		if name == "" {
			name = "15m"
		}
		d, ok := longRanges[name]
		if !ok {
			return Request{}, &ParamError{"range", fmt.Sprintf("want %s (or from and to), got %q", RangeNames, name)}
		}
		return Request{Name: name, From: now.Add(-d), To: now}, nil
	}
	if name != "" {
		return Request{}, &ParamError{"range", "give either range or from/to, not both"}
	}
	if fromS == "" {
		return Request{}, &ParamError{"from", "required with to (RFC 3339, e.g. 2026-03-01T12:00:00Z)"}
	}
	from, err := time.Parse(time.RFC3339, fromS)
	if err != nil {
		return Request{}, &ParamError{"from", fmt.Sprintf("want an RFC 3339 time (e.g. 2026-03-01T12:00:00Z), got %q", fromS)}
	}
	to := now
	if toS != "" {
		if to, err = time.Parse(time.RFC3339, toS); err != nil {
			return Request{}, &ParamError{"to", fmt.Sprintf("want an RFC 3339 time (e.g. 2026-03-01T12:00:00Z), got %q", toS)}
		}
	}
	if !from.Before(to) {
		return Request{}, &ParamError{"from", "must be before to"}
	}
	if to.Sub(from) > 400*24*time.Hour {
		return Request{}, &ParamError{"from", "the range from..to must not exceed 400 days"}
	}
	return Request{From: from, To: to}, nil
}

// Tier picks the tier for a span: 10 s up to 24 h, 1 min up to 14 days,
// 1 h beyond.
func Tier(span time.Duration) int {
	switch {
	case span <= 24*time.Hour:
		return Tier10s
	case span <= 14*24*time.Hour:
		return Tier1m
	}
	return Tier1h
}

// Reader answers history requests from the ring (10 s, the last 24 h)
// and the archive (older 10 s points and the rollups). Archive may be nil
// (no data_dir history): the ring alone then answers, and longer ranges
// come back empty.
type Reader struct {
	Ring    *History
	Archive *Archive
	// Now is the clock the route methods pick their tier by (nil = time.Now).
	Now func() time.Time
	// HourlyRoutes makes the route methods read the 1 h tier whatever the
	// span (a report merges days: 1 min rows would cost 60 times the reading).
	HourlyRoutes bool
	// Routes, when set, is where the route methods (RouteRollups,
	// RouteNames, RouteView, Releases) read instead of Archive: the shared
	// store's rows of the fleet or of one instance.
	Routes RouteStore
}

// routeStore is where the route methods read: Routes, else the archive;
// nil when neither is there.
func (r Reader) routeStore() RouteStore {
	if r.Routes != nil {
		return r.Routes
	}
	if r.Archive != nil {
		return r.Archive
	}
	return nil
}

// routeTier is the tier the route methods read for a span starting at
// from (routeStore is not nil).
func (r Reader) routeTier(from time.Time) int {
	if r.HourlyRoutes {
		return Tier1h
	}
	return r.routeStore().RouteTier(from, r.now())
}

// View answers req. The named ranges 15m, 1h and 24h are answered from
// the ring exactly as before the archive existed.
func (r Reader) View(req Request, now time.Time) (View, error) {
	if r.Ring == nil {
		return View{}, errors.New("history is not kept")
	}
	span := req.To.Sub(req.From)
	tier := Tier(span)
	if tier == Tier10s {
		if _, ok := ringRanges[req.Name]; ok {
			return r.Ring.Query(req.Name, span, now), nil
		}
		ringFrom := now.Add(-time.Duration(r.Ring.Capacity()) * r.Ring.Resolution())
		if !req.From.Before(ringFrom) || r.Archive == nil {
			return r.Ring.QueryRange(req.Name, req.From, req.To), nil
		}
	}
	if r.Archive == nil {
		v := View{Range: req.Name, Tier: tierNames[tier], StepSeconds: tierSteps[tier], ResolutionSeconds: tierSteps[tier],
			From: req.From.Unix(), To: req.To.Unix(), Time: []int64{}, Health: []string{}, Series: map[string][]*float64{}, Versions: []*string{}}
		for _, n := range seriesNames {
			v.Series[n] = []*float64{}
		}
		return v, nil
	}
	return r.Archive.Query(req.Name, tier, req.From, req.To)
}
