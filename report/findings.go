package report

import (
	"fmt"
	"slices"
	"strings"
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
	if f, ok := rejectionsFinding(r.Capacity.Rejections); ok {
		out = append(out, f)
	}
	for _, res := range r.Capacity.Resources {
		if p := res.Projection; p != nil && p.FullInDays <= FillingHorizonDays {
			out = append(out, Finding{Kind: FindingResourceFilling, Subject: res.Figure, Message: p.Message})
		}
	}
	return out
}

// rejectionsFinding names the period's rejections, if there were any:
// how many, by cause, the worst hour and the previous period's.
func rejectionsFinding(rj Rejections) (Finding, bool) {
	p := rj.Period
	if p.Total == nil || *p.Total < 1 {
		return Finding{}, false
	}
	f := Finding{Kind: FindingRejections, Subject: "rejections_rps"}
	var causes []string
	for _, c := range rejectionCauses {
		if n := p.cause(c.name); n != nil && *n > 0 {
			causes = append(causes, fmt.Sprintf("%s %d", c.name, *n))
			f.ConfigKeys = append(f.ConfigKeys, c.keys...)
		}
	}
	msg := fmt.Sprintf("pulsegate rejected %d requests in the period (%.1f a day", *p.Total, *p.PerDay)
	if len(causes) > 0 {
		msg += "; " + strings.Join(causes, ", ")
	}
	msg += ")"
	if rj.PeakHour != nil {
		msg += fmt.Sprintf(", most in the hour from %s (%d)", rj.PeakHour.Format("2006-01-02 15:04Z"), *rj.PeakHourRejections)
	}
	if pv := rj.Previous.Total; pv != nil {
		msg += fmt.Sprintf("; %d in the previous period", *pv)
	}
	f.Message = msg
	return f, true
}
