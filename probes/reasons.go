package probes

import (
	"fmt"
	"time"

	"github.com/pulsegate/pulsegate/config"
	"github.com/pulsegate/pulsegate/figures"
)

// Helpers shared by the database and Redis probes' judging steps.

// probeConnMaxIdle closes a probe's idle connection (database or Redis)
// when it sat unused this long.
const probeConnMaxIdle = 45 * time.Second

// statusRank orders statuses for "worst of": ok < warning < critical < down.
func statusRank(s Status) int {
	switch s {
	case StatusOK:
		return 0
	case StatusWarning:
		return 1
	case StatusCritical:
		return 2
	case StatusDown:
		return 3
	}
	return -1
}

// formatSeconds writes seconds for reasons: "0.35 s", "4.2 s", "300 s".
func formatSeconds(v float64) string {
	switch {
	case v < 1:
		return fmt.Sprintf("%.2f s", v)
	case v < 10:
		return fmt.Sprintf("%.1f s", v)
	}
	return fmt.Sprintf("%.0f s", v)
}

// tickVerdict collects one probe tick's reasons and its worst status.
type tickVerdict struct {
	res   *Result
	level Status
}

// raise records reason and makes the tick at least s.
func (v *tickVerdict) raise(s Status, reason string) {
	if statusRank(s) > statusRank(v.level) {
		v.level = s
	}
	v.res.Reasons = append(v.res.Reasons, reason)
}

// note records a reason that does not change the status.
func (v *tickVerdict) note(reason string) { v.res.Reasons = append(v.res.Reasons, reason) }

// figureLimits are one judged figure's thresholds as the configuration had
// them at the last Apply. judge compares through figures.Compare, the one
// comparison health, alerts, shedding and the API use, so a probe's reason
// and the figure's judgement never disagree.
type figureLimits struct {
	dir figures.Direction
	thr figures.Thresholds
}

// limitsOf takes the thresholds of the figure called name from cfg.
func limitsOf(cfg *config.Config, name figures.Name) figureLimits {
	f, _ := figures.Lookup(name)
	return figureLimits{dir: f.BadWhen, thr: f.Thresholds(cfg)}
}

// judge returns v's status and the threshold it reached (0 when ok).
func (l figureLimits) judge(v float64) (Status, float64) {
	switch figures.Compare(v, l.dir, l.thr) {
	case figures.Critical:
		return StatusCritical, l.thr.Critical
	case figures.Warning:
		return StatusWarning, l.thr.Warning
	}
	return StatusOK, 0
}
