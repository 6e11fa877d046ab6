package main

import (
	"net/http"

	"github.com/pulsegate/pulsegate/config"
	"github.com/pulsegate/pulsegate/dashboard"
)

// dashboardHandler returns the dashboard for the admin routes. The value
// also keeps the history ring (build feeds it every monitor tick through
// its Record method). Its pages read thresholds from the live config via
// the admin API, so cfg is not needed here.
func dashboardHandler(cfg *config.Config) http.Handler {
	d, err := dashboard.New(dashboard.Options{})
	if err != nil {
		// The templates and assets are embedded: this only fails if the
		// binary was built from a broken tree, which the tests catch.
		panic("dashboard: " + err.Error())
	}
	return d
}
