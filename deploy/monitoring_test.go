package deploy

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"log/slog"
	"math"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	monv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/model/rulefmt"
	"github.com/prometheus/prometheus/promql/parser"
	"go.uber.org/zap"
	"gopkg.in/yaml.v3"

	"github.com/pulsegate/pulsegate/alerts"
	"github.com/pulsegate/pulsegate/config"
	"github.com/pulsegate/pulsegate/figures"
)

var promql = parser.NewParser(parser.Options{})

// alertRule is one alerting rule of the shipped rule files, parsed.
type alertRule struct {
	group       string
	name        string
	expr        string
	ast         parser.Expr
	forDur      time.Duration
	labels      map[string]string
	annotations map[string]string
}

// parseRuleFile parses a Prometheus rule file with Prometheus's own parser
// (rulefmt: strict YAML, PromQL, label names and annotation templates).
func parseRuleFile(t *testing.T, content []byte, what string) []alertRule {
	t.Helper()
	groups, errs := rulefmt.Parse(content, false, model.UTF8Validation, promql, slog.New(slog.DiscardHandler))
	for _, err := range errs {
		t.Errorf("%s: %v", what, err)
	}
	if len(errs) > 0 {
		t.FailNow()
	}
	var out []alertRule
	for _, g := range groups.Groups {
		for _, r := range g.Rules {
			if r.Alert == "" {
				t.Errorf("%s: group %s has a recording rule %q; only alerts are expected", what, g.Name, r.Record)
				continue
			}
			ast, err := promql.ParseExpr(r.Expr)
			if err != nil {
				t.Fatalf("%s: %s: %v", what, r.Alert, err)
			}
			out = append(out, alertRule{g.Name, r.Alert, r.Expr, ast, time.Duration(r.For), r.Labels, r.Annotations})
		}
	}
	return out
}

// shippedRules parses the PrometheusRule (strictly, as the operator's type)
// and returns its groups; it also checks pulsegate-rules.yaml holds exactly
// the same groups.
func shippedRules(t *testing.T) []alertRule {
	t.Helper()
	docs, err := yamlDocs(readFile(t, deployPath(t, "monitoring", "prometheusrule.yaml")))
	if err != nil || len(docs) != 1 {
		t.Fatalf("prometheusrule.yaml: %v (%d documents)", err, len(docs))
	}
	raw := docs[0].(map[string]any)
	var pr monv1.PrometheusRule
	if err := decodeStrict(raw, &pr); err != nil {
		t.Fatalf("prometheusrule.yaml does not decode into a PrometheusRule: %v", err)
	}
	spec, err := yaml.Marshal(raw["spec"])
	if err != nil {
		t.Fatal(err)
	}
	rules := parseRuleFile(t, spec, "prometheusrule.yaml spec")

	plain := readFile(t, deployPath(t, "monitoring", "pulsegate-rules.yaml"))
	parseRuleFile(t, plain, "pulsegate-rules.yaml")
	pdocs, err := yamlDocs(plain)
	if err != nil || len(pdocs) != 1 {
		t.Fatalf("pulsegate-rules.yaml: %v", err)
	}
	a, _ := json.Marshal(raw["spec"])
	b, _ := json.Marshal(pdocs[0])
	if !bytes.Equal(a, b) {
		t.Error("pulsegate-rules.yaml and prometheusrule.yaml's spec differ; keep the two copies identical")
	}
	if len(rules) < 15 {
		t.Fatalf("only %d alerts", len(rules))
	}
	return rules
}

// metricNames returns the metric names an expression selects.
func metricNames(e parser.Expr) []string {
	var out []string
	parser.Inspect(e, func(n parser.Node, _ []parser.Node) error {
		if vs, ok := n.(*parser.VectorSelector); ok {
			name := vs.Name
			for _, m := range vs.LabelMatchers {
				if m.Name == labels.MetricName && m.Type == labels.MatchEqual {
					name = m.Value
				}
			}
			if name != "" && !slices.Contains(out, name) {
				out = append(out, name)
			}
		}
		return nil
	})
	return out
}

