package report_test

import (
	"os"
	"testing"

	"github.com/pulsegate/pulsegate/report"
	"github.com/pulsegate/pulsegate/report/reporttest"
)

func TestZZDump(t *testing.T) {
	sim := reporttest.Simulate(t, t.TempDir(), reporttest.Plant{FillingDisk: true, FlappingCPU: true})
	r := build(t, sim, "7d")
	report.Render(os.Stdout, r, os.Getenv("FMT"))
}
