// Command service is a small HTTP API protected by the corsd SDK
// middleware: it watches one policy in corsd and decides CORS locally, from
// a snapshot cached on disk, so it keeps deciding when corsd is briefly
// unreachable or not yet started.
//
// Try it with `make run` in one terminal, then:
//
//	corsctl policies apply -f - <<'EOF'
//	name: policies/acme
//	origins: [{pattern: "http://localhost:3000"}]
//	allowed_methods: [PUT]
//	EOF
//	go run ./examples/service
//	curl -i -H 'Origin: http://localhost:3000' http://127.0.0.1:8080/items
//	curl -i -X OPTIONS -H 'Origin: http://localhost:3000' \
//	     -H 'Access-Control-Request-Method: PUT' http://127.0.0.1:8080/items
//
// Flags (environment fallback in parentheses): --corsd (CORSD_ADDR,
// default 127.0.0.1:8443), --policy (default policies/acme), --listen
// (default 127.0.0.1:8080), --cache (default: a file in the user's cache
// directory). The token comes from CORSD_TOKEN.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/corsd/corsd/client"
	"github.com/corsd/corsd/policy"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "service:", err)
		os.Exit(1)
	}
}

func envOr(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}

func run() error {
	defaultCache := ""
	if dir, err := os.UserCacheDir(); err == nil {
		defaultCache = filepath.Join(dir, "corsd-example-service", "cors-policies.json")
	}
	corsdAddr := flag.String("corsd", envOr("CORSD_ADDR", "127.0.0.1:8443"), "corsd gRPC address")
	policyName := flag.String("policy", "policies/acme", "the policy that protects this API")
	listen := flag.String("listen", "127.0.0.1:8080", "HTTP listen address")
	cache := flag.String("cache", defaultCache, "cache file of the policy snapshot; empty: no cache")
	flag.Parse()

	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	var dialOpts []client.DialOption
	if tok := os.Getenv("CORSD_TOKEN"); tok != "" {
		dialOpts = append(dialOpts, client.WithToken(tok))
	}
	c, err := client.Dial(*corsdAddr, dialOpts...)
	if err != nil {
		return err
	}
	defer func() { _ = c.Close() }()

	watchOpts := []client.WatchOption{client.WithLogger(log)}
	if *cache != "" {
		if err := os.MkdirAll(filepath.Dir(*cache), 0o700); err != nil {
			return err
		}
		watchOpts = append(watchOpts, client.WithCacheFile(*cache))
	}
	w, err := client.NewWatcher(c, []string{*policyName}, watchOpts...)
	if err != nil {
		return err
	}
	go func() { _ = w.Run(ctx) }()
	// Report-only decisions go to corsd, where an operator sees what
	// enforcing the policy would refuse.
	rep, err := client.NewReporter(c, "example-service", client.WithReportLogger(log))
	if err != nil {
		return err
	}
	reported := make(chan struct{})
	go func() {
		defer close(reported)
		_ = rep.Run(ctx)
	}()
	defer func() {
		stop() // Run sends what is left, then returns
		<-reported
	}()

	mux := http.NewServeMux()
	mux.HandleFunc("GET /items", func(rw http.ResponseWriter, _ *http.Request) {
		rw.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(rw).Encode([]string{"apple", "pear"})
	})
	mux.HandleFunc("PUT /items", func(rw http.ResponseWriter, _ *http.Request) {
		rw.WriteHeader(http.StatusNoContent)
	})
	// How fresh the local snapshot is: for dashboards and alerts.
	mux.HandleFunc("GET /cors-status", func(rw http.ResponseWriter, _ *http.Request) {
		rw.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(rw).Encode(map[string]any{
			"ready":     w.Ready(),
			"revision":  w.Revision(),
			"staleness": w.Staleness().Round(time.Millisecond).String(),
			"policy":    w.Policy(*policyName) != nil,
		})
	})

	logRefusals := client.WithDecisionHook(func(r *http.Request, d *policy.Decision) {
		if !d.Allowed && d.Kind != policy.KindNotCORS {
			log.Info("cors refused", "method", r.Method, "path", r.URL.Path, "reason", d.Reason.String(), "message", d.Message())
		}
	})
	// Wrap the whole mux: preflights are OPTIONS requests that no route
	// above matches. A policy name that does not exist is an error here
	// once the snapshot is ready (from corsd or the cache file); before
	// that the middleware fails closed and the Watcher logs a missing name.
	mw, err := w.NewMiddleware(*policyName, logRefusals, client.WithReporter(rep))
	if err != nil {
		return err
	}
	srv := &http.Server{
		Addr:              *listen,
		Handler:           mw(mux),
		ReadHeaderTimeout: 10 * time.Second,
	}
	go func() {
		<-ctx.Done()
		shutdownCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(shutdownCtx)
	}()
	log.Info("listening", "addr", *listen, "corsd", *corsdAddr, "policy", *policyName, "cache", *cache)
	if err := srv.ListenAndServe(); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}
