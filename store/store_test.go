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

func TestMain(m *testing.M) {
	code := m.Run()
	dropTestDatabases()
	if code == 0 {
		if err := goleak.Find(); err != nil {
			fmt.Fprintf(os.Stderr, "goleak: %v\n", err)
			code = 1
		}
	}
	os.Exit(code)
}

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
