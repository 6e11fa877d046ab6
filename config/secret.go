package config

import (
	"encoding/json"
	"net/url"
	"strings"
)

// Redacted is what a secret prints as.
const Redacted = "<redacted>"

// Secret is a string that never prints itself: String, JSON and YAML
// marshalling show Redacted (or, for URLs, the URL with its password
// replaced). Use Reveal to get the value, and only where it is used.
type Secret string

// Reveal returns the secret value.
func (s Secret) Reveal() string { return string(s) }

// IsSet reports whether a value is configured.
func (s Secret) IsSet() bool { return s != "" }

// String redacts: URLs keep scheme, user, host and path; everything else
// becomes Redacted. An empty secret prints as "".
func (s Secret) String() string {
	if s == "" {
		return ""
	}
	r := RedactURL(string(s))
	// An http(s) URL kept as a secret is a webhook: its path is the token.
	if u, err := url.Parse(r); err == nil && (u.Scheme == "http" || u.Scheme == "https") &&
		(strings.Trim(u.Path, "/") != "" || u.RawQuery != "") {
		return u.Scheme + "://" + u.Host + "/" + Redacted
	}
	return r
}

// GoString redacts for %#v.
func (s Secret) GoString() string { return `"` + s.String() + `"` }

// MarshalJSON writes the redacted form.
func (s Secret) MarshalJSON() ([]byte, error) { return json.Marshal(s.String()) }

// MarshalYAML writes the redacted form.
func (s Secret) MarshalYAML() (any, error) { return s.String(), nil }

// MarshalText writes the redacted form (covers zap, encoding/xml and friends).
func (s Secret) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

// RedactURL returns raw with any password replaced by "xxxxx", keeping
// scheme, user, host, path and query keys (query values named password,
// pass, pwd, sslpassword or token are replaced too). A fragment is dropped:
// an unencoded '#' in a password starts one. A value that is not a URL with
// a scheme and a host (or, for unix:, a path) is replaced whole by
// Redacted, so nothing of an unparseable DSN (whose parse error would quote
// it) ever prints.
func RedactURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil || u.Scheme == "" || u.Opaque != "" || (u.Host == "" && (u.Scheme != "unix" || u.Path == "")) {
		return Redacted
	}
	u.Fragment, u.RawFragment = "", ""
	q := u.Query()
	for k := range q {
		switch strings.ToLower(k) {
		case "password", "pass", "pwd", "sslpassword", "token", "passwd", "secret":
			q.Set(k, "xxxxx")
		}
	}
	u.RawQuery = q.Encode()
	return u.Redacted()
}
