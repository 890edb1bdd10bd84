package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"errors"
	"flag"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/testing/protocmp"

	"github.com/corsd/corsd/internal/corsdtest"
	corsdv1 "github.com/corsd/corsd/proto/corsd/v1"
	"github.com/corsd/corsd/store/boltstore"
)

const testToken = "e2e-admin-token-0123456789"

func TestParseFlags(t *testing.T) {
	tests := []struct {
		name    string
		args    []string
		env     map[string]string
		check   func(t *testing.T, c *config)
		wantErr string
	}{
		{
			name: "defaults",
			check: func(t *testing.T, c *config) {
				if c.listen != "127.0.0.1:8443" || c.httpListen != "127.0.0.1:9090" || c.db != "corsd.db" || c.shutdownTimeout != 10*time.Second || c.retainChanges != boltstore.DefaultMaxChanges {
					t.Errorf("defaults = %+v", c)
				}
			},
		},
		{
			name: "env fallback",
			env:  map[string]string{"CORSD_DB": "/tmp/x.db", "CORSD_DECISION_AUTH": "true", "CORSD_SHUTDOWN_TIMEOUT": "3s", "CORSD_LOG_LEVEL": "debug", "CORSD_TOKENS": "a:0123456789abcdef:read"},
			check: func(t *testing.T, c *config) {
				if c.db != "/tmp/x.db" || !c.decisionAuth || c.shutdownTimeout != 3*time.Second || c.logLevel.String() != "DEBUG" || c.tokensEnv == "" {
					t.Errorf("config = %+v", c)
				}
			},
		},
		{
			name: "flag wins over env",
			args: []string{"--db", "flag.db"},
			env:  map[string]string{"CORSD_DB": "env.db"},
			check: func(t *testing.T, c *config) {
				if c.db != "flag.db" {
					t.Errorf("db = %q, want flag.db", c.db)
				}
			},
		},
		{
			name: "console on by default on loopback",
			check: func(t *testing.T, c *config) {
				if !c.httpAPI || !c.console {
					t.Errorf("httpAPI, console = %v, %v; want both on", c.httpAPI, c.console)
				}
			},
		},
		{
			name: "console off by default off loopback",
			args: []string{"--http-listen", "0.0.0.0:9090"},
			check: func(t *testing.T, c *config) {
				if !c.httpAPI || c.console {
					t.Errorf("httpAPI, console = %v, %v; want the API only", c.httpAPI, c.console)
				}
			},
		},
		{
			name: "console turned off",
			args: []string{"--console=false"},
			check: func(t *testing.T, c *config) {
				if c.console {
					t.Error("console on")
				}
			},
		},
		{
			name: "console turned on off loopback",
			env:  map[string]string{"CORSD_HTTP_LISTEN": "0.0.0.0:9090", "CORSD_CONSOLE": "true"},
			check: func(t *testing.T, c *config) {
				if !c.console {
					t.Error("console off")
				}
			},
		},
		{name: "console without the API", args: []string{"--http-api=false", "--console"}, wantErr: "--console needs"},
		{name: "bad env value", env: map[string]string{"CORSD_SHUTDOWN_TIMEOUT": "soon"}, wantErr: "CORSD_SHUTDOWN_TIMEOUT"},
		{name: "bad flag", args: []string{"--nope"}, wantErr: "usage error"},
		{name: "extra argument", args: []string{"serve"}, wantErr: "usage error"},
		{name: "key without cert", args: []string{"--tls-key", "k.pem"}, wantErr: "--tls-cert and --tls-key go together"},
		{name: "client CA without cert", args: []string{"--tls-client-ca", "ca.pem"}, wantErr: "--tls-client-ca needs"},
		{name: "log format", args: []string{"--log-format", "xml"}, wantErr: "text or json"},
		{name: "negative retention", args: []string{"--retain-changes", "-1"}, wantErr: "must not be negative"},
		{name: "zero shutdown timeout", args: []string{"--shutdown-timeout", "0s"}, wantErr: "must be positive"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			lookup := func(k string) (string, bool) { v, ok := tt.env[k]; return v, ok }
			c, err := parseFlags(tt.args, lookup, io.Discard)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("parseFlags error = %v, want one containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			tt.check(t, c)
		})
	}
	if _, err := parseFlags([]string{"-h"}, func(string) (string, bool) { return "", false }, io.Discard); !errors.Is(err, flag.ErrHelp) {
		t.Errorf("-h: %v, want flag.ErrHelp", err)
	}
}

