package deploy

import (
	"context"
	"debug/elf"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/pulsegate/pulsegate/config"
)

// dockerInstr is one Dockerfile instruction.
type dockerInstr struct {
	line  int
	cmd   string // upper case
	args  string
	stage int // index of the FROM it belongs to; -1 before the first FROM
}

// dockerfile is deploy/Dockerfile, parsed: instructions with line
// continuations joined and comments dropped, plus the parser directives.
type dockerfile struct {
	directives map[string]string
	instrs     []dockerInstr
	stages     []dockerStage
}

type dockerStage struct {
	image, name string
}

func parseDockerfile(t testing.TB) *dockerfile {
	t.Helper()
	data := readFile(t, deployPath(t, "Dockerfile"))
	df := &dockerfile{directives: map[string]string{}}
	directive := regexp.MustCompile(`^#\s*([a-z]+)\s*=\s*(\S+)\s*$`)
	inDirectives := true
	var cur strings.Builder
	start := 0
	stage := -1
	scanLines(data, func(n int, line string) {
		trimmed := strings.TrimSpace(line)
		if cur.Len() == 0 {
			if strings.HasPrefix(trimmed, "#") {
				if m := directive.FindStringSubmatch(trimmed); inDirectives && m != nil {
					df.directives[m[1]] = m[2]
				} else {
					inDirectives = false
				}
				return
			}
			inDirectives = false
			if trimmed == "" {
				return
			}
			start = n
		} else if strings.HasPrefix(trimmed, "#") {
			return // comment lines inside a continued instruction are dropped
		}
		if strings.HasSuffix(trimmed, `\`) {
			cur.WriteString(strings.TrimSuffix(trimmed, `\`) + " ")
			return
		}
		cur.WriteString(trimmed)
		full := cur.String()
		cur.Reset()
		cmd, args, _ := strings.Cut(full, " ")
		cmd = strings.ToUpper(cmd)
		if cmd == "FROM" {
			stage++
			f := strings.Fields(args)
			st := dockerStage{image: f[0]}
			if len(f) == 3 && strings.EqualFold(f[1], "AS") {
				st.name = f[2]
			}
			df.stages = append(df.stages, st)
		}
		df.instrs = append(df.instrs, dockerInstr{line: start, cmd: cmd, args: strings.TrimSpace(args), stage: stage})
	})
	if cur.Len() > 0 {
		t.Fatal("Dockerfile ends inside a continued line")
	}
	if len(df.stages) < 2 {
		t.Fatalf("Dockerfile: want a multi-stage build, found %d stages", len(df.stages))
	}
	return df
}

// in returns the instructions named cmd in stage (-1: global).
func (df *dockerfile) in(stage int, cmd string) []dockerInstr {
	var out []dockerInstr
	for _, i := range df.instrs {
		if i.stage == stage && i.cmd == cmd {
			out = append(out, i)
		}
	}
	return out
}

// argDefault returns the default of a global or stage ARG.
func (df *dockerfile) argDefault(name string) (string, bool) {
	for _, i := range df.instrs {
		if i.cmd == "ARG" {
			if k, v, ok := strings.Cut(i.args, "="); ok && k == name {
				return v, true
			}
		}
	}
	return "", false
}

// shellWords splits a POSIX-shell command line into words (quotes and
// backslashes honoured; no expansion).
func shellWords(s string) ([]string, error) {
	var out []string
	var w strings.Builder
	inWord := false
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '\'':
			j := strings.IndexByte(s[i+1:], '\'')
			if j < 0 {
				return nil, fmt.Errorf("unterminated single quote")
			}
			w.WriteString(s[i+1 : i+1+j])
			i += j + 1
			inWord = true
		case c == '"':
			i++
			for ; i < len(s) && s[i] != '"'; i++ {
				if s[i] == '\\' && i+1 < len(s) {
					i++
				}
				w.WriteByte(s[i])
			}
			if i >= len(s) {
				return nil, fmt.Errorf("unterminated double quote")
			}
			inWord = true
		case c == ' ' || c == '\t':
			if inWord {
				out = append(out, w.String())
				w.Reset()
				inWord = false
			}
		default:
			w.WriteByte(c)
			inWord = true
		}
	}
	if inWord {
		out = append(out, w.String())
	}
	return out, nil
}

// goBuild is the Dockerfile's go build command.
type goBuild struct {
	env    []string // VAR=value words before "go"
	args   []string // after "go build", with -o's value removed
	output string   // the -o value in the image
	line   int
}

func (df *dockerfile) goBuild(t testing.TB) goBuild {
	t.Helper()
	for _, in := range df.in(0, "RUN") {
		if !strings.Contains(in.args, "go build") {
			continue
		}
		for seg := range strings.SplitSeq(in.args, "&&") {
			if !strings.Contains(seg, "go build") {
				continue
			}
			words, err := shellWords(seg)
			if err != nil {
				t.Fatalf("Dockerfile:%d: %v", in.line, err)
			}
			gb := goBuild{line: in.line}
			i := 0
			for ; i < len(words) && words[i] != "go"; i++ {
				if strings.HasPrefix(words[i], "--mount=") {
					continue
				}
				if !strings.Contains(words[i], "=") {
					t.Fatalf("Dockerfile:%d: unexpected word %q before go build", in.line, words[i])
				}
				gb.env = append(gb.env, words[i])
			}
			if i+1 >= len(words) || words[i+1] != "build" {
				t.Fatalf("Dockerfile:%d: no go build", in.line)
			}
			rest := words[i+2:]
			for j := 0; j < len(rest); j++ {
				if rest[j] == "-o" && j+1 < len(rest) {
					gb.output = rest[j+1]
					j++
					continue
				}
				gb.args = append(gb.args, rest[j])
			}
			return gb
		}
	}
	t.Fatal("Dockerfile: the build stage has no RUN ... go build")
	return goBuild{}
}

// testVersion is what the tests pass as the VERSION build argument.
const testVersion = "deploy-test-1.2.3"

// buildLikeDockerfile builds the binary with the Dockerfile's own go build
// command line (environment, flags, ldflags with VERSION substituted), from
// a copy of the repository without the entries Dockerfile.dockerignore
// leaves out of the build context, into dir/pulsegate. So every test that
// runs the binary runs what the image ships.
func buildLikeDockerfile(root, dir string) (string, error) {
	var fail error
	tb := &errTB{fail: func(msg string) { fail = fmt.Errorf("%s", msg) }}
	func() {
		defer func() {
			if r := recover(); r != nil && r != errTBFatal {
				panic(r)
			}
		}()
		df := parseDockerfile(tb)
		gb := df.goBuild(tb)
		ignore := dockerignore(tb)
		src := filepath.Join(dir, "context")
		if err := copyContext(root, src, ignore); err != nil {
			tb.Fatalf("copying the build context: %v", err)
		}
		out := filepath.Join(dir, "pulsegate")
		args := []string{"build", "-o", out}
		for _, a := range gb.args {
			a = strings.ReplaceAll(a, "${VERSION}", testVersion)
			a = strings.ReplaceAll(a, "$VERSION", testVersion)
			args = append(args, a)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
		defer cancel()
		cmd := exec.CommandContext(ctx, goTool(), args...)
		cmd.Dir = src
		cmd.Env = append(os.Environ(), gb.env...)
		cmd.Env = append(cmd.Env, "GOFLAGS=-mod=readonly", "GOWORK=off")
		if msg, err := cmd.CombinedOutput(); err != nil {
			tb.Fatalf("go %s (Dockerfile:%d) in the build context: %v\n%s", strings.Join(args, " "), gb.line, err, msg)
		}
	}()
	if fail != nil {
		return "", fail
	}
	return filepath.Join(dir, "pulsegate"), nil
}

// errTB lets the Dockerfile helpers run outside a test (in the shared
// binary build) and report through an error.
type errTB struct {
	testing.TB
	fail func(string)
}

var errTBFatal = new(int)

func (e *errTB) Helper() {}
func (e *errTB) Fatalf(format string, args ...any) {
	e.fail(fmt.Sprintf(format, args...))
	panic(errTBFatal)
}
func (e *errTB) Fatal(args ...any) {
	e.fail(fmt.Sprint(args...))
	panic(errTBFatal)
}

// dockerignore reads deploy/Dockerfile.dockerignore: top-level names or
// globs only, so the context copy below is exactly what BuildKit sends.
func dockerignore(t testing.TB) []string {
	t.Helper()
	var out []string
	scanLines(readFile(t, deployPath(t, "Dockerfile.dockerignore")), func(n int, line string) {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			return
		}
		if strings.ContainsAny(line, "/!") || strings.Contains(line, "**") {
			t.Fatalf("Dockerfile.dockerignore:%d: %q: keep entries to top-level names", n, line)
		}
		if _, err := path.Match(line, "x"); err != nil {
			t.Fatalf("Dockerfile.dockerignore:%d: %v", n, err)
		}
		out = append(out, line)
	})
	return out
}

func copyContext(root, dst string, ignore []string) error {
	return filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		if rel == "." {
			return os.MkdirAll(dst, 0o755)
		}
		if !strings.Contains(rel, string(filepath.Separator)) {
			for _, pat := range ignore {
				if ok, _ := path.Match(pat, rel); ok {
					if d.IsDir() {
						return filepath.SkipDir
					}
					return nil
				}
			}
		}
		target := filepath.Join(dst, rel)
		switch {
		case d.IsDir():
			return os.MkdirAll(target, 0o755)
		case d.Type().IsRegular():
			in, err := os.Open(p)
			if err != nil {
				return err
			}
			defer in.Close()
			out, err := os.Create(target)
			if err != nil {
				return err
			}
			if _, err := io.Copy(out, in); err != nil {
				out.Close()
				return err
			}
			return out.Close()
		}
		return nil // symlinks, sockets: not part of a Go build
	})
}

// goDirective is go.mod's go version.
func goDirective(t testing.TB) string {
	t.Helper()
	m := regexp.MustCompile(`(?m)^go (\d+\.\d+(?:\.\d+)?)\s*$`).FindSubmatch(readFile(t, filepath.Join(repoRoot(t), "go.mod")))
	if m == nil {
		t.Fatal("go.mod has no go directive")
	}
	return string(m[1])
}

// TestDockerfile checks the image recipe statically (Docker cannot run
// here): a multi-stage build on the go.mod toolchain, a static non-root
// final stage on distroless, the default ports exposed, SIGTERM as the
// stop signal, no HEALTHCHECK, and an entrypoint whose default command is
// a real subcommand of the binary.
func TestDockerfile(t *testing.T) {
	df := parseDockerfile(t)
	if df.directives["syntax"] == "" {
		t.Error("no # syntax= directive: RUN --mount=type=cache needs the BuildKit Dockerfile frontend")
	}
	goVer, ok := df.argDefault("GO_VERSION")
	if !ok {
		t.Fatal("no ARG GO_VERSION=<version>")
	}
	if want := goDirective(t); goVer != want {
		t.Errorf("ARG GO_VERSION=%s, go.mod says go %s", goVer, want)
	}
	build, final := df.stages[0], df.stages[len(df.stages)-1]
	if !strings.HasPrefix(build.image, "golang:${GO_VERSION}") {
		t.Errorf("build stage FROM %s, want golang:${GO_VERSION}...", build.image)
	}
	if build.name == "" {
		t.Error("the build stage needs a name (FROM ... AS build) for COPY --from")
	}
	if !strings.HasPrefix(final.image, "gcr.io/distroless/static") && final.image != "scratch" {
		t.Errorf("final stage FROM %s: want distroless/static (or scratch): a static binary needs no libc", final.image)
	}
	last := len(df.stages) - 1

	users := df.in(last, "USER")
	if len(users) == 0 {
		t.Fatal("the final stage sets no USER")
	}
	uid, _, _ := strings.Cut(users[len(users)-1].args, ":")
	if n, err := strconv.Atoi(uid); err != nil || n == 0 {
		t.Errorf("USER %s: want a numeric non-zero uid, so Kubernetes' runAsNonRoot can verify it", users[len(users)-1].args)
	}
	if pod := loadOverlay(t, "native-sidecar").deploy.Spec.Template.Spec.SecurityContext; pod != nil && pod.RunAsUser != nil && strconv.Itoa(int(*pod.RunAsUser)) != uid {
		t.Errorf("USER %s but the pods run as %d; keep them equal so the data dir is writable", uid, *pod.RunAsUser)
	}

	var exposed []string
	for _, e := range df.in(last, "EXPOSE") {
		for p := range strings.FieldsSeq(e.args) {
			exposed = append(exposed, strings.TrimSuffix(p, "/tcp"))
		}
	}
	def := config.Defaults()
	want := []string{portOf(t, def.Proxy.ListenAddr), portOf(t, def.Admin.Addr)}
	slices.Sort(exposed)
	slices.Sort(want)
	if !slices.Equal(exposed, want) {
		t.Errorf("EXPOSE %v, the default proxy and admin ports are %v", exposed, want)
	}
	if ss := df.in(last, "STOPSIGNAL"); len(ss) != 1 || ss[0].args != "SIGTERM" {
		t.Errorf("STOPSIGNAL %v, want SIGTERM (pulsegate drains on SIGTERM)", ss)
	}
	for _, i := range df.instrs {
		if i.cmd == "HEALTHCHECK" {
			t.Errorf("Dockerfile:%d: HEALTHCHECK; Kubernetes probes /healthz and /readyz instead", i.line)
		}
		if i.cmd == "ADD" {
			t.Errorf("Dockerfile:%d: ADD; use COPY", i.line)
		}
	}

	// The build command: static, trimmed, stripped, versioned.
	gb := df.goBuild(t)
	if !slices.Contains(gb.env, "CGO_ENABLED=0") {
		t.Error("go build without CGO_ENABLED=0: the binary would need libc, which distroless/static lacks")
	}
	joined := strings.Join(gb.args, " ")
	for _, flag := range []string{"-trimpath"} {
		if !slices.Contains(gb.args, flag) {
			t.Errorf("go build without %s", flag)
		}
	}
	ld := ""
	for i, a := range gb.args {
		if a == "-ldflags" && i+1 < len(gb.args) {
			ld = gb.args[i+1]
		}
		if v, ok := strings.CutPrefix(a, "-ldflags="); ok {
			ld = v
		}
	}
	for _, f := range []string{"-s", "-w", "-X main.version=${VERSION}"} {
		if !strings.Contains(" "+ld+" ", " "+f+" ") {
			t.Errorf("-ldflags %q lacks %s", ld, f)
		}
	}
	if !strings.HasSuffix(joined, " .") && joined != "." {
		t.Errorf("go build %s: want the module root package (.)", joined)
	}

	// The binary the build stage produces is what the final stage copies
	// and runs.
	var copied string
	for _, c := range df.in(last, "COPY") {
		f := strings.Fields(c.args)
		if slices.Contains(f, "--from="+build.name) && f[len(f)-2] == gb.output {
			copied = f[len(f)-1]
		}
	}
	if copied == "" {
		t.Fatalf("the final stage does not COPY --from=%s %s", build.name, gb.output)
	}
	ep := df.in(last, "ENTRYPOINT")
	if len(ep) != 1 {
		t.Fatal("want one ENTRYPOINT in the final stage")
	}
	var entry, cmdArgs []string
	if err := json.Unmarshal([]byte(ep[0].args), &entry); err != nil || len(entry) != 1 {
		t.Fatalf("ENTRYPOINT %s: want the exec form with the binary only (signals reach pulsegate, not a shell)", ep[0].args)
	}
	if entry[0] != copied {
		t.Errorf("ENTRYPOINT %s, but the binary is copied to %s", entry[0], copied)
	}
	if c := df.in(last, "CMD"); len(c) == 1 {
		if err := json.Unmarshal([]byte(c[0].args), &cmdArgs); err != nil {
			t.Errorf("CMD %s: want the exec form", c[0].args)
		}
	}
	if len(cmdArgs) == 0 || cmdArgs[0] != "serve" {
		t.Errorf("CMD %v: want [\"serve\"]", cmdArgs)
	}
	out, code := runBinary(t, nil, append(slices.Clone(cmdArgs), "--help")...)
	if strings.Contains(out, "unknown command") || code > 2 {
		t.Errorf("pulsegate %v --help: exit %d\n%s", cmdArgs, code, out)
	}
}

// TestImageBinaryIsStatic inspects the binary built with the Dockerfile's
// command line: a static ELF (no interpreter, no shared libraries) that
// runs on distroless/static, stripped, free of build paths, reporting the
// VERSION build argument.
func TestImageBinaryIsStatic(t *testing.T) {
	bin := pulsegateBinary(t)
	f, err := elf.Open(bin)
	if err != nil {
		t.Fatalf("opening the binary: %v", err)
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			t.Error("the binary has a dynamic loader (PT_INTERP): it is not static")
		}
	}
	if libs, _ := f.ImportedLibraries(); len(libs) > 0 {
		t.Errorf("the binary needs shared libraries %v", libs)
	}
	if f.Section(".symtab") != nil {
		t.Error("the binary has a symbol table: -ldflags -s did not apply")
	}
	if f.Section(".debug_info") != nil || f.Section(".zdebug_info") != nil {
		t.Error("the binary has DWARF: -ldflags -w did not apply")
	}
	raw := readFile(t, bin)
	if strings.Contains(string(raw), repoRoot(t)) || strings.Contains(string(raw), filepath.Dir(bin)) {
		t.Error("the binary contains build paths: -trimpath did not apply")
	}
	out, code := runBinary(t, nil, "version")
	if code != 0 || !strings.Contains(out, testVersion) {
		t.Errorf("pulsegate version: exit %d, %q; want the VERSION build argument %s", code, out, testVersion)
	}
}