// constValue evaluates a constant subexpression (numbers, parentheses,
// unary minus and + - * /).
func constValue(e parser.Expr) (float64, bool) {
	switch x := e.(type) {
	case *parser.NumberLiteral:
		return x.Val, true
	case *parser.ParenExpr:
		return constValue(x.Expr)
	case *parser.UnaryExpr:
		v, ok := constValue(x.Expr)
		if x.Op == parser.SUB {
			v = -v
		}
		return v, ok
	case *parser.BinaryExpr:
		a, ok1 := constValue(x.LHS)
		b, ok2 := constValue(x.RHS)
		if !ok1 || !ok2 {
			return 0, false
		}
		switch x.Op {
		case parser.ADD:
			return a + b, true
		case parser.SUB:
			return a - b, true
		case parser.MUL:
			return a * b, true
		case parser.DIV:
			return a / b, true
		}
	}
	return 0, false
}

// numberLiterals lists the literal numbers of a subexpression.
func numberLiterals(e parser.Expr) []float64 {
	var out []float64
	parser.Inspect(e, func(n parser.Node, _ []parser.Node) error {
		if nl, ok := n.(*parser.NumberLiteral); ok {
			out = append(out, nl.Val)
		}
		return nil
	})
	return out
}

// comparison splits "<vector expr> <op> <constant>", the shape of every
// threshold alert.
func comparison(e parser.Expr) (op parser.ItemType, rhs parser.Expr, threshold float64, ok bool) {
	be, isBin := e.(*parser.BinaryExpr)
	if !isBin || !be.Op.IsComparisonOperator() {
		return 0, nil, 0, false
	}
	v, isConst := constValue(be.RHS)
	if !isConst {
		return 0, nil, 0, false
	}
	return be.Op, be.RHS, v, true
}

// rulesOnlyInPrometheus are the alerts pulsegate has no own rule for.
var rulesOnlyInPrometheus = []string{"sidecar_down", "p95_response_time"}

// TestAlertRulesLabelsAndThresholds: every alert has a severity, the
// service and rule labels pulsegate uses when it posts to Alertmanager,
// the alertname pulsegate would give that rule (alerts.AlertmanagerName),
// a summary and a description, and every threshold is the default of the
// variable its threshold_env annotation names (config.EnvVars).
func TestAlertRulesLabelsAndThresholds(t *testing.T) {
	vars := envVarsByName()
	for _, r := range shippedRules(t) {
		where := r.group + "/" + r.name
		sev := r.labels["severity"]
		if sev != "warning" && sev != "critical" {
			t.Errorf("%s: severity %q, want warning or critical", where, sev)
		}
		if r.labels["service"] != "pulsegate" {
			t.Errorf("%s: label service=%q, want pulsegate (the Alertmanager route matches on it)", where, r.labels["service"])
		}
		rule := r.labels["rule"]
		if rule == "" {
			t.Errorf("%s: no rule label", where)
		} else if want := alerts.AlertmanagerName(rule); r.name != want {
			t.Errorf("%s: alertname for rule %s should be %s, the name pulsegate itself sends to Alertmanager", where, rule, want)
		}
		if r.annotations["summary"] == "" || r.annotations["description"] == "" {
			t.Errorf("%s: summary and description annotations are required", where)
		}
		if r.forDur <= 0 {
			t.Errorf("%s: no for: duration (a single scrape would page)", where)
		}
		env, hasEnv := r.annotations["threshold_env"]
		op, rhs, thr, isCmp := comparison(r.ast)
		if !hasEnv {
			continue
		}
		v, ok := vars[env]
		if !ok {
			t.Errorf("%s: threshold_env %s is not a pulsegate variable", where, env)
			continue
		}
		def, err := strconv.ParseFloat(v.Default, 64)
		if err != nil {
			t.Errorf("%s: %s default %q is not a number", where, env, v.Default)
			continue
		}
		if !isCmp {
			t.Errorf("%s: expression is not <vector> <comparison> <constant>", where)
			continue
		}
		if !slices.Contains(numberLiterals(rhs), def) {
			t.Errorf("%s: threshold %v does not use %s's default %v", where, thr, env, def)
		}
		if op != parser.GTE && op != parser.GTR {
			t.Errorf("%s: comparison %s; thresholds fire at or above the value", where, op)
		}
	}
}

