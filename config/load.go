package config

import (
	"fmt"
	"slices"
	"strings"

	"github.com/knadh/koanf/maps"
	"github.com/knadh/koanf/parsers/yaml"
	"github.com/knadh/koanf/providers/confmap"
	"github.com/knadh/koanf/providers/file"
	"github.com/knadh/koanf/v2"
)

// LoadOptions says where Load reads from.
type LoadOptions struct {
	// File is the YAML file (the --config flag). Empty means the file named
	// by RESPONSIVENESS_CONFIG_FILE in Environ, or no file at all.
	File string
	// Environ is the environment, as os.Environ() returns it. Only
	// RESPONSIVENESS_* entries are read.
	Environ []string
}

// Load builds the effective configuration: Defaults(), then the YAML file,
// then the RESPONSIVENESS_* environment (each layer overrides the one
// before, key by key; a list replaces the whole list), then Validate.
//
// Decoding is strict: an unknown YAML key or RESPONSIVENESS_* variable and a
// value of the wrong type are errors naming the key and its variable. Every
// problem is reported at once: the error is a *ValidationError holding one
// FieldError per problem (decoding and validation together). Reading or
// parsing the file fails with a plain wrapped error. No error text repeats a
// secret.
func Load(opts LoadOptions) (*Config, error) {
	cfg, _, err := LoadWithDeprecations(opts)
	return cfg, err
}

// LoadWithDeprecations is Load that also returns the settings given with a
// meaning they no longer have alone (their value was carried to the
// settings that took it over; see Deprecation). serve logs them and
// check-config prints them.
func LoadWithDeprecations(opts LoadOptions) (*Config, []Deprecation, error) {
	path := opts.File
	if path == "" {
		path = lookupEnv(opts.Environ, EnvConfigFile)
	}
	var data []byte
	if path != "" {
		b, err := file.Provider(path).ReadBytes()
		if err != nil {
			return nil, nil, fmt.Errorf("reading config file: %w", err)
		}
		data = b
	}
	return load(data, path, opts.Environ)
}

// lookupEnv returns the last value of name in environ, or "".
func lookupEnv(environ []string, name string) string {
	v := ""
	for _, kv := range environ {
		if n, val, ok := strings.Cut(kv, "="); ok && n == name {
			v = val
		}
	}
	return v
}

// load is Load after the file is read: data is the YAML (nil = no file),
// source names it in messages.
func load(data []byte, source string, environ []string) (*Config, []Deprecation, error) {
	fields := configFields()
	sections := sectionKeys(fields)

	k := koanf.New(".")
	if err := k.Load(confmap.Provider(defaultsFlat(fields), "."), nil); err != nil {
		return nil, nil, fmt.Errorf("loading defaults: %w", err)
	}

	fileKeys := map[string]bool{}
	if len(data) > 0 {
		doc, err := yaml.Parser().Unmarshal(data)
		if err != nil {
			return nil, nil, fmt.Errorf("parsing config file %s: %s", source, sanitizeYAMLError(err))
		}
		maps.IntfaceKeysToStrings(doc)
		dropNullSections(doc, "", sections)
		flat, _ := maps.Flatten(doc, nil, ".")
		for key := range flat {
			fileKeys[key] = true
		}
		if err := k.Load(confmap.Provider(doc, ""), nil); err != nil {
			return nil, nil, fmt.Errorf("merging config file %s: %w", source, err)
		}
	}

	envValues, errs := parseEnviron(environ)
	if err := k.Load(confmap.Provider(envValues, "."), nil); err != nil {
		return nil, nil, fmt.Errorf("merging environment: %w", err)
	}

	where := func(key string) string {
		if _, ok := envValues[key]; ok {
			return "from the environment"
		}
		if fileKeys[key] && source != "" {
			return "in " + source
		}
		return "in the config file"
	}
	cfg := Defaults()
	errs = append(errs, decodeFlat(cfg, k.All(), fields, sections, func(key string) bool {
		_, ok := envValues[key]
		return ok
	}, where)...)
	if len(errs) > 0 {
		errs = append(errs, validationExcept(cfg, errs)...)
		return nil, nil, &ValidationError{Errors: errs}
	}
	deps := carrySplitMeanings(cfg, func(key string) bool {
		_, inEnv := envValues[key]
		return inEnv || fileKeys[key]
	})
	if err := cfg.Validate(); err != nil {
		return nil, nil, err
	}
	return cfg, deps, nil
}

// validationExcept returns Validate's problems for the keys that decoded
// cleanly: a key that already has a decoding error keeps its default and
// would only add a confusing second line.
func validationExcept(c *Config, decodeErrs []FieldError) []FieldError {
	bad := map[string]bool{}
	for _, e := range decodeErrs {
		bad[e.Key] = true
	}
	var out []FieldError
	for _, e := range c.validate() {
		if !bad[e.Key] {
			out = append(out, e)
		}
	}
	return out
}

