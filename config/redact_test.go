package config

import (
	"encoding/json"
	"fmt"
	"net/url"
	"strings"
	"testing"
)

// canary is the password of RELIABILITY.md case 58: '@', '#', '%' and ':'
// defeat naive redaction.
const canary = "c@n#ry%P4ss:zz"

// canaryForms are the spellings of the canary that must never appear.
func canaryForms() []string {
	return []string{
		canary,
		url.QueryEscape(canary),
		url.PathEscape(canary),
		url.UserPassword("u", canary).String(),
		strings.ReplaceAll(url.QueryEscape(canary), "%", "%25"),
		"P4ss", // the distinctive middle: no partial echo either
	}
}

func assertNoCanary(t *testing.T, where, s string) {
	t.Helper()
	for _, f := range canaryForms() {
		if strings.Contains(s, f) {
			t.Errorf("%s contains the canary as %q:\n%s", where, f, s)
		}
	}
}

// canaryConfig sets the canary, properly encoded, in every secret.
func canaryConfig() *Config {
	enc := url.QueryEscape(canary)
	c := Defaults()
	c.Database.DSN = Secret("postgres://probe:" + enc + "@127.0.0.1:5432/test?sslmode=disable&password=" + enc)
	c.Redis.URL = Secret("redis://default:" + enc + "@127.0.0.1:6379/0")
	c.Store.DSN = Secret("mysql://pulsegate:" + enc + "@127.0.0.1:3306/app")
	c.Admin.Token = Secret(enc)
	c.Alerts.Email = Email{SMTPAddr: "127.0.0.1:25", From: "a@x.io", To: []string{"b@x.io"}, Username: "u", Password: canary, MinSeverity: "critical"}
	return c
}

func TestCanaryNeverInRenderings(t *testing.T) {
	c := canaryConfig()
	if err := c.Validate(); err != nil {
		t.Fatalf("encoded canary DSNs must be valid: %v", err)
	}
	if !strings.Contains(c.Database.DSN.Reveal(), url.QueryEscape(canary)) {
		t.Fatal("test setup: the secret does not hold the canary")
	}
	j, err := json.Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	assertNoCanary(t, "JSON", string(j))
	y, err := c.RenderYAML()
	if err != nil {
		t.Fatal(err)
	}
	assertNoCanary(t, "YAML", string(y))
	for _, verb := range []string{"%v", "%+v", "%#v", "%s", "%q"} {
		assertNoCanary(t, verb, fmt.Sprintf(verb, c))
		assertNoCanary(t, verb+" of *Config", fmt.Sprintf(verb, *c))
	}
	assertNoCanary(t, "Diff", fmt.Sprint(Diff(Defaults(), c)))
	// The secrets still work where they are used.
	if u, err := url.Parse(c.Database.DSN.Reveal()); err != nil {
		t.Fatal(err)
	} else if p, _ := u.User.Password(); p != canary {
		t.Errorf("DSN password parses as %q", p)
	}
}

