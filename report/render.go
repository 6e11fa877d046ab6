package report

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"time"
)

// Render writes r in format (text, markdown or json).
func Render(w io.Writer, r *Report, format string) error {
	switch format {
	case "json", "":
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(r)
	case "markdown":
		return renderDoc(w, r, true)
	case "text":
		return renderDoc(w, r, false)
	}
	_, err := ParseFormat(format)
	return err
}

// doc writes headings, paragraphs and tables as markdown or plain text.
type doc struct {
	b  strings.Builder
	md bool
}

func (d *doc) h(level int, s string) {
	if d.md {
		fmt.Fprintf(&d.b, "\n%s %s\n\n", strings.Repeat("#", level), s)
		return
	}
	fmt.Fprintf(&d.b, "\n%s\n%s\n", strings.ToUpper(s), strings.Repeat("=-"[min(level-1, 1):][:1], len(s)))
}

func (d *doc) p(format string, a ...any) { fmt.Fprintf(&d.b, format+"\n", a...) }

func (d *doc) item(format string, a ...any) { fmt.Fprintf(&d.b, "- "+format+"\n", a...) }

func (d *doc) table(head []string, rows [][]string) {
	if len(rows) == 0 {
		d.p("(none)")
		return
	}
	if d.md {
		esc := func(s string) string { return strings.ReplaceAll(s, "|", `\|`) }
		d.p("| %s |", strings.Join(head, " | "))
		seps := make([]string, len(head))
		for i := range seps {
			seps[i] = "---"
		}
		d.p("| %s |", strings.Join(seps, " | "))
		for _, r := range rows {
			cs := make([]string, len(r))
			for i, c := range r {
				cs[i] = esc(c)
			}
			d.p("| %s |", strings.Join(cs, " | "))
		}
		d.p("")
		return
	}
	width := make([]int, len(head))
	for i, h := range head {
		width[i] = len([]rune(h))
	}
	for _, r := range rows {
		for i, c := range r {
			width[i] = max(width[i], len([]rune(c)))
		}
	}
	line := func(cs []string) {
		var parts []string
		for i, c := range cs {
			parts = append(parts, c+strings.Repeat(" ", width[i]-len([]rune(c))))
		}
		d.p("  %s", strings.TrimRight(strings.Join(parts, "  "), " "))
	}
	line(head)
	for _, r := range rows {
		line(r)
	}
}

func pct(p *float64) string {
	if p == nil {
		return "–"
	}
	return fmt.Sprintf("%.2f%%", *p*100)
}

func secs(p *float64) string {
	if p == nil {
		return "–"
	}
	if *p < 1 {
		return fmt.Sprintf("%.0f ms", *p*1000)
	}
	return fmt.Sprintf("%.2f s", *p)
}

func fl(p *float64, f string) string {
	if p == nil {
		return "–"
	}
	return fmt.Sprintf(f, *p)
}

func change(p *float64) string {
	if p == nil {
		return "–"
	}
	return fmt.Sprintf("%+.1f%%", *p*100)
}

func dur(s float64) string {
	if s <= 0 {
		return "0"
	}
	return (time.Duration(s) * time.Second).Round(time.Second).String()
}

func durp(p *float64) string {
	if p == nil {
		return "–"
	}
	return dur(*p)
}

func count(p *int64) string {
	if p == nil {
		return "–"
	}
	return fmt.Sprintf("%d", *p)
}

func reqs(p *uint64) string {
	if p == nil {
		return "–"
	}
	return fmt.Sprintf("%d", *p)
}

