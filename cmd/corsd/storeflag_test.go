package main

import (
	"context"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/corsd/corsd/internal/etcdtest"
	corsdv1 "github.com/corsd/corsd/proto/corsd/v1"
	"github.com/corsd/corsd/store/boltstore"
)

func TestParseStore(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		want    storeSpec
		wantErr string
	}{
		{name: "bolt", in: "bolt:/var/lib/corsd/corsd.db", want: storeSpec{kind: "bolt", path: "/var/lib/corsd/corsd.db"}},
		{name: "etcd cluster", in: "etcd://h1:2379,h2:2379,h3:2379/corsd/prod", want: storeSpec{kind: "etcd", endpoints: []string{"h1:2379", "h2:2379", "h3:2379"}, prefix: "/corsd/prod/"}},
		{name: "etcd root prefix", in: "etcd://127.0.0.1:2379", want: storeSpec{kind: "etcd", endpoints: []string{"127.0.0.1:2379"}, prefix: "/"}},
		{name: "etcd IPv6", in: "etcd://[::1]:2379/c/", want: storeSpec{kind: "etcd", endpoints: []string{"[::1]:2379"}, prefix: "/c/"}},
		{name: "bolt without path", in: "bolt:", wantErr: "needs a file path"},
		{name: "unknown scheme", in: "redis://h:6379", wantErr: "use bolt:PATH or etcd://"},
		{name: "bare path", in: "corsd.db", wantErr: "use bolt:PATH"},
		{name: "endpoint without port", in: "etcd://h1/corsd", wantErr: `endpoint "h1" is not HOST:PORT`},
		{name: "empty endpoint", in: "etcd://h1:2379,/corsd", wantErr: "is not HOST:PORT"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseStore(tt.in)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Errorf("parseStore(%q) = %v, want an error containing %q", tt.in, err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("parseStore(%q) = %v", tt.in, err)
			}
			if diff := cmp.Diff(tt.want, got, cmp.AllowUnexported(storeSpec{})); diff != "" {
				t.Errorf("parseStore(%q) mismatch (-want +got):\n%s", tt.in, diff)
			}
		})
	}
}

func TestStoreFlags(t *testing.T) {
	env := func(kv ...string) func(string) (string, bool) {
		return func(k string) (string, bool) {
			for i := 0; i+1 < len(kv); i += 2 {
				if kv[i] == k {
					return kv[i+1], true
				}
			}
			return "", false
		}
	}
	tests := []struct {
		name      string
		args      []string
		env       []string
		want      storeSpec
		wantErr   string
		wantEnvPW string
	}{
		{name: "default", want: storeSpec{kind: "bolt", path: "corsd.db"}},
		{name: "--db is bolt", args: []string{"--db", "x.db"}, want: storeSpec{kind: "bolt", path: "x.db"}},
		{name: "CORSD_DB is bolt", env: []string{"CORSD_DB", "y.db"}, want: storeSpec{kind: "bolt", path: "y.db"}},
		{name: "--store bolt", args: []string{"--store", "bolt:z.db"}, want: storeSpec{kind: "bolt", path: "z.db"}},
		{name: "--db and the same --store", args: []string{"--db", "z.db", "--store", "bolt:z.db"}, want: storeSpec{kind: "bolt", path: "z.db"}},
		{name: "CORSD_STORE", env: []string{"CORSD_STORE", "etcd://e:2379/p"}, want: storeSpec{kind: "etcd", endpoints: []string{"e:2379"}, prefix: "/p/"}},
		{name: "password from env", args: []string{"--store", "etcd://e:2379/p", "--etcd-username", "corsd"}, env: []string{"CORSD_ETCD_PASSWORD", "s3cret"}, want: storeSpec{kind: "etcd", endpoints: []string{"e:2379"}, prefix: "/p/"}, wantEnvPW: "s3cret"},
		{name: "--db and another --store", args: []string{"--db", "a.db", "--store", "etcd://e:2379/p"}, wantErr: "name different stores"},
		{name: "etcd and --retain-age", args: []string{"--store", "etcd://e:2379/p", "--retain-age", "1h"}, wantErr: "--retain-age is not supported"},
		{name: "etcd and --restore-overwrite", args: []string{"--store", "etcd://e:2379/p", "--restore-overwrite"}, wantErr: "--restore-overwrite applies to bolt"},
		{name: "etcd flags with bolt", args: []string{"--etcd-ca", "ca.pem"}, wantErr: "--etcd-* flags need --store etcd"},
		{name: "cert without key", args: []string{"--store", "etcd://e:2379/p", "--etcd-cert", "c.pem"}, wantErr: "--etcd-cert and --etcd-key go together"},
		{name: "no password flag", args: []string{"--store", "etcd://e:2379/p", "--etcd-password", "x"}, wantErr: "usage"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := parseFlags(tt.args, env(tt.env...), io.Discard)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Errorf("parseFlags(%q) = %v, want an error containing %q", tt.args, err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("parseFlags(%q) = %v", tt.args, err)
			}
			if diff := cmp.Diff(tt.want, c.store, cmp.AllowUnexported(storeSpec{})); diff != "" {
				t.Errorf("store mismatch (-want +got):\n%s", diff)
			}
			if tt.wantEnvPW != "" {
				if pw, err := etcdPassword(c); err != nil || pw != tt.wantEnvPW {
					t.Errorf("etcdPassword() = %q, %v; want %q", pw, err, tt.wantEnvPW)
				}
			}
		})
	}
	t.Run("password file", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "pw")
		if err := os.WriteFile(path, []byte("from-file\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		c := &config{etcdUsername: "corsd", etcdPasswordFile: path, etcdPasswordEnv: "ignored"}
		if pw, err := etcdPassword(c); err != nil || pw != "from-file" {
			t.Errorf("etcdPassword() = %q, %v; want from-file", pw, err)
		}
		c = &config{etcdUsername: "corsd"}
		if _, err := etcdPassword(c); err == nil || !strings.Contains(err.Error(), "CORSD_ETCD_PASSWORD") {
			t.Errorf("etcdPassword() without one = %v", err)
		}
	})
}

