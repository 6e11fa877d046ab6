package config

// Defaults returns the configuration used where neither the YAML file nor
// the environment says otherwise. The Responsiveness values are the
// product's ResponsivenessConfig defaults.
func Defaults() *Config {
	return &Config{
		Responsiveness: Responsiveness{
			MonitoringEnabled:             true,
			MonitoringInterval:            30,
			MemoryWarningThreshold:        0.8,
			MemoryCriticalThreshold:       0.9,
			CPUWarningThreshold:           0.8,
			CPUCriticalThreshold:          0.9,
			DBConnectionWarningThreshold:  0.8,
			DBConnectionCriticalThreshold: 0.9,
			CleanupEnabled:                true,
			CleanupInterval:               300,
			SlowRequestThreshold:          5.0,
			RequestTimeoutThreshold:       30.0,
			TaskMonitoringEnabled:         true,
			TaskHealthCheckInterval:       60,
		},
		Runtime: Runtime{MemoryLimitShare: 0.8, MemoryLimitDefaultMiB: 64, MaxProcs: 1},
		Proxy: Proxy{
			UpstreamURL:         "http://127.0.0.1:5000",
			ListenAddr:          ":8080",
			DrainDelay:          5,
			ShutdownTimeout:     20,
			UpstreamIdleTimeout: 1.5,
			MaxIdleConnsPerHost: 256,
			ReadHeaderTimeout:   10,
			ClientIdleTimeout:   120,
			ClientBodyTimeout:   30,
			MaxHeaderBytes:      64 << 10,
			MaxRoutes:           200,
			ApdexThreshold:      0.5,
			SlowRequestRing:     100,
		},
		Admin: Admin{
			Addr:         "127.0.0.1:9901",
			AuthTimeout:  1,
			AuthCacheTTL: 5,
		},
		Thresholds: Thresholds{
			DiskWarning:          0.85,
			DiskCritical:         0.95,
			QueueWarning:         50,
			QueueCritical:        100,
			ErrorRateWarning:     0.05,
			ErrorRateCritical:    0.10,
			ResponseTimeWarning:  5,
			ResponseTimeCritical: 10,
			DBQueryWarning:       2,
			DBQueryCritical:      5,
		},
		Database: Database{
			ProbeTimeout:             2,
			LeakAge:                  300,
			IdleInTransactionWarning: 30,
		},
		Redis: Redis{
			SessionPrefix: "session:",
			ScanBudget:    10000,
			ProbeTimeout:  2,
		},
		System: System{
			DiskPaths:  []string{"/"},
			CgroupRoot: "/sys/fs/cgroup",
			ProcRoot:   "/proc",
		},
		Backpressure: Backpressure{
			QueueTimeout:        10,
			PerClientMaxClients: 10000,
			Adaptive: Adaptive{
				MinLimit:       4,
				MaxLimit:       512,
				MinRTTInterval: 60,
				Headroom:       0.1,
			},
			SheddingEnabled: true,
			ShedFraction:    0.5,
			ShedSignals:     []string{"memory", "db_connections", "response_time"},
			ShedHold:        30,
		},
		Alerts: Alerts{
			ResolveMargin: 0.05,
			HistorySize:   1000,
			Timeout:       5,
			Retries:       3,
			Email:         Email{MinSeverity: "critical"},

			RunbookBaseURL: DefaultRunbookBaseURL,
		},
		Actions: Actions{
			CleanupTimeout:     10,
			Cooldown:           60,
			RecycleConnections: true,
			SessionTTL:         86400,
			SessionRepairMax:   1000,
		},
		Log:     Log{Level: "info", Format: "json"},
		DataDir: "./pulsegate-data",
	}
}
