package probes

import (
	"fmt"
	"time"
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