// TestRunEtcdRestoredFromBolt takes a backup of a bbolt store, starts corsd
// on a real etcd with --restore-from it, and finds the policy; a second
// corsd on the same prefix (a replica) refuses to restore into the store
// now in use but serves the same policy without --restore-from.
func TestRunEtcdRestoredFromBolt(t *testing.T) {
	dir := t.TempDir()
	src, err := boltstore.Open(filepath.Join(dir, "src.db"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := src.Create(context.Background(), &corsdv1.Policy{Name: "policies/saved", Hosts: []string{"saved.example.com"}}); err != nil {
		t.Fatal(err)
	}
	backup := filepath.Join(dir, "backup.corsd")
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
	etcd := etcdtest.Start(t)
	storeArg := "etcd://" + etcd.HostPort() + "/corsd-test"
	t.Setenv("CORSD_TOKENS", "admin:"+testToken+":read")
	d := start(t, "--store", storeArg, "--restore-from", backup)
	got, err := corsdv1.NewPolicyServiceClient(dial(t, d.addr)).GetPolicy(authCtx(t), &corsdv1.GetPolicyRequest{Name: "policies/saved"})
	if err != nil || got.GetPolicy().GetRevision() != 1 {
		t.Errorf("GetPolicy after restore into etcd = %v, %v", got, err)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 20*1e9)
	defer cancel()
	err = run(ctx, []string{"--listen", "127.0.0.1:0", "--http-listen", "", "--store", storeArg, "--restore-from", backup}, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "not empty") {
		t.Errorf("second restore into the same prefix = %v, want a refusal", err)
	}
	replica := start(t, "--store", storeArg)
	if _, err := corsdv1.NewPolicyServiceClient(dial(t, replica.addr)).GetPolicy(authCtx(t), &corsdv1.GetPolicyRequest{Name: "policies/saved"}); err != nil {
		t.Errorf("GetPolicy on a replica = %v", err)
	}
}

// TestBootstrapHostConflict: --bootstrap goes through the store's
// transaction like any write, so two policies claiming one host are refused
// (the second one names the first).
func TestBootstrapHostConflict(t *testing.T) {
	boot := writeFile(t, "boot.yaml", `
- name: policies/one
  hosts: [api.example.com]
- name: policies/two
  hosts: [API.example.com]
`)
	ctx, cancel := context.WithTimeout(context.Background(), 20*1e9)
	defer cancel()
	err := run(ctx, []string{"--listen", "127.0.0.1:0", "--http-listen", "", "--db", filepath.Join(t.TempDir(), "c.db"), "--bootstrap", boot}, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "policies/two") || !strings.Contains(err.Error(), "already governed by policies/one") {
		t.Errorf("run with two bootstrap policies claiming one host = %v, want a refusal naming both", err)
	}
}
