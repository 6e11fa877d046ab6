package probes

import (
	"maps"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// Store keeps the latest Result of each probe. Writers (the Runner) copy
// the whole table on Set; readers load an immutable table through an atomic
// pointer, so a reader never waits for a writer and never for a probe.
// The zero Store is not usable: call NewStore.
type Store struct {
	mu    sync.Mutex // serialises writers only
	state atomic.Pointer[storeState]
}

type storeState struct {
	results     map[string]Result
	lastSuccess map[string]time.Time
}

// NewStore returns an empty Store.
func NewStore() *Store {
	s := &Store{}
	s.state.Store(&storeState{results: map[string]Result{}, lastSuccess: map[string]time.Time{}})
	return s
}

// Set records r as the latest result of r.Probe. A result whose status is
// ok, warning or critical (the target answered) also moves the probe's
// last-success time to the end of that run.
func (s *Store) Set(r Result) {
	r = copyResult(r)
	s.mu.Lock()
	defer s.mu.Unlock()
	old := s.state.Load()
	next := &storeState{
		results:     maps.Clone(old.results),
		lastSuccess: maps.Clone(old.lastSuccess),
	}
	next.results[r.Probe] = r
	if r.Status.Reached() {
		next.lastSuccess[r.Probe] = r.Started.Add(r.Duration)
	}
	s.state.Store(next)
}

// Get returns the latest result of the named probe.
func (s *Store) Get(name string) (Result, bool) {
	r, ok := s.state.Load().results[name]
	if !ok {
		return Result{}, false
	}
	return copyResult(r), true
}

// LastSuccess returns the end of the named probe's last run that reached
// its target (status ok, warning or critical).
func (s *Store) LastSuccess(name string) (time.Time, bool) {
	t, ok := s.state.Load().lastSuccess[name]
	return t, ok
}

// Names returns the probes that have a result, sorted.
func (s *Store) Names() []string {
	return slices.Sorted(maps.Keys(s.state.Load().results))
}

// Snapshot returns a copy of every probe's latest result, keyed by probe
// name. Reasons and Figures are copied; Details is shared (probes never
// change a Details value after returning it).
func (s *Store) Snapshot() map[string]Result {
	st := s.state.Load()
	out := make(map[string]Result, len(st.results))
	for k, r := range st.results {
		out[k] = copyResult(r)
	}
	return out
}

// Figures returns every probe's figures merged into one map (the names in
// docs/ARCHITECTURE.md are distinct across probes). Probes that are down
// or disabled contribute nothing: their last numbers are not current.
func (s *Store) Figures() map[string]float64 {
	st := s.state.Load()
	out := make(map[string]float64)
	for _, name := range slices.Sorted(maps.Keys(st.results)) {
		r := st.results[name]
		if !r.Status.Reached() {
			continue
		}
		maps.Copy(out, r.Figures)
	}
	return out
}

// Reached reports whether a probe with this status got an answer from its
// target (ok, warning or critical), as opposed to down or disabled.
func (s Status) Reached() bool {
	return s == StatusOK || s == StatusWarning || s == StatusCritical
}

func copyResult(r Result) Result {
	r.Reasons = slices.Clone(r.Reasons)
	r.Figures = maps.Clone(r.Figures)
	return r
}