// TestPrometheusRulesFireWherePulsegateFires drives pulsegate's own alert
// manager (package alerts, default configuration) with each figure at
// every shipped threshold, and just below it: the Prometheus alert of that
// severity must fire exactly where pulsegate's rule does. It also feeds
// every documented figure (docs/ARCHITECTURE.md) at an extreme value, a
// down probe and a failing task, and requires a Prometheus alert for every
// rule and severity pulsegate fired.
func TestPrometheusRulesFireWherePulsegateFires(t *testing.T) {
	rules := shippedRules(t)
	cfg := config.Defaults()
	evaluate := func(in alerts.Input) []alerts.Alert {
		t.Helper()
		m, err := alerts.New(cfg, zap.NewNop(), prometheus.NewRegistry(), nil, nil)
		if err != nil {
			t.Fatalf("alerts.New: %v", err)
		}
		now := time.Date(2025, 1, 6, 10, 30, 0, 0, time.UTC)
		// min_duration is 0 by default ("next evaluation"): two evaluations
		// a minute apart settle it either way.
		m.Evaluate(now, in)
		m.Evaluate(now.Add(time.Minute), in)
		return m.Active()
	}
	fired := func(as []alerts.Alert, rule, sev string) bool {
		for _, a := range as {
			if a.Rule == rule && a.Severity == sev {
				return true
			}
		}
		return false
	}

	// Which figure each pulsegate rule reads, learnt from pulsegate itself.
	figures := documentedFigures(t)
	big := map[string]float64{}
	for _, f := range figures {
		big[f] = 1e9
	}
	all := evaluate(alerts.Input{
		Figures:     big,
		ProbeStatus: map[string]string{"database_manager": "down"},
		Tasks:       map[string]string{"cleanup": "failing"},
	})
	figureOf := map[string]string{}
	for _, a := range all {
		figureOf[a.Rule] = a.Metric
	}

	covered := map[string]bool{}
	for _, r := range rules {
		rule, sev := r.labels["rule"], r.labels["severity"]
		where := r.group + "/" + r.name + " (" + sev + ")"
		covered[rule+"/"+sev] = true
		if slices.Contains(rulesOnlyInPrometheus, rule) {
			continue
		}
		if rule == alerts.RuleProbeDown || rule == alerts.RuleTaskFailing {
			if !fired(all, rule, sev) {
				t.Errorf("%s: pulsegate raises %s at another severity", where, rule)
			}
			continue
		}
		fig, ok := figureOf[rule]
		if !ok {
			t.Errorf("%s: pulsegate has no rule %q over the documented figures", where, rule)
			continue
		}
		op, _, thr, ok := comparison(r.ast)
		if !ok {
			t.Errorf("%s: not a threshold comparison", where)
			continue
		}
		at := thr
		below := thr - math.Max(math.Abs(thr)*1e-6, 1e-9)
		if op == parser.GTR {
			at, below = math.Nextafter(thr, math.Inf(1)), thr
		}
		if got := evaluate(alerts.Input{Figures: map[string]float64{fig: at}}); !fired(got, rule, sev) {
			t.Errorf("%s: Prometheus fires at %s=%v, pulsegate does not raise %s/%s there (active: %v)", where, fig, at, rule, sev, brief(got))
		}
		if got := evaluate(alerts.Input{Figures: map[string]float64{fig: below}}); fired(got, rule, sev) {
			t.Errorf("%s: pulsegate raises %s/%s already at %s=%v, below the Prometheus threshold", where, rule, sev, fig, below)
		}
	}
	reported := map[string]bool{}
	for _, a := range all {
		if !covered[a.Rule+"/"+a.Severity] {
			reported[a.Rule+"/"+a.Severity] = true
			t.Errorf("pulsegate raises %s at %s severity, and no shipped Prometheus alert mirrors it", a.Rule, a.Severity)
		}
	}
	for rule := range figureOf {
		for _, sev := range []string{"warning", "critical"} {
			if covered[rule+"/"+sev] || reported[rule+"/"+sev] {
				continue
			}
			// Does pulsegate have this severity for the rule at all?
			for _, v := range []float64{1e-6, 0.5, 1, 2, 10, 50, 100, 1e3, 1e9} {
				if fired(evaluate(alerts.Input{Figures: map[string]float64{figureOf[rule]: v}}), rule, sev) {
					t.Errorf("pulsegate raises %s at %s severity (e.g. at %v), and no shipped Prometheus alert mirrors it", rule, sev, v)
					break
				}
			}
		}
	}
}

func brief(as []alerts.Alert) []string {
	var out []string
	for _, a := range as {
		out = append(out, a.Rule+"/"+a.Severity)
	}
	return out
}

