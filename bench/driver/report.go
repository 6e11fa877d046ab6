package main

import (
	"fmt"
	"math"
	"slices"
	"strings"
)

// sample is one target's figures in one mode of one round.
type sample struct {
	Target string  `json:"target"`
	Round  int     `json:"round"`
	Mode   string  `json:"mode"`
	Fig    figures `json:"figures"`
}

// rssSample is one target's resident memory after one round's 512-connection run.
type rssSample struct {
	Target  string  `json:"target"`
	Round   int     `json:"round"`
	PeakMiB float64 `json:"peak_mib"`
	NowMiB  float64 `json:"now_mib"`
}

// median of the non-NaN values, NaN when there are none.
func median(v []float64) float64 {
	v = slices.DeleteFunc(slices.Clone(v), func(x float64) bool { return math.IsNaN(x) })
	if len(v) == 0 {
		return math.NaN()
	}
	slices.Sort(v)
	n := len(v)
	if n%2 == 1 {
		return v[n/2]
	}
	return (v[n/2-1] + v[n/2]) / 2
}

// ratio is a ÷ b, NaN when either is missing or b is 0.
func ratio(a, b float64) float64 {
	if math.IsNaN(a) || math.IsNaN(b) || b == 0 {
		return math.NaN()
	}
	return a / b
}

// fmtNum prints a figure with about three significant digits.
func fmtNum(v float64) string {
	a := math.Abs(v)
	switch {
	case math.IsNaN(v):
		return "–"
	case a >= 1000:
		return fmt.Sprintf("%.0f", v)
	case a >= 100:
		return fmt.Sprintf("%.0f", v)
	case a >= 10:
		return fmt.Sprintf("%.1f", v)
	case a >= 1:
		return fmt.Sprintf("%.2f", v)
	default:
		return fmt.Sprintf("%.3f", v)
	}
}

// fmtPct prints a 0..1 share as a whole percentage, or "–".
func fmtPct(v float64) string {
	if math.IsNaN(v) {
		return "–"
	}
	return fmt.Sprintf("%.0f %%", 100*v)
}

// interference is the median share of the proxy's and the load generator's
// cores that unrelated processes used over all samples.
func interference(samples []sample) (proxyCore, loadCore float64) {
	var p, l []float64
	for _, s := range samples {
		p = append(p, s.Fig.OtherProxyCore)
		l = append(l, s.Fig.OtherLoadCore)
	}
	return median(p), median(l)
}

// fmtRatio prints a ratio as "1.23×", or "–".
func fmtRatio(v float64) string {
	if math.IsNaN(v) {
		return "–"
	}
	return fmt.Sprintf("%.2f×", v)
}

// cell prints "value (÷bare · ÷direct)".
func cell(v, bare, direct float64) string {
	if math.IsNaN(v) {
		return "–"
	}
	return fmt.Sprintf("%s (%s · %s)", fmtNum(v), fmtRatio(ratio(v, bare)), fmtRatio(ratio(v, direct)))
}

// mdTable renders a Markdown table.
func mdTable(header []string, rows [][]string) string {
	var b strings.Builder
	b.WriteString("| " + strings.Join(header, " | ") + " |\n")
	b.WriteString("|" + strings.Repeat("---|", len(header)) + "\n")
	for _, r := range rows {
		b.WriteString("| " + strings.Join(r, " | ") + " |\n")
	}
	return b.String()
}

// medians indexes the median figures by target and mode.
type medians struct {
	fig map[string]map[string]figures // target → mode → median figures
	rss map[string][2]float64         // target → {peak, now} MiB
}

// summarize takes medians over rounds, figure by figure.
func summarize(samples []sample, rss []rssSample) medians {
	m := medians{fig: map[string]map[string]figures{}, rss: map[string][2]float64{}}
	type key struct{ t, mode string }
	groups := map[key][]figures{}
	for _, s := range samples {
		k := key{s.Target, s.Mode}
		groups[k] = append(groups[k], s.Fig)
	}
	for k, fs := range groups {
		col := func(get func(figures) float64) float64 {
			v := make([]float64, len(fs))
			for i, f := range fs {
				v[i] = get(f)
			}
			return median(v)
		}
		med := figures{
			Requests:       int(col(func(f figures) float64 { return float64(f.Requests) })),
			Errors:         int(col(func(f figures) float64 { return float64(f.Errors) })),
			RPS:            col(func(f figures) float64 { return f.RPS }),
			P50:            col(func(f figures) float64 { return f.P50 }),
			P99:            col(func(f figures) float64 { return f.P99 }),
			P999:           col(func(f figures) float64 { return f.P999 }),
			ServiceP50:     col(func(f figures) float64 { return f.ServiceP50 }),
			ServiceP99:     col(func(f figures) float64 { return f.ServiceP99 }),
			SendLagP99:     col(func(f figures) float64 { return f.SendLagP99 }),
			ProxyCPU:       col(func(f figures) float64 { return f.ProxyCPU }),
			PodCPU:         col(func(f figures) float64 { return f.PodCPU }),
			OtherProxyCore: col(func(f figures) float64 { return f.OtherProxyCore }),
			OtherLoadCore:  col(func(f figures) float64 { return f.OtherLoadCore }),
		}
		if m.fig[k.t] == nil {
			m.fig[k.t] = map[string]figures{}
		}
		m.fig[k.t][k.mode] = med
	}
	peaks := map[string][]float64{}
	nows := map[string][]float64{}
	for _, r := range rss {
		peaks[r.Target] = append(peaks[r.Target], r.PeakMiB)
		nows[r.Target] = append(nows[r.Target], r.NowMiB)
	}
	for t := range peaks {
		m.rss[t] = [2]float64{median(peaks[t]), median(nows[t])}
	}
	return m
}

