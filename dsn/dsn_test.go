package dsn

import (
	"net/url"
	"strings"
	"testing"
)

const canary = "c@n#ry%P4ss:zz"

func TestSplitKeepsAwkwardPasswordsAndNeverQuotesThem(t *testing.T) {
	for _, raw := range []string{
		"mysql://app:" + url.QueryEscape(canary) + "@db:3306/shop",
		"mysql://app:" + canary + "@db:3306/shop",
	} {
		p, err := Split(raw)
		if err != nil {
			t.Fatalf("Split: %v", err)
		}
		if p.Scheme != "mysql" || p.User != "app" || p.Password != canary || !p.HasPassword || p.Rest.Host != "db:3306" || p.Rest.Path != "/shop" {
			t.Errorf("Split = %+v", p)
		}
		if r := p.Redacted(); strings.Contains(r, "P4ss") || !strings.Contains(r, "xxxxx") {
			t.Errorf("Redacted = %q", r)
		}
	}
	for _, raw := range []string{canary, "mysql://u:" + canary + "@/db", "postgres://u:" + canary + "@h:99x/db"} {
		_, err := Split(raw)
		if err == nil {
			t.Errorf("accepted a malformed DSN")
			continue
		}
		if strings.Contains(err.Error(), "P4ss") {
			t.Errorf("error quotes the password: %v", err)
		}
	}
	p, err := Split("postgres://db.example/app?sslmode=require&password=" + url.QueryEscape(canary))
	if err != nil {
		t.Fatal(err)
	}
	if r := p.Redacted(); strings.Contains(r, "P4ss") || !strings.Contains(r, "sslmode=require") {
		t.Errorf("query password not masked, or other parameters lost: %q", r)
	}
}

func TestScrubberRemovesEverySpelling(t *testing.T) {
	s := NewScrubber(canary, "")
	for _, form := range []string{canary, url.QueryEscape(canary), url.PathEscape(canary), strings.ToLower(url.QueryEscape(canary))} {
		out := s.Scrub("dial mysql://u:" + form + "@h failed: " + form)
		if strings.Contains(out, "P4ss") || strings.Contains(out, "p4ss") {
			t.Errorf("Scrub left %q in %q", form, out)
		}
	}
}