// documentedFigures reads the figure names from the "Signals" table of
// docs/ARCHITECTURE.md, the contract every package shares.
func documentedFigures(t *testing.T) []string {
	t.Helper()
	data := readFile(t, repoRoot(t)+"/docs/ARCHITECTURE.md")
	row := regexp.MustCompile(`^\|\s*([a-z][a-z0-9_]*)\s*\|\s*[a-z]+\s*\|`)
	var out []string
	scanLines(data, func(_ int, line string) {
		if m := row.FindStringSubmatch(line); m != nil && m[1] != "figure" {
			out = append(out, m[1])
		}
	})
	if len(out) < 15 {
		t.Fatalf("docs/ARCHITECTURE.md: found %d figures in the Signals table", len(out))
	}
	// The judged figures' one home names the rest (app_error_rate, apdex, ...).
	for _, f := range figures.All() {
		if !slices.Contains(out, string(f.Name)) {
			out = append(out, string(f.Name))
		}
	}
	return out
}

// --- Alertmanager ---------------------------------------------------------

// amRoute and amConfig are the part of Alertmanager's configuration schema
// the example uses, decoded strictly.
type amRoute struct {
	Receiver       string    `yaml:"receiver"`
	GroupBy        []string  `yaml:"group_by"`
	GroupWait      string    `yaml:"group_wait"`
	GroupInterval  string    `yaml:"group_interval"`
	RepeatInterval string    `yaml:"repeat_interval"`
	Matchers       []string  `yaml:"matchers"`
	Continue       bool      `yaml:"continue"`
	Routes         []amRoute `yaml:"routes"`
}

type amConfig struct {
	Route        amRoute `yaml:"route"`
	InhibitRules []struct {
		SourceMatchers []string `yaml:"source_matchers"`
		TargetMatchers []string `yaml:"target_matchers"`
		Equal          []string `yaml:"equal"`
	} `yaml:"inhibit_rules"`
	Receivers []struct {
		Name           string `yaml:"name"`
		WebhookConfigs []struct {
			URL          string `yaml:"url"`
			SendResolved bool   `yaml:"send_resolved"`
		} `yaml:"webhook_configs"`
	} `yaml:"receivers"`
}

func parseMatchers(t *testing.T, ms []string) []*labels.Matcher {
	t.Helper()
	var out []*labels.Matcher
	for _, m := range ms {
		sel, err := promql.ParseMetricSelector("{" + m + "}")
		if err != nil {
			t.Fatalf("alertmanager.yaml: matcher %q: %v", m, err)
		}
		out = append(out, sel...)
	}
	return out
}

func matchesAll(ms []*labels.Matcher, ls map[string]string) bool {
	for _, m := range ms {
		if !m.Matches(ls[m.Name]) {
			return false
		}
	}
	return true
}

// route returns the receiver Alertmanager picks for ls (first matching
// child, recursively, else the parent's receiver).
func (r amRoute) route(t *testing.T, ls map[string]string, inherited string) string {
	recv := cmpOr(r.Receiver, inherited)
	for _, c := range r.Routes {
		if matchesAll(parseMatchers(t, c.Matchers), ls) {
			return c.route(t, ls, recv)
		}
	}
	return recv
}

