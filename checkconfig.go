package main

import (
	"flag"
	"fmt"
	"io"

	"github.com/pulsegate/pulsegate/config"
)

// cmdCheckConfig prints the effective configuration with secrets redacted,
// or every problem with it, and exits 0 or 1.
func cmdCheckConfig(args, environ []string, stdout, stderr io.Writer) int {
	cfg, deps, code := loadConfigNoting("check-config", args, environ, stderr)
	if cfg == nil {
		return code
	}
	for _, d := range deps {
		fmt.Fprintln(stderr, "deprecated: "+d.String())
	}
	out, err := cfg.RenderYAML()
	if err != nil {
		fmt.Fprintf(stderr, "pulsegate: rendering configuration: %v\n", err)
		return 1
	}
	stdout.Write(out)
	fmt.Fprintln(stderr, "configuration OK")
	return 0
}

// loadConfig parses --config and loads the layered configuration. On
// failure it prints every problem, one per line, and returns a nil config.
func loadConfig(name string, args, environ []string, stderr io.Writer) (*config.Config, int) {
	cfg, _, code := loadConfigNoting(name, args, environ, stderr)
	return cfg, code
}

// loadConfigNoting is loadConfig that also returns the deprecated
// settings given (config.Deprecation), for serve to log and check-config
// to print.
func loadConfigNoting(name string, args, environ []string, stderr io.Writer) (*config.Config, []config.Deprecation, int) {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	file := fs.String("config", "", "YAML configuration file (default: $RESPONSIVENESS_CONFIG_FILE)")
	if err := fs.Parse(args); err != nil {
		return nil, nil, 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "pulsegate %s: unexpected argument %q\n", name, fs.Arg(0))
		return nil, nil, 2
	}
	cfg, deps, err := config.LoadWithDeprecations(config.LoadOptions{File: *file, Environ: environ})
	if err != nil {
		fmt.Fprintf(stderr, "pulsegate: invalid configuration:\n%v\n", err)
		return nil, nil, 1
	}
	return cfg, deps, 0
}
