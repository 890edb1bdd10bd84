package browser

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"log"
	"math/big"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/corsd/corsd/internal/corsdtest"
)

// The sites of the suite. Chromium resolves every *.test name to 127.0.0.1
// (--host-resolver-rules), and each name is served by its own server on its
// own port, so every origin is distinct: https://app.test:PORT.
const (
	hostApp   = "app.test"       // trusted, with credentials
	hostAdmin = "admin.test"     // trusted, without credentials
	hostEvil  = "evil.test"      // never trusted
	hostAPI   = "api.test"       // the API behind the SDK middleware
	hostEnvoy = "api-envoy.test" // the API behind the ext_authz emulator
)

// Bounds. Generous, because Chromium and the race detector share two cores
// with other work; every wait polls and returns as soon as it can.
const (
	startTimeout    = 60 * time.Second
	stopTimeout     = 15 * time.Second
	caseTimeout     = 60 * time.Second
	pollInterval    = 10 * time.Millisecond
	propagateWithin = 15 * time.Second
	navigateWithin  = 15 * time.Second
)

// newCert returns a self-signed certificate for every host of the suite and
// the base64 SHA-256 of its public key, which Chromium is told to trust
// (--ignore-certificate-errors-spki-list): the pages are then secure
// contexts over a certificate the browser accepts, which Secure and
// SameSite=None cookies need.
func newCert(t *testing.T) (tls.Certificate, string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 62))
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: "corsd browser suite"},
		DNSNames:              []string{hostApp, hostAdmin, hostEvil, hostAPI, hostEnvoy},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(leaf.RawSubjectPublicKeyInfo)
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf},
		base64.StdEncoding.EncodeToString(sum[:])
}

// startTLS serves h over HTTPS on a fresh 127.0.0.1 port until cleanup.
func startTLS(t *testing.T, cert tls.Certificate, h http.Handler) *httptest.Server {
	t.Helper()
	s := httptest.NewUnstartedServer(h)
	s.TLS = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	// Chromium drops connections it no longer needs; the handshake errors
	// that follow are noise.
	s.Config.ErrorLog = log.New(io.Discard, "", 0)
	s.StartTLS()
	t.Cleanup(s.Close)
	return s
}

// originOf returns https://host:PORT for a server started by startTLS.
func originOf(host string, s *httptest.Server) string {
	_, port, _ := strings.Cut(strings.TrimPrefix(s.URL, "https://"), ":")
	return "https://" + host + ":" + port
}

// corsd is the suite's corsd process.
type corsd struct{ *corsdtest.Daemon }

// startCorsd builds and starts corsd with a fresh database and every
// decision logged. At cleanup it requires that corsd still runs, then
// sends SIGTERM, requires a clean exit within stopTimeout, and kills the
// process with SIGKILL when it does not exit.
func startCorsd(t *testing.T) *corsd {
	t.Helper()
	d := corsdtest.MustStart(t, corsdtest.MustBuild(t, "./cmd/corsd"),
		"--db", filepath.Join(t.TempDir(), "corsd.db"),
		"--log-decisions",
	)
	t.Cleanup(func() {
		select {
		case <-d.Exited():
			t.Errorf("corsd exited during the test: %v\nlogs:\n%s", d.Err(), d.Logs())
			return
		default:
		}
		if err := d.Stop(stopTimeout); err != nil {
			t.Errorf("stop corsd: %v\nlogs:\n%s", err, d.Logs())
		}
	})
	if d.HTTPAddr == "" {
		t.Fatalf("no addr in corsd's \"http listening\" line:\n%s", d.Logs())
	}
	return &corsd{d}
}

// metric returns the value of the sample of name whose labels include
// labels, summed over the other labels, from corsd's /metrics.
func (d *corsd) metric(ctx context.Context, name string, labels map[string]string) (float64, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+d.HTTPAddr+"/metrics", nil)
	if err != nil {
		return 0, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, err
	}
	defer func() { _ = resp.Body.Close() }()
	if resp.StatusCode != http.StatusOK {
		return 0, fmt.Errorf("GET /metrics: %s", resp.Status)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, 8<<20))
	if err != nil {
		return 0, err
	}
	return sumSamples(string(body), name, labels)
}

// sumSamples parses the Prometheus text format just enough for the suite:
// `name{k="v",...} value` lines (label values here hold no quotes or
// commas).
func sumSamples(text, name string, labels map[string]string) (float64, error) {
	var sum float64
	for line := range strings.Lines(text) {
		line = strings.TrimSpace(line)
		rest, ok := strings.CutPrefix(line, name+"{")
		if !ok {
			continue
		}
		lbls, value, ok := strings.Cut(rest, "} ")
		if !ok {
			return 0, fmt.Errorf("malformed sample %q", line)
		}
		got := map[string]string{}
		for kv := range strings.SplitSeq(lbls, ",") {
			k, v, _ := strings.Cut(kv, "=")
			got[k] = strings.Trim(v, `"`)
		}
		matches := true
		for k, v := range labels {
			if got[k] != v {
				matches = false
				break
			}
		}
		if !matches {
			continue
		}
		var f float64
		if _, err := fmt.Sscan(value, &f); err != nil {
			return 0, fmt.Errorf("sample %q: %w", line, err)
		}
		sum += f
	}
	return sum, nil
}

// errTimeout is returned by poll when the condition never held.
var errTimeout = errors.New("condition not met in time")

// poll calls f every pollInterval until it reports done, fails, or ctx or
// within runs out.
func poll(ctx context.Context, within time.Duration, f func() (bool, error)) error {
	deadline := time.Now().Add(within)
	for {
		done, err := f()
		if err != nil || done {
			return err
		}
		if time.Now().After(deadline) {
			return errTimeout
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(pollInterval):
		}
	}
}
