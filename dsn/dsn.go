// Package dsn splits connection URLs (mysql://, postgres://, redis://,
// unix://) by hand and scrubs their secrets from text. It is shared by the
// database and Redis probes and by the SQL store, so that every place that
// takes a DSN accepts the same spellings and never quotes a password.
package dsn

import (
	"errors"
	"fmt"
	"net/url"
	"strings"
)

// Parts is a connection URL split by hand, so that passwords holding
// '@', '#', '%', ':' or '/' (raw or percent-encoded) survive: net/url alone
// mis-splits a raw '#' (fragment) or rejects a raw '%', and its errors quote
// the whole input, password included.
type Parts struct {
	// Scheme is lower-cased ("mysql", "postgres", ...).
	Scheme      string
	User        string
	Password    string
	HasPassword bool
	// Rest is scheme://host[:port][/path][?query] without the userinfo, parsed.
	Rest *url.URL
}

// Split parses raw (scheme://[user[:password]@]host[:port][/path][?query]).
// The userinfo ends at the last '@' before the host, so a raw '@' in a
// password works; user and password are percent-decoded when they are
// validly encoded and taken verbatim otherwise. Errors never quote raw.
func Split(raw string) (Parts, error) {
	var p Parts
	i := strings.Index(raw, "://")
	if i <= 0 {
		return p, errors.New("not a URL: want scheme://user:password@host:port/name")
	}
	p.Scheme = strings.ToLower(raw[:i])
	body := raw[i+3:]
	if at := strings.LastIndex(body, "@"); at >= 0 {
		userinfo := body[:at]
		body = body[at+1:]
		user, pass, hasPass := strings.Cut(userinfo, ":")
		p.User = unescapeUserinfo(user)
		p.Password = unescapeUserinfo(pass)
		p.HasPassword = hasPass
	}
	if strings.ContainsAny(body, "@") {
		return p, errors.New("malformed host part")
	}
	u, err := url.Parse(p.Scheme + "://" + body)
	if err != nil {
		// body holds no userinfo, so naming the parse problem cannot leak a
		// password; still keep only the error kind, not the quoted input.
		var ue *url.Error
		if errors.As(err, &ue) {
			return p, fmt.Errorf("malformed URL after the credentials: %v", ue.Err)
		}
		return p, errors.New("malformed URL after the credentials")
	}
	if u.Host == "" && p.Scheme != "unix" {
		return p, errors.New("missing host")
	}
	p.Rest = u
	return p, nil
}

// unescapeUserinfo percent-decodes s when it is validly encoded and returns
// it unchanged otherwise (a raw '%' not followed by two hex digits).
func unescapeUserinfo(s string) string {
	if v, err := url.PathUnescape(s); err == nil {
		return v
	}
	return s
}

// Redacted is the DSN as it may be shown: the password replaced by xxxxx,
// query values kept except password-like keys.
func (p Parts) Redacted() string {
	u := *p.Rest
	switch {
	case p.HasPassword:
		u.User = url.UserPassword(p.User, "xxxxx")
	case p.User != "":
		u.User = url.User(p.User)
	}
	q := u.Query()
	for k := range q {
		switch strings.ToLower(k) {
		case "password", "pass", "pwd", "sslpassword", "token":
			q.Set(k, "xxxxx")
		}
	}
	u.RawQuery = q.Encode()
	return u.Redacted()
}

// Scrubber removes every spelling of a password from text: raw,
// query-escaped, path-escaped and userinfo-escaped, in upper and lower
// case hex. Driver errors and logs can quote a DSN or a password in any
// of these forms.
type Scrubber struct {
	forms []string
}

// NewScrubber returns a scrubber for the given secrets (empty ones ignored).
func NewScrubber(secrets ...string) Scrubber {
	var s Scrubber
	seen := map[string]bool{}
	add := func(v string) {
		if v == "" || seen[v] {
			return
		}
		seen[v] = true
		s.forms = append(s.forms, v)
	}
	for _, sec := range secrets {
		if sec == "" {
			continue
		}
		add(sec)
		for _, enc := range []string{
			url.QueryEscape(sec),
			url.PathEscape(sec),
			strings.TrimPrefix(url.UserPassword("", sec).String(), ":"),
		} {
			add(enc)
			add(strings.ToLower(enc))
		}
	}
	// Longest first, so a longer spelling is not half-replaced by a shorter one.
	for i := 1; i < len(s.forms); i++ {
		for j := i; j > 0 && len(s.forms[j]) > len(s.forms[j-1]); j-- {
			s.forms[j], s.forms[j-1] = s.forms[j-1], s.forms[j]
		}
	}
	return s
}

// Scrub returns text with every known spelling of the secrets replaced by xxxxx.
func (s Scrubber) Scrub(text string) string {
	for _, f := range s.forms {
		text = strings.ReplaceAll(text, f, "xxxxx")
	}
	return text
}
