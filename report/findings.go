package report

import (
	"fmt"
	"slices"
)

// findings collects what the review should act on, from the sections.
func findings(r *Report) []Finding {
	out := []Finding{}
	for _, rt := range r.Routes.Worse {
		out = append(out, rt.finding())
	}
	keysOf := func(rule, metric string) []string {
		var ks []string
		for _, th := range r.Thresholds {
			if th.Figure != metric && !slices.Contains(th.Rules, rule) {
				continue
			}
			for _, l := range th.Levels {
				if l.Value != nil && l.Key != "" && !slices.Contains(ks, l.Key) {
					ks = append(ks, l.Key)
				}
			}
		}
		return ks
	}
	for _, rs := range r.Alerts.Rules {
		if rs.Flapping {
			out = append(out, Finding{Kind: FindingFlappingRule, Subject: rs.Rule, ConfigKeys: keysOf(rs.Rule, rs.Metric),
				Message: fmt.Sprintf("alert rule %s is flapping: %d fire/resolve cycles in the period, up to %d occurrences within an hour", rs.Rule, rs.Cycles, rs.MaxOccurrencesPerHour)})
		}
	}
	for _, th := range r.Thresholds {
		if th.Alerts >= IgnoredMinAlerts && float64(th.Ignored) >= IgnoredShare*float64(th.Alerts) {
			var ks []string
			for _, l := range th.Levels {
				if l.Value != nil {
					ks = append(ks, l.Key)
				}
			}
			out = append(out, Finding{Kind: FindingIgnoredAlerts, Subject: th.Figure, ConfigKeys: ks,
				Message: fmt.Sprintf("%d of %d %s alerts were never acknowledged: the threshold may be too tight, or nobody watches it", th.Ignored, th.Alerts, th.Figure)})
		}
	}
	for _, res := range r.Capacity.Resources {
		if p := res.Projection; p != nil && p.FullInDays <= FillingHorizonDays {
			out = append(out, Finding{Kind: FindingResourceFilling, Subject: res.Figure, Message: p.Message})
		}
	}
	return out
}