// TestAlertmanagerRouting decodes the example strictly, checks durations,
// matchers and receivers, and routes every shipped alert, and the alerts
// pulsegate posts itself, by severity to the pulsegate receivers; a
// critical alert inhibits the warning of the same alert and instance.
func TestAlertmanagerRouting(t *testing.T) {
	var cfg amConfig
	if err := decodeYAMLStrict(readFile(t, deployPath(t, "monitoring", "alertmanager.yaml")), &cfg); err != nil {
		t.Fatalf("alertmanager.yaml: %v", err)
	}
	receivers := map[string]bool{}
	for _, r := range cfg.Receivers {
		if receivers[r.Name] {
			t.Errorf("receiver %s defined twice", r.Name)
		}
		receivers[r.Name] = true
		for _, w := range r.WebhookConfigs {
			if !strings.HasPrefix(w.URL, "http://") && !strings.HasPrefix(w.URL, "https://") {
				t.Errorf("receiver %s: webhook url %q", r.Name, w.URL)
			}
		}
	}
	var walk func(r amRoute, top bool)
	walk = func(r amRoute, top bool) {
		if top && r.Receiver == "" {
			t.Error("the top route needs a receiver")
		}
		if r.Receiver != "" && !receivers[r.Receiver] {
			t.Errorf("route receiver %q is not defined", r.Receiver)
		}
		for _, d := range []string{r.GroupWait, r.GroupInterval, r.RepeatInterval} {
			if d == "" {
				continue
			}
			if _, err := model.ParseDuration(d); err != nil {
				t.Errorf("duration %q: %v", d, err)
			}
		}
		parseMatchers(t, r.Matchers)
		for _, c := range r.Routes {
			walk(c, false)
		}
	}
	walk(cfg.Route, true)

	bySeverity := map[string]map[string]bool{}
	check := func(what string, ls map[string]string) {
		recv := cfg.Route.route(t, ls, "")
		if recv == cfg.Route.Receiver {
			t.Errorf("%s %v falls through to the default receiver", what, ls)
		}
		if bySeverity[ls["severity"]] == nil {
			bySeverity[ls["severity"]] = map[string]bool{}
		}
		bySeverity[ls["severity"]][recv] = true
	}
	for _, r := range shippedRules(t) {
		ls := map[string]string{"alertname": r.name, "instance": "10.1.2.3:9901"}
		for k, v := range r.labels {
			ls[k] = v
		}
		check("Prometheus alert", ls)
	}
	// What pulsegate sends itself (alerts/alertmanager.go).
	for _, rule := range []string{alerts.RuleMemoryUsage, alerts.RuleErrorRate, alerts.RuleProbeDown} {
		for _, sev := range []string{"warning", "critical"} {
			check("pulsegate's own alert", map[string]string{
				"alertname": alerts.AlertmanagerName(rule), "severity": sev, "instance": "web-7d9f",
				"service": "pulsegate", "rule": rule,
			})
		}
	}
	if len(bySeverity["critical"]) != 1 || len(bySeverity["warning"]) != 1 {
		t.Fatalf("each severity should go to one receiver: %v", bySeverity)
	}
	for c := range bySeverity["critical"] {
		if bySeverity["warning"][c] {
			t.Errorf("critical and warning alerts go to the same receiver %s", c)
		}
	}

	// Inhibition: critical mutes warning of the same alertname and instance.
	crit := map[string]string{"alertname": "PulsegateMemoryUsage", "severity": "critical", "service": "pulsegate", "instance": "a"}
	warn := map[string]string{"alertname": "PulsegateMemoryUsage", "severity": "warning", "service": "pulsegate", "instance": "a"}
	other := map[string]string{"alertname": "PulsegateCPUUsage", "severity": "warning", "service": "pulsegate", "instance": "a"}
	inhibited := func(src, dst map[string]string) bool {
		for _, ir := range cfg.InhibitRules {
			if !matchesAll(parseMatchers(t, ir.SourceMatchers), src) || !matchesAll(parseMatchers(t, ir.TargetMatchers), dst) {
				continue
			}
			same := true
			for _, l := range ir.Equal {
				same = same && src[l] == dst[l]
			}
			if same {
				return true
			}
		}
		return false
	}
	if !inhibited(crit, warn) {
		t.Error("a critical alert should inhibit the warning of the same alert and instance")
	}
	if inhibited(crit, other) {
		t.Error("a critical alert must not inhibit other alerts")
	}
	if inhibited(warn, crit) {
		t.Error("a warning must not inhibit a critical alert")
	}
}

// --- scrape configuration and PodMonitor --------------------------------

type relabel struct {
	SourceLabels []string `yaml:"source_labels"`
	Regex        string   `yaml:"regex"`
	Action       string   `yaml:"action"`
	TargetLabel  string   `yaml:"target_label"`
	Replacement  string   `yaml:"replacement"`
	Separator    string   `yaml:"separator"`
}

type scrapeConfigFile struct {
	ScrapeConfigs []struct {
		JobName             string `yaml:"job_name"`
		ScrapeInterval      string `yaml:"scrape_interval"`
		ScrapeTimeout       string `yaml:"scrape_timeout"`
		MetricsPath         string `yaml:"metrics_path"`
		Scheme              string `yaml:"scheme"`
		KubernetesSDConfigs []struct {
			Role string `yaml:"role"`
		} `yaml:"kubernetes_sd_configs"`
		StaticConfigs []struct {
			Targets []string          `yaml:"targets"`
			Labels  map[string]string `yaml:"labels"`
		} `yaml:"static_configs"`
		RelabelConfigs []relabel `yaml:"relabel_configs"`
	} `yaml:"scrape_configs"`
}

