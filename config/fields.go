package config

import (
	"encoding/json"
	"fmt"
	"math"
	"reflect"
	"strconv"
	"strings"
	"time"
)

// kind is how a leaf field's value is written and parsed.
type kind int

const (
	kindBool kind = iota
	kindInt
	kindFloat
	kindSeconds
	kindString
	kindSecret
	kindList
)

// what names the expected type in error messages.
func (k kind) what() string {
	switch k {
	case kindBool:
		return "a boolean (true, false, 1 or 0)"
	case kindInt:
		return "an integer"
	case kindFloat:
		return "a number"
	case kindSeconds:
		return "a number of seconds (e.g. 0.5) or a duration (e.g. 500ms)"
	case kindString, kindSecret:
		return "a string"
	case kindList:
		return "a list of strings"
	}
	return "a value"
}

// field is one leaf of the Config tree, found by reflection.
type field struct {
	key   string // koanf key, e.g. "proxy.upstream_url"
	index []int  // reflect index path from Config
	kind  kind
}

var (
	secondsType = reflect.TypeFor[Seconds]()
	secretType  = reflect.TypeFor[Secret]()
)

// configFields walks the Config struct and returns every leaf field in
// declaration order. Nested structs are sections; everything else is a leaf.
func configFields() []field {
	var out []field
	var walk func(t reflect.Type, prefix string, index []int)
	walk = func(t reflect.Type, prefix string, index []int) {
		for i := range t.NumField() {
			sf := t.Field(i)
			key := prefix + sf.Tag.Get("koanf")
			idx := append(append([]int(nil), index...), i)
			ft := sf.Type
			switch {
			case ft == secondsType:
				out = append(out, field{key: key, index: idx, kind: kindSeconds})
			case ft == secretType:
				out = append(out, field{key: key, index: idx, kind: kindSecret})
			case ft.Kind() == reflect.Struct:
				walk(ft, key+".", idx)
			case ft.Kind() == reflect.Bool:
				out = append(out, field{key: key, index: idx, kind: kindBool})
			case ft.Kind() == reflect.Int:
				out = append(out, field{key: key, index: idx, kind: kindInt})
			case ft.Kind() == reflect.Float64:
				out = append(out, field{key: key, index: idx, kind: kindFloat})
			case ft.Kind() == reflect.String:
				out = append(out, field{key: key, index: idx, kind: kindString})
			case ft.Kind() == reflect.Slice && ft.Elem().Kind() == reflect.String:
				out = append(out, field{key: key, index: idx, kind: kindList})
			default:
				// A new field of an unsupported type is a programming error
				// caught by the package tests (every field needs an env var).
				panic(fmt.Sprintf("config: field %s has unsupported type %s", key, ft))
			}
		}
	}
	walk(reflect.TypeFor[Config](), "", nil)
	return out
}

// sectionKeys returns the keys of every nested struct ("proxy",
// "backpressure.adaptive", ...).
func sectionKeys(fields []field) map[string]bool {
	out := map[string]bool{}
	for _, f := range fields {
		parts := strings.Split(f.key, ".")
		for i := 1; i < len(parts); i++ {
			out[strings.Join(parts[:i], ".")] = true
		}
	}
	return out
}

// value returns the reflect.Value of f inside c (addressable).
func (f field) value(c *Config) reflect.Value {
	return reflect.ValueOf(c).Elem().FieldByIndex(f.index)
}

// format renders the field's value in c as text: the form used for env
// defaults, Diff and error messages. Secrets are redacted, lists are
// comma-separated.
func (f field) format(c *Config) string {
	v := f.value(c)
	switch f.kind {
	case kindBool:
		return strconv.FormatBool(v.Bool())
	case kindInt:
		return strconv.FormatInt(v.Int(), 10)
	case kindFloat, kindSeconds:
		return formatFloat(v.Float())
	case kindSecret:
		return Secret(v.String()).String()
	case kindString:
		return v.String()
	case kindList:
		return strings.Join(v.Interface().([]string), ",")
	}
	return ""
}

// formatFloat prints a float in its shortest round-tripping form, without
// an exponent for ordinary magnitudes (30, 0.5, 1000000000).
func formatFloat(x float64) string {
	if a := math.Abs(x); a != 0 && (a < 1e-6 || a >= 1e15) {
		return strconv.FormatFloat(x, 'g', -1, 64)
	}
	return strconv.FormatFloat(x, 'f', -1, 64)
}

// maxQuoted bounds how much of a rejected value an error message repeats.
const maxQuoted = 60

// quote renders a rejected non-secret value for an error message, shortened.
// Values that look like URLs are redacted first: a password pasted into the
// wrong field must not be echoed either.
func quote(s string) string {
	if strings.Contains(s, "://") || strings.Contains(s, "@") {
		s = RedactURL(s)
	}
	if len(s) > maxQuoted {
		s = s[:maxQuoted] + "…"
	}
	return strconv.Quote(s)
}

// describe names the type of a decoded (YAML/JSON) value for error messages,
// without repeating the value.
func describe(v any) string {
	switch v.(type) {
	case nil:
		return "null"
	case bool:
		return "a boolean"
	case string:
		return "a string"
	case int, int8, int16, int32, int64, uint, uint8, uint16, uint32, uint64, json.Number:
		return "a number"
	case float32, float64:
		return "a number"
	case []any:
		return "a list"
	case map[string]any, map[any]any:
		return "a mapping"
	case time.Time:
		return "a timestamp"
	}
	return fmt.Sprintf("a %T", v)
}