// TestCanaryNeverInErrors: malformed secrets (the canary pasted raw, so it
// does not parse or parses wrongly) are rejected without echoing it, by
// Validate, by Load from the environment and the file, and by Patch.
func TestCanaryNeverInErrors(t *testing.T) {
	raw := []struct{ desc, dsn, redis string }{
		{"raw in userinfo", "mysql://probe:" + canary + "@127.0.0.1:3306/test", "redis://:" + canary + "@127.0.0.1:6379/0"},
		{"no scheme", "probe:" + canary + "@tcp(127.0.0.1:3306)/test", canary + "@127.0.0.1:6379"},
		{"wrong scheme", "mssql://probe:" + url.QueryEscape(canary) + "@h/db", "memcache://:" + url.QueryEscape(canary) + "@h"},
		{"canary alone", canary, canary},
		{"key=value DSN", "host=db user=probe password=" + canary, "redis://h:6379/0#" + canary},
		{"bad port", "postgres://probe:" + url.QueryEscape(canary) + "@h:99999/db", "redis://:" + url.QueryEscape(canary) + "@h:x/0"},
	}
	for _, tc := range raw {
		t.Run(tc.desc, func(t *testing.T) {
			c := Defaults()
			c.Database.DSN = Secret(tc.dsn)
			c.Redis.URL = Secret(tc.redis)
			c.Store.DSN = Secret(tc.dsn)
			err := c.Validate()
			if err == nil {
				t.Fatal("malformed secrets accepted")
			}
			assertNoCanary(t, "Validate error", err.Error())
			assertNoCanary(t, "%+v of the config", fmt.Sprintf("%+v", c))

			environ := []string{"RESPONSIVENESS_DB_DSN=" + tc.dsn, "RESPONSIVENESS_REDIS_URL=" + tc.redis, "RESPONSIVENESS_ADMIN_TOKEN=" + canary + " x"}
			_, err = Load(LoadOptions{Environ: environ})
			if err == nil {
				t.Fatal("Load accepted malformed secrets")
			}
			assertNoCanary(t, "Load error (env)", err.Error())

			y := "database:\n  dsn: " + jsonString(tc.dsn) + "\nredis:\n  url: " + jsonString(tc.redis) + "\n"
			_, err = Load(LoadOptions{File: writeFile(t, "c.yaml", y)})
			if err == nil {
				t.Fatal("Load accepted malformed secrets from the file")
			}
			assertNoCanary(t, "Load error (file)", err.Error())

			body := `{"database": {"dsn": ` + jsonString(tc.dsn) + `}, "redis": {"url": ` + jsonString(tc.redis) + `}}`
			_, err = Patch(Defaults(), []byte(body))
			if err == nil {
				t.Fatal("Patch accepted malformed secrets")
			}
			assertNoCanary(t, "Patch error", err.Error())
		})
	}
}

// TestCanaryNeverInTypeErrors: a secret in the wrong place or of the wrong
// shape is not echoed either.
func TestCanaryNeverInTypeErrors(t *testing.T) {
	docs := []string{
		"database:\n  dsn: [" + jsonString(canary) + "]\n",                       // list for a secret
		"database:\n  dsnn: " + jsonString(canary) + "\n",                        // unknown key
		"proxy:\n  upstream_url: http://u:" + url.QueryEscape(canary) + "@h:x\n", // secret in a non-secret URL
		"proxy:\n  listen_addr: " + jsonString(canary) + "\n",                    // non-secret field, quoted value
		jsonString("mysql://u:"+canary+"@h/db") + "\n",                           // the document is a string
		"database: " + jsonString(canary) + "\n",                                 // scalar for a section
		"log:\n  level: " + jsonString("mysql://u:"+canary+"@h/db") + "\n",
	}
	for i, d := range docs {
		_, err := Load(LoadOptions{File: writeFile(t, "c.yaml", d)})
		if err == nil {
			t.Errorf("doc %d accepted", i)
			continue
		}
		if i == 3 {
			continue // a non-secret field that is not URL-shaped is quoted; documented
		}
		assertNoCanary(t, fmt.Sprintf("doc %d error", i), err.Error())
	}
	_, err := Load(LoadOptions{Environ: []string{"RESPONSIVENESS_DB_PASSWORD=" + canary}})
	if err == nil {
		t.Fatal("unknown variable accepted")
	}
	assertNoCanary(t, "unknown variable error", err.Error())
}

func jsonString(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}

func TestRedactURL(t *testing.T) {
	tests := []struct{ in, want string }{
		{"mysql://u:p%40ss@h:3306/db", "mysql://u:xxxxx@h:3306/db"},
		{"postgres://u@h/db?password=x&sslmode=disable", "postgres://u@h/db?password=xxxxx&sslmode=disable"},
		{"redis://h:6379/0", "redis://h:6379/0"},
		{"unix://:pw@/run/redis.sock", "unix://:xxxxx@/run/redis.sock"},
		{"mysql://u:p@ss#word@h/db", "mysql://u:xxxxx@ss"},
		{"not a url", Redacted},
		{"u:p@tcp(h:3306)/db", Redacted},
		{"http://[::1", Redacted},
	}
	for _, tc := range tests {
		if got := RedactURL(tc.in); got != tc.want {
			t.Errorf("RedactURL(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}
