// Command corsd is the CORS policy decision daemon: it serves
// corsd.v1.DecisionService, corsd.v1.PolicyService, Envoy's ext_authz v3,
// gRPC health and reflection on one port, and /metrics, /healthz and
// /readyz on a second, HTTP port, over an embedded bbolt store (the
// default) or an etcd cluster shared by several replicas.
//
// Every flag has an environment fallback: --db is CORSD_DB, --tls-cert is
// CORSD_TLS_CERT, and so on; a flag on the command line wins.
//
//	--listen            127.0.0.1:8443  gRPC address; non-loopback needs tokens
//	--http-listen       127.0.0.1:9090  /metrics, /healthz, /readyz; "" disables
//	--db                corsd.db        bbolt file, created when missing (= --store bolt:PATH)
//	--store             bolt:corsd.db   bolt:PATH, or etcd://HOST:PORT[,HOST:PORT...]/PREFIX
//	--etcd-cert, --etcd-key             client certificate for etcd
//	--etcd-ca                           CA of etcd's server certificates (turns TLS on)
//	--etcd-username                     etcd user; password from CORSD_ETCD_PASSWORD
//	--etcd-password-file                  or from this file, never from a flag
//	--tokens-file                       YAML/JSON list of {name, token, scopes}
//	CORSD_TOKENS (env only)             name:token:scope1+scope2,...
//	--decision-auth     false           decisions and ext_authz need the check scope
//	--default-policy                    policy when none is named or governs the host
//	--bootstrap                         YAML/JSON list of policies created when missing
//	--tls-cert, --tls-key               TLS for the gRPC port
//	--tls-client-ca                     require client certificates from this CA (mTLS)
//	--log-format        text            text or json
//	--log-level         info            debug, info, warn, error
//	--log-decisions     false           log every decision
//	--shutdown-timeout  10s             graceful stop bound, then hard stop
//	--retain-changes    100000          change-log entries kept; 0: no count limit
//	--retain-age        0               drop older change-log entries; 0: no age limit
//	--restore-from                      load a backup (corsctl backup) into the empty store first
//	--restore-overwrite false           bolt: let --restore-from replace an existing file
//
// On start corsd logs one line per listener ("grpc listening", "http
// listening", with addr) and "ready" once the policies are loaded. SIGINT or
// SIGTERM start a graceful shutdown: health NOT_SERVING and /readyz 503,
// then a graceful stop bounded by --shutdown-timeout; the exit status is 0.
// SIGHUP re-reads --tokens-file and the TLS files (rotations without a
// restart): it logs "tokens reloaded" and "TLS reloaded", or "token reload
// failed" / "TLS reload failed" and keeps what is in force.
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
