package store

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

var t0 = time.Date(2025, 1, 6, 10, 30, 0, 0, time.UTC)

func tp(t time.Time) *time.Time { return &t }

func openTest(t *testing.T, dir string, opts ...Option) *Store {
	t.Helper()
	s, err := Open(dir, zap.NewNop(), opts...)
	if err != nil {
		t.Fatalf("Open(%s): %v", dir, err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

func TestOpenCreatesPrivateDirAndFile(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "nested", "data")
	s := openTest(t, dir)
	fi, err := os.Stat(dir)
	if err != nil {
		t.Fatal(err)
	}
	if got := fi.Mode().Perm(); got != 0o700 {
		t.Errorf("data dir mode = %o; want 700", got)
	}
	if s.Path() != filepath.Join(dir, FileName) {
		t.Errorf("Path() = %q; want %q", s.Path(), filepath.Join(dir, FileName))
	}
	fi, err = os.Stat(s.Path())
	if err != nil {
		t.Fatal(err)
	}
	if got := fi.Mode().Perm(); got != 0o600 {
		t.Errorf("store file mode = %o; want 600", got)
	}
}

func TestAlertsSurviveReopen(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(dir, zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	firing := AlertRecord{ID: "a1", Key: "memory_usage", Rule: "memory_usage", Severity: SeverityWarning, State: StateFiring,
		Metric: "memory_usage", Value: 0.85, Threshold: 0.8, Message: "Memory usage at 85%", FirstSeen: t0, LastSeen: t0}
	acked := AlertRecord{ID: "a2", Key: "cpu_usage", Rule: "cpu_usage", Severity: SeverityCritical, State: StateAcknowledged,
		FirstSeen: t0.Add(time.Minute), LastSeen: t0.Add(time.Minute),
		AcknowledgedAt: tp(t0.Add(2 * time.Minute)), AcknowledgedBy: "token:3f2a9c", AckNote: "looking\r\ninto it"}
	if err := s.SaveAlerts(firing, acked); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	s = openTest(t, dir)
	got, err := s.LoadAlerts()
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 {
		t.Fatalf("LoadAlerts: %d records; want 2", len(got))
	}
	if got[0].ID != "a2" || got[1].ID != "a1" {
		t.Errorf("order = %s,%s; want newest first a2,a1", got[0].ID, got[1].ID)
	}
	if got[0].AcknowledgedAt == nil || !got[0].AcknowledgedAt.Equal(t0.Add(2*time.Minute)) ||
		got[0].AcknowledgedBy != "token:3f2a9c" || got[0].AckNote != "looking\r\ninto it" {
		t.Errorf("acknowledgement not preserved: %+v", got[0])
	}
	if got[1].Message != "Memory usage at 85%" || got[1].Value != 0.85 || got[1].State != StateFiring {
		t.Errorf("firing alert not preserved: %+v", got[1])
	}
	acks, err := s.Acknowledgements()
	if err != nil {
		t.Fatal(err)
	}
	if len(acks) != 1 || acks[0].AlertID != "a2" || acks[0].By != "token:3f2a9c" {
		t.Errorf("Acknowledgements() = %+v", acks)
	}
}

func TestPruneAlertsKeepsActiveAndNewestResolved(t *testing.T) {
	s := openTest(t, t.TempDir())
	var recs []AlertRecord
	for i := range 10 {
		recs = append(recs, AlertRecord{ID: fmt.Sprintf("r%02d", i), State: StateResolved,
			FirstSeen: t0, ResolvedAt: tp(t0.Add(time.Duration(i) * time.Minute))})
	}
	recs = append(recs, AlertRecord{ID: "active1", State: StateFiring, FirstSeen: t0.Add(-time.Hour)},
		AlertRecord{ID: "active2", State: StateAcknowledged, FirstSeen: t0.Add(-2 * time.Hour), AcknowledgedAt: tp(t0)})
	recs[0].AcknowledgedAt = tp(t0) // an old acknowledged-then-resolved alert: its ack goes too
	if err := s.SaveAlerts(recs...); err != nil {
		t.Fatal(err)
	}
	if err := s.PruneAlerts(3); err != nil {
		t.Fatal(err)
	}
	got, err := s.LoadAlerts()
	if err != nil {
		t.Fatal(err)
	}
	ids := map[string]bool{}
	for _, a := range got {
		ids[a.ID] = true
	}
	want := []string{"r09", "r08", "r07", "active1", "active2"}
	if len(got) != len(want) {
		t.Errorf("after PruneAlerts(3): %d records; want %d (%v)", len(got), len(want), ids)
	}
	for _, id := range want {
		if !ids[id] {
			t.Errorf("after PruneAlerts(3): %s missing", id)
		}
	}
	acks, _ := s.Acknowledgements()
	if len(acks) != 1 || acks[0].AlertID != "active2" {
		t.Errorf("acknowledgements after prune = %+v; want only active2's", acks)
	}
	if err := s.PruneAlerts(-1); err == nil {
		t.Error("PruneAlerts(-1) = nil; want an error")
	}
}

func TestAuditOrderPagingAndRetention(t *testing.T) {
	dir := t.TempDir()
	s := openTest(t, dir, WithAuditRetention(5), WithClock(func() time.Time { return t0.Add(time.Hour) }))
	for i := range 8 {
		e := AuditEntry{Time: t0.Add(time.Duration(i) * time.Second), Actor: "token:3f2a9c", Source: "admin_api",
			Action: ActionConfigUpdate, Outcome: OutcomeOK, Changes: []Change{{Key: "responsiveness.slow_request_threshold", Old: "5", New: fmt.Sprint(i)}}}
		if err := s.AppendAudit(e); err != nil {
			t.Fatal(err)
		}
	}
	all, err := s.Audit(0, time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	if len(all) != 5 {
		t.Fatalf("Audit after 8 appends with retention 5: %d entries; want 5", len(all))
	}
	for i, e := range all {
		if want := t0.Add(time.Duration(7-i) * time.Second); !e.Time.Equal(want) {
			t.Errorf("entry %d time = %v; want %v (newest first, oldest dropped)", i, e.Time, want)
		}
	}
	page, err := s.Audit(2, t0.Add(6*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	if len(page) != 2 || !page[0].Time.Equal(t0.Add(5*time.Second)) || !page[1].Time.Equal(t0.Add(4*time.Second)) {
		t.Errorf("Audit(2, t0+6s) = %+v; want entries at t0+5s, t0+4s", page)
	}
	if page[0].Changes[0].New != "5" {
		t.Errorf("changes not preserved: %+v", page[0].Changes)
	}

	// Zero time is stamped with the clock; the count survives a reopen so
	// retention keeps holding.
	if err := s.AppendAudit(AuditEntry{Action: ActionAlertAcknowledge, Outcome: OutcomeOK}); err != nil {
		t.Fatal(err)
	}
	_ = s.Close()
	s = openTest(t, dir, WithAuditRetention(5))
	if err := s.AppendAudit(AuditEntry{Time: t0.Add(2 * time.Hour), Action: ActionConfigRejected, Outcome: OutcomeRejected, Error: "x"}); err != nil {
		t.Fatal(err)
	}
	all, _ = s.Audit(100, time.Time{})
	if len(all) != 5 {
		t.Errorf("after reopen: %d entries; want 5", len(all))
	}
	if all[0].Action != ActionConfigRejected || all[1].Action != ActionAlertAcknowledge || !all[1].Time.Equal(t0.Add(time.Hour)) {
		t.Errorf("newest entries = %+v, %+v", all[0], all[1])
	}
	if err := s.AppendAudit(AuditEntry{}); err == nil || !strings.Contains(err.Error(), "action") {
		t.Errorf("AppendAudit without action: err = %v; want one naming the action", err)
	}
}

func TestAuditBoundsText(t *testing.T) {
	s := openTest(t, t.TempDir())
	long := strings.Repeat("é", MaxTextLen) // 2 bytes each
	if err := s.AppendAudit(AuditEntry{Action: ActionConfigRejected, Error: long}); err != nil {
		t.Fatal(err)
	}
	got, _ := s.Audit(1, time.Time{})
	if n := len(got[0].Error); n > MaxTextLen {
		t.Errorf("stored error is %d bytes; want <= %d", n, MaxTextLen)
	}
	if !strings.HasSuffix(got[0].Error, "…") || !strings.HasPrefix(got[0].Error, "éé") {
		t.Errorf("cut text should end with the marker on a rune boundary, got suffix %q", got[0].Error[len(got[0].Error)-8:])
	}
}

func TestAuditEntryLogsEscaped(t *testing.T) {
	var buf bytes.Buffer
	for _, enc := range []zapcore.Encoder{
		zapcore.NewConsoleEncoder(zap.NewDevelopmentEncoderConfig()),
		zapcore.NewJSONEncoder(zap.NewProductionEncoderConfig()),
	} {
		buf.Reset()
		log := zap.New(zapcore.NewCore(enc, zapcore.AddSync(&buf), zap.InfoLevel))
		e := AuditEntry{Time: t0, Actor: "peer:127.0.0.1", Action: ActionAlertAcknowledge, Outcome: OutcomeOK,
			Target: "id1\n2025-01-06 INFO forged line", Changes: []Change{{Key: "k", Old: "a\rb", New: "c\x1bd"}}}
		log.Info("audit", zap.Object("audit", e))
		out := buf.String()
		if n := strings.Count(out, "\n"); n != 1 {
			t.Errorf("one event rendered as %d lines: %q", n, out)
		}
		if strings.ContainsAny(strings.TrimSuffix(out, "\n"), "\r\x1b") {
			t.Errorf("raw control characters in log line: %q", out)
		}
		if !strings.Contains(out, `forged line`) {
			t.Errorf("text lost: %q", out)
		}
	}
}

func TestEscapeText(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"plain note", "plain note"},
		{"a\r\nb", `a\r\nb`},
		{"tab\there", `tab\there`},
		{`back\slash`, `back\\slash`},
		{"esc\x1b[31m", `esc\x1b[31m`},
		{"ünïcode ✓", "ünïcode ✓"},
		{"line\u2028sep", `line\u2028sep`},
		{"bad\xffbyte", `bad\ufffdbyte`},
	} {
		if got := EscapeText(tc.in); got != tc.want {
			t.Errorf("EscapeText(%q) = %q; want %q", tc.in, got, tc.want)
		}
	}
}

func TestSecondOpenFailsFast(t *testing.T) {
	dir := t.TempDir()
	openTest(t, dir)
	_, err := Open(dir, zap.NewNop(), WithLockTimeout(200*time.Millisecond))
	if err == nil {
		t.Fatal("second Open of a locked store succeeded")
	}
	if !errors.Is(err, ErrLocked) || !strings.Contains(err.Error(), filepath.Join(dir, FileName)) {
		t.Errorf("second Open error = %v; want ErrLocked naming the path", err)
	}
}

func TestOpenBadDataDir(t *testing.T) {
	parent := t.TempDir()
	file := filepath.Join(parent, "not-a-dir")
	if err := os.WriteFile(file, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ desc, dir string }{
		{"dir is a file", file},
		{"parent is a file", filepath.Join(file, "data")},
		{"empty", ""},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			s, err := Open(tc.dir, zap.NewNop())
			if err == nil {
				_ = s.Close()
				t.Fatal("Open succeeded")
			}
			if !strings.Contains(err.Error(), tc.dir) || !strings.Contains(err.Error(), "data_dir") {
				t.Errorf("error %q should name data_dir and %q", err, tc.dir)
			}
		})
	}
}

func TestOpenCorruptFile(t *testing.T) {
	// A real store with content, to corrupt in different ways.
	good := t.TempDir()
	s, err := Open(good, zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	for i := range 200 {
		if err := s.AppendAudit(AuditEntry{Time: t0.Add(time.Duration(i) * time.Second), Action: ActionConfigUpdate,
			Changes: []Change{{Key: "k", Old: strings.Repeat("o", 100), New: strings.Repeat("n", 100)}}}); err != nil {
			t.Fatal(err)
		}
	}
	_ = s.Close()
	orig, err := os.ReadFile(filepath.Join(good, FileName))
	if err != nil {
		t.Fatal(err)
	}
	pageSize := os.Getpagesize()

	for _, tc := range []struct {
		desc    string
		content func() []byte
	}{
		{"garbage", func() []byte { return bytes.Repeat([]byte("not a bolt file\n"), 1024) }},
		{"meta pages zeroed", func() []byte {
			b := bytes.Clone(orig)
			clear(b[:2*pageSize])
			return b
		}},
		{"data pages overwritten", func() []byte {
			b := bytes.Clone(orig)
			for i := 2 * pageSize; i < len(b); i++ {
				b[i] = 0xA5
			}
			return b
		}},
		{"truncated", func() []byte { return orig[:len(orig)/3] }},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, FileName)
			if err := os.WriteFile(path, tc.content(), 0o600); err != nil {
				t.Fatal(err)
			}
			s, err := Open(dir, zap.NewNop())
			if err == nil {
				_ = s.Close()
				t.Fatal("Open of a corrupt store succeeded")
			}
			if !strings.Contains(err.Error(), path) {
				t.Errorf("error %q does not name %s", err, path)
			}
			// The file is left alone for the operator to inspect.
			if fi, _ := os.Stat(path); fi == nil || fi.Size() == 0 {
				t.Error("corrupt file was removed or emptied")
			}
		})
	}
}