// got renders a rejected value for "must be X, got Y": the quoted value for
// strings and numbers of non-secret fields, otherwise only its type.
func got(f field, v any) string {
	if f.kind == kindSecret {
		return describe(v)
	}
	switch x := v.(type) {
	case string:
		return quote(x)
	case bool:
		return strconv.FormatBool(x)
	case json.Number:
		return quote(x.String())
	case int, int64, uint64, float64:
		return fmt.Sprint(x)
	}
	return describe(v)
}

// set converts raw (a value decoded from YAML or JSON, or an environment
// string when fromEnv) to f's type and stores it in c. It returns a problem
// description, or "" on success. Nothing is stored on failure.
func (f field) set(c *Config, raw any, fromEnv bool) string {
	dst := f.value(c)
	switch f.kind {
	case kindBool:
		b, ok := toBool(raw)
		if !ok {
			return "must be " + f.kind.what() + ", got " + got(f, raw)
		}
		dst.SetBool(b)
	case kindInt:
		n, ok := toInt(raw)
		if !ok {
			return "must be " + f.kind.what() + ", got " + got(f, raw)
		}
		dst.SetInt(n)
	case kindFloat:
		x, ok := toFloat(raw)
		if !ok {
			return "must be " + f.kind.what() + ", got " + got(f, raw)
		}
		dst.SetFloat(x)
	case kindSeconds:
		x, ok := toSeconds(raw)
		if !ok {
			return "must be " + f.kind.what() + ", got " + got(f, raw)
		}
		dst.SetFloat(x)
	case kindString, kindSecret:
		s, ok := raw.(string)
		if !ok {
			return "must be " + f.kind.what() + " (quote it), got " + describe(raw)
		}
		dst.SetString(s)
	case kindList:
		l, ok := toList(raw, fromEnv)
		if !ok {
			what := f.kind.what()
			if fromEnv {
				what = "a comma-separated list"
			}
			return "must be " + what + ", got " + got(f, raw)
		}
		dst.Set(reflect.ValueOf(l))
	}
	return ""
}

// toBool accepts booleans, the integers 1 and 0, and the strings
// true/false/1/0 (case-insensitive, surrounding spaces ignored).
func toBool(raw any) (bool, bool) {
	switch x := raw.(type) {
	case bool:
		return x, true
	case string:
		switch strings.ToLower(strings.TrimSpace(x)) {
		case "true", "1":
			return true, true
		case "false", "0":
			return false, true
		}
	case json.Number:
		return toBool(x.String())
	case int, int64, uint64, float64:
		switch fmt.Sprint(x) {
		case "1":
			return true, true
		case "0":
			return false, true
		}
	}
	return false, false
}

// toInt accepts integers, integral floats within range and numeric strings.
func toInt(raw any) (int64, bool) {
	switch x := raw.(type) {
	case int:
		return int64(x), true
	case int64:
		return x, true
	case uint64:
		if x > math.MaxInt64 {
			return 0, false
		}
		return int64(x), true
	case float64:
		if x != math.Trunc(x) || math.IsInf(x, 0) || x > math.MaxInt64/2 || x < math.MinInt64/2 {
			return 0, false
		}
		return int64(x), true
	case json.Number:
		return toInt(x.String())
	case string:
		s := strings.TrimSpace(x)
		if n, err := strconv.ParseInt(s, 10, 64); err == nil {
			return n, true
		}
		if f, err := strconv.ParseFloat(s, 64); err == nil {
			return toInt(f)
		}
	}
	return 0, false
}

// toFloat accepts numbers and numeric strings. NaN and ±Inf parse here and
// are rejected by Validate with a clearer message.
func toFloat(raw any) (float64, bool) {
	switch x := raw.(type) {
	case int:
		return float64(x), true
	case int64:
		return float64(x), true
	case uint64:
		return float64(x), true
	case float64:
		return x, true
	case json.Number:
		return toFloat(x.String())
	case string:
		f, err := strconv.ParseFloat(strings.TrimSpace(x), 64)
		if err != nil {
			return 0, false
		}
		return f, true
	}
	return 0, false
}

// toSeconds accepts what toFloat accepts plus Go duration strings
// ("500ms", "1m30s").
func toSeconds(raw any) (float64, bool) {
	if f, ok := toFloat(raw); ok {
		return f, true
	}
	s, ok := raw.(string)
	if !ok {
		return 0, false
	}
	d, err := time.ParseDuration(strings.TrimSpace(s))
	if err != nil {
		return 0, false
	}
	return d.Seconds(), true
}

// toList accepts a YAML/JSON list of strings (null and [] are the empty
// list) or, from the environment, a comma-separated string whose items are
// trimmed and whose empty items are dropped. The empty list is nil.
func toList(raw any, fromEnv bool) ([]string, bool) {
	if fromEnv {
		s, ok := raw.(string)
		if !ok {
			return nil, false
		}
		var out []string
		for item := range strings.SplitSeq(s, ",") {
			if item = strings.TrimSpace(item); item != "" {
				out = append(out, item)
			}
		}
		return out, true
	}
	switch x := raw.(type) {
	case nil:
		return nil, true
	case []string:
		if len(x) == 0 {
			return nil, true
		}
		return append([]string(nil), x...), true
	case []any:
		var out []string
		for _, it := range x {
			s, ok := it.(string)
			if !ok {
				return nil, false
			}
			out = append(out, s)
		}
		return out, true
	}
	return nil, false
}
