package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"sync/atomic"
	"syscall"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	"github.com/corsd/corsd/server"
)

// serve runs the daemon with cfg until ctx ends.
func serve(ctx context.Context, cfg *config, stderr io.Writer) (err error) {
	log := newLogger(cfg, stderr)
	// Code that logs through slog's default (such as the server's status mapping) uses the same handler.
	slog.SetDefault(log)

	// SIGHUP re-reads the tokens and the TLS files: rotations need no
	// restart. Caught from the start, so that an early one never kills
	// the process; handled once serving.
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)

	tokens, err := loadTokens(cfg)
	if err != nil {
		return err
	}
	if len(tokens) == 0 && !server.IsLoopbackAddress(cfg.listen) {
		return fmt.Errorf("refusing to listen on %s without admin tokens: anyone who reaches it could change the policies; configure tokens (--tokens-file or CORSD_TOKENS) or listen on a loopback address such as 127.0.0.1:8443", cfg.listen)
	}
	var (
		creds    credentials.TransportCredentials
		tlsFiles *tlsFiles
	)
	if cfg.tlsCert != "" {
		if tlsFiles, creds, err = loadTLS(cfg); err != nil {
			return err
		}
	} else if len(tokens) > 0 && !server.IsLoopbackAddress(cfg.listen) {
		log.Warn("serving without TLS on a non-loopback address: bearer tokens cross the network in clear text; set --tls-cert and --tls-key")
	}
	var seed []*bootstrapPolicy
	if cfg.bootstrap != "" {
		if seed, err = loadBootstrap(cfg.bootstrap); err != nil {
			return err
		}
	}

	st, err := openStore(ctx, cfg, log)
	if err != nil {
		return err
	}
	defer func() {
		if cerr := st.Close(); cerr != nil && err == nil {
			err = fmt.Errorf("close store: %w", cerr)
		}
	}()
	if len(seed) > 0 {
		if err := applyBootstrap(ctx, st, seed, log); err != nil {
			return err
		}
	}

	opts := []server.Option{server.WithLogger(log), server.WithTokens(tokens...)}
	if cfg.decisionAuth {
		opts = append(opts, server.WithDecisionAuth())
	}
	if cfg.defaultPolicy != "" {
		opts = append(opts, server.WithDefaultPolicy(cfg.defaultPolicy))
	}
	if cfg.logDecisions {
		opts = append(opts, server.WithDecisionLog())
	}
	// The server follows the store until Close, not until ctx ends: it must
	// keep serving during the graceful shutdown that follows ctx.
	srv, err := server.New(st, opts...) //nolint:contextcheck // see above
	if err != nil {
		return err
	}
	defer func() { _ = srv.Close() }()

	gopts := srv.ServerOptions()
	if creds != nil {
		gopts = append(gopts, grpc.Creds(creds))
	}
	gs := grpc.NewServer(gopts...)
	srv.Register(gs)

	var lc net.ListenConfig
	glis, err := lc.Listen(ctx, "tcp", cfg.listen)
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	serveErr := make(chan error, 2)
	go func() { serveErr <- gs.Serve(glis) }()
	log.Info("grpc listening", "addr", glis.Addr().String(), "tls", creds != nil, "mtls", cfg.tlsClientCA != "", "tokens", len(tokens), "decision_auth", cfg.decisionAuth)

	var hs *http.Server
	if cfg.httpListen != "" {
		hlis, err := lc.Listen(ctx, "tcp", cfg.httpListen)
		if err != nil {
			gs.Stop()
			return fmt.Errorf("listen http: %w", err)
		}
		hs = &http.Server{
			Handler:           srv.HTTPHandler(),
			ReadHeaderTimeout: 5 * time.Second,
			ReadTimeout:       10 * time.Second,
			WriteTimeout:      30 * time.Second,
			IdleTimeout:       60 * time.Second,
			ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
		}
		go func() {
			if err := hs.Serve(hlis); !errors.Is(err, http.ErrServerClosed) {
				serveErr <- fmt.Errorf("http: %w", err)
			}
		}()
		log.Info("http listening", "addr", hlis.Addr().String())
	}

	go func() {
		if srv.WaitReady(ctx) == nil {
			log.Info("ready")
		}
	}()

	reloadDone := make(chan struct{})
	defer func() { <-reloadDone }()
	reloadCtx, stopReload := context.WithCancel(ctx)
	defer stopReload()
	go func() {
		defer close(reloadDone)
		for {
			select {
			case <-hup:
				reloadTokens(cfg, srv, log)
				if tlsFiles != nil {
					if err := tlsFiles.reload(); err != nil {
						log.Error("TLS reload failed; keeping the current certificate", "err", err)
					} else {
						log.Info("TLS reloaded", "cert", cfg.tlsCert, "client_ca", cfg.tlsClientCA)
					}
				}
			case <-reloadCtx.Done():
				return
			}
		}
	}()

	var runErr error
	select {
	case <-ctx.Done():
		log.Info("shutting down", "timeout", cfg.shutdownTimeout)
	case runErr = <-serveErr:
		log.Error("serving failed; shutting down", "err", runErr)
	}
	// ctx is done by now: the shutdown gets its own deadline.
	shutdown(srv, gs, hs, cfg.shutdownTimeout, log) //nolint:contextcheck // see above
	log.Info("stopped")
	return runErr
}

