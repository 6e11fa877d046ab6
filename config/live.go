package config

import "slices"

// restartKeys are the settings read once, when the sidecar starts: a
// listener, a server limit, a connection or a component that exists or not.
// Every other setting is live: a change (POST /admin/api/config, Holder.Set)
// reaches every component that holds it without a restart.
var restartKeys = []string{
	"responsiveness.monitoring_enabled", // the probes are built, or not, at start
	"proxy.listen_addr",
	"proxy.read_header_timeout", // http.Server fields of the proxy listener
	"proxy.client_idle_timeout",
	"proxy.max_header_bytes",
	"admin.addr",
	"database.dsn",           // the database probe's connection
	"database.probe_timeout", // the driver's connect and statement timeouts
	"redis.url",              // the Redis probe's client
	"redis.probe_timeout",    // the client's dial and read timeouts
	"log.format",
	"data_dir",
}

// RestartKeys lists the settings that take effect only after a restart, in
// the order of the Config struct.
func RestartKeys() []string {
	var out []string
	for _, f := range configFields() {
		if slices.Contains(restartKeys, f.key) {
			out = append(out, f.key)
		}
	}
	return out
}

// NeedsRestart tells whether key is read only at start.
func NeedsRestart(key string) bool { return slices.Contains(restartKeys, key) }

// RestartRequired lists the settings that differ from old to new and take
// effect only after a restart (empty, never nil, when there are none).
func RestartRequired(old, new *Config) []string {
	out := []string{}
	for _, c := range Diff(old, new) {
		if NeedsRestart(c.Key) {
			out = append(out, c.Key)
		}
	}
	return out
}
