package config

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"reflect"
	"strconv"
	"strings"

	"github.com/knadh/koanf/maps"
)

// MaxPatchDepth is the deepest nesting Patch accepts in a body.
const MaxPatchDepth = 32

// Patch applies body, a partial JSON document with the keys and shape of the
// configuration's JSON (e.g. {"responsiveness": {"slow_request_threshold": 0.3}}),
// onto a deep copy of cur and validates the result exactly like Load does.
// cur is never modified; on any error nothing is applied.
//
// It is strict: unknown keys (including dotted keys such as
// "proxy.upstream_url"), values of the wrong type, duplicate keys, nesting
// deeper than MaxPatchDepth, a body that is not one JSON object, and
// trailing data are errors. Field-level problems come back together as a
// *ValidationError (one FieldError per problem, with the key and its
// variable); a body that is not JSON at all is a plain error.
//
// Values follow the YAML rules: durations are numbers of seconds (or
// numeric strings such as "0.5", or "500ms"); booleans are true/false (or
// 1/0); lists are JSON arrays, null or [] meaning empty. A section given as
// null or {} is left as it is.
//
// Secrets (database.dsn, redis.url, admin.token, alerts.email.password): a
// posted value equal to Redacted or to the current redacted rendering (what
// GET shows) means "unchanged", so a client can post back what it read.
// Any other string replaces the secret; "" clears it.
//
// A top-level "version" field is accepted and ignored here; use
// PatchVersioned to read it.
func Patch(cur *Config, body []byte) (*Config, error) {
	next, _, err := PatchVersioned(cur, body)
	return next, err
}

// PatchVersioned is Patch that also returns the body's top-level "version"
// (a non-negative integer; 0 when absent), to be passed to Holder.Update as
// fromVersion: a client that posts the version it read gets ErrStaleVersion
// instead of overwriting someone else's change.
func PatchVersioned(cur *Config, body []byte) (*Config, uint64, error) {
	if cur == nil {
		return nil, 0, errors.New("patching configuration: no current configuration")
	}
	doc, perrs, err := parsePatchBody(body)
	if err != nil {
		return nil, 0, fmt.Errorf("parsing configuration patch: %w", err)
	}

	var version uint64
	if raw, ok := doc["version"]; ok {
		delete(doc, "version")
		n, ok := raw.(json.Number)
		v, err := strconv.ParseUint(n.String(), 10, 64)
		if !ok || err != nil {
			perrs = append(perrs, FieldError{Key: "version", Problem: "must be a non-negative integer, got " + describe(raw)})
		} else {
			version = v
		}
	}

	fields := configFields()
	sections := sectionKeys(fields)
	flat, _ := maps.Flatten(doc, nil, ".")
	for _, f := range fields {
		if f.kind != kindSecret {
			continue
		}
		if s, ok := flat[f.key].(string); ok && (s == Redacted || s == f.format(cur)) {
			delete(flat, f.key)
		}
	}

	next := cur.Clone()
	errs := append(perrs, decodeFlat(next, flat, fields, sections,
		func(string) bool { return false }, func(string) string { return "" })...)
	errs = append(errs, validationExcept(next, errs)...)
	if len(errs) > 0 {
		return nil, 0, &ValidationError{Errors: errs}
	}
	return next, version, nil
}

// parsePatchBody reads one JSON object, keeping numbers as json.Number. It
// returns the object, field-level problems (duplicate and dotted keys), or
// an error for a body that is not exactly one JSON object nested at most
// MaxPatchDepth deep.
func parsePatchBody(body []byte) (map[string]any, []FieldError, error) {
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	p := &patchParser{dec: dec, env: envByKey()}
	tok, err := dec.Token()
	if err == io.EOF {
		return nil, nil, errors.New("empty body: want a JSON object")
	}
	if err != nil {
		return nil, nil, err
	}
	if d, ok := tok.(json.Delim); !ok || d != '{' {
		return nil, nil, errors.New("body must be a JSON object")
	}
	doc, err := p.object("", 1)
	if err != nil {
		return nil, nil, err
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, nil, errors.New("trailing data after the JSON object")
	}
	return doc, p.errs, nil
}