// shutdown stops serving: NOT_SERVING first, so that load balancers stop
// sending, then a graceful stop bounded by timeout, then a hard stop.
func shutdown(srv *server.Server, gs *grpc.Server, hs *http.Server, timeout time.Duration, log *slog.Logger) {
	srv.Shutdown()
	deadline := time.Now().Add(timeout)
	stopped := make(chan struct{})
	go func() {
		gs.GracefulStop()
		close(stopped)
	}()
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case <-stopped:
	case <-t.C:
		log.Warn("graceful stop timed out; closing the remaining connections")
		gs.Stop()
		<-stopped
	}
	if hs != nil {
		ctx, cancel := context.WithDeadline(context.Background(), deadline.Add(time.Second))
		defer cancel()
		if err := hs.Shutdown(ctx); err != nil {
			_ = hs.Close()
		}
	}
}

func newLogger(cfg *config, w io.Writer) *slog.Logger {
	hopts := &slog.HandlerOptions{Level: cfg.logLevel}
	if cfg.logFormat == "json" {
		return slog.New(slog.NewJSONHandler(w, hopts))
	}
	return slog.New(slog.NewTextHandler(w, hopts))
}

// reloadTokens makes the tokens of --tokens-file and CORSD_TOKENS, read
// again, the ones that authorize calls. On any error, or when no token is
// left, the current tokens stay.
func reloadTokens(cfg *config, srv *server.Server, log *slog.Logger) {
	tokens, err := loadTokens(cfg)
	if err == nil && len(tokens) == 0 {
		// Without tokens every loopback caller is an admin: revoking the
		// last token must not open that door.
		err = errors.New("the new set has no tokens; keep at least one (to run without tokens, restart corsd)")
	}
	if err == nil {
		err = srv.SetTokens(tokens...)
	}
	if err != nil {
		log.Error("token reload failed; keeping the current tokens", "err", err)
		return
	}
	log.Info("tokens reloaded", "tokens", len(tokens))
}

func loadTokens(cfg *config) ([]server.Token, error) {
	var tokens []server.Token
	if cfg.tokensFile != "" {
		t, err := server.LoadTokensFile(cfg.tokensFile)
		if err != nil {
			return nil, err
		}
		tokens = append(tokens, t...)
	}
	if cfg.tokensEnv != "" {
		t, err := server.ParseTokensEnv(cfg.tokensEnv)
		if err != nil {
			return nil, fmt.Errorf("CORSD_TOKENS: %w", err)
		}
		tokens = append(tokens, t...)
	}
	return tokens, nil
}

// tlsFiles serves the key pair of --tls-cert/--tls-key and the client CAs
// of --tls-client-ca, read again by reload: a renewed certificate needs no
// restart. Each handshake uses the set current when it starts.
type tlsFiles struct {
	cfg *config
	cur atomic.Pointer[tls.Config]
}

func loadTLS(cfg *config) (*tlsFiles, credentials.TransportCredentials, error) {
	f := &tlsFiles{cfg: cfg}
	if err := f.reload(); err != nil {
		return nil, nil, err
	}
	base := &tls.Config{
		MinVersion: tls.VersionTLS12,
		GetConfigForClient: func(*tls.ClientHelloInfo) (*tls.Config, error) {
			return f.cur.Load(), nil
		},
	}
	return f, credentials.NewTLS(base), nil
}

// reload reads the files; on error the current set stays.
func (f *tlsFiles) reload() error {
	cfg := f.cfg
	cert, err := tls.LoadX509KeyPair(cfg.tlsCert, cfg.tlsKey)
	if err != nil {
		return fmt.Errorf("load TLS key pair: %w", err)
	}
	// The config returned per handshake replaces gRPC's, so it names h2
	// itself.
	tc := &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12, NextProtos: []string{"h2"}}
	if cfg.tlsClientCA != "" {
		pem, err := os.ReadFile(cfg.tlsClientCA) //nolint:gosec // G304,G703: the operator names the file
		if err != nil {
			return fmt.Errorf("read --tls-client-ca: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return fmt.Errorf("--tls-client-ca %s holds no PEM certificate", cfg.tlsClientCA)
		}
		tc.ClientCAs = pool
		tc.ClientAuth = tls.RequireAndVerifyClientCert
	}
	f.cur.Store(tc)
	return nil
}
