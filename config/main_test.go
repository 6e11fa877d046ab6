package config

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain checks that no test leaves a goroutine behind (the Holder tests
// start writers and readers).
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}