// podMeta is the __meta_kubernetes_* labels Prometheus's pod discovery
// gives one container port of a pod.
func podMeta(podLabels map[string]string, container, port string) map[string]string {
	ls := map[string]string{
		"__meta_kubernetes_namespace":               "shop",
		"__meta_kubernetes_pod_name":                "web-7d9f",
		"__meta_kubernetes_pod_container_name":      container,
		"__meta_kubernetes_pod_container_port_name": port,
	}
	sanitize := regexp.MustCompile(`[^a-zA-Z0-9_]`)
	for k, v := range podLabels {
		ls["__meta_kubernetes_pod_label_"+sanitize.ReplaceAllString(k, "_")] = v
	}
	return ls
}

// keeps applies the keep/drop relabel steps (anchored regexes, joined
// source labels) and reports whether the target survives.
func keeps(t *testing.T, rs []relabel, ls map[string]string) bool {
	for _, r := range rs {
		if r.Action != "keep" && r.Action != "drop" {
			continue
		}
		var vals []string
		for _, s := range r.SourceLabels {
			vals = append(vals, ls[s])
		}
		sep := cmpOr(r.Separator, ";")
		re, err := regexp.Compile("^(?:" + cmpOr(r.Regex, "(.*)") + ")$")
		if err != nil {
			t.Fatalf("relabel regex %q: %v", r.Regex, err)
		}
		m := re.MatchString(strings.Join(vals, sep))
		if (r.Action == "keep") != m {
			return false
		}
	}
	return true
}

// TestScrapeTargetsFindPulsegate: the static job scrapes the default admin
// address; the Kubernetes job keeps exactly pulsegate's admin port of the
// pods the overlays create (init containers included), not the app or the
// proxy port; the PodMonitor selects those pods' admin port.
func TestScrapeTargetsFindPulsegate(t *testing.T) {
	var sc scrapeConfigFile
	if err := decodeYAMLStrict(readFile(t, deployPath(t, "monitoring", "prometheus-scrape.yaml")), &sc); err != nil {
		t.Fatalf("prometheus-scrape.yaml: %v", err)
	}
	ov := loadOverlay(t, "native-sidecar")
	podLabels := ov.deploy.Spec.Template.Labels
	defAdmin := config.Defaults().Admin.Addr
	var static, kube bool
	for _, j := range sc.ScrapeConfigs {
		for _, d := range []string{j.ScrapeInterval, j.ScrapeTimeout} {
			if _, err := model.ParseDuration(d); err != nil {
				t.Errorf("job %s: duration %q: %v", j.JobName, d, err)
			}
		}
		if j.MetricsPath != "/metrics" {
			t.Errorf("job %s: metrics_path %q, want /metrics", j.JobName, j.MetricsPath)
		}
		if !strings.Contains(j.JobName, "pulsegate") {
			t.Errorf("job %s: the PulsegateSidecarDown alert matches job=~\".*pulsegate.*\"", j.JobName)
		}
		for _, s := range j.StaticConfigs {
			static = true
			for _, tg := range s.Targets {
				if portOf(t, tg) != portOf(t, defAdmin) {
					t.Errorf("job %s: target %s is not on the admin port of %s", j.JobName, tg, defAdmin)
				}
			}
		}
		if len(j.KubernetesSDConfigs) > 0 {
			kube = true
			if j.KubernetesSDConfigs[0].Role != "pod" {
				t.Errorf("job %s: role %q, want pod (native sidecars are init containers, not Service endpoints)", j.JobName, j.KubernetesSDConfigs[0].Role)
			}
			if !keeps(t, j.RelabelConfigs, podMeta(podLabels, pulsegateContainer, adminPortName)) {
				t.Errorf("job %s drops pulsegate's admin port", j.JobName)
			}
			if keeps(t, j.RelabelConfigs, podMeta(podLabels, pulsegateContainer, proxyPortName)) {
				t.Errorf("job %s also scrapes the proxy port", j.JobName)
			}
			if keeps(t, j.RelabelConfigs, podMeta(map[string]string{"app.kubernetes.io/name": "other"}, "x", adminPortName)) {
				t.Errorf("job %s scrapes pods without pulsegate", j.JobName)
			}
		}
	}
	if !static || !kube {
		t.Errorf("want a static job (VMs) and a kubernetes_sd job: static=%v kubernetes=%v", static, kube)
	}

	docs, err := yamlDocs(readFile(t, deployPath(t, "monitoring", "podmonitor.yaml")))
	if err != nil || len(docs) != 1 {
		t.Fatalf("podmonitor.yaml: %v", err)
	}
	var pm monv1.PodMonitor
	if err := decodeStrict(docs[0].(map[string]any), &pm); err != nil {
		t.Fatalf("podmonitor.yaml: %v", err)
	}
	for k, v := range pm.Spec.Selector.MatchLabels {
		if podLabels[k] != v {
			t.Errorf("PodMonitor selects %s=%s; the pods carry %v", k, v, podLabels)
		}
	}
	if len(pm.Spec.Selector.MatchLabels) == 0 {
		t.Error("PodMonitor selects no label")
	}
	for _, ep := range pm.Spec.PodMetricsEndpoints {
		if ep.Port == nil || *ep.Port != adminPortName || containerPort(ov.pulsegate, *ep.Port) == 0 {
			t.Errorf("PodMonitor endpoint port %v, want the pulsegate container's %q port", ep.Port, adminPortName)
		}
		if ep.Path != "/metrics" {
			t.Errorf("PodMonitor path %q", ep.Path)
		}
	}
}

