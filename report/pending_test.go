package report_test

import (
	"testing"

	"github.com/pulsegate/pulsegate/report"
	"github.com/pulsegate/pulsegate/report/reporttest"
)

func addRoutes(in *report.Inputs, sim *reporttest.Sim)                             {}
func checkSlowRelease(t *testing.T, r *report.Report, f map[string]report.Finding) {}