// patchParser walks JSON tokens, recording duplicate keys.
type patchParser struct {
	dec  *json.Decoder
	env  map[string]string
	errs []FieldError
}

// object reads the members of an object whose '{' was consumed.
func (p *patchParser) object(path string, depth int) (map[string]any, error) {
	m := map[string]any{}
	for p.dec.More() {
		tok, err := p.dec.Token()
		if err != nil {
			return nil, err
		}
		name, ok := tok.(string)
		if !ok {
			return nil, errors.New("object key is not a string")
		}
		key := path + name
		v, err := p.value(key, depth)
		if err != nil {
			return nil, err
		}
		switch _, dup := m[name]; {
		case dup:
			p.errs = append(p.errs, FieldError{Key: key, Env: p.env[key], Problem: "duplicate key"})
		case name == "" || strings.Contains(name, "."):
			p.errs = append(p.errs, FieldError{Key: key, Problem: "unknown key (nest sections as objects)"})
		default:
			m[name] = v
		}
	}
	if _, err := p.dec.Token(); err != nil { // '}'
		return nil, err
	}
	return m, nil
}

// value reads one value; depth is the nesting of the enclosing container.
func (p *patchParser) value(path string, depth int) (any, error) {
	tok, err := p.dec.Token()
	if err != nil {
		return nil, err
	}
	d, ok := tok.(json.Delim)
	if !ok {
		return tok, nil // string, json.Number, bool or nil
	}
	if depth >= MaxPatchDepth {
		return nil, fmt.Errorf("nesting deeper than %d levels", MaxPatchDepth)
	}
	if d == '{' {
		return p.object(path+".", depth+1)
	}
	// '['
	l := []any{}
	for p.dec.More() {
		v, err := p.value(path, depth+1)
		if err != nil {
			return nil, err
		}
		l = append(l, v)
	}
	if _, err := p.dec.Token(); err != nil { // ']'
		return nil, err
	}
	return l, nil
}

// Clone returns a deep copy of c (lists are copied).
func (c *Config) Clone() *Config {
	n := *c
	for _, f := range configFields() {
		if f.kind == kindList {
			v := f.value(&n)
			if !v.IsNil() {
				v.Set(reflect.ValueOf(append([]string(nil), v.Interface().([]string)...)))
			}
		}
	}
	return &n
}

// Change is one setting that differs between two configurations, for the
// audit log. Secrets are shown redacted.
type Change struct {
	// Key is the YAML/JSON key.
	Key string `json:"key"`
	// Old and New are the values as text: numbers and booleans as written
	// in YAML, lists as JSON arrays, secrets redacted (a changed secret whose
	// redacted forms are equal shows New as "<redacted> (changed)").
	Old string `json:"old"`
	New string `json:"new"`
}

// Diff lists the settings that differ from old to new, in struct order.
func Diff(old, new *Config) []Change {
	var out []Change
	for _, f := range configFields() {
		ov, nv := f.value(old).Interface(), f.value(new).Interface()
		if f.kind == kindList {
			if slicesEqual(ov.([]string), nv.([]string)) {
				continue
			}
		} else if ov == nv {
			continue
		}
		c := Change{Key: f.key, Old: diffText(f, old), New: diffText(f, new)}
		if f.kind == kindSecret && c.Old == c.New {
			c.New += " (changed)"
		}
		out = append(out, c)
	}
	return out
}

// slicesEqual treats nil and empty as equal.
func slicesEqual(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// diffText renders a value for Change.
func diffText(f field, c *Config) string {
	if f.kind == kindList {
		l := f.value(c).Interface().([]string)
		if l == nil {
			l = []string{}
		}
		var buf bytes.Buffer
		enc := json.NewEncoder(&buf)
		enc.SetEscapeHTML(false)
		_ = enc.Encode(l) // []string always encodes
		return strings.TrimSuffix(buf.String(), "\n")
	}
	return f.format(c)
}
