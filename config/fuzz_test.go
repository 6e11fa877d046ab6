package config

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"
)

// The seed corpora live in testdata/fuzz/<Name>/ and run as regression tests
// with every plain `go test`. Longer runs:
//
//	go test -fuzz=FuzzLoadYAML -fuzztime=2m ./config/

// checkLoaded asserts what must hold after any load: an error and a config
// never come together, and an accepted config is valid and survives a
// round trip through its own YAML rendering.
func checkLoaded(t *testing.T, cfg *Config, err error) {
	t.Helper()
	if err != nil {
		if cfg != nil {
			t.Fatalf("Load returned a config together with an error: %v", err)
		}
		if strings.TrimSpace(err.Error()) == "" {
			t.Fatal("empty error message")
		}
		return
	}
	if verr := cfg.Validate(); verr != nil {
		t.Fatalf("Load returned an invalid config: %v", verr)
	}
	out, rerr := cfg.RenderYAML()
	if rerr != nil {
		t.Fatalf("RenderYAML: %v", rerr)
	}
	back, _, lerr := load(out, "rendered", nil)
	if lerr != nil {
		t.Fatalf("rendered YAML does not load back: %v\n%s", lerr, out)
	}
	// Secrets render redacted; compare everything else.
	back.Database.DSN, back.Redis.URL, back.Admin.Token, back.Alerts.Email.Password =
		cfg.Database.DSN, cfg.Redis.URL, cfg.Admin.Token, cfg.Alerts.Email.Password
	if d := Diff(cfg, back); len(d) > 0 {
		t.Fatalf("YAML round trip changed %v", d)
	}
}

func FuzzLoadYAML(f *testing.F) {
	f.Fuzz(func(t *testing.T, data []byte) {
		cfg, _, err := load(data, "fuzz.yaml", nil)
		checkLoaded(t, cfg, err)
	})
}

func FuzzLoadEnv(f *testing.F) {
	f.Fuzz(func(t *testing.T, idx uint8, value string, extra string) {
		environ := []string{envTable[int(idx)%len(envTable)].name + "=" + value}
		environ = append(environ, strings.Split(extra, "\n")...)
		cfg, _, err := load(nil, "", environ)
		checkLoaded(t, cfg, err)
	})
}

func FuzzPatch(f *testing.F) {
	f.Fuzz(func(t *testing.T, body []byte) {
		cur := withSecrets()
		before := cur.Clone()
		next, err := Patch(cur, body)
		if !reflect.DeepEqual(cur, before) {
			t.Fatalf("Patch modified its input: %v", Diff(before, cur))
		}
		if err != nil {
			if next != nil {
				t.Fatalf("Patch returned a config together with an error: %v", err)
			}
			return
		}
		if verr := next.Validate(); verr != nil {
			t.Fatalf("Patch returned an invalid config: %v", verr)
		}
		// What GET would show, posted back, changes nothing.
		shown, merr := json.Marshal(next)
		if merr != nil {
			t.Fatal(merr)
		}
		again, perr := Patch(next, shown)
		if perr != nil {
			t.Fatalf("posting back the JSON rendering: %v\n%s", perr, shown)
		}
		if d := Diff(next, again); len(d) > 0 {
			t.Fatalf("posting back the JSON rendering changed %v", d)
		}
	})
}