func renderDoc(w io.Writer, r *Report, md bool) error {
	d := &doc{md: md}
	scope := r.Scope
	if r.Instance != "" {
		scope += " " + r.Instance
	}
	if r.Fleet != "" {
		scope = fmt.Sprintf("fleet %s, %d instances", r.Fleet, len(r.Instances))
	}
	title := fmt.Sprintf("pulsegate report: last %s (%s)", r.Since, scope)
	if md {
		d.p("## %s", title)
	} else {
		d.p("%s", title)
	}
	d.p("")
	d.p("Period %s → %s, compared with %s → %s; history tier %s; generated %s.", r.Period.From.Format(time.RFC3339), r.Period.To.Format(time.RFC3339),
		r.Previous.From.Format(time.RFC3339), r.Previous.To.Format(time.RFC3339), r.Tier, r.GeneratedAt.Format(time.RFC3339))
	if r.Fleet != "" {
		d.p("")
		d.p("Instances that reported in the period: %s. Series are merged over the instances (CPU and memory: the highest instance's), in points of %s.",
			strings.Join(r.Instances, ", "), dur(float64(r.StepSeconds)))
	}
	for _, p := range r.Problems {
		d.p("")
		d.p("Not available: %s", p)
	}

	d.h(3, "Findings")
	if len(r.Findings) == 0 {
		d.p("Nothing to act on.")
	}
	for _, f := range r.Findings {
		s := fmt.Sprintf("**%s** %s: %s", f.Kind, f.Subject, f.Message)
		if !md {
			s = fmt.Sprintf("[%s] %s: %s", f.Kind, f.Subject, f.Message)
		}
		if len(f.ConfigKeys) > 0 {
			s += " (" + strings.Join(f.ConfigKeys, ", ") + ")"
		}
		d.item("%s", s)
	}

	d.h(3, "Trends")
	head := []string{"day", "requests", "req/s", "p50", "p95", "p99", "errors", "apdex", "coverage"}
	row := func(name string, f Figures) []string {
		return []string{name, reqs(f.Requests), fl(f.ThroughputRPS, "%.2f"), secs(f.P50Seconds), secs(f.P95Seconds), secs(f.P99Seconds),
			pct(f.ErrorRate), fl(f.Apdex, "%.3f"), coverage(f.Coverage)}
	}
	var rows [][]string
	for _, f := range r.Trends.Days {
		rows = append(rows, row(f.From.Format("2006-01-02 15:04"), f))
	}
	rows = append(rows, row("period", r.Trends.Period), row("previous", r.Trends.Previous))
	c := r.Trends.Change
	rows = append(rows, []string{"change", change(c.Requests), change(c.ThroughputRPS), change(c.P50Seconds), change(c.P95Seconds), change(c.P99Seconds),
		change(c.ErrorRate), change(c.Apdex), ""})
	d.table(head, rows)

	d.h(3, "Routes")
	if r.Routes.Why != "" {
		d.p("%s", r.Routes.Why)
	}
	routeRows := func(ls []RouteLine) [][]string {
		var out [][]string
		for _, l := range ls {
			out = append(out, []string{l.Route, fmt.Sprint(l.Requests), secs(l.P95Seconds), pct(l.ErrorRate), secs(l.PreviousP95Seconds),
				pct(l.PreviousErrorRate), strings.Join(l.Versions, ", "), l.worseWhy()})
		}
		return out
	}
	rh := []string{"route", "requests", "p95", "errors", "p95 before", "errors before", "versions", "worse"}
	d.p("Slowest (p95):")
	d.p("")
	d.table(rh, routeRows(r.Routes.Slowest))
	d.p("Most failing (error rate):")
	d.p("")
	d.table(rh, routeRows(r.Routes.MostFailing))
	d.p("Got worse:")
	d.p("")
	d.table(rh, routeRows(r.Routes.Worse))

	d.h(3, "Alerts")
	d.p("%d alert occurrences in the period. Flapping: %s.", r.Alerts.Total, r.Alerts.FlappingCriterion)
	d.p("")
	rows = nil
	for _, s := range r.Alerts.Rules {
		fl := ""
		if s.Flapping {
			fl = "FLAPPING"
		}
		row := []string{s.Rule, fmt.Sprint(s.Count), dur(s.FiringSeconds), fmt.Sprintf("%d/%d", s.Acknowledged, s.Count),
			durp(s.MedianTimeToAcknowledgeSeconds), durp(s.MedianTimeToResolveSeconds), fmt.Sprint(s.Cycles), fmt.Sprint(s.MaxOccurrencesPerHour), fl}
		if r.Fleet != "" {
			row = append(row, strings.Join(s.Instances, ", "))
		}
		rows = append(rows, row)
	}
	head = []string{"rule", "count", "firing", "acked", "median to ack", "median to resolve", "cycles", "max/hour", "flapping"}
	if r.Fleet != "" {
		head = append(head, "instances")
	}
	d.table(head, rows)
	if n := len(r.Alerts.ConfigChanges); n > 0 {
		d.p("Configuration changes in the period: %d.", n)
		for _, cc := range r.Alerts.ConfigChanges {
			var ks []string
			for _, ch := range cc.Changes {
				ks = append(ks, fmt.Sprintf("%s %s → %s", ch.Key, ch.Old, ch.New))
			}
			d.item("%s by %s: %s", cc.Time.Format(time.RFC3339), cc.By, strings.Join(ks, "; "))
		}
		d.p("")
	}

	d.h(3, "Threshold effectiveness")
	d.p("Suggested values are advice, never applied. Method: %s.", SuggestMethod)
	d.p("")
	rows = nil
	var unmeasured []string
	for _, th := range r.Thresholds {
		if !th.Measured && th.Alerts == 0 {
			unmeasured = append(unmeasured, th.Figure)
			continue
		}
		for _, l := range th.Levels {
			if l.Value == nil {
				continue
			}
			sug := th.Suggestion.Warning
			if l.Level == "critical" {
				sug = th.Suggestion.Critical
			}
			trips, time := "–", "–"
			if th.InHistory {
				trips, time = fmt.Sprint(l.Trips), dur(l.Seconds)
			}
			advice := th.Suggestion.Advice
			if th.Suggestion.Why != "" {
				advice += " (" + th.Suggestion.Why + ")"
			}
			rows = append(rows, []string{th.Figure, l.Key, value(th.Unit, l.Value), trips, time, fmt.Sprintf("%d/%d/%d", th.Alerts, th.Acknowledged, th.Ignored),
				value(th.Unit, sug), advice})
		}
	}
	d.table([]string{"figure", "threshold", "value", "trips", "time beyond", "alerts/acked/ignored", "suggested", "advice"}, rows)

	if len(unmeasured) > 0 {
		d.p("No data and no alerts in the period: %s.", strings.Join(unmeasured, ", "))
	}

	d.h(3, "Capacity")
	cp := r.Capacity
	limit := "unknown"
	if cp.ConcurrencyLimit != nil {
		limit = fmt.Sprint(*cp.ConcurrencyLimit)
		if *cp.ConcurrencyLimit == 0 {
			limit = "none"
		}
	}
	d.item("peak throughput %s req/s; peak in flight %s against a concurrency limit of %s (max_concurrency %d)", fl(cp.PeakThroughputRPS, "%.2f"),
		fl(cp.PeakInFlight, "%.0f"), limit, cp.MaxConcurrency)
	if cp.MeasuredCapacityRPS != nil {
		d.item("measured capacity %s req/s (%s); the peak is %s of it; requests queued for %s", fl(cp.MeasuredCapacityRPS, "%.2f"), cp.CapacityMethod,
			pct(cp.PeakShareOfCapacity), durp(cp.SaturatedSeconds))
	} else {
		d.item("measured capacity: %s", cp.CapacityWhy)
	}
	rej := "unknown"
	if cp.RejectionsSinceStart != nil {
		var n uint64
		for _, v := range cp.RejectionsSinceStart {
			n += v
		}
		rej = fmt.Sprint(n)
	}
	d.item("rejections: %d backpressure_rejections alerts (%s firing) in the period; %s rejected since the sidecar started", cp.RejectionAlerts, dur(cp.RejectionAlertSeconds), rej)
	rj := cp.Rejections
	if p := rj.Period; p.Total == nil {
		d.item("rejected in the period: not measured (the history holds no rejection series for it)")
	} else {
		line := fmt.Sprintf("rejected in the period: %d (%s a day; rate limit %s, queue %s, shed %s; history coverage %s); previous period %s (%s)",
			*p.Total, fl(p.PerDay, "%.1f"), count(p.RateLimit), count(p.Queue), count(p.Shed), coverage(p.Coverage), count(rj.Previous.Total), change(rj.Change))
		if rj.PeakHour != nil {
			line += fmt.Sprintf("; most in the hour from %s (%d)", rj.PeakHour.Format("2006-01-02 15:04Z"), *rj.PeakHourRejections)
		}
		d.item("%s", line)
		if *p.Total > 0 {
			d.p("")
			rows = nil
			for _, day := range rj.Days {
				rows = append(rows, []string{day.From.Format("2006-01-02"), count(day.Total), count(day.RateLimit), count(day.Queue), count(day.Shed)})
			}
			d.table([]string{"day", "rejected", "rate limit", "queue", "shed"}, rows)
		}
	}
	d.p("")
	rows = nil
	for _, res := range cp.Resources {
		trend, proj := "–", res.Why
		if res.Fit != nil {
			trend = fmt.Sprintf("%+.2f%%/day (R² %.2f, %d h)", res.Fit.SlopePerDay*100, res.Fit.R2, res.Fit.Points)
		}
		if res.Projection != nil {
			proj = res.Projection.Message
		}
		rows = append(rows, []string{res.Figure, pct(res.Mean), pct(res.Max), trend, proj})
	}
	d.table([]string{"resource", "mean", "max", "trend", "projection"}, rows)
	d.p("Projection: %s.", cp.ProjectionCriterion)
	_, err := io.WriteString(w, d.b.String())
	return err
}

// value renders a threshold in its unit.
func value(unit string, p *float64) string {
	if p == nil {
		return "–"
	}
	switch unit {
	case "ratio":
		return fmt.Sprintf("%.0f%%", *p*100)
	case "seconds":
		return secs(p)
	}
	return fmt.Sprintf("%g", *p)
}

// coverage reads a share of a span: whole percents, one decimal below 10 %.
func coverage(x float64) string {
	if x > 0 && x < 0.1 {
		return fmt.Sprintf("%.1f%%", x*100)
	}
	return fmt.Sprintf("%.0f%%", x*100)
}
