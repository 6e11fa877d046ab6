package alerts

import (
	"strings"

	"github.com/pulsegate/pulsegate/config"
)

// Rules returns the name of every rule pulsegate raises alerts for: the
// figure rules in evaluation order, then probe_down and task_failing. Each
// has a runbook, docs/runbooks/<rule>.md (the deploy tests check the files
// exist).
func Rules() []string {
	out := make([]string, 0, len(figureRules)+2)
	for _, r := range figureRules {
		out = append(out, r.name)
	}
	return append(out, RuleProbeDown, RuleTaskFailing)
}

// RunbookURL is the runbook of rule under cfg's alerts.runbook_base_url:
// base + "/" + rule + ".md", or "" when no base URL is configured.
func RunbookURL(cfg *config.Config, rule string) string {
	base := strings.TrimRight(cfg.Alerts.RunbookBaseURL, "/")
	if base == "" || rule == "" {
		return ""
	}
	return base + "/" + rule + ".md"
}
