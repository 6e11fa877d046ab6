package config

// The pressure signals that may shed load (backpressure.shed_signals):
// the one list of their names. backpressure, the monitor and validation
// read it from here.
const (
	ShedMemory        = "memory"
	ShedCPU           = "cpu"
	ShedDBConnections = "db_connections"
	ShedRedisEvicting = "redis_evicting"
	ShedErrorRate     = "error_rate" // the app's error rate (app_error_rate)
	ShedResponseTime  = "response_time"
)

// NumShedSignals is how many shed signals there are.
const NumShedSignals = 6

// ShedSignals lists every shed signal in its fixed order (the order also
// breaks ties when several are critical at once). It returns an array, so
// no caller can change the list.
func ShedSignals() [NumShedSignals]string {
	return [NumShedSignals]string{ShedMemory, ShedCPU, ShedDBConnections, ShedRedisEvicting, ShedErrorRate, ShedResponseTime}
}