// daemon is corsd run in-process.
type daemon struct {
	logs   *corsdtest.Logs
	cancel context.CancelFunc
	done   chan error
	addr   string
	http   string
}

// start runs corsd with args (plus JSON logs and ephemeral ports) and
// waits until it is ready.
func start(t *testing.T, args ...string) *daemon {
	t.Helper()
	d := &daemon{logs: &corsdtest.Logs{}, done: make(chan error, 1)}
	ctx, cancel := context.WithCancel(context.Background())
	d.cancel = cancel
	args = append([]string{"--listen", "127.0.0.1:0", "--http-listen", "127.0.0.1:0", "--log-format", "json"}, args...)
	go func() { d.done <- run(ctx, args, d.logs) }()
	t.Cleanup(func() { d.stop(t) })
	deadline := time.Now().Add(20 * time.Second)
	for {
		select {
		case err := <-d.done:
			d.done <- err
			t.Fatalf("corsd exited early: %v\nlogs:\n%s", err, d.logs)
		default:
		}
		if d.logs.Find("ready") != nil {
			d.addr = d.logs.Find("grpc listening")["addr"].(string)
			d.http = d.logs.Find("http listening")["addr"].(string)
			return d
		}
		if time.Now().After(deadline) {
			t.Fatalf("corsd not ready within 20s; logs:\n%s", d.logs)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// stop cancels the daemon and checks that it exits cleanly.
func (d *daemon) stop(t *testing.T) {
	t.Helper()
	if d.cancel == nil {
		return
	}
	d.cancel()
	d.cancel = nil
	select {
	case err := <-d.done:
		if err != nil {
			t.Errorf("corsd exited with %v", err)
		}
	case <-time.After(20 * time.Second):
		t.Errorf("corsd did not stop within 20s")
	}
}

func dial(t *testing.T, addr string, opts ...grpc.DialOption) *grpc.ClientConn {
	t.Helper()
	if len(opts) == 0 {
		opts = []grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials())}
	}
	conn, err := grpc.NewClient(addr, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	return conn
}

func authCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+testToken)
}

