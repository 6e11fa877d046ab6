package deploy

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"

	monv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"

	"github.com/pulsegate/pulsegate/config"
)

// The names the manifests agree on.
const (
	pulsegateContainer = "pulsegate"
	appContainer       = "app"
	secretName         = "pulsegate-secrets"
	configMapName      = "pulsegate-config"
	proxyPortName      = "proxy"
	adminPortName      = "admin"
)

var overlays = []string{"native-sidecar", "classic-sidecar"}

// k8sObject is one rendered manifest.
type k8sObject struct {
	Kind, Name, Source string
	Raw                map[string]any
}

// kustomization is the part of kustomize's schema these manifests use.
// Decoding is strict, so a field this renderer does not implement fails the
// test instead of being ignored.
type kustomization struct {
	APIVersion         string   `yaml:"apiVersion"`
	Kind               string   `yaml:"kind"`
	Resources          []string `yaml:"resources"`
	ConfigMapGenerator []struct {
		Name  string   `yaml:"name"`
		Files []string `yaml:"files"`
	} `yaml:"configMapGenerator"`
}

// renderKustomization renders dir the way kustomize does for the features
// above: resources (files and directories, recursively) and ConfigMaps
// generated from files. Generated names keep no hash suffix here; the
// kubectl comparison test checks kustomize renames the references too.
func renderKustomization(t *testing.T, dir string) []k8sObject {
	t.Helper()
	var k kustomization
	if err := decodeYAMLStrict(readFile(t, filepath.Join(dir, "kustomization.yaml")), &k); err != nil {
		t.Fatalf("%s/kustomization.yaml: %v", dir, err)
	}
	if k.APIVersion != "kustomize.config.k8s.io/v1beta1" || k.Kind != "Kustomization" {
		t.Fatalf("%s/kustomization.yaml: apiVersion/kind = %s/%s", dir, k.APIVersion, k.Kind)
	}
	var out []k8sObject
	for _, r := range k.Resources {
		p := filepath.Join(dir, r)
		st, err := os.Stat(p)
		if err != nil {
			t.Fatalf("%s/kustomization.yaml: resource %s: %v", dir, r, err)
		}
		if st.IsDir() {
			out = append(out, renderKustomization(t, p)...)
			continue
		}
		docs, err := yamlDocs(readFile(t, p))
		if err != nil {
			t.Fatalf("%s: %v", p, err)
		}
		for _, d := range docs {
			m := d.(map[string]any)
			meta, _ := m["metadata"].(map[string]any)
			name, _ := meta["name"].(string)
			kind, _ := m["kind"].(string)
			out = append(out, k8sObject{Kind: kind, Name: name, Source: p, Raw: m})
		}
	}
	for _, g := range k.ConfigMapGenerator {
		data := map[string]any{}
		for _, f := range g.Files {
			data[filepath.Base(f)] = string(readFile(t, filepath.Join(dir, f)))
		}
		out = append(out, k8sObject{Kind: "ConfigMap", Name: g.Name, Source: dir + " configMapGenerator", Raw: map[string]any{
			"apiVersion": "v1", "kind": "ConfigMap", "metadata": map[string]any{"name": g.Name}, "data": data,
		}})
	}
	return out
}

