package main

import (
	"net/http"

	"github.com/pulsegate/pulsegate/config"
)

// dashboardHandler returns the dashboard for the admin routes.
func dashboardHandler(cfg *config.Config) http.Handler { return nil }