func writeFile(t *testing.T, name, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

const bootstrapYAML = `
- name: policies/acme
  description: seeded
  origins:
    - pattern: https://app.example.com
      allowCredentials: true
  hosts: [api.example.com]
- name: policies/beta
  origins: [{pattern: "https://beta.example.com"}]
`

func TestRunBootstrapRestartAndShutdown(t *testing.T) {
	db := filepath.Join(t.TempDir(), "corsd.db")
	boot := writeFile(t, "bootstrap.yaml", bootstrapYAML)
	t.Setenv("CORSD_TOKENS", "admin:"+testToken+":read+write+check")

	d := start(t, "--db", db, "--bootstrap", boot)
	conn := dial(t, d.addr)
	ps := corsdv1.NewPolicyServiceClient(conn)
	// The bootstrap policies serve decisions from the first call.
	resp, err := corsdv1.NewDecisionServiceClient(conn).CheckOrigin(authCtx(t), &corsdv1.CheckOriginRequest{Host: "api.example.com", Method: "GET", Origin: "https://app.example.com"})
	if err != nil || !resp.GetDecision().GetAllowed() {
		t.Fatalf("CheckOrigin = %v, %v; want allowed by the bootstrap policy", resp, err)
	}
	// An operator edit survives restarts: bootstrap never overwrites.
	if _, err := ps.AddOrigin(authCtx(t), &corsdv1.AddOriginRequest{Policy: "policies/acme", Origin: &corsdv1.OriginRule{Pattern: "https://added.example.com"}}); err != nil {
		t.Fatal(err)
	}
	res, err := http.Get("http://" + d.http + "/readyz")
	if err != nil || res.StatusCode != http.StatusOK {
		t.Fatalf("/readyz = %v, %v", res, err)
	}
	_ = res.Body.Close()
	d.stop(t)
	if d.logs.Find("stopped") == nil {
		t.Errorf("no 'stopped' log line:\n%s", d.logs)
	}

	d2 := start(t, "--db", db, "--bootstrap", boot)
	if l := d2.logs.Find("bootstrap applied"); l == nil || l["created"] != float64(0) {
		t.Errorf("second start bootstrap line = %v, want created=0", l)
	}
	ps = corsdv1.NewPolicyServiceClient(dial(t, d2.addr))
	got, err := ps.GetPolicy(authCtx(t), &corsdv1.GetPolicyRequest{Name: "policies/acme"})
	if err != nil {
		t.Fatal(err)
	}
	if n := len(got.GetPolicy().GetOrigins()); n != 2 {
		t.Errorf("policies/acme has %d origins after restart, want 2 (bootstrap must not overwrite)", n)
	}
	changes, err := ps.ListChanges(authCtx(t), &corsdv1.ListChangesRequest{})
	if err != nil {
		t.Fatal(err)
	}
	var actors []string
	for _, c := range changes.GetChanges() {
		actors = append(actors, c.GetActor())
	}
	if diff := cmp.Diff([]string{"bootstrap", "bootstrap", "admin"}, actors); diff != "" {
		t.Errorf("change actors mismatch (-want +got):\n%s", diff)
	}
}

func TestRunRefusesToStart(t *testing.T) {
	dir := t.TempDir()
	badBoot := writeFile(t, "bad.yaml", `
- name: policies/ok
- name: policies/bad
  origins: [{pattern: "https://a.example.com/path"}, {pattern: "*", allowCredentials: true}]
- name: Not-A-Name
`)
	existing := filepath.Join(dir, "existing.db")
	st, err := boltstore.Open(existing)
	if err != nil {
		t.Fatal(err)
	}
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		args    []string
		env     string
		wantErr []string
	}{
		{name: "non-loopback without tokens", args: []string{"--listen", "0.0.0.0:0"}, wantErr: []string{"refusing to listen on 0.0.0.0:0 without admin tokens"}},
		{name: "all interfaces without tokens", args: []string{"--listen", ":0"}, wantErr: []string{"refusing"}},
		{name: "HTTP API off loopback without tokens", args: []string{"--http-listen", "0.0.0.0:0"}, wantErr: []string{"refusing to serve the JSON/HTTP API on 0.0.0.0:0 without admin tokens"}},
		{name: "invalid bootstrap", args: []string{"--bootstrap", badBoot}, wantErr: []string{"3 problem(s)", "origins[0].pattern", "origins[1].allow_credentials", "Not-A-Name"}},
		{name: "missing bootstrap", args: []string{"--bootstrap", filepath.Join(dir, "nope.yaml")}, wantErr: []string{"bootstrap"}},
		{name: "bad tokens env", env: "admin:short:read", wantErr: []string{"CORSD_TOKENS", "shorter than 16"}},
		{name: "missing tokens file", args: []string{"--tokens-file", filepath.Join(dir, "nope.yaml")}, wantErr: []string{"tokens file"}},
		{name: "restore over an existing db", args: []string{"--db", existing, "--restore-from", existing}, wantErr: []string{"--restore-overwrite"}},
		{name: "bad default policy", args: []string{"--default-policy", "Bad Name", "--db", filepath.Join(dir, "d.db")}, wantErr: []string{"not a valid policy name"}},
		{name: "missing TLS files", args: []string{"--tls-cert", filepath.Join(dir, "c.pem"), "--tls-key", filepath.Join(dir, "k.pem")}, wantErr: []string{"TLS key pair"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Setenv("CORSD_TOKENS", tt.env)
			args := append([]string{"--listen", "127.0.0.1:0", "--db", filepath.Join(t.TempDir(), "corsd.db"), "--http-listen", ""}, tt.args...)
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			err := run(ctx, args, io.Discard)
			if err == nil {
				t.Fatal("run succeeded")
			}
			for _, want := range tt.wantErr {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error %q does not contain %q", err, want)
				}
			}
		})
	}
}

