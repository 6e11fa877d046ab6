package report

import (
	"fmt"
	"maps"
	"math"
	"slices"
	"sort"
	"time"

	"github.com/pulsegate/pulsegate/store"
)

// Flapping: a rule flaps when FlapOccurrences of its occurrences (same
// rule and subject) begin within FlapWindow: it resolved and fired again
// at least FlapOccurrences−1 times within the hour.
const (
	FlapOccurrences = 4
	FlapWindow      = time.Hour
)

// FlappingCriterion states the rule, for the JSON and the docs.
var FlappingCriterion = fmt.Sprintf("%d or more occurrences of one rule (same subject) beginning within %s", FlapOccurrences, "60 minutes")

// IgnoredCriterion: a threshold's alerts are reported as ignored when at
// least IgnoredMinAlerts occurred and IgnoredShare or more of them
// resolved (or are still firing) without an acknowledgement.
const (
	IgnoredMinAlerts = 5
	IgnoredShare     = 0.8
)

// Alerts are the period's alert statistics.
type Alerts struct {
	// Total is the number of alert occurrences active at some time in the period.
	Total int `json:"total"`
	// Rules are per rule, most occurrences first.
	Rules []RuleStats `json:"rules"`
	// FlappingCriterion says when a rule is flapping.
	FlappingCriterion string `json:"flapping_criterion"`
	// ConfigChanges are the configuration changes of the period (audit log).
	ConfigChanges []ConfigChange `json:"config_changes"`
}

// RuleStats is one alert rule over the period.
type RuleStats struct {
	Rule string `json:"rule"`
	// Metric is the figure the rule reads.
	Metric string `json:"metric"`
	// Count is the occurrences active at some time in the period.
	Count int `json:"count"`
	// Active is how many are still firing or acknowledged now.
	Active int `json:"active"`
	// FiringSeconds is the time any occurrence was active within the
	// period, summed over occurrences (seconds).
	FiringSeconds float64 `json:"firing_seconds"`
	// Acknowledged and Ignored split Count: acknowledged at some point, or
	// never (resolved or still firing without one).
	Acknowledged int `json:"acknowledged"`
	Ignored      int `json:"ignored"`
	// Median and longest time from first seen to acknowledgement, and to
	// resolution (seconds); null when none was acknowledged / resolved.
	MedianTimeToAcknowledgeSeconds *float64 `json:"median_time_to_acknowledge_seconds"`
	MaxTimeToAcknowledgeSeconds    *float64 `json:"max_time_to_acknowledge_seconds"`
	MedianTimeToResolveSeconds     *float64 `json:"median_time_to_resolve_seconds"`
	MaxTimeToResolveSeconds        *float64 `json:"max_time_to_resolve_seconds"`
	// Cycles counts fire→resolve cycles (resolved occurrences) in the period.
	Cycles int `json:"cycles"`
	// MaxOccurrencesPerHour is the most occurrences of one subject that
	// began within 60 minutes.
	MaxOccurrencesPerHour int `json:"max_occurrences_per_hour"`
	// Flapping: MaxOccurrencesPerHour reached FlapOccurrences.
	Flapping bool `json:"flapping"`
	// Instances (fleet report) are the instances the rule's occurrences
	// fired on, sorted.
	Instances []string `json:"instances,omitempty"`
}

// ConfigChange is one configuration change from the audit log.
type ConfigChange struct {
	Time     time.Time      `json:"time"`
	By       string         `json:"by"`
	Instance string         `json:"instance,omitempty"`
	Changes  []store.Change `json:"changes"`
}

// occurrence is one alert clipped to the period.
type occurrence struct {
	a     store.AlertRecord
	start time.Time
	end   time.Time // now when still active
}

// secondsIn is how long o fired inside w (0 when it did not).
func (o occurrence) secondsIn(w Window) float64 {
	st, en := o.start, o.end
	if st.Before(w.From) {
		st = w.From
	}
	if en.After(w.To) {
		en = w.To
	}
	if !en.After(st) {
		return 0
	}
	return en.Sub(st).Seconds()
}

