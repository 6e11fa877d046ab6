package main

import (
	"github.com/pulsegate/pulsegate/config"
	"github.com/pulsegate/pulsegate/dashboard"
)

// dashboardHandler returns the dashboard for the admin routes. It also
// keeps the history ring (build feeds it every monitor tick). Its pages
// read thresholds and judgements from the admin API, so cfg is not needed
// here.
func dashboardHandler(cfg *config.Config) *dashboard.Dashboard {
	d, err := dashboard.New(dashboard.Options{})
	if err != nil {
		// The templates and assets are embedded: this only fails if the
		// binary was built from a broken tree, which the tests catch.
		panic("dashboard: " + err.Error())
	}
	return d
}