// decodeStrict decodes a generic manifest into its API type: unknown fields
// fail (DisallowUnknownFields), and because encoding/json matches field
// names case-insensitively, a round trip then checks that every key of the
// manifest (with a non-zero value) survives under its exact spelling.
func decodeStrict(raw map[string]any, out any) error {
	b, err := json.Marshal(raw)
	if err != nil {
		return err
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(out); err != nil {
		return err
	}
	back, err := json.Marshal(out)
	if err != nil {
		return err
	}
	var round map[string]any
	if err := json.Unmarshal(back, &round); err != nil {
		return err
	}
	return sameKeys(raw, round, "")
}

func sameKeys(orig, round any, at string) error {
	switch o := orig.(type) {
	case map[string]any:
		r, _ := round.(map[string]any)
		for k, v := range o {
			if isZero(v) {
				continue
			}
			rv, ok := r[k]
			if !ok {
				return fmt.Errorf("field %s%s is not part of the API type (misspelt or wrong case?)", at, k)
			}
			if err := sameKeys(v, rv, at+k+"."); err != nil {
				return err
			}
		}
	case []any:
		r, _ := round.([]any)
		if len(r) != len(o) {
			return fmt.Errorf("list %s lost items in decoding", strings.TrimSuffix(at, "."))
		}
		for i := range o {
			if err := sameKeys(o[i], r[i], fmt.Sprintf("%s%d.", at, i)); err != nil {
				return err
			}
		}
	}
	return nil
}

func isZero(v any) bool {
	switch x := v.(type) {
	case nil:
		return true
	case bool:
		return !x
	case string:
		return x == ""
	case int, int64, float64:
		return reflect.ValueOf(x).IsZero()
	case map[string]any:
		return len(x) == 0
	case []any:
		return len(x) == 0
	}
	return false
}

// overlayView is one rendered overlay with its objects decoded.
type overlayView struct {
	name      string
	native    bool
	objects   []k8sObject
	deploy    *appsv1.Deployment
	svc       *corev1.Service
	cm        *corev1.ConfigMap
	pulsegate *corev1.Container
	app       *corev1.Container
}

func loadOverlay(t *testing.T, name string) *overlayView {
	t.Helper()
	ov := &overlayView{name: name, native: name == "native-sidecar"}
	ov.objects = renderKustomization(t, deployPath(t, "kubernetes", "overlays", name))
	for _, o := range ov.objects {
		var err error
		switch o.Kind {
		case "Deployment":
			ov.deploy = new(appsv1.Deployment)
			err = decodeStrict(o.Raw, ov.deploy)
		case "Service":
			ov.svc = new(corev1.Service)
			err = decodeStrict(o.Raw, ov.svc)
		case "ConfigMap":
			ov.cm = new(corev1.ConfigMap)
			err = decodeStrict(o.Raw, ov.cm)
		default:
			t.Fatalf("%s: unexpected %s %q in overlay %s", o.Source, o.Kind, o.Name, name)
		}
		if err != nil {
			t.Fatalf("%s: %s %q does not decode into its API type: %v", o.Source, o.Kind, o.Name, err)
		}
	}
	if ov.deploy == nil || ov.svc == nil || ov.cm == nil {
		t.Fatalf("overlay %s: want a Deployment, a Service and a ConfigMap, got %d objects", name, len(ov.objects))
	}
	spec := &ov.deploy.Spec.Template.Spec
	for i := range spec.InitContainers {
		if spec.InitContainers[i].Name == pulsegateContainer {
			ov.pulsegate = &spec.InitContainers[i]
		}
	}
	for i := range spec.Containers {
		switch spec.Containers[i].Name {
		case pulsegateContainer:
			if ov.pulsegate != nil {
				t.Fatalf("overlay %s: two containers named %s", name, pulsegateContainer)
			}
			ov.pulsegate = &spec.Containers[i]
		case appContainer:
			ov.app = &spec.Containers[i]
		}
	}
	if ov.pulsegate == nil || ov.app == nil {
		t.Fatalf("overlay %s: containers %q and %q are required", name, pulsegateContainer, appContainer)
	}
	return ov
}

// exampleSecret is deploy/kubernetes/secret.example.yaml.
func exampleSecret(t *testing.T) *corev1.Secret {
	t.Helper()
	docs, err := yamlDocs(readFile(t, deployPath(t, "kubernetes", "secret.example.yaml")))
	if err != nil || len(docs) != 1 {
		t.Fatalf("secret.example.yaml: %v (%d documents)", err, len(docs))
	}
	var s corev1.Secret
	if err := decodeStrict(docs[0].(map[string]any), &s); err != nil {
		t.Fatalf("secret.example.yaml does not decode into a Secret: %v", err)
	}
	if s.Name != secretName {
		t.Fatalf("secret.example.yaml names %q, the Deployments read %q", s.Name, secretName)
	}
	return &s
}

// canaryToken stands in for the admin token: it must never be printed.
const canaryToken = "deploy-canary-c@n#ry%P4ss:zz"

// podEnv is the pulsegate container's environment as the kubelet would set
// it, with Secret values from the example Secret (the token replaced by a
// canary), and the names that are not RESPONSIVENESS_* left out.
func podEnv(t *testing.T, c *corev1.Container, secret *corev1.Secret) []string {
	t.Helper()
	var env []string
	for _, e := range c.Env {
		if !strings.HasPrefix(e.Name, config.EnvPrefix) {
			continue
		}
		switch {
		case e.ValueFrom == nil:
			env = append(env, e.Name+"="+e.Value)
		case e.ValueFrom.SecretKeyRef != nil:
			v := secret.StringData[e.ValueFrom.SecretKeyRef.Key]
			if e.Name == "RESPONSIVENESS_ADMIN_TOKEN" {
				v = canaryToken
			}
			env = append(env, e.Name+"="+v)
		default:
			t.Errorf("env %s: only plain values and secretKeyRef are expected for RESPONSIVENESS_* variables", e.Name)
		}
	}
	return env
}

// configArg returns the --config value of the container's args.
func configArg(t *testing.T, args []string) string {
	t.Helper()
	for i, a := range args {
		if v, ok := strings.CutPrefix(a, "--config="); ok {
			return v
		}
		if a == "--config" && i+1 < len(args) {
			return args[i+1]
		}
	}
	t.Fatalf("args %q: no --config", args)
	return ""
}

// effectiveConfig writes the ConfigMap's file where the container would
// read it (a temp dir standing in for the mount) and loads it with the
// container's environment through config.Load.
func (ov *overlayView) effectiveConfig(t *testing.T) (*config.Config, string, []string) {
	t.Helper()
	cfgPath := configArg(t, ov.pulsegate.Args)
	mount := ov.mountFor(t, ov.pulsegate, cfgPath)
	vol := ov.volume(t, mount.Name)
	if vol.ConfigMap == nil || vol.ConfigMap.Name != configMapName {
		t.Fatalf("%s: --config %s is on volume %q, which is not the ConfigMap %s", ov.name, cfgPath, mount.Name, configMapName)
	}
	rel, _ := filepath.Rel(mount.MountPath, cfgPath)
	content, ok := ov.cm.Data[rel]
	if !ok {
		t.Fatalf("%s: --config %s: ConfigMap %s has no key %q", ov.name, cfgPath, configMapName, rel)
	}
	file := filepath.Join(t.TempDir(), rel)
	if err := os.WriteFile(file, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	env := podEnv(t, ov.pulsegate, exampleSecret(t))
	return loadConfig(t, file, env), file, env
}

// mountFor returns the container's volume mount that holds p.
func (ov *overlayView) mountFor(t *testing.T, c *corev1.Container, p string) corev1.VolumeMount {
	t.Helper()
	var best *corev1.VolumeMount
	for i, m := range c.VolumeMounts {
		if p == m.MountPath || strings.HasPrefix(p, strings.TrimSuffix(m.MountPath, "/")+"/") {
			if best == nil || len(m.MountPath) > len(best.MountPath) {
				best = &c.VolumeMounts[i]
			}
		}
	}
	if best == nil {
		t.Fatalf("%s: container %s has no volume mounted at or above %s (the root filesystem is read-only)", ov.name, c.Name, p)
	}
	return *best
}

func (ov *overlayView) volume(t *testing.T, name string) corev1.Volume {
	t.Helper()
	for _, v := range ov.deploy.Spec.Template.Spec.Volumes {
		if v.Name == name {
			return v
		}
	}
	t.Fatalf("%s: no volume %q", ov.name, name)
	return corev1.Volume{}
}

func containerPort(c *corev1.Container, name string) int32 {
	for _, p := range c.Ports {
		if p.Name == name {
			return p.ContainerPort
		}
	}
	return 0
}

// TestKustomizeOverlaysRender checks each overlay renders to the Deployment,
// Service and generated ConfigMap, and, where kubectl is installed, that
// kubectl's own kustomize renders the same objects and renames the
// ConfigMap reference to the hashed name.
func TestKustomizeOverlaysRender(t *testing.T) {
	for _, name := range overlays {
		t.Run(name, func(t *testing.T) {
			ov := loadOverlay(t, name)
			kubectl, err := exec.LookPath("kubectl")
			if err != nil {
				t.Log("kubectl not installed: checked with the built-in renderer only")
				return
			}
			out, err := exec.Command(kubectl, "kustomize", deployPath(t, "kubernetes", "overlays", name)).CombinedOutput()
			if err != nil {
				t.Fatalf("kubectl kustomize: %v\n%s", err, out)
			}
			docs, err := yamlDocs(out)
			if err != nil {
				t.Fatalf("kubectl kustomize output: %v", err)
			}
			var got, want []string
			cmName := ""
			var dep appsv1.Deployment
			for _, d := range docs {
				m := d.(map[string]any)
				meta := m["metadata"].(map[string]any)
				name := meta["name"].(string)
				kind := m["kind"].(string)
				if kind == "ConfigMap" && strings.HasPrefix(name, configMapName+"-") {
					cmName = name
					name = configMapName
				}
				if kind == "Deployment" {
					if err := decodeStrict(m, &dep); err != nil {
						t.Fatalf("kustomize's Deployment: %v", err)
					}
				}
				got = append(got, kind+"/"+name)
			}
			for _, o := range ov.objects {
				want = append(want, o.Kind+"/"+o.Name)
			}
			slices.Sort(got)
			slices.Sort(want)
			if !slices.Equal(got, want) {
				t.Fatalf("kubectl kustomize renders %v, the test's renderer %v", got, want)
			}
			if cmName == "" {
				t.Fatalf("kustomize did not generate %s-<hash>", configMapName)
			}
			found := false
			for _, v := range dep.Spec.Template.Spec.Volumes {
				if v.ConfigMap != nil {
					found = true
					if v.ConfigMap.Name != cmName {
						t.Errorf("volume %s refers to ConfigMap %q, kustomize generated %q", v.Name, v.ConfigMap.Name, cmName)
					}
				}
			}
			if !found {
				t.Error("the Deployment mounts no ConfigMap")
			}
		})
	}
}

// TestKubernetesObjectsDecodeStrictly decodes every Kubernetes object that
// ships (overlays, the example Secret, the monitoring objects) into its
// real API type, with unknown or misspelt fields as errors. (kubeconform
// needs JSON schemas from the network; strict decoding into k8s.io/api and
// the prometheus-operator types is the offline equivalent.)
func TestKubernetesObjectsDecodeStrictly(t *testing.T) {
	for _, name := range overlays {
		loadOverlay(t, name) // fails on any decoding problem
	}
	exampleSecret(t)
	for _, o := range renderKustomization(t, deployPath(t, "monitoring")) {
		var err error
		switch o.Kind {
		case "PodMonitor":
			err = decodeStrict(o.Raw, new(monv1.PodMonitor))
		case "PrometheusRule":
			err = decodeStrict(o.Raw, new(monv1.PrometheusRule))
		default:
			err = fmt.Errorf("unexpected kind")
		}
		if err != nil {
			t.Errorf("%s: %s %q: %v", o.Source, o.Kind, o.Name, err)
		}
		if api, _ := o.Raw["apiVersion"].(string); api != "monitoring.coreos.com/v1" {
			t.Errorf("%s: %s apiVersion %q, want monitoring.coreos.com/v1", o.Source, o.Kind, api)
		}
	}
}

// TestSidecarPlacement: the native overlay runs pulsegate as an init
// container with restartPolicy Always and a startupProbe (so the app starts
// after the proxy listens); the classic one as a regular container.
func TestSidecarPlacement(t *testing.T) {
	native := loadOverlay(t, "native-sidecar")
	spec := native.deploy.Spec.Template.Spec
	if len(spec.InitContainers) == 0 || spec.InitContainers[0].Name != pulsegateContainer {
		t.Fatalf("native-sidecar: pulsegate must be the first init container")
	}
	if p := native.pulsegate.RestartPolicy; p == nil || *p != corev1.ContainerRestartPolicyAlways {
		t.Errorf("native-sidecar: pulsegate restartPolicy = %v, want Always (a native sidecar)", p)
	}
	if native.pulsegate.StartupProbe == nil {
		t.Error("native-sidecar: pulsegate needs a startupProbe, so the app container starts only once the proxy listens")
	}
	classic := loadOverlay(t, "classic-sidecar")
	cspec := classic.deploy.Spec.Template.Spec
	if len(cspec.InitContainers) != 0 {
		t.Errorf("classic-sidecar: no init containers expected, got %d", len(cspec.InitContainers))
	}
	if classic.pulsegate.RestartPolicy != nil {
		t.Error("classic-sidecar: a regular container takes no restartPolicy")
	}
}

// TestOverlaysAgree keeps the two overlays in step: the same pulsegate
// container (apart from what makes it native), the same app container
// (apart from nothing), volumes and pod security.
func TestOverlaysAgree(t *testing.T) {
	n, c := loadOverlay(t, "native-sidecar"), loadOverlay(t, "classic-sidecar")
	np := n.pulsegate.DeepCopy()
	np.RestartPolicy = nil
	if !reflect.DeepEqual(np, c.pulsegate) {
		a, _ := json.MarshalIndent(np, "", " ")
		b, _ := json.MarshalIndent(c.pulsegate, "", " ")
		t.Errorf("the pulsegate containers differ between overlays:\nnative:  %s\nclassic: %s", a, b)
	}
	if !reflect.DeepEqual(n.app, c.app) {
		t.Error("the app containers differ between overlays")
	}
	ns, cs := n.deploy.Spec.Template.Spec, c.deploy.Spec.Template.Spec
	if !reflect.DeepEqual(ns.Volumes, cs.Volumes) || !reflect.DeepEqual(ns.SecurityContext, cs.SecurityContext) {
		t.Error("volumes or pod securityContext differ between overlays")
	}
	if !reflect.DeepEqual(n.deploy.Spec.Template.Labels, c.deploy.Spec.Template.Labels) {
		t.Error("pod labels differ between overlays (the Service and PodMonitor select on them)")
	}
}

// TestPulsegateEnvNamesAreReal checks every variable in the pulsegate
// container against config.EnvVars (the code's own table), secrets come
// from the Secret (never a literal or a ConfigMap), GOMAXPROCS follows the
// container's CPU limit, the memory budget leaves headroom below the
// memory limit (a share < 1, never GOMEMLIMIT = the whole limit), and the
// ConfigMap's config.yaml holds no secret key.
func TestPulsegateEnvNamesAreReal(t *testing.T) {
	vars := envVarsByName()
	secret := exampleSecret(t)
	for _, name := range overlays {
		t.Run(name, func(t *testing.T) {
			ov := loadOverlay(t, name)
			seen := map[string]bool{}
			for _, e := range ov.pulsegate.Env {
				if seen[e.Name] {
					t.Errorf("env %s set twice", e.Name)
				}
				seen[e.Name] = true
				switch e.Name {
				case "GOMEMLIMIT":
					t.Errorf("GOMEMLIMIT set: the whole container limit as Go's soft limit leaves no headroom; use RESPONSIVENESS_RUNTIME_MEMORY_LIMIT_SHARE")
					continue
				case "RESPONSIVENESS_RUNTIME_MEMORY_LIMIT_SHARE":
					if v, err := strconv.ParseFloat(e.Value, 64); err != nil || v <= 0 || v >= 1 {
						t.Errorf("%s = %q: want a share in (0,1) of the container limit, leaving headroom", e.Name, e.Value)
					}
				case "GOMAXPROCS":
					want := "limits.cpu"
					rf := (*corev1.ResourceFieldSelector)(nil)
					if e.ValueFrom != nil {
						rf = e.ValueFrom.ResourceFieldRef
					}
					if rf == nil || rf.Resource != want || rf.ContainerName != pulsegateContainer {
						t.Errorf("%s must come from the downward API resourceFieldRef %s of container %s", e.Name, want, pulsegateContainer)
					} else if rf.Divisor.String() != "1" {
						t.Errorf("%s divisor %s: the Go runtime wants whole CPUs and bytes (divisor 1)", e.Name, rf.Divisor.String())
					}
					continue
				case config.EnvConfigFile:
					continue
				}
				v, ok := vars[e.Name]
				if !ok {
					t.Errorf("env %s is not a pulsegate variable (config.EnvVars); the binary refuses unknown RESPONSIVENESS_* names", e.Name)
					continue
				}
				isSecretRef := e.ValueFrom != nil && e.ValueFrom.SecretKeyRef != nil
				if v.Secret && !isSecretRef {
					t.Errorf("env %s holds a secret and must come from Secret %s (secretKeyRef)", e.Name, secretName)
				}
				if e.ValueFrom != nil && e.ValueFrom.ConfigMapKeyRef != nil && v.Secret {
					t.Errorf("env %s is a secret read from a ConfigMap", e.Name)
				}
				if isSecretRef {
					ref := e.ValueFrom.SecretKeyRef
					if ref.Name != secretName {
						t.Errorf("env %s reads Secret %q, want %q", e.Name, ref.Name, secretName)
					}
					if _, ok := secret.StringData[ref.Key]; !ok {
						t.Errorf("env %s reads key %q, which secret.example.yaml does not document", e.Name, ref.Key)
					}
				}
			}
			for _, want := range []string{"GOMAXPROCS", "RESPONSIVENESS_RUNTIME_MEMORY_LIMIT_SHARE", "RESPONSIVENESS_ADMIN_TOKEN"} {
				if !seen[want] {
					t.Errorf("env %s is missing", want)
				}
			}
			for _, e := range config.EnvVars() {
				if e.Secret && !seen[e.Name] && e.Name != "RESPONSIVENESS_ADMIN_TOKEN" {
					t.Logf("secret variable %s is not wired (fine if that feature is not used)", e.Name)
				}
			}
			// The ConfigMap's YAML must not carry a secret key.
			var tree map[string]any
			if err := decodeYAMLStrict([]byte(ov.cm.Data["config.yaml"]), &tree); err != nil {
				t.Fatalf("config.yaml: %v", err)
			}
			flat := map[string]bool{}
			flatten(tree, "", flat)
			for _, e := range config.EnvVars() {
				if e.Secret && flat[e.Key] {
					t.Errorf("config.yaml (a ConfigMap) sets secret key %s; put it in Secret %s as %s", e.Key, secretName, e.Name)
				}
			}
			for k := range flat {
				found := false
				for _, e := range config.EnvVars() {
					if e.Key == k {
						found = true
					}
				}
				if !found {
					t.Errorf("config.yaml key %s is not a configuration key", k)
				}
			}
		})
	}
}

func flatten(v any, prefix string, out map[string]bool) {
	m, ok := v.(map[string]any)
	if !ok {
		out[strings.TrimSuffix(prefix, ".")] = true
		return
	}
	for k, x := range m {
		flatten(x, prefix+k+".", out)
	}
}

// TestManifestConfigAcceptedByBinary runs the real binary with the
// container's own args (serve swapped for check-config, which takes the
// same --config flag) on the ConfigMap's file and the container's
// environment: the configuration must be valid, and the admin token must
// not appear in what check-config prints.
func TestManifestConfigAcceptedByBinary(t *testing.T) {
	for _, name := range overlays {
		t.Run(name, func(t *testing.T) {
			ov := loadOverlay(t, name)
			_, file, env := ov.effectiveConfig(t)
			args := slices.Clone(ov.pulsegate.Args)
			if len(args) == 0 || args[0] != "serve" {
				t.Fatalf("args %q: want the serve subcommand first", args)
			}
			args[0] = "check-config"
			for i, a := range args {
				if a == configArg(t, ov.pulsegate.Args) {
					args[i] = file
				}
				if v, ok := strings.CutPrefix(a, "--config="); ok && v != "" {
					args[i] = "--config=" + file
				}
			}
			out, code := runBinary(t, env, args...)
			if code != 0 {
				t.Fatalf("pulsegate %s exited %d:\n%s", strings.Join(args, " "), code, out)
			}
			for _, leak := range []string{canaryToken, url.QueryEscape(canaryToken)} {
				if strings.Contains(out, leak) {
					t.Errorf("check-config printed the admin token")
				}
			}
		})
	}
}

// TestPortsAndProbes: the container ports are where the effective
// configuration listens, the admin listener is reachable by the kubelet
// (not loopback) and therefore token-protected, the probes hit /healthz and
// /readyz on the admin port, and the Service targets the proxy port.
func TestPortsAndProbes(t *testing.T) {
	for _, name := range overlays {
		t.Run(name, func(t *testing.T) {
			ov := loadOverlay(t, name)
			cfg, _, env := ov.effectiveConfig(t)
			pg := ov.pulsegate
			if got, want := strconv.Itoa(int(containerPort(pg, proxyPortName))), portOf(t, cfg.Proxy.ListenAddr); got != want {
				t.Errorf("container port %q = %s, but pulsegate listens on %s (proxy.listen_addr)", proxyPortName, got, cfg.Proxy.ListenAddr)
			}
			if got, want := strconv.Itoa(int(containerPort(pg, adminPortName))), portOf(t, cfg.Admin.Addr); got != want {
				t.Errorf("container port %q = %s, but the admin listener is %s (admin.addr)", adminPortName, got, cfg.Admin.Addr)
			}
			host, _, _ := net.SplitHostPort(cfg.Admin.Addr)
			if ip := net.ParseIP(host); host == "localhost" || (ip != nil && ip.IsLoopback()) {
				t.Errorf("admin.addr %s is loopback: kubelet probes and Prometheus reach the pod IP", cfg.Admin.Addr)
			}
			if !cfg.Admin.Token.IsSet() {
				t.Error("the admin listener is reachable from the pod network, so RESPONSIVENESS_ADMIN_TOKEN must be set")
			}
			for _, e := range pg.Env {
				if e.Name == "RESPONSIVENESS_ADMIN_TOKEN" && e.ValueFrom != nil && e.ValueFrom.SecretKeyRef != nil &&
					e.ValueFrom.SecretKeyRef.Optional != nil && *e.ValueFrom.SecretKeyRef.Optional {
					t.Error("the admin token's secretKeyRef must not be optional")
				}
			}
			_ = env
			checkProbe := func(kind string, p *corev1.Probe, wantPath string) {
				if p == nil {
					t.Errorf("%s is missing", kind)
					return
				}
				if p.HTTPGet == nil {
					t.Errorf("%s: want an httpGet probe", kind)
					return
				}
				if p.HTTPGet.Path != wantPath {
					t.Errorf("%s path %s, want %s", kind, p.HTTPGet.Path, wantPath)
				}
				if p.HTTPGet.Port.String() != adminPortName && p.HTTPGet.Port.IntValue() != int(containerPort(pg, adminPortName)) {
					t.Errorf("%s port %s, want the admin port", kind, p.HTTPGet.Port.String())
				}
				if p.TimeoutSeconds < 1 || p.PeriodSeconds < 1 || p.FailureThreshold < 1 {
					t.Errorf("%s: timeout, period and failureThreshold must be set", kind)
				}
			}
			checkProbe("readinessProbe", pg.ReadinessProbe, "/readyz")
			checkProbe("livenessProbe", pg.LivenessProbe, "/healthz")
			if pg.StartupProbe != nil {
				checkProbe("startupProbe", pg.StartupProbe, "/healthz")
			}
			// Service → proxy port.
			if len(ov.svc.Spec.Ports) != 1 {
				t.Fatalf("Service: want exactly one port (the proxy), got %d", len(ov.svc.Spec.Ports))
			}
			tp := ov.svc.Spec.Ports[0].TargetPort
			if tp.String() != proxyPortName && tp.IntValue() != int(containerPort(pg, proxyPortName)) {
				t.Errorf("Service targetPort %s, want the proxy port", tp.String())
			}
			if tp.String() == proxyPortName && containerPort(pg, proxyPortName) == 0 {
				t.Errorf("Service targets port name %q, which the pulsegate container does not declare", proxyPortName)
			}
			if containerPort(ov.app, proxyPortName) != 0 || len(ov.app.Ports) != 0 {
				t.Error("the app container declares ports; its traffic must come through pulsegate only")
			}
			labels := ov.deploy.Spec.Template.Labels
			for k, v := range ov.svc.Spec.Selector {
				if labels[k] != v {
					t.Errorf("Service selector %s=%s does not match the pod labels %v", k, v, labels)
				}
			}
			for k, v := range ov.deploy.Spec.Selector.MatchLabels {
				if labels[k] != v {
					t.Errorf("Deployment selector %s=%s does not match its pod template labels", k, v)
				}
			}
		})
	}
}

// TestSecurityAndResources: every container runs non-root with a read-only
// root filesystem, no privilege escalation, no capabilities and the
// RuntimeDefault seccomp profile; pulsegate has its requests (50m/64Mi)
// and limits, and its data dir is on a writable emptyDir.
func TestSecurityAndResources(t *testing.T) {
	for _, name := range overlays {
		t.Run(name, func(t *testing.T) {
			ov := loadOverlay(t, name)
			spec := ov.deploy.Spec.Template.Spec
			psc := spec.SecurityContext
			if psc == nil || psc.RunAsNonRoot == nil || !*psc.RunAsNonRoot || psc.RunAsUser == nil || *psc.RunAsUser == 0 {
				t.Error("pod securityContext: runAsNonRoot true and a non-zero runAsUser are required")
			}
			if psc == nil || psc.SeccompProfile == nil || psc.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault {
				t.Error("pod securityContext: seccompProfile RuntimeDefault is required")
			}
			if spec.AutomountServiceAccountToken == nil || *spec.AutomountServiceAccountToken {
				t.Error("automountServiceAccountToken should be false: neither container talks to the API server")
			}
			for _, c := range append(slices.Clone(spec.InitContainers), spec.Containers...) {
				sc := c.SecurityContext
				switch {
				case sc == nil:
					t.Errorf("container %s: no securityContext", c.Name)
					continue
				case sc.RunAsNonRoot == nil || !*sc.RunAsNonRoot:
					t.Errorf("container %s: runAsNonRoot must be true", c.Name)
				case sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem:
					t.Errorf("container %s: readOnlyRootFilesystem must be true", c.Name)
				case sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation:
					t.Errorf("container %s: allowPrivilegeEscalation must be false", c.Name)
				case sc.Privileged != nil && *sc.Privileged:
					t.Errorf("container %s: privileged", c.Name)
				case sc.Capabilities == nil || !slices.Equal(sc.Capabilities.Drop, []corev1.Capability{"ALL"}) || len(sc.Capabilities.Add) != 0:
					t.Errorf("container %s: capabilities must drop ALL and add none", c.Name)
				case sc.SeccompProfile == nil || sc.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault:
					t.Errorf("container %s: seccompProfile RuntimeDefault is required", c.Name)
				}
				if c.Image == "" || strings.HasSuffix(c.Image, ":latest") {
					t.Errorf("container %s: image %q (set a tag with kustomize edit set image, never :latest)", c.Name, c.Image)
				}
			}
			r := ov.pulsegate.Resources
			if r.Requests.Cpu().String() != "50m" || r.Requests.Memory().String() != "64Mi" {
				t.Errorf("pulsegate requests = %s/%s, want 50m/64Mi", r.Requests.Cpu(), r.Requests.Memory())
			}
			if r.Limits.Cpu().IsZero() || r.Limits.Memory().IsZero() {
				t.Error("pulsegate needs cpu and memory limits (GOMAXPROCS and the memory budget are derived from them)")
			}
			if r.Limits.Memory().Cmp(*r.Requests.Memory()) < 0 || r.Limits.Cpu().Cmp(*r.Requests.Cpu()) < 0 {
				t.Error("pulsegate limits below its requests")
			}
			cfg, _, _ := ov.effectiveConfig(t)
			if !filepath.IsAbs(cfg.DataDir) {
				t.Fatalf("data_dir %q must be absolute in a pod", cfg.DataDir)
			}
			m := ov.mountFor(t, ov.pulsegate, cfg.DataDir)
			if m.ReadOnly || ov.volume(t, m.Name).EmptyDir == nil {
				t.Errorf("data_dir %s is on volume %s, which must be a writable emptyDir", cfg.DataDir, m.Name)
			}
		})
	}
}

// gunicornArgs returns gunicorn's settings from the app container's
// command line: --name=value and --name value forms.
func gunicornArgs(t *testing.T, c *corev1.Container) map[string]string {
	t.Helper()
	argv := append(slices.Clone(c.Command), c.Args...)
	if len(argv) == 0 || path.Base(argv[0]) != "gunicorn" {
		t.Fatalf("app container: command %q, want gunicorn", argv)
	}
	out := map[string]string{}
	for i := 1; i < len(argv); i++ {
		a := argv[i]
		if !strings.HasPrefix(a, "--") {
			continue
		}
		if k, v, ok := strings.Cut(a, "="); ok {
			out[k] = v
		} else if i+1 < len(argv) && !strings.HasPrefix(argv[i+1], "-") {
			out[a] = argv[i+1]
			i++
		}
	}
	return out
}

// preStopSleep is the seconds a container's preStop hook sleeps (exec
// "sleep N" or the sleep action), 0 without one.
func preStopSleep(t *testing.T, c *corev1.Container) float64 {
	t.Helper()
	if c.Lifecycle == nil || c.Lifecycle.PreStop == nil {
		return 0
	}
	h := c.Lifecycle.PreStop
	switch {
	case h.Sleep != nil:
		return float64(h.Sleep.Seconds)
	case h.Exec != nil && len(h.Exec.Command) == 2 && path.Base(h.Exec.Command[0]) == "sleep":
		v, err := strconv.ParseFloat(h.Exec.Command[1], 64)
		if err != nil {
			t.Fatalf("container %s preStop: %v", c.Name, err)
		}
		return v
	}
	t.Fatalf("container %s preStop: only a sleep is expected", c.Name)
	return 0
}

// TestDrainArithmetic checks terminationGracePeriodSeconds against the
// drain settings of the effective configuration, gunicorn's graceful
// timeout and the preStop sleeps.
//
// Native sidecar: Kubernetes stops the app first and pulsegate only once the
// app has exited, so the worst cases add up:
// preStop(app) + graceful(app) + preStop(pulsegate) + drain + shutdown < grace.
// Classic sidecar: both get SIGTERM together (after their preStops), so
// max(preStop(pulsegate) + drain + shutdown, preStop(app) + graceful) < grace,
// and the app must keep accepting until pulsegate stops accepting:
// preStop(app) > preStop(pulsegate) + drain.
func TestDrainArithmetic(t *testing.T) {
	const margin = 3 // seconds of slack for signal delivery and process exit
	for _, name := range overlays {
		t.Run(name, func(t *testing.T) {
			ov := loadOverlay(t, name)
			cfg, _, _ := ov.effectiveConfig(t)
			drain, shutdown := float64(cfg.Proxy.DrainDelay), float64(cfg.Proxy.ShutdownTimeout)
			g := gunicornArgs(t, ov.app)
			graceful := 30.0 // gunicorn's default
			if v, ok := g["--graceful-timeout"]; ok {
				var err error
				if graceful, err = strconv.ParseFloat(v, 64); err != nil {
					t.Fatalf("--graceful-timeout %q: %v", v, err)
				}
			}
			appPre, pgPre := preStopSleep(t, ov.app), preStopSleep(t, ov.pulsegate)
			grace := ov.deploy.Spec.Template.Spec.TerminationGracePeriodSeconds
			if grace == nil {
				t.Fatal("terminationGracePeriodSeconds is not set (the default 30 s is not derived from the drain settings)")
			}
			var need float64
			if ov.native {
				need = appPre + graceful + pgPre + drain + shutdown
			} else {
				need = math.Max(pgPre+drain+shutdown, appPre+graceful)
				if appPre <= pgPre+drain {
					t.Errorf("app preStop %.0f s must outlast pulsegate's drain (%.0f s preStop + %.0f s drain delay): "+
						"otherwise gunicorn stops accepting while pulsegate still forwards new requests", appPre, pgPre, drain)
				}
			}
			t.Logf("%s: drain %.0f s, shutdown %.0f s, app preStop %.0f s, gunicorn graceful %.0f s: needs %.0f s + %d s margin, grace %d s",
				name, drain, shutdown, appPre, graceful, need, margin, *grace)
			if float64(*grace) < need+margin {
				t.Errorf("terminationGracePeriodSeconds %d < %.0f s needed + %d s margin", *grace, need, margin)
			}
			if appPre < drain {
				t.Errorf("app preStop %.0f s is shorter than the drain delay %.0f s: endpoints may still send traffic after gunicorn stops accepting", appPre, drain)
			}
		})
	}
}

// TestAppBehindProxy: gunicorn listens exactly where pulsegate forwards,
// on loopback only, with a keep-alive longer than pulsegate's upstream idle
// timeout (the gunicorn keep-alive race), and a writable worker tmp dir
// despite the read-only root filesystem.
func TestAppBehindProxy(t *testing.T) {
	for _, name := range overlays {
		t.Run(name, func(t *testing.T) {
			ov := loadOverlay(t, name)
			cfg, _, _ := ov.effectiveConfig(t)
			g := gunicornArgs(t, ov.app)
			u, err := url.Parse(cfg.Proxy.UpstreamURL)
			if err != nil {
				t.Fatal(err)
			}
			if g["--bind"] != u.Host {
				t.Errorf("gunicorn --bind %q, pulsegate forwards to %s", g["--bind"], u.Host)
			}
			if h, _, _ := net.SplitHostPort(g["--bind"]); h != "127.0.0.1" && h != "localhost" {
				t.Errorf("gunicorn binds %s: bind 127.0.0.1 so no traffic bypasses pulsegate", g["--bind"])
			}
			keepAlive := 2.0 // gunicorn's default
			if v, ok := g["--keep-alive"]; ok {
				if keepAlive, err = strconv.ParseFloat(v, 64); err != nil {
					t.Fatal(err)
				}
			}
			if idle := float64(cfg.Proxy.UpstreamIdleTimeout); idle >= keepAlive {
				t.Errorf("proxy.upstream_idle_timeout %.1f s must stay below gunicorn --keep-alive %.1f s (POSTs on a closing connection fail with 502)", idle, keepAlive)
			}
			// pulsegate's /readyz does not wait for the app, so the app's own
			// startup (or readiness) check must: an exec probe that connects to
			// the loopback port gunicorn binds.
			_, bindPort, _ := net.SplitHostPort(g["--bind"])
			probed := false
			for _, p := range []*corev1.Probe{ov.app.StartupProbe, ov.app.ReadinessProbe} {
				if p != nil && p.Exec != nil && strings.Contains(strings.Join(p.Exec.Command, " "), bindPort) {
					probed = true
				}
			}
			if !probed {
				t.Errorf("the app container needs a startup or readiness exec probe on port %s, or the pod turns Ready before gunicorn listens", bindPort)
			}
			tmp := g["--worker-tmp-dir"]
			if tmp != "/dev/shm" {
				ov.mountFor(t, ov.app, cmpOr(tmp, "/tmp"))
			}
		})
	}
}

func cmpOr(a, b string) string {
	if a != "" {
		return a
	}
	return b
}