// inPeriod returns the alerts active at some time in w, clipped, oldest first.
func inPeriod(as []store.AlertRecord, w Window, now time.Time) []occurrence {
	var out []occurrence
	for _, a := range as {
		end := now
		if a.ResolvedAt != nil {
			end = *a.ResolvedAt
		} else if !a.Active() {
			end = a.LastSeen
		}
		if !a.FirstSeen.Before(w.To) || end.Before(w.From) {
			continue
		}
		out = append(out, occurrence{a: a, start: a.FirstSeen, end: end})
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].start.Before(out[j].start) })
	return out
}

// buildAlerts computes the statistics; instances are a fleet's alerts'
// instances by alert id (nil for an instance report).
func buildAlerts(as []store.AlertRecord, instances map[string][]string, audit []store.AuditEntry, w Window, now time.Time) Alerts {
	out := Alerts{Rules: []RuleStats{}, FlappingCriterion: FlappingCriterion, ConfigChanges: []ConfigChange{}}
	occ := inPeriod(as, w, now)
	out.Total = len(occ)
	by := map[string][]occurrence{}
	var order []string
	for _, o := range occ {
		if _, ok := by[o.a.Rule]; !ok {
			order = append(order, o.a.Rule)
		}
		by[o.a.Rule] = append(by[o.a.Rule], o)
	}
	for _, rule := range order {
		rs := ruleStats(rule, by[rule], w)
		if instances != nil {
			set := map[string]bool{}
			for _, o := range by[rule] {
				for _, in := range instances[o.a.ID] {
					set[in] = true
				}
			}
			rs.Instances = slices.Sorted(maps.Keys(set))
		}
		out.Rules = append(out.Rules, rs)
	}
	sort.SliceStable(out.Rules, func(i, j int) bool { return out.Rules[i].Count > out.Rules[j].Count })
	for _, e := range audit {
		if e.Action == store.ActionConfigUpdate && e.Outcome == store.OutcomeOK {
			out.ConfigChanges = append(out.ConfigChanges, ConfigChange{Time: e.Time, By: e.Actor, Instance: e.Instance, Changes: e.Changes})
		}
	}
	return out
}

func ruleStats(rule string, os []occurrence, w Window) RuleStats {
	s := RuleStats{Rule: rule, Count: len(os)}
	var toAck, toResolve []float64
	starts := map[string][]time.Time{} // by subject
	for _, o := range os {
		if s.Metric == "" {
			s.Metric = o.a.Metric
		}
		if o.a.Active() {
			s.Active++
		}
		s.FiringSeconds += o.secondsIn(w)
		if o.a.AcknowledgedAt != nil {
			s.Acknowledged++
			toAck = append(toAck, o.a.AcknowledgedAt.Sub(o.a.FirstSeen).Seconds())
		} else {
			s.Ignored++
		}
		if o.a.ResolvedAt != nil {
			toResolve = append(toResolve, o.a.ResolvedAt.Sub(o.a.FirstSeen).Seconds())
			if !o.a.ResolvedAt.After(w.To) {
				s.Cycles++
			}
		}
		starts[o.a.Subject] = append(starts[o.a.Subject], o.start)
	}
	s.FiringSeconds = math.Round(s.FiringSeconds)
	for _, ts := range starts {
		j := 0
		for i := range ts {
			for ts[i].Sub(ts[j]) >= FlapWindow {
				j++
			}
			s.MaxOccurrencesPerHour = max(s.MaxOccurrencesPerHour, i-j+1)
		}
	}
	s.Flapping = s.MaxOccurrencesPerHour >= FlapOccurrences
	s.MedianTimeToAcknowledgeSeconds, s.MaxTimeToAcknowledgeSeconds = num(quantile(toAck, 0.5)), num(quantile(toAck, 1))
	s.MedianTimeToResolveSeconds, s.MaxTimeToResolveSeconds = num(quantile(toResolve, 0.5)), num(quantile(toResolve, 1))
	return s
}