// get returns target's median figures in mode, with every float NaN when
// the target has none.
func (m medians) get(target, mode string) figures {
	if f, ok := m.fig[target][mode]; ok {
		return f
	}
	n := math.NaN()
	return figures{RPS: n, P50: n, P99: n, P999: n, ServiceP50: n, ServiceP99: n, SendLagP99: n, ProxyCPU: n, PodCPU: n,
		OtherProxyCore: n, OtherLoadCore: n}
}

// peakRSS is target's median VmHWM in MiB, NaN when unknown.
func (m medians) peakRSS(target string) float64 {
	if v, ok := m.rss[target]; ok {
		return v[0]
	}
	return math.NaN()
}

// summaryTable is issue 6's reference table: each target's headline figures
// and their ratios to the bare ReverseProxy and to direct.
func summaryTable(m medians, targets []string, peakMode, openMode, openTitle string) string {
	bare, direct := m.get(tBare, peakMode), m.get(tDirect, peakMode)
	bareOpen, directOpen := m.get(tBare, openMode), m.get(tDirect, openMode)
	bareRSS := m.peakRSS(tBare)
	var rows [][]string
	for _, t := range targets {
		f, o := m.get(t, peakMode), m.get(t, openMode)
		rss := m.peakRSS(t)
		rows = append(rows, []string{
			label(t),
			fmtNum(f.RPS), fmtRatio(ratio(f.RPS, bare.RPS)), fmtRatio(ratio(f.RPS, direct.RPS)),
			fmtNum(f.ProxyCPU), fmtRatio(ratio(f.ProxyCPU, bare.ProxyCPU)),
			fmtNum(f.PodCPU), fmtRatio(ratio(f.PodCPU, bare.PodCPU)), fmtRatio(ratio(f.PodCPU, direct.PodCPU)),
			fmtNum(o.P99), fmtRatio(ratio(o.P99, bareOpen.P99)), fmtRatio(ratio(o.P99, directOpen.P99)),
			fmtNum(rss), fmtRatio(ratio(rss, bareRSS)),
		})
	}
	return mdTable([]string{
		"target",
		"peak req/s", "÷ bare", "÷ direct",
		"proxy CPU µs/req", "÷ bare",
		"pod CPU µs/req", "÷ bare", "÷ direct",
		"p99 ms " + openTitle, "÷ bare", "÷ direct",
		"peak RSS MiB (512 conns)", "÷ bare",
	}, rows)
}

// modeTable details one mode: every figure with its ratios.
func modeTable(m medians, targets []string, mode string, open bool) string {
	bare, direct := m.get(tBare, mode), m.get(tDirect, mode)
	var rows [][]string
	for _, t := range targets {
		f := m.get(t, mode)
		if _, ok := m.fig[t][mode]; !ok {
			continue
		}
		row := []string{
			label(t),
			cell(f.RPS, bare.RPS, direct.RPS),
			cell(f.P50, bare.P50, direct.P50),
			cell(f.P99, bare.P99, direct.P99),
			cell(f.P999, bare.P999, direct.P999),
			cell(f.ProxyCPU, bare.ProxyCPU, direct.ProxyCPU),
			cell(f.PodCPU, bare.PodCPU, direct.PodCPU),
			fmt.Sprintf("%d / %d", f.Errors, f.Requests),
			fmtPct(f.OtherProxyCore) + " / " + fmtPct(f.OtherLoadCore),
		}
		if open {
			row = append(row, fmtNum(f.ServiceP99), fmtNum(f.SendLagP99))
		}
		rows = append(rows, row)
	}
	header := []string{"target", "req/s", "p50 ms", "p99 ms", "p99.9 ms", "proxy CPU µs/req", "pod CPU µs/req", "errors / requests", "other load: proxy / load core"}
	if open {
		header = append(header, "service p99 ms", "send lag p99 ms")
	}
	return mdTable(header, rows)
}

// rssTable lists resident memory after the 512-connection run.
func rssTable(m medians, targets []string) string {
	bare, direct := m.peakRSS(tBare), m.peakRSS(tDirect)
	var rows [][]string
	for _, t := range targets {
		v, ok := m.rss[t]
		if !ok || math.IsNaN(v[0]) {
			continue
		}
		rows = append(rows, []string{label(t), cell(v[0], bare, direct), fmtNum(v[1])})
	}
	return mdTable([]string{"target", "peak RSS (VmHWM) MiB", "RSS at the end MiB"}, rows)
}
