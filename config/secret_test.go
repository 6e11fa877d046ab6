package config

import "testing"

func TestWebhookSecretHidesPathToken(t *testing.T) {
	s := Secret("https://hooks.slack.com/services/T000/B000/XXXXSECRET")
	if got := s.String(); got != "https://hooks.slack.com/"+Redacted {
		t.Fatalf("String() = %q; want the path hidden", got)
	}
	if got := Secret("mysql://u:p@db:3306/app").String(); got != "mysql://u:xxxxx@db:3306/app" {
		t.Fatalf("DSN = %q; want user, host and database kept", got)
	}
}