// --- Grafana -----------------------------------------------------------------

type grafanaPanel struct {
	ID      int    `json:"id"`
	Type    string `json:"type"`
	Title   string `json:"title"`
	GridPos struct {
		H, W, X, Y int
	} `json:"gridPos"`
	Datasource *struct {
		Type string `json:"type"`
		UID  string `json:"uid"`
	} `json:"datasource"`
	Targets []struct {
		Expr  string `json:"expr"`
		RefID string `json:"refId"`
	} `json:"targets"`
}

type grafanaDashboard struct {
	Title         string         `json:"title"`
	UID           string         `json:"uid"`
	SchemaVersion int            `json:"schemaVersion"`
	Panels        []grafanaPanel `json:"panels"`
	Templating    struct {
		List []struct {
			Name  string `json:"name"`
			Type  string `json:"type"`
			Query any    `json:"query"`
		} `json:"list"`
	} `json:"templating"`
}

var grafanaVar = regexp.MustCompile(`\$\{(\w+)(?::\w+)?\}|\$(\w+)`)

// grafanaExprs returns every panel query of the dashboard with Grafana's
// variables substituted (builtins by durations, template variables by
// ".*"), checking each variable is defined.
func grafanaExprs(t *testing.T) (*grafanaDashboard, map[string]string) {
	t.Helper()
	var d grafanaDashboard
	if err := json.Unmarshal(readFile(t, deployPath(t, "monitoring", "grafana-dashboard.json")), &d); err != nil {
		t.Fatalf("grafana-dashboard.json: %v", err)
	}
	defined := map[string]string{}
	for _, v := range d.Templating.List {
		defined[v.Name] = v.Type
	}
	builtin := map[string]string{"__rate_interval": "5m", "__interval": "1m", "__range": "1h"}
	out := map[string]string{}
	for _, p := range d.Panels {
		for _, tg := range p.Targets {
			expr := grafanaVar.ReplaceAllStringFunc(tg.Expr, func(s string) string {
				m := grafanaVar.FindStringSubmatch(s)
				name := cmpOr(m[1], m[2])
				if v, ok := builtin[name]; ok {
					return v
				}
				if _, ok := defined[name]; !ok {
					t.Errorf("panel %q uses $%s, which the dashboard does not define", p.Title, name)
				}
				return ".*"
			})
			out[fmt.Sprintf("panel %d %q %s", p.ID, p.Title, tg.RefID)] = expr
		}
	}
	return &d, out
}

