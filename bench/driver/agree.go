package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net/http"
	"time"
)

// responsivenessPath is pulsegate's performance API (admin listener; a
// loopback peer needs no token).
const responsivenessPath = "/admin/api/performance/responsiveness"

// agreement is the "timing figures agree" check: one fixed-rate run through
// a fresh pulsegate, its own figures against the load generator's.
type agreement struct {
	Rate      float64       `json:"rate"`
	DurationS float64       `json:"duration_s"`
	Loadgen   loadgenResult `json:"loadgen"`
	// Window is pulsegate's 1-minute window as its API returned it.
	Window map[string]any `json:"pulsegate_window_1m"`
	// Requests, P50 and P99 are read from Window (times converted to ms).
	Requests float64 `json:"pulsegate_requests"`
	P50      float64 `json:"pulsegate_p50_ms"`
	P99      float64 `json:"pulsegate_p99_ms"`
}

// findWindow searches the API document for a "windows" object and returns
// its "1m" member (the adminapi may nest the proxy snapshot anywhere).
func findWindow(doc any, name string) map[string]any {
	switch v := doc.(type) {
	case map[string]any:
		if ws, ok := v["windows"].(map[string]any); ok {
			if w, ok := ws[name].(map[string]any); ok {
				return w
			}
		}
		for _, c := range v {
			if w := findWindow(c, name); w != nil {
				return w
			}
		}
	case []any:
		for _, c := range v {
			if w := findWindow(c, name); w != nil {
				return w
			}
		}
	}
	return nil
}

// findNumber returns the first number under key anywhere in doc.
func findNumber(doc any, key string) (float64, bool) {
	switch v := doc.(type) {
	case map[string]any:
		if x, ok := v[key].(float64); ok {
			return x, true
		}
		for _, c := range v {
			if x, ok := findNumber(c, key); ok {
				return x, true
			}
		}
	case []any:
		for _, c := range v {
			if x, ok := findNumber(c, key); ok {
				return x, true
			}
		}
	}
	return 0, false
}

// num reads a JSON number field, NaN when absent or null.
func num(m map[string]any, key string) float64 {
	if x, ok := m[key].(float64); ok {
		return x
	}
	return math.NaN()
}

// fetchJSON GETs url and decodes the JSON body.
func fetchJSON(ctx context.Context, url string) (any, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, fmt.Errorf("building request for %s: %w", url, err)
	}
	req.Header.Set("Accept", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, fmt.Errorf("fetching %s: %w", url, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", url, err)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("fetching %s: status %d: %.200s", url, resp.StatusCode, body)
	}
	var doc any
	if err := json.Unmarshal(body, &doc); err != nil {
		return nil, fmt.Errorf("decoding %s: %w", url, err)
	}
	return doc, nil
}

// relDiff is (a − b) ÷ b as a signed percentage string.
func relDiff(a, b float64) string {
	r := ratio(a-b, b)
	if math.IsNaN(r) {
		return "–"
	}
	return fmt.Sprintf("%+.1f %%", 100*r)
}

// msDiff is a − b (both ms) in µs with the relative difference: at sub-
// millisecond latencies the absolute gap says more than the percentage.
func msDiff(a, b float64) string {
	if math.IsNaN(a) || math.IsNaN(b) {
		return "–"
	}
	return fmt.Sprintf("%+.0f µs (%s)", (a-b)*1e3, relDiff(a, b))
}

// agree runs the timing-agreement check at each rate of -agree-rates, a
// fresh pulsegate per rate, and prints one table.
func agree(ctx context.Context, o options, e env, m *meter, rep *report) error {
	if why := e.available(tPulsegate); why != "" {
		rep.note("agree skipped: %s", why)
		return nil
	}
	// All requests must still be inside pulsegate's 1-minute window when it
	// is read: cap the run well below a minute.
	d := min(max(o.duration, 10*time.Second), 40*time.Second)
	var rows [][]string
	for _, rate := range o.agreeRates {
		a, err := agreeOnce(ctx, e, m, rate, o.conns, d)
		if err != nil {
			rep.note("agree at %s req/s: %v", fmtNum(rate), err)
			continue
		}
		rep.Agree = append(rep.Agree, a)
		lg := a.Loadgen
		rows = append(rows,
			[]string{fmtNum(rate), "requests", fmt.Sprintf("%.0f", a.Requests), fmt.Sprintf("%d", lg.Requests), relDiff(a.Requests, float64(lg.Requests)), "", ""},
			[]string{fmtNum(rate), "p50 ms", fmtNum(a.P50), fmtNum(lg.Service.P50), msDiff(a.P50, lg.Service.P50), fmtNum(lg.Latency.P50), msDiff(a.P50, lg.Latency.P50)},
			[]string{fmtNum(rate), "p99 ms", fmtNum(a.P99), fmtNum(lg.Service.P99), msDiff(a.P99, lg.Service.P99), fmtNum(lg.Latency.P99), msDiff(a.P99, lg.Latency.P99)},
		)
	}
	if len(rows) == 0 {
		return nil
	}
	rep.printf("\n## Timing figures agree? (pulsegate full, open loop for %v per rate, %d connections, a fresh pulsegate per rate)\n\n", d, o.conns)
	rep.printf("%s", mdTable(
		[]string{"rate req/s", "figure", "pulsegate (1-min window)", "loadgen: send → response", "pulsegate − loadgen", "loadgen: scheduled → response", "pulsegate − loadgen"}, rows))
	rep.printf("\npulsegate times a request from the moment its handler starts (headers read) to the end of the response; the load generator from writing the request (or from its scheduled send) to reading the last byte, so it also sees the kernel's loopback, time the request waited in the proxy's socket before the proxy read it, and its own scheduling. The request count includes the readiness probe's single GET.\n")
	return nil
}

// agreeOnce is one rate of the agreement check.
func agreeOnce(ctx context.Context, e env, m *meter, rate float64, conns int, d time.Duration) (*agreement, error) {
	r, err := e.start(ctx, tPulsegate, 900)
	if err != nil {
		return nil, err
	}
	defer r.stop()
	lg, err := m.loadgenRaw(ctx, r.url+"/", load{open: true, rate: rate, conns: conns, duration: d})
	if err != nil {
		return nil, err
	}
	doc, err := fetchJSON(ctx, r.adminURL+responsivenessPath)
	if err != nil {
		return nil, err
	}
	a := &agreement{Rate: rate, DurationS: d.Seconds(), Loadgen: lg}
	if a.Window = findWindow(doc, "1m"); a.Window == nil {
		return nil, fmt.Errorf("%s has no windows.1m object; cannot compare", responsivenessPath)
	}
	a.Requests = num(a.Window, "requests")
	a.P50 = num(a.Window, "p50") * 1e3 // seconds → ms
	a.P99 = num(a.Window, "p99") * 1e3
	return a, nil
}
