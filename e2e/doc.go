// Package e2e holds end-to-end tests that build and start the real corsd
// binary on 127.0.0.1 (through internal/corsdtest) and drive it with real
// clients: grpcurl and corsctl. The browser suite lives in e2e/browser.
package e2e
