package deploy

import (
	"bytes"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/pulsegate/pulsegate/alerts"
	"github.com/pulsegate/pulsegate/config"
)

var update = flag.Bool("update", false, "rewrite deploy/monitoring/runbook-urls/kustomization.yaml from the shipped rules")

// The runbooks: docs/runbooks/<rule>.md for every rule pulsegate raises
// (alerts.Rules) and every Prometheus-only alert (its rule label, the
// alertname in snake case without the Pulsegate prefix).

const (
	// runbookOverlay sets its own runbook base URL on the monitoring objects.
	runbookOverlay = "monitoring-runbooks"
	// runbookComponent rewrites runbook_url from the pulsegate-runbooks ConfigMap.
	runbookComponent = "runbook-urls"
)

func runbookDir(t testing.TB) string { return filepath.Join(repoRoot(t), "docs", "runbooks") }

// runbookSections are the headings every runbook has, in this order.
var runbookSections = []string{"## What fired", "## What pulsegate shows", "## Confirm the cause", "## What to do"}

// checkRunbook requires docs/runbooks/<rule>.md with a title naming the
// rule and the four sections.
func checkRunbook(t *testing.T, rule, why string) {
	t.Helper()
	path := filepath.Join(runbookDir(t), rule+".md")
	b, err := os.ReadFile(path)
	if err != nil {
		t.Errorf("%s has no runbook: write docs/runbooks/%s.md (%s)", rule, rule, why)
		return
	}
	text := string(b)
	if first, _, _ := strings.Cut(text, "\n"); !strings.HasPrefix(first, "# ") || !strings.Contains(first, rule) {
		t.Errorf("docs/runbooks/%s.md: the first line must be a \"# \" title naming %s, got %q", rule, rule, first)
	}
	at := 0
	for _, s := range runbookSections {
		i := strings.Index(text[at:], "\n"+s+"\n")
		if i < 0 {
			t.Errorf("docs/runbooks/%s.md: no %q section (after the previous ones)", rule, s)
			continue
		}
		at += i + 1
	}
}

// TestEveryAlertRuleHasARunbook: every rule in code has its runbook.
func TestEveryAlertRuleHasARunbook(t *testing.T) {
	for _, rule := range alerts.Rules() {
		checkRunbook(t, rule, "alerts.Rules() lists it")
	}
}

// TestPrometheusAlertsHaveRunbookURL: every shipped Prometheus alert has a
// runbook_url annotation, base + "/" + its rule label + ".md" with the
// default base of alerts.runbook_base_url (the same URL pulsegate's own
// alert of that rule carries), and the file exists.
func TestPrometheusAlertsHaveRunbookURL(t *testing.T) {
	checked := map[string]bool{}
	for _, r := range shippedRules(t) {
		where := r.group + "/" + r.name + "/" + r.labels["severity"]
		rule := r.labels["rule"]
		want := config.DefaultRunbookBaseURL + "/" + rule + ".md"
		if got := r.annotations["runbook_url"]; got != want {
			t.Errorf("%s: runbook_url = %q; want %q", where, got, want)
		}
		if !checked[rule] {
			checked[rule] = true
			checkRunbook(t, rule, where+" links to it")
		}
	}
}

// runbooksAhead are pages written ahead of their rules: the figures exist
// (redis_latency, app_error_rate) and pulsegate's rules for them are being
// added. Once alerts.Rules() lists one, its entry here is redundant and the
// test says so.
var runbooksAhead = []string{"redis_latency", "app_error_rate"}

// TestNoOrphanRunbooks: every file in docs/runbooks is README.md or the
// runbook of a rule (in code or in the rule files), and the README indexes
// every runbook.
func TestNoOrphanRunbooks(t *testing.T) {
	known := map[string]bool{}
	for _, r := range runbooksAhead {
		if slices.Contains(alerts.Rules(), r) {
			t.Logf("%s is now a rule in code: remove it from runbooksAhead", r)
		}
		known[r] = true
	}
	for _, r := range alerts.Rules() {
		known[r] = true
	}
	for _, r := range shippedRules(t) {
		known[r.labels["rule"]] = true
	}
	entries, err := os.ReadDir(runbookDir(t))
	if err != nil {
		t.Fatal(err)
	}
	index := string(readFile(t, filepath.Join(runbookDir(t), "README.md")))
	for _, e := range entries {
		name := e.Name()
		if name == "README.md" {
			continue
		}
		rule, ok := strings.CutSuffix(name, ".md")
		if !ok || e.IsDir() || !known[rule] {
			t.Errorf("docs/runbooks/%s belongs to no alert rule (alerts.Rules() or a rule label in deploy/monitoring); remove or rename it", name)
			continue
		}
		if !strings.Contains(index, "("+name+")") {
			t.Errorf("docs/runbooks/README.md does not link %s", name)
		}
	}
}

