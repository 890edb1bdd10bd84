package browser

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"math/big"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
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
	buildTimeout    = 5 * time.Minute
	startTimeout    = 60 * time.Second
	stopTimeout     = 15 * time.Second
	caseTimeout     = 60 * time.Second
	pollInterval    = 10 * time.Millisecond
	propagateWithin = 15 * time.Second
)

// moduleRoot returns the directory of go.mod above the working directory.
func moduleRoot(t *testing.T) string {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatal("go.mod not found above the working directory")
		}
		dir = parent
	}
}

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

// buildCorsd builds cmd/corsd into a temporary directory.
func buildCorsd(t *testing.T, root string) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "corsd")
	ctx, cancel := context.WithTimeout(context.Background(), buildTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, "go", "build", "-o", bin, "./cmd/corsd")
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build ./cmd/corsd: %v\n%s", err, out)
	}
	return bin
}

// logLines collects a process's JSON log lines. It is safe for concurrent
// use.
type logLines struct {
	mu    sync.Mutex
	lines []map[string]any
	raw   bytes.Buffer
}

func (l *logLines) consume(r io.Reader) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		var m map[string]any
		ok := json.Unmarshal(sc.Bytes(), &m) == nil
		l.mu.Lock()
		l.raw.Write(sc.Bytes())
		l.raw.WriteByte('\n')
		if ok {
			l.lines = append(l.lines, m)
		}
		l.mu.Unlock()
	}
}

// match returns the lines whose msg is msg and whose fields have the given
// values (compared as fmt.Sprint strings).
func (l *logLines) match(msg string, fields map[string]string) []map[string]any {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []map[string]any
next:
	for _, m := range l.lines {
		if m["msg"] != msg {
			continue
		}
		for k, v := range fields {
			if fmt.Sprint(m[k]) != v {
				continue next
			}
		}
		out = append(out, m)
	}
	return out
}

func (l *logLines) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.raw.String()
}

// corsd is a running corsd process.
type corsd struct {
	cmd      *exec.Cmd
	logs     *logLines
	grpcAddr string
	httpAddr string
	exited   chan struct{}
	err      error // of Wait, once exited is closed
}

// startCorsd starts the binary on loopback ports with a fresh database and
// every decision logged, and waits until it is ready. At cleanup it sends
// SIGTERM, requires a clean exit within stopTimeout, and kills the process
// with SIGKILL when it does not exit.
func startCorsd(t *testing.T, bin string) *corsd {
	t.Helper()
	cmd := exec.Command(bin,
		"--listen", "127.0.0.1:0",
		"--http-listen", "127.0.0.1:0",
		"--db", filepath.Join(t.TempDir(), "corsd.db"),
		"--log-format", "json",
		"--log-decisions",
	)
	// Only the flags configure corsd: no CORSD_* variable of the caller's
	// environment (tokens, TLS) leaks in.
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "CORSD_") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	// SIGKILL corsd if the test binary dies without running its cleanup.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	d := &corsd{cmd: cmd, logs: &logLines{}, exited: make(chan struct{})}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start corsd: %v", err)
	}
	go func() {
		d.logs.consume(stderr)
		d.err = cmd.Wait()
		close(d.exited)
	}()
	t.Cleanup(func() { d.stop(t) })

	deadline := time.Now().Add(startTimeout)
	for len(d.logs.match("ready", nil)) == 0 {
		select {
		case <-d.exited:
			t.Fatalf("corsd exited before it was ready: %v\nlogs:\n%s", d.err, d.logs)
		case <-time.After(pollInterval):
		}
		if time.Now().After(deadline) {
			t.Fatalf("corsd not ready within %v; logs:\n%s", startTimeout, d.logs)
		}
	}
	d.grpcAddr = d.addrOf(t, "grpc listening")
	d.httpAddr = d.addrOf(t, "http listening")
	return d
}

func (d *corsd) addrOf(t *testing.T, msg string) string {
	t.Helper()
	lines := d.logs.match(msg, nil)
	if len(lines) == 0 {
		t.Fatalf("no %q line in corsd's log:\n%s", msg, d.logs)
	}
	addr, _ := lines[0]["addr"].(string)
	if addr == "" {
		t.Fatalf("no addr in corsd's %q line:\n%s", msg, d.logs)
	}
	return addr
}

// stop sends SIGTERM, waits, and falls back to SIGKILL. A corsd that does
// not exit cleanly on SIGTERM fails the test.
func (d *corsd) stop(t *testing.T) {
	select {
	case <-d.exited:
		t.Errorf("corsd exited during the test: %v\nlogs:\n%s", d.err, d.logs)
		return
	default:
	}
	if err := d.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Errorf("SIGTERM corsd: %v", err)
	}
	select {
	case <-d.exited:
		if d.err != nil {
			t.Errorf("corsd exited with %v after SIGTERM; logs:\n%s", d.err, d.logs)
		}
	case <-time.After(stopTimeout):
		_ = d.cmd.Process.Kill()
		<-d.exited
		t.Errorf("corsd did not exit within %v of SIGTERM; killed it", stopTimeout)
	}
}

// metric returns the value of the sample of name whose labels include
// labels, summed over the other labels, from corsd's /metrics.
func (d *corsd) metric(ctx context.Context, name string, labels map[string]string) (float64, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+d.httpAddr+"/metrics", nil)
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