func TestRunRestore(t *testing.T) {
	dir := t.TempDir()
	src, err := boltstore.Open(filepath.Join(dir, "src.db"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := src.Create(context.Background(), &corsdv1.Policy{Name: "policies/saved"}); err != nil {
		t.Fatal(err)
	}
	backup := filepath.Join(dir, "backup.db")
	f, err := os.Create(backup)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := src.Backup(context.Background(), f); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	if err := src.Close(); err != nil {
		t.Fatal(err)
	}
	t.Setenv("CORSD_TOKENS", "admin:"+testToken+":read")
	d := start(t, "--db", filepath.Join(dir, "restored.db"), "--restore-from", backup)
	if _, err := corsdv1.NewPolicyServiceClient(dial(t, d.addr)).GetPolicy(authCtx(t), &corsdv1.GetPolicyRequest{Name: "policies/saved"}); err != nil {
		t.Errorf("GetPolicy after restore: %v", err)
	}
}

func TestRunMutualTLS(t *testing.T) {
	dir := t.TempDir()
	ca, caKey := newCA(t)
	serverCert := issue(t, ca, caKey, "server", true)
	clientCert := issue(t, ca, caKey, "client", false)
	caFile := filepath.Join(dir, "ca.pem")
	certFile, keyFile := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	writePEM(t, caFile, "CERTIFICATE", ca.Raw)
	writePEM(t, certFile, "CERTIFICATE", serverCert.Certificate[0])
	keyDER, err := x509.MarshalPKCS8PrivateKey(serverCert.PrivateKey)
	if err != nil {
		t.Fatal(err)
	}
	writePEM(t, keyFile, "PRIVATE KEY", keyDER)
	t.Setenv("CORSD_TOKENS", "admin:"+testToken+":read")
	d := start(t, "--db", filepath.Join(dir, "corsd.db"), "--tls-cert", certFile, "--tls-key", keyFile, "--tls-client-ca", caFile)

	pool := x509.NewCertPool()
	pool.AddCert(ca)
	list := func(tc *tls.Config) error {
		conn := dial(t, d.addr, grpc.WithTransportCredentials(credentials.NewTLS(tc)))
		_, err := corsdv1.NewPolicyServiceClient(conn).ListPolicies(authCtx(t), &corsdv1.ListPoliciesRequest{})
		return err
	}
	if err := list(&tls.Config{RootCAs: pool, ServerName: "localhost", Certificates: []tls.Certificate{clientCert}}); err != nil {
		t.Errorf("with a client certificate: %v", err)
	}
	if err := list(&tls.Config{RootCAs: pool, ServerName: "localhost"}); err == nil {
		t.Errorf("without a client certificate: the call succeeded")
	}
	conn := dial(t, d.addr)
	if _, err := corsdv1.NewPolicyServiceClient(conn).ListPolicies(authCtx(t), &corsdv1.ListPoliciesRequest{}); err == nil {
		t.Errorf("plaintext call to a TLS port succeeded")
	}
}

func newCA(t *testing.T) (*x509.Certificate, *ecdsa.PrivateKey) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "corsd test CA"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return cert, key
}

func issue(t *testing.T, ca *x509.Certificate, caKey *ecdsa.PrivateKey, cn string, isServer bool) tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()),
		Subject:      pkix.Name{CommonName: cn},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	if isServer {
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
		tmpl.DNSNames = []string{"localhost"}
		tmpl.IPAddresses = []net.IP{net.IPv4(127, 0, 0, 1)}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

func writePEM(t *testing.T, path, typ string, der []byte) {
	t.Helper()
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
}

func FuzzParseBootstrap(f *testing.F) {
	f.Add([]byte(bootstrapYAML))
	f.Add([]byte(`[{"name":"policies/a","origins":[{"pattern":"*"}]}]`))
	f.Add([]byte("- name: policies/a\n  maxAge: 100000s\n"))
	f.Add([]byte(""))
	f.Fuzz(func(t *testing.T, data []byte) {
		seed, err := parseBootstrap(data)
		if err != nil {
			return
		}
		// Whatever is accepted is named and normalized: parsing its JSON
		// again gives the same policies.
		items := make([]json.RawMessage, 0, len(seed))
		for _, b := range seed {
			if !strings.HasPrefix(b.p.GetName(), "policies/") {
				t.Fatalf("accepted policy named %q", b.p.GetName())
			}
			js, err := protojson.Marshal(b.p)
			if err != nil {
				t.Fatal(err)
			}
			items = append(items, js)
		}
		if len(items) == 0 {
			return
		}
		again, err := json.Marshal(items)
		if err != nil {
			t.Fatal(err)
		}
		seed2, err := parseBootstrap(again)
		if err != nil {
			t.Fatalf("normalized bootstrap refused: %v\n%s", err, again)
		}
		for i := range seed {
			if diff := cmp.Diff(seed[i].p, seed2[i].p, protocmp.Transform()); diff != "" {
				t.Fatalf("normalization not idempotent (-first +second):\n%s", diff)
			}
		}
	})
}

// TestRunReloadsOnSIGHUP: SIGHUP makes corsd read its tokens file and its
// TLS key pair again. New connections get the new certificate and calls
// need the new token; a broken certificate file is refused and the
// current one stays.
func TestRunReloadsOnSIGHUP(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	tokensFile := filepath.Join(dir, "tokens.yaml")
	writeServerCert := func(cert tls.Certificate) {
		t.Helper()
		writePEM(t, certFile, "CERTIFICATE", cert.Certificate[0])
		keyDER, err := x509.MarshalPKCS8PrivateKey(cert.PrivateKey)
		if err != nil {
			t.Fatal(err)
		}
		writePEM(t, keyFile, "PRIVATE KEY", keyDER)
	}
	writeTokens := func(token string) {
		t.Helper()
		if err := os.WriteFile(tokensFile, []byte("- name: admin\n  token: "+token+"\n  scopes: [read]\n"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	caOld, caOldKey := newCA(t)
	caNew, caNewKey := newCA(t)
	const newToken = "rotated-token-0123456789abcdef"
	writeServerCert(issue(t, caOld, caOldKey, "server", true))
	writeTokens(testToken)
	d := start(t, "--db", filepath.Join(dir, "corsd.db"), "--tls-cert", certFile, "--tls-key", keyFile, "--tokens-file", tokensFile)

	list := func(ca *x509.Certificate, token string) error {
		pool := x509.NewCertPool()
		pool.AddCert(ca)
		conn := dial(t, d.addr, grpc.WithTransportCredentials(credentials.NewTLS(&tls.Config{RootCAs: pool, ServerName: "localhost", MinVersion: tls.VersionTLS12})))
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		ctx = metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+token)
		_, err := corsdv1.NewPolicyServiceClient(conn).ListPolicies(ctx, &corsdv1.ListPoliciesRequest{})
		return err
	}
	// hup sends SIGHUP and waits for the n-th line of each msg.
	hup := func(n int, msgs ...string) {
		t.Helper()
		if err := syscall.Kill(os.Getpid(), syscall.SIGHUP); err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		for _, msg := range msgs {
			if _, err := d.logs.WaitNth(ctx, msg, n); err != nil {
				t.Fatalf("after SIGHUP: %v; logs:\n%s", err, d.logs)
			}
		}
	}

	if err := list(caOld, testToken); err != nil {
		t.Fatalf("before the rotation: %v", err)
	}
	writeServerCert(issue(t, caNew, caNewKey, "server", true))
	writeTokens(newToken)
	hup(1, "TLS reloaded", "tokens reloaded")
	if err := list(caNew, newToken); err != nil {
		t.Errorf("new certificate and token: %v", err)
	}
	if err := list(caOld, newToken); err == nil {
		t.Errorf("a client trusting only the old CA still connected")
	}
	if err := list(caNew, testToken); status.Code(err) != codes.Unauthenticated {
		t.Errorf("old token after the rotation: %v, want Unauthenticated", err)
	}

	if err := os.WriteFile(certFile, []byte("not a certificate"), 0o600); err != nil {
		t.Fatal(err)
	}
	hup(1, "TLS reload failed; keeping the current certificate")
	if err := list(caNew, newToken); err != nil {
		t.Errorf("after a refused reload: %v", err)
	}
}

// TestRunHTTPAPIAndConsole checks what the flags put on the HTTP port: the
// API and the console by default on loopback, each of them off on request.
func TestRunHTTPAPIAndConsole(t *testing.T) {
	tests := []struct {
		name                 string
		args                 []string
		wantAPI, wantConsole int
	}{
		{name: "defaults on loopback", wantAPI: http.StatusOK, wantConsole: http.StatusOK},
		{name: "console off", args: []string{"--console=false"}, wantAPI: http.StatusOK, wantConsole: http.StatusNotFound},
		{name: "API off", args: []string{"--http-api=false", "--console=false"}, wantAPI: http.StatusNotFound, wantConsole: http.StatusNotFound},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := start(t, append([]string{"--db", filepath.Join(t.TempDir(), "corsd.db")}, tt.args...)...)
			resp, err := http.Post("http://"+d.http+"/corsd.v1.PolicyService/ListPolicies", "application/json", strings.NewReader("{}"))
			if err != nil {
				t.Fatal(err)
			}
			_ = resp.Body.Close()
			if resp.StatusCode != tt.wantAPI {
				t.Errorf("ListPolicies over HTTP: %s, want %d", resp.Status, tt.wantAPI)
			}
			resp, err = http.Get("http://" + d.http + "/console/")
			if err != nil {
				t.Fatal(err)
			}
			_ = resp.Body.Close()
			if resp.StatusCode != tt.wantConsole {
				t.Errorf("GET /console/: %s, want %d", resp.Status, tt.wantConsole)
			}
			if resp, err := http.Get("http://" + d.http + "/healthz"); err != nil || resp.StatusCode != http.StatusOK {
				t.Errorf("/healthz: %v %v", resp, err)
			} else {
				_ = resp.Body.Close()
			}
		})
	}
}
