package probes

import (
	"strconv"
	"strings"
)

// parseInfo parses the text of Redis INFO into section → field → value,
// section names lower-cased ("memory", "keyspace"). It accepts CRLF or LF
// line ends, ignores blank lines, comments other than section headers and
// lines without ':', and keeps unknown sections and fields: callers read
// values by name and must treat a missing one as unknown. Fields before
// any "# Section" header land in section "".
func parseInfo(s string) map[string]map[string]string {
	out := map[string]map[string]string{}
	section := ""
	for _, line := range strings.Split(s, "\n") {
		line = strings.TrimRight(line, "\r")
		if line == "" {
			continue
		}
		if strings.HasPrefix(line, "#") {
			section = strings.ToLower(strings.TrimSpace(strings.TrimLeft(line, "#")))
			continue
		}
		k, v, ok := strings.Cut(line, ":")
		if !ok || k == "" {
			continue
		}
		m := out[section]
		if m == nil {
			m = map[string]string{}
			out[section] = m
		}
		m[k] = v
	}
	return out
}

// infoInt reads an integer field; ok is false when absent or not a number.
func infoInt(info map[string]map[string]string, section, field string) (int64, bool) {
	v, ok := info[section][field]
	if !ok {
		return 0, false
	}
	n, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
	if err != nil {
		return 0, false
	}
	return n, true
}

// parseKeyspaceLine parses a keyspace value "keys=1,expires=0,avg_ttl=0,…"
// by name; unknown fields are kept, non-numbers dropped.
func parseKeyspaceLine(v string) map[string]int64 {
	out := map[string]int64{}
	for _, kv := range strings.Split(v, ",") {
		k, val, ok := strings.Cut(kv, "=")
		if !ok {
			continue
		}
		if n, err := strconv.ParseInt(strings.TrimSpace(val), 10, 64); err == nil {
			out[strings.TrimSpace(k)] = n
		}
	}
	return out
}
