package config

import (
	"math"
	"os"
)

// EffectiveBurst is the bucket size a limiter with rate rps and configured
// burst should use: burst when set, otherwise max(1, ceil(rps)); 0 when the
// rate is 0 (off). Validate has already rejected a burst without a rate.
func EffectiveBurst(rps float64, burst int) int {
	if rps <= 0 || math.IsNaN(rps) {
		return 0
	}
	if burst > 0 {
		return burst
	}
	return max(1, int(math.Ceil(min(rps, MaxRate))))
}

// GlobalBurst is EffectiveBurst for the global rate limiter.
func (b Backpressure) GlobalBurst() int { return EffectiveBurst(b.RateLimitRPS, b.RateLimitBurst) }

// ClientBurst is EffectiveBurst for the per-client rate limiter.
func (b Backpressure) ClientBurst() int { return EffectiveBurst(b.PerClientRPS, b.PerClientBurst) }

// InstanceName is the configured instance name, or the host name when it
// is empty (the pod name under Kubernetes), or "localhost" when the host
// name is unknown. A host name longer than MaxNameLen is cut.
func (c *Config) InstanceName() string {
	if c.Instance != "" {
		return c.Instance
	}
	h, err := os.Hostname()
	if err != nil || h == "" {
		return "localhost"
	}
	if len(h) > MaxNameLen {
		h = h[:MaxNameLen]
	}
	return h
}
