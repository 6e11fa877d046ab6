package config

import (
	"strings"
	"testing"
)

func TestTrustedProxiesValidation(t *testing.T) {
	c := Defaults()
	c.Proxy.TrustedProxies = []string{"10.0.0.0/8", "192.168.1.7", "::1", "not-an-ip"}
	err := c.Validate()
	if err == nil || !strings.Contains(err.Error(), `"not-an-ip"`) || strings.Count(err.Error(), "trusted_proxies") != 1 {
		t.Fatalf("Validate() = %v; want exactly the bad entry named", err)
	}
}
