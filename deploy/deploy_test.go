// Package deploy holds no Go code, only the tests that keep deploy/ honest:
// the Kubernetes manifests, the Dockerfile, the systemd unit, and the
// Prometheus, Alertmanager and Grafana files are checked against the real
// binary (its subcommands, flags and /metrics) and against the code's own
// configuration table (config.EnvVars, config.Load, config.Defaults).
//
// This file has the shared helpers and the "everything parses" test; the
// other files test one deployment target each.
package deploy

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"
	"gopkg.in/yaml.v3"

	"github.com/pulsegate/pulsegate/config"
)

// cleanups run once after every test of the package (the shared binary).
var (
	cleanupMu sync.Mutex
	cleanups  []func()
)

type testMain struct{ m *testing.M }

func (t testMain) Run() int {
	code := t.m.Run()
	cleanupMu.Lock()
	defer cleanupMu.Unlock()
	for _, f := range slices.Backward(cleanups) {
		f()
	}
	return code
}

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(testMain{m})
}

// repoRoot is the module root (the parent of this package's directory).
func repoRoot(t testing.TB) string {
	t.Helper()
	_, file, _, ok := runtime.Caller(0)
	if !ok {
		t.Fatal("locating the test source file")
	}
	root := filepath.Dir(filepath.Dir(file))
	if _, err := os.Stat(filepath.Join(root, "go.mod")); err != nil {
		t.Fatalf("repository root %s has no go.mod: %v", root, err)
	}
	return root
}

// deployPath joins elements under deploy/.
func deployPath(t testing.TB, elem ...string) string {
	return filepath.Join(append([]string{repoRoot(t), "deploy"}, elem...)...)
}

func readFile(t testing.TB, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("reading %s: %v", path, err)
	}
	return b
}

// yamlDocs decodes every document of a (multi-document) YAML stream into
// generic values. yaml.v3 rejects duplicate mapping keys.
func yamlDocs(data []byte) ([]any, error) {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var docs []any
	for {
		var v any
		err := dec.Decode(&v)
		if errors.Is(err, io.EOF) {
			return docs, nil
		}
		if err != nil {
			return nil, fmt.Errorf("document %d: %w", len(docs)+1, err)
		}
		if v == nil {
			continue // an empty document (e.g. a trailing "---")
		}
		docs = append(docs, v)
	}
}

// decodeYAMLStrict decodes one YAML document into out, failing on unknown
// keys (yaml.v3 KnownFields).
func decodeYAMLStrict(data []byte, out any) error {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	return dec.Decode(out)
}

// envVarsByName is config.EnvVars keyed by variable name.
func envVarsByName() map[string]config.EnvVar {
	out := map[string]config.EnvVar{}
	for _, e := range config.EnvVars() {
		out[e.Name] = e
	}
	return out
}

// portOf returns the port of a host:port listen address.
func portOf(t testing.TB, addr string) string {
	t.Helper()
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatalf("listen address %q: %v", addr, err)
	}
	return port
}

// --- the real binary ---------------------------------------------------

var (
	binOnce sync.Once
	binPath string
	binErr  error
)

// pulsegateBinary builds the repository's binary once per test run, with
// the Dockerfile's own go build command line from a copy of the Docker
// build context (see buildLikeDockerfile), so every test runs what the image
// ships. It returns the binary's path.
func pulsegateBinary(t testing.TB) string {
	t.Helper()
	root := repoRoot(t)
	binOnce.Do(func() {
		if _, err := os.Stat(filepath.Join(root, "main.go")); err != nil {
			binErr = fmt.Errorf("main.go is not there yet: %w", err)
			return
		}
		dir, err := os.MkdirTemp("", "pulsegate-deploy-test-")
		if err != nil {
			binErr = err
			return
		}
		cleanupMu.Lock()
		cleanups = append(cleanups, func() { os.RemoveAll(dir) })
		cleanupMu.Unlock()
		binPath, binErr = buildLikeDockerfile(root, dir)
	})
	if binErr != nil {
		t.Fatalf("building pulsegate: %v", binErr)
	}
	return binPath
}

// goTool is the go command of the toolchain running the tests.
func goTool() string {
	p := filepath.Join(runtime.GOROOT(), "bin", "go")
	if _, err := os.Stat(p); err == nil {
		return p
	}
	return "go"
}

// cleanEnviron is the test process's environment without any
// RESPONSIVENESS_* variable, so the binary sees only what a test gives it.
func cleanEnviron() []string {
	var out []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, config.EnvPrefix) {
			out = append(out, kv)
		}
	}
	return out
}

// runBinary runs pulsegate with args and extra environment entries and
// returns its combined output and exit code.
func runBinary(t testing.TB, env []string, args ...string) (string, int) {
	t.Helper()
	bin := pulsegateBinary(t) // may take minutes on a busy machine: before the deadline starts
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Env = append(cleanEnviron(), env...)
	cmd.Dir = t.TempDir()
	out, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	switch {
	case err == nil:
		return string(out), 0
	case errors.As(err, &ee):
		return string(out), ee.ExitCode()
	default:
		t.Fatalf("running pulsegate %s: %v", strings.Join(args, " "), err)
		return "", -1
	}
}

// loadConfig is the effective configuration the binary would use with this
// YAML file and environment, through the config package's own loader.
func loadConfig(t testing.TB, file string, env []string) *config.Config {
	t.Helper()
	cfg, err := config.Load(config.LoadOptions{File: file, Environ: env})
	if err != nil {
		names := make([]string, 0, len(env))
		for _, kv := range env {
			n, _, _ := strings.Cut(kv, "=")
			names = append(names, n)
		}
		t.Fatalf("config.Load(%s with %s): %v", file, strings.Join(names, ", "), err)
	}
	return cfg
}

// --- every file parses ---------------------------------------------------

// TestEveryYAMLAndJSONFileParses walks deploy/ and decodes every YAML
// (all documents) and JSON file, so a stray tab or a duplicated key never
// ships.
func TestEveryYAMLAndJSONFileParses(t *testing.T) {
	root := deployPath(t)
	var yamls, jsons int
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(root, path)
		switch filepath.Ext(path) {
		case ".yaml", ".yml":
			yamls++
			docs, err := yamlDocs(readFile(t, path))
			if err != nil {
				t.Errorf("%s: %v", rel, err)
			} else if len(docs) == 0 {
				t.Errorf("%s: no YAML document", rel)
			}
			for i, d := range docs {
				if _, ok := d.(map[string]any); !ok {
					t.Errorf("%s: document %d is a %T, want a mapping", rel, i+1, d)
				}
			}
		case ".json":
			jsons++
			var v any
			dec := json.NewDecoder(bytes.NewReader(readFile(t, path)))
			if err := dec.Decode(&v); err != nil {
				t.Errorf("%s: %v", rel, err)
			} else if dec.More() {
				t.Errorf("%s: trailing data after the JSON value", rel)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if yamls < 10 || jsons < 1 {
		t.Errorf("found %d YAML and %d JSON files under deploy/; the Kubernetes, monitoring and dashboard files are missing", yamls, jsons)
	}
}

// --- small text helpers ----------------------------------------------------

// scanLines calls f for every line of data with its 1-based number.
func scanLines(data []byte, f func(n int, line string)) {
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	n := 0
	for sc.Scan() {
		n++
		f(n, sc.Text())
	}
}
