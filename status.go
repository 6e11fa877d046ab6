package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"sort"
	"strings"
	"time"

	"github.com/pulsegate/pulsegate/adminapi"
	"github.com/pulsegate/pulsegate/config"
)

// Exit codes of `pulsegate status`.
const (
	statusHealthy     = 0
	statusWarning     = 1
	statusCritical    = 2
	statusUnreachable = 3
)

// cmdStatus prints the health verdict readably: the replacement for the
// product's python one-liners.
func cmdStatus(ctx context.Context, args, environ []string, stdout, stderr io.Writer) int {
	env := map[string]string{}
	for _, kv := range environ {
		if k, v, ok := strings.Cut(kv, "="); ok {
			env[k] = v
		}
	}
	fs := flag.NewFlagSet("status", flag.ContinueOnError)
	fs.SetOutput(stderr)
	defAdmin := env["RESPONSIVENESS_ADMIN_ADDR"]
	if defAdmin == "" {
		defAdmin = config.Defaults().Admin.Addr
	}
	admin := fs.String("admin", adminURL(defAdmin), "admin listener URL")
	token := fs.String("token", env["RESPONSIVENESS_ADMIN_TOKEN"], "admin token (default $RESPONSIVENESS_ADMIN_TOKEN)")
	asJSON := fs.Bool("json", false, "print the raw verdict JSON")
	fleet := fs.Bool("fleet", false, "the whole fleet's verdict and its instances table (needs a shared store: RESPONSIVENESS_STORE_DSN)")
	timeout := fs.Duration("timeout", 5*time.Second, "how long to wait for the sidecar")
	if err := fs.Parse(args); err != nil {
		return statusUnreachable
	}
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	path := "/admin/api/health/responsiveness"
	if *fleet {
		path += "?scope=fleet"
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, strings.TrimRight(*admin, "/")+path, nil)
	if err != nil {
		fmt.Fprintf(stderr, "pulsegate status: --admin: %v\n", err)
		return statusUnreachable
	}
	if *token != "" {
		req.Header.Set("Authorization", "Bearer "+*token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		fmt.Fprintf(stderr, "pulsegate status: cannot reach the sidecar at %s: %v\n", *admin, err)
		return statusUnreachable
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 8<<20))
	if resp.StatusCode != http.StatusOK {
		fmt.Fprintf(stderr, "pulsegate status: %s answered %d: %s\n", *admin, resp.StatusCode, strings.TrimSpace(string(body)))
		return statusUnreachable
	}
	var v verdictView
	if err := json.Unmarshal(body, &v); err != nil {
		fmt.Fprintf(stderr, "pulsegate status: unreadable answer: %v\n", err)
		return statusUnreachable
	}
	if *asJSON {
		stdout.Write(body)
	} else {
		printVerdict(stdout, &v)
		if *fleet {
			printInstances(stdout, &v)
		}
	}
	switch v.Status {
	case "healthy":
		return statusHealthy
	case "warning":
		return statusWarning
	}
	return statusCritical
}

func adminURL(addr string) string {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return "http://" + addr
	}
	if host == "" || host == "0.0.0.0" || host == "::" {
		host = "127.0.0.1"
	}
	return "http://" + net.JoinHostPort(host, port)
}

type verdictView struct {
	Status     string              `json:"status"`
	Components map[string]string   `json:"components"`
	Metrics    map[string]*float64 `json:"metrics"`
	Reasons    []string            `json:"reasons"`
	Alerts     []struct {
		Severity       string `json:"severity"`
		Message        string `json:"message"`
		Recommendation string `json:"recommendation"`
		State          string `json:"state"`
	} `json:"alerts"`
	LastCheck string `json:"last_check"`
	// Fleet answers (?scope=fleet) only.
	Reporting string                   `json:"reporting"`
	Instances []adminapi.FleetInstance `json:"instances"`
}

// printInstances prints the fleet's instances table.
func printInstances(w io.Writer, v *verdictView) {
	fmt.Fprintf(w, "\ninstances (%s):\n", v.Reporting)
	fmt.Fprintf(w, "  %-24s %-9s %8s %7s %9s %6s %6s %6s  %s\n", "INSTANCE", "STATUS", "REQ/S", "ERRORS", "P99", "CPU", "MEM", "CONFIG", "LAST SEEN")
	opt := func(p *float64, f func(float64) string) string {
		if p == nil {
			return "-"
		}
		return f(*p)
	}
	pc := func(x float64) string { return fmt.Sprintf("%.1f%%", x*100) }
	for _, in := range v.Instances {
		status := in.Status
		if in.Stale {
			status = "stale"
		}
		fmt.Fprintf(w, "  %-24s %-9s %8.1f %7s %9s %6s %6s %6d  %s\n", in.Instance, status, in.ThroughputRPS, pc(in.ErrorRate),
			opt(in.P99ResponseTime, func(x float64) string { return fmt.Sprintf("%.3fs", x) }), opt(in.CPUUsage, pc), opt(in.MemoryUsage, pc), in.ConfigVersion, in.LastSeen)
	}
}

func printVerdict(w io.Writer, v *verdictView) {
	fmt.Fprintf(w, "pulsegate: %s (last check %s)\n\ncomponents:\n", strings.ToUpper(v.Status), v.LastCheck)
	names := make([]string, 0, len(v.Components))
	for n := range v.Components {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		fmt.Fprintf(w, "  %-20s %s\n", n, v.Components[n])
	}
	fmt.Fprintln(w, "\nkey figures:")
	keys := make([]string, 0, len(v.Metrics))
	for k := range v.Metrics {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		val := "not measured"
		if p := v.Metrics[k]; p != nil {
			val = formatFigure(k, *p)
		}
		fmt.Fprintf(w, "  %-28s %s\n", k, val)
	}
	if len(v.Reasons) > 0 {
		fmt.Fprintln(w, "\nreasons:")
		for _, r := range v.Reasons {
			fmt.Fprintf(w, "  - %s\n", r)
		}
	}
	if len(v.Alerts) > 0 {
		fmt.Fprintln(w, "\nactive alerts:")
		for _, a := range v.Alerts {
			fmt.Fprintf(w, "  [%s] %s (%s)\n      → %s\n", strings.ToUpper(a.Severity), a.Message, a.State, a.Recommendation)
		}
	}
}

func formatFigure(name string, v float64) string {
	switch {
	case strings.Contains(name, "usage") || strings.Contains(name, "utilization") || strings.Contains(name, "rate"):
		return fmt.Sprintf("%.1f%%", v*100)
	case strings.Contains(name, "time") || strings.Contains(name, "latency"):
		return fmt.Sprintf("%.3fs", v)
	}
	return fmt.Sprintf("%g", v)
}