// TestRunbookLinksResolve: relative links in the runbooks point at files
// that exist.
func TestRunbookLinksResolve(t *testing.T) {
	link := regexp.MustCompile(`\]\(([^)#\s]+)(#[^)]*)?\)`)
	files, err := filepath.Glob(filepath.Join(runbookDir(t), "*.md"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no runbooks: %v", err)
	}
	for _, f := range files {
		for _, m := range link.FindAllStringSubmatch(string(readFile(t, f)), -1) {
			target := m[1]
			if strings.Contains(target, "://") || strings.HasPrefix(target, "mailto:") {
				continue
			}
			if _, err := os.Stat(filepath.Join(filepath.Dir(f), target)); err != nil {
				t.Errorf("%s: link %s: %v", filepath.Base(f), target, err)
			}
		}
	}
}

// runbookComponentYAML renders the kustomize Component that rewrites every
// alert's runbook_url to <data.base_url of ConfigMap pulsegate-runbooks>/<rule>.md.
// Kustomize replacements cannot concatenate strings, so each alert gets a
// target whose delimiter is its own "/<rule>.md": the part before it (the
// base URL) is replaced and the delimiter stays.
func runbookComponentYAML(t *testing.T) []byte {
	var b bytes.Buffer
	b.WriteString(`# Generated by: go test ./deploy -run TestRunbookURLComponent -update
# (deploy/runbooks_test.go; the test fails when it is out of date).
#
# Rewrites the runbook_url annotation of every pulsegate alert to
# <base_url>/<rule>.md, base_url being data.base_url of the ConfigMap
# pulsegate-runbooks, which the kustomization using this component
# generates (as local-config, so it is not applied). See
# deploy/kubernetes/overlays/monitoring-runbooks and docs/runbooks/README.md.
apiVersion: kustomize.config.k8s.io/v1alpha1
kind: Component
replacements:
  - source:
      kind: ConfigMap
      name: pulsegate-runbooks
      fieldPath: data.base_url
    targets:
`)
	seen := map[string]bool{}
	for _, r := range shippedRules(t) {
		if seen[r.name] {
			continue
		}
		seen[r.name] = true
		fmt.Fprintf(&b, `      - select:
          kind: PrometheusRule
          name: pulsegate
        fieldPaths:
          - spec.groups.*.rules.[alert=%s].annotations.runbook_url
        options:
          delimiter: /%s.md
          index: 0
`, r.name, r.labels["rule"])
	}
	return b.Bytes()
}

// TestRunbookURLComponent keeps the component in step with the rule files
// and, where kubectl is installed, renders the example overlay with
// kubectl's kustomize: every alert's runbook_url moves to the overlay's
// base URL, and deploy/monitoring alone keeps the default.
func TestRunbookURLComponent(t *testing.T) {
	path := deployPath(t, "monitoring", runbookComponent, "kustomization.yaml")
	want := runbookComponentYAML(t)
	if *update {
		if err := os.WriteFile(path, want, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if got := readFile(t, path); !bytes.Equal(got, want) {
		t.Fatalf("%s is out of date with the rule files: run go test ./deploy -run TestRunbookURLComponent -update", path)
	}

	// The overlay's base URL: the literal base_url= of its ConfigMap.
	ovDir := deployPath(t, "kubernetes", "overlays", runbookOverlay)
	m := regexp.MustCompile(`(?m)^\s+- base_url=(\S+)$`).FindSubmatch(readFile(t, filepath.Join(ovDir, "kustomization.yaml")))
	if m == nil {
		t.Fatalf("%s/kustomization.yaml: no base_url= literal", runbookOverlay)
	}
	base := string(m[1])
	if base == config.DefaultRunbookBaseURL || strings.HasSuffix(base, "/") {
		t.Fatalf("overlay base_url %q: want an example other than the default, without a trailing slash", base)
	}

	kubectl, err := exec.LookPath("kubectl")
	if err != nil {
		t.Skip("kubectl not installed: the component's targets are checked against the rule files only")
	}
	render := func(dir string) map[string][]string {
		t.Helper()
		out, err := exec.Command(kubectl, "kustomize", dir).CombinedOutput()
		if err != nil {
			t.Fatalf("kubectl kustomize %s: %v\n%s", dir, err, out)
		}
		docs, err := yamlDocs(out)
		if err != nil {
			t.Fatal(err)
		}
		urls := map[string][]string{} // rule → runbook_urls
		n := 0
		for _, d := range docs {
			obj := d.(map[string]any)
			if obj["kind"] == "ConfigMap" {
				t.Errorf("%s renders the pulsegate-runbooks ConfigMap; it must stay local-config", dir)
			}
			if obj["kind"] != "PrometheusRule" {
				continue
			}
			for _, g := range obj["spec"].(map[string]any)["groups"].([]any) {
				for _, r := range g.(map[string]any)["rules"].([]any) {
					rm := r.(map[string]any)
					rule := rm["labels"].(map[string]any)["rule"].(string)
					u, _ := rm["annotations"].(map[string]any)["runbook_url"].(string)
					urls[rule] = append(urls[rule], u)
					n++
				}
			}
		}
		if n != len(shippedRules(t)) {
			t.Fatalf("%s renders %d alerts, the rule file has %d", dir, n, len(shippedRules(t)))
		}
		return urls
	}
	for rule, us := range render(deployPath(t, "monitoring")) {
		for _, u := range us {
			if u != config.DefaultRunbookBaseURL+"/"+rule+".md" {
				t.Errorf("deploy/monitoring: %s runbook_url %q; want the default base", rule, u)
			}
		}
	}
	got := render(ovDir)
	for rule, us := range got {
		for _, u := range us {
			if u != base+"/"+rule+".md" {
				t.Errorf("overlay %s: %s runbook_url %q; want %s/%s.md", runbookOverlay, rule, u, base, rule)
			}
		}
	}
	if len(got) == 0 {
		t.Error("overlay renders no alerts")
	}
}
