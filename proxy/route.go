package proxy

import (
	"strings"
	"unicode/utf8"
)

// Route templating keeps per-route statistics and metric labels bounded:
// configured patterns (the app's own URL rules) win; otherwise path
// segments that look like identifiers become ":id". Distinct routes are
// capped elsewhere (Stats), with the overflow going to OtherRoute.

// OtherRoute is the route label of requests past the route cap, and of
// paths that cannot be a label (invalid UTF-8).
const OtherRoute = "other"

// maxRouteLen bounds a route label's length.
const maxRouteLen = 128

// routePattern is one configured URL rule, split into segments; "" in
// segs matches any single segment (written <name> or :name in config).
type routePattern struct {
	segs []string
	name string
}

func compilePatterns(patterns []string) []routePattern {
	out := make([]routePattern, 0, len(patterns))
	for _, p := range patterns {
		segs := strings.Split(strings.Trim(p, "/"), "/")
		rp := routePattern{name: p}
		for _, s := range segs {
			if strings.HasPrefix(s, ":") || (strings.HasPrefix(s, "<") && strings.HasSuffix(s, ">")) {
				s = ""
			}
			rp.segs = append(rp.segs, s)
		}
		out = append(out, rp)
	}
	return out
}

// match reports whether path (already trimmed of slashes) fits p.
func (p *routePattern) match(path string) bool {
	for i, want := range p.segs {
		seg, rest, found := strings.Cut(path, "/")
		if want != "" && want != seg {
			return false
		}
		if seg == "" && want == "" {
			return false // an empty segment is no value
		}
		if i == len(p.segs)-1 {
			return !found
		}
		if !found {
			return false
		}
		path = rest
	}
	return false
}

// templateRoute returns the route label for path, using buf as scratch.
// The result aliases buf or path; callers copy it before keeping it.
func templateRoute(path string, patterns []routePattern, buf []byte) []byte {
	trimmed := strings.Trim(path, "/")
	for i := range patterns {
		if patterns[i].match(trimmed) {
			return append(buf[:0], patterns[i].name...)
		}
	}
	buf = buf[:0]
	if path == "" || path == "/" {
		return append(buf, '/')
	}
	rest := path
	if rest[0] == '/' {
		rest = rest[1:]
	}
	for {
		seg, tail, found := strings.Cut(rest, "/")
		buf = append(buf, '/')
		if looksLikeID(seg) {
			buf = append(buf, ":id"...)
		} else {
			buf = append(buf, seg...)
		}
		if len(buf) > maxRouteLen {
			buf = append(buf[:maxRouteLen], "..."...)
			break
		}
		if !found {
			break
		}
		rest = tail
	}
	if !utf8.Valid(buf) {
		return append(buf[:0], OtherRoute...)
	}
	return buf
}

// looksLikeID reports whether a path segment is an identifier rather than
// a name: all digits, a UUID, 16+ hex digits, or a long token mixing
// letters and digits.
func looksLikeID(s string) bool {
	if s == "" {
		return false
	}
	digits, hex, letters, other := 0, 0, 0, 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= '0' && c <= '9':
			digits++
			hex++
		case c >= 'a' && c <= 'f', c >= 'A' && c <= 'F':
			hex++
			letters++
		case c >= 'g' && c <= 'z', c >= 'G' && c <= 'Z':
			letters++
		case c == '-' || c == '_':
			other++
		default:
			return false
		}
	}
	switch {
	case digits == len(s):
		return true
	case len(s) == 36 && hex == 32 && s[8] == '-' && s[13] == '-' && s[18] == '-' && s[23] == '-':
		return true // UUID
	case hex == len(s) && len(s) >= 16:
		return true
	case len(s) >= 24 && digits > 0 && letters > 0:
		return true // session ids, base64url tokens
	}
	return false
}