// defaultsFlat renders Defaults() as a flat key → value map for koanf.
func defaultsFlat(fields []field) map[string]any {
	def := Defaults()
	out := make(map[string]any, len(fields))
	for _, f := range fields {
		v := f.value(def)
		switch f.kind {
		case kindSecret:
			out[f.key] = v.String()
		case kindSeconds:
			out[f.key] = v.Float()
		case kindList:
			var l []any
			for _, s := range v.Interface().([]string) {
				l = append(l, s)
			}
			out[f.key] = l
		default:
			out[f.key] = v.Interface()
		}
	}
	return out
}

// dropNullSections removes sections written as null ("proxy:" with every
// child commented out), so they keep their defaults instead of erasing them
// in koanf's merge.
func dropNullSections(m map[string]any, prefix string, sections map[string]bool) {
	for k, v := range m {
		key := prefix + k
		if !sections[key] {
			continue
		}
		switch x := v.(type) {
		case nil:
			delete(m, k)
		case map[string]any:
			dropNullSections(x, key+".", sections)
		}
	}
}

// decodeFlat stores every known key of flat into cfg and returns one
// FieldError per unknown key, misplaced mapping or badly typed value.
// fromEnv says which keys hold environment strings; where names a key's
// source for messages. It reports keys in sorted order.
func decodeFlat(cfg *Config, flat map[string]any, fields []field, sections map[string]bool,
	fromEnv func(string) bool, where func(string) string) []FieldError {
	byKey := make(map[string]field, len(fields))
	for _, f := range fields {
		byKey[f.key] = f
	}
	env := envByKey()
	keys := make([]string, 0, len(flat))
	for k := range flat {
		keys = append(keys, k)
	}
	slices.Sort(keys)

	sfx := func(key string) string {
		if w := where(key); w != "" {
			return " (" + w + ")"
		}
		return ""
	}
	var errs []FieldError
	reported := map[string]bool{}
	for _, key := range keys {
		v := flat[key]
		if f, ok := byKey[key]; ok {
			if p := f.set(cfg, v, fromEnv(key)); p != "" {
				errs = append(errs, FieldError{Key: key, Env: env[key], Problem: p + sfx(key)})
				reported[key] = true
			}
			continue
		}
		if sections[key] {
			if m, ok := v.(map[string]any); (ok && len(m) == 0) || v == nil {
				continue
			}
			errs = append(errs, FieldError{Key: key, Problem: "must be a mapping of keys, got " + describe(v) + sfx(key)})
			continue
		}
		if leaf := leafPrefix(key, byKey); leaf != "" {
			if !reported[leaf] {
				reported[leaf] = true
				f := byKey[leaf]
				errs = append(errs, FieldError{Key: leaf, Env: env[leaf], Problem: "must be " + f.kind.what() + ", got a mapping" + sfx(key)})
			}
			continue
		}
		errs = append(errs, FieldError{Key: key, Problem: "unknown key" + suggestKey(key, fields, sections) + sfx(key)})
	}
	return errs
}

// leafPrefix returns the leaf key that key lies beneath
// ("proxy.upstream_url" for "proxy.upstream_url.x"), or "".
func leafPrefix(key string, byKey map[string]field) string {
	for i := len(key) - 1; i > 0; i-- {
		if key[i] == '.' {
			if _, ok := byKey[key[:i]]; ok {
				return key[:i]
			}
		}
	}
	return ""
}

// suggestKey proposes the nearest known key for an unknown one: a close
// spelling, or the same field name in another section.
func suggestKey(key string, fields []field, sections map[string]bool) string {
	if len(key) > 200 {
		return ""
	}
	candidates := make([]string, 0, len(fields)+len(sections))
	for _, f := range fields {
		candidates = append(candidates, f.key)
	}
	for s := range sections {
		candidates = append(candidates, s)
	}
	slices.Sort(candidates)
	best, bestD := "", 4
	for _, c := range candidates {
		if d := editDistance(key, c, bestD); d < bestD {
			best, bestD = c, d
		}
	}
	if best == "" {
		last := key[strings.LastIndexByte(key, '.')+1:]
		for _, f := range fields {
			if f.key[strings.LastIndexByte(f.key, '.')+1:] == last {
				best = f.key
				break
			}
		}
	}
	if best == "" {
		return ""
	}
	return " (did you mean " + best + "?)"
}

// sanitizeYAMLError returns the parser's message without the document
// excerpts it quotes between backticks (a YAML file that is one long DSN
// string must not be echoed). Line numbers and key names stay.
func sanitizeYAMLError(err error) string {
	lines := strings.Split(err.Error(), "\n")
	for i, l := range lines {
		if first, last := strings.IndexByte(l, '`'), strings.LastIndexByte(l, '`'); first >= 0 {
			if last <= first {
				last = len(l) - 1
			}
			lines[i] = l[:first] + "value" + l[last+1:]
		}
	}
	return strings.Join(lines, "; ")
}
