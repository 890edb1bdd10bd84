// Command corsctl administers corsd: it lists, creates, updates and deletes
// CORS policies, adds and removes trusted origins, explains decisions, shows
// the change log, and keeps corsd in step with a repository of policy files
// (export, diff, apply --prune). Run bare, it prints its help; `corsctl
// completion bash|zsh|fish` writes shell completion (policy names are
// completed from corsd); `corsctl version` prints what it was built from.
//
// corsctl talks to corsd's gRPC API at --addr (or $CORSD_ADDR, default
// 127.0.0.1:8443, the address of `make run`) with the bearer token of
// --token (or $CORSD_TOKEN). Plaintext is used for loopback addresses and
// TLS with the system roots for any other, unless --tls, --tls-ca or
// --plaintext say otherwise.
//
// Exit status: 0 on success, 1 when corsd refused the request or could not
// be reached (or any other failure), 2 on a usage error (unknown command or
// flag, wrong arguments). check exits 1 when the request it asks about is
// refused, and diff when the files differ from corsd.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}
