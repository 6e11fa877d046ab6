package config

import (
	"errors"
	"strings"
	"testing"
)

// TestHistoryRetention: the three tier retentions load from the
// environment, and a bad one is refused naming its field and variable.
func TestHistoryRetention(t *testing.T) {
	c, err := Load(LoadOptions{Environ: []string{
		"RESPONSIVENESS_HISTORY_RETENTION_10S=7200",
		"RESPONSIVENESS_HISTORY_RETENTION_1M=172800",
		"RESPONSIVENESS_HISTORY_RETENTION_1H=31536000",
	}})
	if err != nil {
		t.Fatal(err)
	}
	if c.History.Retention10s != 7200 || c.History.Retention1m != 172800 || c.History.Retention1h != 31536000 {
		t.Fatalf("history = %+v", c.History)
	}
	if d := Defaults().History; d.Retention10s != 86400 || d.Retention1m != 14*86400 || d.Retention1h != 400*86400 {
		t.Fatalf("defaults = %+v, want 24 h, 14 d, 400 d", d)
	}

	for _, tc := range []struct {
		env, key, want string
	}{
		{"RESPONSIVENESS_HISTORY_RETENTION_10S=30", "history.retention_10s", "between 60 and"},
		{"RESPONSIVENESS_HISTORY_RETENTION_1M=60.5", "history.retention_1m", "whole number of seconds"},
		{"RESPONSIVENESS_HISTORY_RETENTION_1H=1e12", "history.retention_1h", "between 3600 and"},
		{"RESPONSIVENESS_HISTORY_RETENTION_10S=2000000", "history.retention_10s", "must not exceed history.retention_1m"},
		{"RESPONSIVENESS_HISTORY_RETENTION_1M=40000000", "history.retention_1m", "must not exceed history.retention_1h"},
		{"RESPONSIVENESS_HISTORY_RETENTION_1H=soon", "history.retention_1h", ""},
	} {
		_, err := Load(LoadOptions{Environ: []string{tc.env}})
		var ve *ValidationError
		if !errors.As(err, &ve) {
			t.Errorf("%s: want a validation error, got %v", tc.env, err)
			continue
		}
		found := false
		for _, fe := range ve.Errors {
			if fe.Key == tc.key && strings.Contains(fe.Problem, tc.want) {
				found = true
			}
		}
		if !found || !strings.Contains(err.Error(), "RESPONSIVENESS_HISTORY_RETENTION_") {
			t.Errorf("%s: want a problem on %s containing %q naming the variable, got:\n%v", tc.env, tc.key, tc.want, err)
		}
	}
}
