package history

import (
	"fmt"
	"math/rand/v2"
	"reflect"
	"testing"
	"time"
)

// TestReadRangeEqualsWhatFlushesHandedOver: three hours of flushes over
// four routes; ReadRange of each tier returns every 1 min and 1 h point
// and route row exactly as the last flush that touched it handed it to
// OnFlush (what the live copy writes to the shared store), and
// CountRange counts them; a window returns only the rows starting in it.
func TestReadRangeEqualsWhatFlushesHandedOver(t *testing.T) {
	a := openArchive(t, t.TempDir(), DefaultRetention)
	defer a.Close()
	src := newFakeCounters()
	a.SetRouteSource(src.read, 0)
	type key struct {
		tier           int
		route, version string
		start          int64
	}
	last := map[key]any{}
	a.OnFlush(func(f Flushed) {
		for _, r := range f.Routes {
			tier := Tier1m
			if r.Step == time.Hour {
				tier = Tier1h
			}
			last[key{tier, r.Route, r.Version, r.Start.Unix()}] = trimmed(r)
		}
		for _, p := range f.Points {
			last[key{p.Tier, "", "", p.Start.Unix()}] = p
		}
	})
	ring := mustHistory(t, 10*time.Second, time.Hour)
	rnd := rand.New(rand.NewPCG(1, 2))
	start := time.Date(2026, 4, 1, 9, 0, 0, 0, time.UTC)
	end := start.Add(3 * time.Hour)
	for at := start; at.Before(end); at = at.Add(time.Minute) {
		for i := range 4 {
			for range rnd.IntN(5) {
				src.add(fmt.Sprintf("/r%d", i), "v1", time.Duration(1+rnd.IntN(90))*time.Millisecond, rnd.IntN(20) == 0)
			}
		}
		for s := range 6 {
			ring.Record(trafficTick(at.Add(time.Duration(s)*10*time.Second), 2, 0.01, 0.05, 0.3))
		}
		if err := a.Flush(ring, at.Add(time.Minute)); err != nil {
			t.Fatal(err)
		}
	}
	for _, tier := range []int{Tier1m, Tier1h} {
		f, err := a.ReadRange(tier, start.Add(-time.Hour), end.Add(time.Hour))
		if err != nil {
			t.Fatal(err)
		}
		got := map[key]any{}
		for _, r := range f.Routes {
			got[key{tier, r.Route, r.Version, r.Start.Unix()}] = trimmed(r)
		}
		for _, p := range f.Points {
			got[key{p.Tier, "", "", p.Start.Unix()}] = p
		}
		want := map[key]any{}
		for k, v := range last {
			if k.tier == tier {
				want[k] = v
			}
		}
		if len(want) == 0 || !reflect.DeepEqual(got, want) {
			t.Errorf("tier %s: ReadRange returned %d rows, the flushes handed over %d (or they differ)", tierNames[tier], len(got), len(want))

		}
		p, r, err := a.CountRange(tier, start.Add(-time.Hour), end.Add(time.Hour))
		if err != nil || p != len(f.Points) || r != len(f.Routes) {
			t.Errorf("tier %s: CountRange = %d points, %d routes, %v; ReadRange read %d, %d", tierNames[tier], p, r, err, len(f.Points), len(f.Routes))
		}
	}
	from, to := start.Add(time.Hour), start.Add(time.Hour+10*time.Minute)
	f, err := a.ReadRange(Tier1m, from, to)
	if err != nil || len(f.Points) != 10 {
		t.Fatalf("a 10-minute window: %d points, %v", len(f.Points), err)
	}
	for _, r := range f.Routes {
		if r.Start.Before(from) || !r.Start.Before(to) {
			t.Errorf("route row at %v outside [%v, %v)", r.Start, from, to)
		}
	}
	if _, err := a.ReadRange(Tier10s, from, to); err == nil {
		t.Error("ReadRange of the 10 s tier: want an error")
	}
}

// trimmed is r with its buckets cut after the last non-empty one (the
// stored form: a flush hands over the counters' full length).
func trimmed(r RouteRollup) RouteRollup {
	n := len(r.Buckets)
	for n > 0 && r.Buckets[n-1] == 0 {
		n--
	}
	r.Buckets = r.Buckets[:n:n]
	return r
}
