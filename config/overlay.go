package config

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"

	"github.com/knadh/koanf/maps"
)

// An overlay is the fleet's live configuration as the shared store keeps
// it: a JSON document with the shape of a POST body holding only the keys
// changed live, e.g. {"responsiveness": {"slow_request_threshold": 0.3}}.
// Each sidecar's environment and YAML stay its base: the configuration it
// runs is ApplyOverlay(base, overlay), so removing the overlay returns it to
// its files.

// sharedProblem says why key cannot be part of a fleet overlay ("" when it can).
func sharedProblem(f field) string {
	switch {
	case f.kind == kindSecret:
		return "is a secret, and the shared store never holds secrets: set it in each sidecar's environment or YAML"
	case f.key == "instance":
		return "names one sidecar: set it in that sidecar's environment (it cannot be changed for the whole fleet)"
	case f.key == "fleet":
		return "selects the fleet: set it in each sidecar's environment (it cannot be changed through the fleet's own configuration)"
	}
	return ""
}

// ApplyOverlay returns base with the overlay doc applied and validated
// exactly like a POST (Patch). A nil, empty or null doc returns base
// itself. A doc naming a key that cannot be shared (a secret, instance,
// fleet) or an invalid value is a *ValidationError naming the key; base is
// never modified.
func ApplyOverlay(base *Config, doc json.RawMessage) (*Config, error) {
	if base == nil {
		return nil, errors.New("applying the fleet configuration: no base configuration")
	}
	if isNullDoc(doc) {
		return base, nil
	}
	keys, err := OverlayKeys(doc)
	if err != nil {
		return nil, err
	}
	fields := fieldsByKey()
	var errs []FieldError
	env := envByKey()
	for _, k := range keys {
		if f, ok := fields[k]; ok {
			if p := sharedProblem(f); p != "" {
				errs = append(errs, FieldError{Key: k, Env: env[k], Problem: p})
			}
		}
	}
	if len(errs) > 0 {
		return nil, &ValidationError{Errors: errs}
	}
	var top map[string]json.RawMessage
	if err := json.Unmarshal(doc, &top); err == nil {
		if _, ok := top["version"]; ok {
			return nil, &ValidationError{Errors: []FieldError{{Key: "version", Problem: "is not a setting (a fleet overlay holds settings only)"}}}
		}
	}
	return Patch(base, doc)
}

// OverlayKeys lists the leaf keys an overlay (or a POST body) names, sorted.
func OverlayKeys(doc json.RawMessage) ([]string, error) {
	if isNullDoc(doc) {
		return nil, nil
	}
	m, perrs, err := parsePatchBody(doc)
	if err != nil {
		return nil, fmt.Errorf("parsing the fleet configuration: %w", err)
	}
	if len(perrs) > 0 {
		return nil, &ValidationError{Errors: perrs}
	}
	flat, _ := maps.Flatten(m, nil, ".")
	keys := make([]string, 0, len(flat))
	for k := range flat {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys, nil
}

// MergeOverlay returns the overlay that follows prev after a POST: prev's
// keys, plus every setting whose value differs from cur to next, plus every
// key of prev that body names again, each with next's value. A change of a
// setting that cannot be shared (a secret, instance, fleet) is a
// *ValidationError naming it: nothing is stored. The document's keys are
// sorted (json.Marshal of maps), so equal overlays are equal bytes.
func MergeOverlay(prev json.RawMessage, cur, next *Config, body []byte) (json.RawMessage, error) {
	if cur == nil || next == nil {
		return nil, errors.New("merging the fleet configuration: nil configuration")
	}
	prevKeys, err := OverlayKeys(prev)
	if err != nil {
		return nil, err
	}
	// prev's values are kept as stored (a key this version does not know
	// included: ApplyOverlay names it); changed keys take next's value.
	doc := map[string]any{}
	if len(prevKeys) > 0 {
		doc, _, _ = parsePatchBody(prev) // OverlayKeys parsed it already
	}
	fields := fieldsByKey()
	env := envByKey()
	var errs []FieldError
	set := map[string]bool{}
	for _, c := range Diff(cur, next) {
		if p := sharedProblem(fields[c.Key]); p != "" {
			errs = append(errs, FieldError{Key: c.Key, Env: env[c.Key], Problem: p})
			continue
		}
		set[c.Key] = true
	}
	if len(errs) > 0 {
		return nil, &ValidationError{Errors: errs}
	}
	if len(body) > 0 {
		if named, err := OverlayKeys(body); err == nil {
			for _, k := range named {
				if _, known := fields[k]; known && slicesContain(prevKeys, k) {
					set[k] = true
				}
			}
		}
	}
	for k := range set {
		setNested(doc, k, overlayValue(fields[k], next))
	}
	if len(doc) == 0 {
		return nil, nil
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(doc); err != nil {
		return nil, err
	}
	return json.RawMessage(bytes.TrimSpace(buf.Bytes())), nil
}

func slicesContain(s []string, k string) bool {
	i := sort.SearchStrings(s, k)
	return i < len(s) && s[i] == k
}

func isNullDoc(doc json.RawMessage) bool {
	d := bytes.TrimSpace(doc)
	return len(d) == 0 || string(d) == "null" || string(d) == "{}"
}

func fieldsByKey() map[string]field {
	fs := configFields()
	out := make(map[string]field, len(fs))
	for _, f := range fs {
		out[f.key] = f
	}
	return out
}

// overlayValue is f's value in c as Patch reads it back.
func overlayValue(f field, c *Config) any {
	v := f.value(c)
	switch f.kind {
	case kindBool:
		return v.Bool()
	case kindInt:
		return v.Int()
	case kindFloat, kindSeconds:
		return v.Float()
	case kindList:
		l := v.Interface().([]string)
		if l == nil {
			l = []string{}
		}
		return l
	default:
		return v.String()
	}
}

func setNested(doc map[string]any, key string, v any) {
	parts := strings.Split(key, ".")
	m := doc
	for _, p := range parts[:len(parts)-1] {
		sub, ok := m[p].(map[string]any)
		if !ok {
			sub = map[string]any{}
			m[p] = sub
		}
		m = sub
	}
	m[parts[len(parts)-1]] = v
}
