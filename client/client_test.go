package client_test

import (
	"os"
	"path/filepath"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/corsd/corsd/client"
	corsdv1 "github.com/corsd/corsd/proto/corsd/v1"
	"github.com/corsd/corsd/server"
)

func TestIsLoopback(t *testing.T) {
	tests := []struct {
		name   string
		target string
		want   bool
	}{
		{name: "ipv4 with port", target: "127.0.0.1:8443", want: true},
		{name: "ipv4 elsewhere in 127/8", target: "127.1.2.3:8443", want: true},
		{name: "ipv6", target: "[::1]:8443", want: true},
		{name: "localhost", target: "localhost:8443", want: true},
		{name: "localhost without port", target: "localhost", want: true},
		{name: "dns scheme", target: "dns:///127.0.0.1:8443", want: true},
		{name: "dns scheme with authority", target: "dns://8.8.8.8/localhost:8443", want: true},
		{name: "passthrough", target: "passthrough:///[::1]:1", want: true},
		{name: "unix socket", target: "unix:///run/corsd.sock", want: true},
		{name: "private address", target: "10.0.0.1:8443", want: false},
		{name: "public name", target: "corsd.example.com:443", want: false},
		{name: "name that starts like localhost", target: "localhost.evil.example:443", want: false},
		{name: "dns scheme remote", target: "dns:///corsd.example.com:443", want: false},
		{name: "unspecified address", target: "0.0.0.0:8443", want: false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := client.IsLoopback(tt.target); got != tt.want {
				t.Errorf("IsLoopback(%q) = %v, want %v", tt.target, got, tt.want)
			}
		})
	}
}

func TestDialRefusesUnsafeTransport(t *testing.T) {
	badCA := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(badCA, []byte("not a certificate"), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		target  string
		opts    []client.DialOption
		wantErr bool
	}{
		{name: "loopback default (plaintext)", target: "127.0.0.1:8443"},
		{name: "loopback plaintext with token", target: "127.0.0.1:8443", opts: []client.DialOption{client.WithToken("t")}},
		{name: "remote default (TLS) with token", target: "corsd.example.com:443", opts: []client.DialOption{client.WithToken("t")}},
		{name: "remote insecure", target: "corsd.example.com:443", opts: []client.DialOption{client.WithInsecure()}, wantErr: true},
		{name: "remote dangerous plaintext", target: "corsd.example.com:443", opts: []client.DialOption{client.DangerouslyAllowPlaintext()}},
		{name: "remote dangerous plaintext with token", target: "corsd.example.com:443", opts: []client.DialOption{client.DangerouslyAllowPlaintext(), client.WithToken("t")}, wantErr: true},
		{name: "TLS and plaintext", target: "127.0.0.1:8443", opts: []client.DialOption{client.WithInsecure(), client.WithTLSConfig(nil)}, wantErr: true},
		{name: "missing CA file", target: "corsd.example.com:443", opts: []client.DialOption{client.WithCAFile(filepath.Join(t.TempDir(), "missing.pem"))}, wantErr: true},
		{name: "CA file without certificates", target: "corsd.example.com:443", opts: []client.DialOption{client.WithCAFile(badCA)}, wantErr: true},
		{name: "token with a line break", target: "127.0.0.1:8443", opts: []client.DialOption{client.WithToken("a\r\nb: c")}, wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := client.Dial(tt.target, tt.opts...)
			if (err != nil) != tt.wantErr {
				t.Fatalf("Dial(%q) error = %v, want error: %v", tt.target, err, tt.wantErr)
			}
			if c != nil {
				_ = c.Close()
			}
		})
	}
}

func TestDialToken(t *testing.T) {
	const secret = "0123456789abcdef-secret"
	d := newCorsdWith(t, []server.Option{server.WithTokens(server.Token{Name: "ci", Token: secret, Scopes: []server.Scope{server.ScopeRead}})})
	tests := []struct {
		name     string
		opts     []client.DialOption
		wantCode codes.Code
	}{
		{name: "valid token", opts: []client.DialOption{client.WithToken(secret)}, wantCode: codes.OK},
		{name: "no token", wantCode: codes.Unauthenticated},
		{name: "wrong token", opts: []client.DialOption{client.WithToken("wrong-token-0123456789")}, wantCode: codes.Unauthenticated},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := client.Dial(d.addr, tt.opts...)
			if err != nil {
				t.Fatal(err)
			}
			defer func() { _ = c.Close() }()
			_, err = c.ListAllPolicies(t.Context())
			if got := status.Code(err); got != tt.wantCode {
				t.Errorf("ListPolicies: code %v (%v), want %v", got, err, tt.wantCode)
			}
		})
	}
}

func TestCheckOrigin(t *testing.T) {
	d := newCorsd(t)
	c := d.client()
	createPolicy(t, c, "acme", "https://a.example.com")
	got, err := c.CheckOrigin(t.Context(), &corsdv1.CheckOriginRequest{Policy: acme, Method: "GET", Origin: "https://a.example.com"})
	if err != nil {
		t.Fatal(err)
	}
	if !got.GetAllowed() || got.GetReason() != corsdv1.Reason_REASON_ALLOWED {
		t.Errorf("CheckOrigin = %v, want allowed", got)
	}
}

func TestListAllPoliciesPages(t *testing.T) {
	d := newCorsd(t)
	c := d.client()
	for i := range 3 {
		createPolicy(t, c, string(rune('a'+i))+"-policy")
	}
	ps, err := c.ListAllPolicies(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if len(ps) != 3 {
		t.Errorf("ListAllPolicies returned %d policies, want 3", len(ps))
	}
}
