package probes

import (
	"os"
	"strings"
	"testing"
)

func TestParseInfoRealRedis7(t *testing.T) {
	b, err := os.ReadFile("testdata/redis7_info.txt")
	if err != nil {
		t.Fatal(err)
	}
	info := parseInfo(string(b))
	for _, c := range []struct{ section, field string }{
		{"server", "redis_version"},
		{"server", "uptime_in_seconds"},
		{"clients", "connected_clients"},
		{"clients", "blocked_clients"},
		{"clients", "maxclients"},
		{"memory", "used_memory"},
		{"memory", "maxmemory"},
		{"memory", "total_system_memory"},
		{"stats", "evicted_keys"},
	} {
		if _, ok := info[c.section][c.field]; !ok {
			t.Errorf("%s.%s missing from the parsed Redis 7.0 INFO", c.section, c.field)
		}
	}
	if v := info["server"]["redis_version"]; !strings.HasPrefix(v, "7.") {
		t.Errorf("redis_version = %q", v)
	}
	if strings.ContainsAny(info["memory"]["used_memory"], "\r\n") {
		t.Errorf("CR left in value %q", info["memory"]["used_memory"])
	}
}

func TestParseInfoVariants(t *testing.T) {
	tests := []struct {
		desc, in       string
		section, field string
		want           string
		wantOK         bool
	}{
		{desc: "LF only", in: "# Memory\nused_memory:42\n", section: "memory", field: "used_memory", want: "42", wantOK: true},
		{desc: "CRLF", in: "# Memory\r\nused_memory:42\r\n", section: "memory", field: "used_memory", want: "42", wantOK: true},
		{desc: "value with colons", in: "# Server\r\nexecutable:/usr/bin/redis:server\r\n", section: "server", field: "executable", want: "/usr/bin/redis:server", wantOK: true},
		{desc: "unknown section kept", in: "# Modules Extra\r\nfoo:1\r\n", section: "modules extra", field: "foo", want: "1", wantOK: true},
		{desc: "field before any header", in: "loose:1\r\n", section: "", field: "loose", want: "1", wantOK: true},
		{desc: "empty", in: "", section: "memory", field: "used_memory", wantOK: false},
		{desc: "line without colon ignored", in: "# Memory\r\nnonsense\r\nused_memory:7\r\n", section: "memory", field: "used_memory", want: "7", wantOK: true},
		{desc: "empty key ignored", in: "# Memory\r\n:7\r\n", section: "memory", field: "", wantOK: false},
	}
	for _, tt := range tests {
		t.Run(tt.desc, func(t *testing.T) {
			got, ok := parseInfo(tt.in)[tt.section][tt.field]
			if ok != tt.wantOK || got != tt.want {
				t.Errorf("parseInfo(%q)[%q][%q] = %q, %v; want %q, %v", tt.in, tt.section, tt.field, got, ok, tt.want, tt.wantOK)
			}
		})
	}
}

func TestParseKeyspaceLine(t *testing.T) {
	// Redis 7.4 adds subexpiry; others may add more: read by name.
	f := parseKeyspaceLine("keys=1200,expires=1000,avg_ttl=86000,subexpiry=0,future=x")
	if f["keys"] != 1200 || f["expires"] != 1000 || f["avg_ttl"] != 86000 || f["subexpiry"] != 0 {
		t.Errorf("fields = %v", f)
	}
	if _, ok := f["future"]; ok {
		t.Errorf("non-number kept: %v", f)
	}
}

func TestInfoIntUnknown(t *testing.T) {
	info := parseInfo("# Memory\r\nused_memory:abc\r\n")
	if _, ok := infoInt(info, "memory", "used_memory"); ok {
		t.Errorf("non-number read as a number")
	}
	if _, ok := infoInt(info, "nosuch", "x"); ok {
		t.Errorf("missing section read as a number")
	}
}

// FuzzParseInfo: any input parses without panic, every value is CR/LF
// free and every key non-empty; seeds include real Redis 7.0 INFO.
func FuzzParseInfo(f *testing.F) {
	if b, err := os.ReadFile("testdata/redis7_info.txt"); err == nil {
		f.Add(string(b))
	}
	f.Add("# Keyspace\r\ndb0:keys=1,expires=0,avg_ttl=0\r\n")
	f.Fuzz(func(t *testing.T, s string) {
		info := parseInfo(s)
		for sec, m := range info {
			if strings.ContainsAny(sec, "\n") {
				t.Fatalf("section name with newline: %q", sec)
			}
			for k, v := range m {
				if k == "" || strings.ContainsAny(k, "\n") || strings.ContainsAny(v, "\n") || strings.HasSuffix(v, "\r") {
					t.Fatalf("bad entry %q=%q in section %q", k, v, sec)
				}
				parseKeyspaceLine(v)
			}
		}
	})
}
