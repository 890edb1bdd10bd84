package corsdtest

import (
	"os"
	"path/filepath"
	"testing"
)

// Shell snippets of a fake corsd: it logs what the real one logs, in JSON,
// on stderr.
const (
	logListening = `printf '%s\n' '{"msg":"grpc listening","addr":"127.0.0.1:1"}' '{"msg":"http listening","addr":"127.0.0.1:2"}' >&2
`
	logReady = `printf '%s\n' '{"msg":"ready"}' >&2
`
	onTermStop = `trap 'printf "%s\n" "{\"msg\":\"stopped\"}" >&2; exit 0' TERM
`
	serve = `while :; do sleep 0.02; done
`
)

// fakeCorsd writes a shell script that stands in for corsd.
func fakeCorsd(t *testing.T, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "corsd")
	if err := os.WriteFile(p, []byte("#!/bin/sh\n"+body), 0o700); err != nil {
		t.Fatal(err)
	}
	return p
}