// TestGrafanaDashboard: the dashboard's layout is sound (unique ids, a
// 24-column grid without overlaps), every query parses as PromQL with the
// variables substituted, and the panels the brief asks for are there.
func TestGrafanaDashboard(t *testing.T) {
	d, exprs := grafanaExprs(t)
	if d.UID == "" || d.Title == "" || d.SchemaVersion < 30 {
		t.Errorf("uid %q, title %q, schemaVersion %d", d.UID, d.Title, d.SchemaVersion)
	}
	hasDS := false
	for _, v := range d.Templating.List {
		if v.Name == "datasource" && v.Type == "datasource" {
			hasDS = true
		}
	}
	if !hasDS {
		t.Error("a datasource variable is required so the dashboard imports into any Grafana")
	}
	ids := map[int]bool{}
	type rect struct{ x, y, w, h int }
	var rects []rect
	for _, p := range d.Panels {
		if ids[p.ID] {
			t.Errorf("panel id %d used twice", p.ID)
		}
		ids[p.ID] = true
		g := p.GridPos
		if g.W <= 0 || g.H <= 0 || g.X < 0 || g.X+g.W > 24 {
			t.Errorf("panel %q: gridPos %+v outside the 24-column grid", p.Title, g)
		}
		for _, r := range rects {
			if g.X < r.x+r.w && r.x < g.X+g.W && g.Y < r.y+r.h && r.y < g.Y+g.H {
				t.Errorf("panel %q overlaps another panel", p.Title)
			}
		}
		rects = append(rects, rect{g.X, g.Y, g.W, g.H})
		if p.Type == "row" {
			continue
		}
		if !slices.Contains([]string{"timeseries", "stat", "table", "gauge", "bargauge", "state-timeline"}, p.Type) {
			t.Errorf("panel %q: unexpected type %q", p.Title, p.Type)
		}
		if len(p.Targets) == 0 {
			t.Errorf("panel %q has no query", p.Title)
		}
		if p.Datasource == nil || p.Datasource.UID != "${datasource}" {
			t.Errorf("panel %q: datasource should be the ${datasource} variable", p.Title)
		}
	}
	used := map[string]bool{}
	keys := make([]string, 0, len(exprs))
	for k := range exprs {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		e, err := promql.ParseExpr(exprs[k])
		if err != nil {
			t.Errorf("%s: %v\n%s", k, err, exprs[k])
			continue
		}
		for _, n := range metricNames(e) {
			used[n] = true
		}
		if strings.Contains(exprs[k], "histogram_quantile") && !strings.Contains(exprs[k], "le") {
			t.Errorf("%s: histogram_quantile without keeping le", k)
		}
	}
	for _, want := range []string{
		"pulsegate_requests_total", "pulsegate_request_errors_total", "pulsegate_request_duration_seconds_bucket",
		"pulsegate_requests_in_flight", "pulsegate_backpressure_queue_depth", "pulsegate_backpressure_rejections_total",
		"pulsegate_probe_status", "pulsegate_memory_usage_ratio", "pulsegate_cpu_usage_ratio",
		"pulsegate_connection_pool_utilization_ratio", "pulsegate_redis_memory_usage_ratio",
	} {
		if !used[want] {
			t.Errorf("the dashboard does not chart %s", want)
		}
	}
	for _, q := range []string{"0.50", "0.95", "0.99"} {
		found := false
		for _, e := range exprs {
			if strings.Contains(e, "histogram_quantile("+q) {
				found = true
			}
		}
		if !found {
			t.Errorf("no p%s panel", strings.TrimPrefix(q, "0."))
		}
	}
}

// monitoringMetricNames is every metric name the rules and the dashboard
// query, with histogram suffixes folded into the family name; "up" is
// Prometheus's own.
func monitoringMetricNames(t *testing.T) map[string][]string {
	t.Helper()
	users := map[string][]string{}
	add := func(name, who string) {
		if name == "up" {
			return
		}
		for _, s := range []string{"_bucket", "_sum", "_count"} {
			if base, ok := strings.CutSuffix(name, s); ok && strings.HasSuffix(base, "_seconds") {
				name = base
			}
		}
		if !slices.Contains(users[name], who) {
			users[name] = append(users[name], who)
		}
	}
	for _, r := range shippedRules(t) {
		for _, n := range metricNames(r.ast) {
			add(n, "alert "+r.name)
		}
	}
	_, exprs := grafanaExprs(t)
	for k, e := range exprs {
		ast, err := promql.ParseExpr(e)
		if err != nil {
			t.Fatalf("%s: %v", k, err)
		}
		for _, n := range metricNames(ast) {
			add(n, "dashboard "+k)
		}
	}
	return users
}

// metricFamilies parses a Prometheus text exposition into family names
// (from # TYPE lines, and sample names with histogram suffixes folded).
func metricFamilies(body []byte) map[string]bool {
	out := map[string]bool{}
	sc := bufio.NewScanner(bytes.NewReader(body))
	sc.Buffer(make([]byte, 0, 64<<10), 4<<20)
	for sc.Scan() {
		line := sc.Text()
		if f, ok := strings.CutPrefix(line, "# TYPE "); ok {
			out[strings.Fields(f)[0]] = true
			continue
		}
		if line == "" || line[0] == '#' {
			continue
		}
		name := line
		if i := strings.IndexAny(line, "{ "); i >= 0 {
			name = line[:i]
		}
		out[name] = true
		for _, s := range []string{"_bucket", "_sum", "_count"} {
			if base, ok := strings.CutSuffix(name, s); ok {
				out[base] = true
			}
		}
	}
	return out
}
