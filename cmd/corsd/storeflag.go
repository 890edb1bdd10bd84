package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"strings"

	"github.com/corsd/corsd/store"
	"github.com/corsd/corsd/store/boltstore"
	"github.com/corsd/corsd/store/etcdstore"
)

// maxPasswordFile bounds --etcd-password-file.
const maxPasswordFile = 4 << 10

// storeSpec is a parsed --store value.
type storeSpec struct {
	kind      string   // "bolt" or "etcd"
	path      string   // bolt
	endpoints []string // etcd: host:port
	prefix    string   // etcd
}

func (s storeSpec) String() string {
	if s.kind == "bolt" {
		return "bolt:" + s.path
	}
	return "etcd://" + strings.Join(s.endpoints, ",") + s.prefix
}

// parseStore parses --store: "bolt:PATH", or
// "etcd://HOST:PORT[,HOST:PORT...]/PREFIX" (the prefix is at least "/";
// corsd's keys go under it, so one etcd cluster can hold several stores).
func parseStore(v string) (storeSpec, error) {
	if path, ok := strings.CutPrefix(v, "bolt:"); ok {
		if path == "" {
			return storeSpec{}, fmt.Errorf("--store %q: bolt: needs a file path, such as bolt:corsd.db", v)
		}
		return storeSpec{kind: "bolt", path: path}, nil
	}
	rest, ok := strings.CutPrefix(v, "etcd://")
	if !ok {
		return storeSpec{}, fmt.Errorf("--store %q: use bolt:PATH or etcd://HOST:PORT[,HOST:PORT...]/PREFIX", v)
	}
	hosts, prefix, _ := strings.Cut(rest, "/")
	prefix = "/" + prefix
	if !strings.HasSuffix(prefix, "/") {
		prefix += "/"
	}
	spec := storeSpec{kind: "etcd", prefix: prefix}
	for h := range strings.SplitSeq(hosts, ",") {
		if _, port, err := net.SplitHostPort(h); err != nil || port == "" {
			return storeSpec{}, fmt.Errorf("--store %q: endpoint %q is not HOST:PORT", v, h)
		}
		spec.endpoints = append(spec.endpoints, h)
	}
	if len(spec.endpoints) > 64 {
		return storeSpec{}, fmt.Errorf("--store %q: more than 64 endpoints", v)
	}
	return spec, nil
}

// openStore opens the store the flags name, restoring --restore-from into
// it first when given.
func openStore(ctx context.Context, cfg *config, log *slog.Logger) (store.Store, error) {
	spec := cfg.store
	if spec.kind == "bolt" {
		if cfg.restoreFrom != "" {
			var ropts []boltstore.RestoreOption
			if cfg.restoreOverwrite {
				ropts = append(ropts, boltstore.Overwrite())
			}
			if err := boltstore.RestoreFile(ctx, cfg.restoreFrom, spec.path, ropts...); err != nil {
				if errors.Is(err, boltstore.ErrExists) {
					return nil, fmt.Errorf("restore: %w; remove it, or add --restore-overwrite to replace it (and drop --restore-from afterwards, or every start restores again)", err)
				}
				return nil, fmt.Errorf("restore: %w", err)
			}
			log.Info("database restored", "from", cfg.restoreFrom, "store", spec.String())
		}
		st, err := boltstore.Open(spec.path, boltstore.WithRetention(cfg.retainChanges, cfg.retainAge))
		if err != nil {
			return nil, fmt.Errorf("open store: %w", err)
		}
		return st, nil
	}

	opts := []etcdstore.Option{etcdstore.WithRetention(cfg.retainChanges), etcdstore.WithLogger(log)}
	tlsConf, err := etcdTLS(cfg)
	if err != nil {
		return nil, err
	}
	endpoints := make([]string, len(spec.endpoints))
	for i, h := range spec.endpoints {
		endpoints[i] = "http://" + h
		if tlsConf != nil {
			endpoints[i] = "https://" + h
		}
	}
	if tlsConf != nil {
		opts = append(opts, etcdstore.WithTLS(tlsConf))
	}
	if cfg.etcdUsername != "" {
		password, err := etcdPassword(cfg)
		if err != nil {
			return nil, err
		}
		opts = append(opts, etcdstore.WithAuth(cfg.etcdUsername, password))
	}
	st, err := etcdstore.Open(ctx, endpoints, spec.prefix, opts...)
	if err != nil {
		return nil, fmt.Errorf("open store %s: %w", spec, err)
	}
	if cfg.restoreFrom != "" {
		if err := restoreInto(ctx, st, cfg.restoreFrom); err != nil {
			_ = st.Close()
			return nil, err
		}
		log.Info("store restored", "from", cfg.restoreFrom, "store", spec.String())
	}
	return st, nil
}

// restoreInto loads the backup at path into the empty store st.
func restoreInto(ctx context.Context, st store.Store, path string) error {
	f, err := os.Open(path) //nolint:gosec // G304: the operator names the backup to restore
	if err != nil {
		return fmt.Errorf("restore: %w", err)
	}
	defer func() { _ = f.Close() }()
	if err := st.Restore(ctx, f); err != nil {
		if errors.Is(err, store.ErrNotEmpty) {
			return fmt.Errorf("restore: %w (drop --restore-from once restored, or every start tries again)", err)
		}
		return fmt.Errorf("restore %s: %w", path, err)
	}
	return nil
}

// etcdTLS builds the TLS configuration of the etcd connection, or nil.
func etcdTLS(cfg *config) (*tls.Config, error) {
	if cfg.etcdCA == "" && cfg.etcdCert == "" {
		return nil, nil
	}
	c := &tls.Config{MinVersion: tls.VersionTLS12}
	if cfg.etcdCert != "" {
		pair, err := tls.LoadX509KeyPair(cfg.etcdCert, cfg.etcdKey)
		if err != nil {
			return nil, fmt.Errorf("--etcd-cert/--etcd-key: %w", err)
		}
		c.Certificates = []tls.Certificate{pair}
	}
	if cfg.etcdCA != "" {
		pem, err := os.ReadFile(cfg.etcdCA) //nolint:gosec // G703: the operator names the CA file
		if err != nil {
			return nil, fmt.Errorf("--etcd-ca: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("--etcd-ca %s: no PEM certificate in it", cfg.etcdCA)
		}
		c.RootCAs = pool
	}
	return c, nil
}

// etcdPassword reads the etcd password from --etcd-password-file or
// CORSD_ETCD_PASSWORD; never from a flag value, which other users of the
// machine could read in the process list.
func etcdPassword(cfg *config) (string, error) {
	if cfg.etcdPasswordFile == "" {
		if cfg.etcdPasswordEnv == "" {
			return "", errors.New("--etcd-username needs a password: set CORSD_ETCD_PASSWORD or --etcd-password-file")
		}
		return cfg.etcdPasswordEnv, nil
	}
	f, err := os.Open(cfg.etcdPasswordFile) //nolint:gosec // G703: the operator names the password file
	if err != nil {
		return "", fmt.Errorf("--etcd-password-file: %w", err)
	}
	defer func() { _ = f.Close() }()
	buf := make([]byte, maxPasswordFile+1)
	n, _ := f.Read(buf)
	if n > maxPasswordFile {
		return "", fmt.Errorf("--etcd-password-file %s: larger than %d bytes", cfg.etcdPasswordFile, maxPasswordFile)
	}
	return strings.TrimRight(string(buf[:n]), "\r\n"), nil
}
