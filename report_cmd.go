package main

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/pulsegate/pulsegate/config"
	"github.com/pulsegate/pulsegate/report"
)

// Exit codes of `pulsegate report`.
const (
	reportOK          = 0
	reportFailed      = 1 // the sidecar could not be reached or refused
	reportBadArgument = 2
)

// cmdReport prints the daily, weekly or monthly review: it fetches
// GET /admin/api/report/responsiveness from a running sidecar (the admin
// URL defaults, as for `pulsegate status`, to RESPONSIVENESS_ADMIN_ADDR)
// and renders it as text, markdown or JSON (docs/report.md).
func cmdReport(ctx context.Context, args, environ []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("report", flag.ContinueOnError)
	fs.SetOutput(stderr)
	defAdmin := lookup(environ, "RESPONSIVENESS_ADMIN_ADDR")
	if defAdmin == "" {
		defAdmin = config.Defaults().Admin.Addr
	}
	since := fs.String("since", "24h", "the period: 24h (daily), 7d (weekly) or 30d (monthly)")
	format := fs.String("format", "text", "text, markdown (for a ticket) or json (docs/report.md)")
	admin := fs.String("admin", adminURL(defAdmin), "admin listener URL of the sidecar")
	token := fs.String("token", lookup(environ, "RESPONSIVENESS_ADMIN_TOKEN"), "admin token (default $RESPONSIVENESS_ADMIN_TOKEN)")
	fleet := fs.Bool("fleet", false, "the whole fleet's report (needs a shared store: RESPONSIVENESS_STORE_DSN)")
	timeout := fs.Duration("timeout", 30*time.Second, "how long to wait for the sidecar")
	if err := fs.Parse(args); err != nil {
		return reportBadArgument
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "pulsegate report: unexpected argument %q\n", fs.Arg(0))
		return reportBadArgument
	}
	if _, err := report.ParseSince(*since); err != nil {
		fmt.Fprintf(stderr, "pulsegate report: --%v\n", err)
		return reportBadArgument
	}
	if _, err := report.ParseFormat(*format); err != nil || *format == "" {
		fmt.Fprintf(stderr, "pulsegate report: --format: want text, markdown or json, got %q\n", *format)
		return reportBadArgument
	}
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	q := url.Values{"since": {*since}}
	if *fleet {
		q.Set("scope", "fleet")
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, strings.TrimRight(*admin, "/")+"/admin/api/report/responsiveness?"+q.Encode(), nil)
	if err != nil {
		fmt.Fprintf(stderr, "pulsegate report: --admin: %v\n", err)
		return reportBadArgument
	}
	if *token != "" {
		req.Header.Set("Authorization", "Bearer "+*token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		fmt.Fprintf(stderr, "pulsegate report: cannot reach the sidecar at %s: %v\n", *admin, err)
		return reportFailed
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		fmt.Fprintf(stderr, "pulsegate report: reading the answer of %s: %v\n", *admin, err)
		return reportFailed
	}
	if resp.StatusCode != http.StatusOK {
		msg := strings.TrimSpace(string(body))
		var e struct {
			Error string `json:"error"`
		}
		if json.Unmarshal(body, &e) == nil && e.Error != "" {
			msg = e.Error
		}
		fmt.Fprintf(stderr, "pulsegate report: %s answered %d: %s\n", *admin, resp.StatusCode, msg)
		return reportFailed
	}
	if *format == "json" {
		// As served (fields of a newer sidecar are kept), indented.
		var out bytes.Buffer
		if err := json.Indent(&out, bytes.TrimSpace(body), "", "  "); err != nil {
			fmt.Fprintf(stderr, "pulsegate report: unreadable answer: %v\n", err)
			return reportFailed
		}
		out.WriteByte('\n')
		_, _ = stdout.Write(out.Bytes())
		return reportOK
	}
	var r report.Report
	if err := json.Unmarshal(body, &r); err != nil {
		fmt.Fprintf(stderr, "pulsegate report: unreadable answer: %v\n", err)
		return reportFailed
	}
	if err := report.Render(stdout, &r, *format); err != nil {
		fmt.Fprintf(stderr, "pulsegate report: %v\n", err)
		return reportFailed
	}
	return reportOK
}
