// Command corsd is the CORS policy decision daemon: it serves
// corsd.v1.DecisionService, corsd.v1.PolicyService, Envoy's ext_authz v3,
// gRPC health and reflection on one port, and /metrics, /healthz and
// /readyz on a second, HTTP port, over an embedded bbolt store.
//
// Every flag has an environment fallback: --db is CORSD_DB, --tls-cert is
// CORSD_TLS_CERT, and so on; a flag on the command line wins. Tokens may
// also come from CORSD_TOKENS (see server.ParseTokensEnv). Run corsd -h for
// the list.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stderr)
	stop()
	switch {
	case err == nil:
	case errors.Is(err, flag.ErrHelp):
	case errors.Is(err, errUsage):
		os.Exit(2)
	default:
		fmt.Fprintln(os.Stderr, "corsd:", err)
		os.Exit(1)
	}
}

// errUsage marks command-line errors, already reported by the flag package.
var errUsage = errors.New("usage error")

// run runs the daemon until ctx ends, then shuts it down gracefully. It
// returns nil after a clean shutdown.
func run(ctx context.Context, args []string, stderr io.Writer) error {
	cfg, err := parseFlags(args, os.LookupEnv, stderr)
	if err != nil {
		return err
	}
	return serve(ctx, cfg, stderr)
}
