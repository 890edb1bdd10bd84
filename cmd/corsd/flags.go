package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"time"

	"github.com/corsd/corsd/server"
	"github.com/corsd/corsd/store/boltstore"
)

// config is the parsed command line.
type config struct {
	listen           string
	httpListen       string
	db               string
	storeFlag        string
	store            storeSpec // from --store or --db
	etcdCert         string
	etcdKey          string
	etcdCA           string
	etcdUsername     string
	etcdPasswordFile string
	etcdPasswordEnv  string // CORSD_ETCD_PASSWORD
	tokensFile       string
	tokensEnv        string // CORSD_TOKENS
	decisionAuth     bool
	defaultPolicy    string
	bootstrap        string
	tlsCert          string
	tlsKey           string
	tlsClientCA      string
	logFormat        string
	logLevel         slog.Level
	logDecisions     bool
	shutdownTimeout  time.Duration
	retainChanges    int
	retainAge        time.Duration
	restoreFrom      string
	restoreOverwrite bool
	maxWatchers      int
	watchSendTimeout time.Duration

	// The JSON/HTTP API and the console on the HTTP port.
	httpAPI        bool
	console        bool
	decisionRecord server.DecisionRecord
}

// envName is the environment fallback of a flag: --tls-cert is
// CORSD_TLS_CERT.
func envName(flagName string) string {
	return "CORSD_" + strings.ToUpper(strings.ReplaceAll(flagName, "-", "_"))
}

// parseFlags parses args, then fills every flag not given on the command
// line from its CORSD_* environment variable.
func parseFlags(args []string, lookupEnv func(string) (string, bool), stderr io.Writer) (*config, error) {
	c := &config{}
	fs := flag.NewFlagSet("corsd", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&c.listen, "listen", "127.0.0.1:8443", "gRPC listen address (host:port); a non-loopback address needs tokens")
	fs.StringVar(&c.httpListen, "http-listen", "127.0.0.1:9090", "HTTP listen address for /metrics, /healthz and /readyz; empty disables it")
	fs.StringVar(&c.db, "db", "corsd.db", "bbolt database file, created when missing; the same as --store bolt:PATH")
	fs.StringVar(&c.storeFlag, "store", "", "policy store: bolt:PATH (default bolt:corsd.db), or etcd://HOST:PORT[,HOST:PORT...]/PREFIX for several replicas")
	fs.StringVar(&c.etcdCert, "etcd-cert", "", "client certificate (PEM) for etcd; with --etcd-key")
	fs.StringVar(&c.etcdKey, "etcd-key", "", "client key (PEM) for etcd")
	fs.StringVar(&c.etcdCA, "etcd-ca", "", "CA bundle (PEM) that signed etcd's server certificates; turns TLS on")
	fs.StringVar(&c.etcdUsername, "etcd-username", "", "etcd user; the password comes from CORSD_ETCD_PASSWORD or --etcd-password-file")
	fs.StringVar(&c.etcdPasswordFile, "etcd-password-file", "", "file holding the etcd password")
	fs.StringVar(&c.tokensFile, "tokens-file", "", "YAML or JSON file of bearer tokens: a list of {name, token, scopes}")
	fs.BoolVar(&c.decisionAuth, "decision-auth", false, "require a token with the check scope for CheckOrigin and ext_authz calls (WatchPolicies and ReportDecisions need it whenever tokens are configured)")
	fs.StringVar(&c.defaultPolicy, "default-policy", "", "policy applied when a request names none and no policy governs its host (policies/{id} or id)")
	fs.StringVar(&c.bootstrap, "bootstrap", "", "YAML or JSON list of policies to create at start when they do not exist")
	fs.StringVar(&c.tlsCert, "tls-cert", "", "TLS certificate file (PEM) for the gRPC port")
	fs.StringVar(&c.tlsKey, "tls-key", "", "TLS private key file (PEM) for the gRPC port")
	fs.StringVar(&c.tlsClientCA, "tls-client-ca", "", "CA bundle (PEM) to require and verify client certificates (mTLS)")
	fs.StringVar(&c.logFormat, "log-format", "text", "log format: text or json")
	fs.TextVar(&c.logLevel, "log-level", slog.LevelInfo, "log level: debug, info, warn or error")
	fs.BoolVar(&c.logDecisions, "log-decisions", false, "log every decision at info level")
	fs.DurationVar(&c.shutdownTimeout, "shutdown-timeout", 10*time.Second, "how long a graceful shutdown waits for calls in flight")
	fs.IntVar(&c.retainChanges, "retain-changes", boltstore.DefaultMaxChanges, "changes kept in the change log; 0 for no count limit")
	fs.DurationVar(&c.retainAge, "retain-age", 0, "drop changes older than this from the change log; 0 for no age limit")
	fs.StringVar(&c.restoreFrom, "restore-from", "", "load this backup (corsctl backup) into the store before serving; the store must be empty (a bolt file that does not exist yet, or an empty etcd prefix)")
	fs.BoolVar(&c.restoreOverwrite, "restore-overwrite", false, "bolt: let --restore-from replace an existing database file")
	showVersion := fs.Bool("version", false, "print the version and VCS revision corsd was built from, and exit")
	fs.IntVar(&c.maxWatchers, "max-watchers", server.DefaultMaxWatchers, "concurrent WatchPolicies streams; more are refused with RESOURCE_EXHAUSTED")
	fs.DurationVar(&c.watchSendTimeout, "watch-send-timeout", server.DefaultWatchSendTimeout, "cut off a WatchPolicies stream whose client reads nothing for this long")
	// The JSON/HTTP API and the web console on the HTTP port.
	fs.BoolVar(&c.httpAPI, "http-api", true, "serve PolicyService and DecisionService as JSON over HTTP on --http-listen (same tokens and scopes as gRPC)")
	fs.BoolVar(&c.console, "console", false, "serve the web console at /console/ on --http-listen (default: on when --http-listen is a loopback address)")
	// The decision record of ext_authz answers: what Envoy's access logs get,
	// paid in bytes on every answer.
	fs.TextVar(&c.decisionRecord, "decision-record", server.DecisionRecordMinimal,
		"decision record in ext_authz answers (dynamic_metadata, for Envoy's access logs): none, minimal (the reason) or full")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil, err
		}
		return nil, errUsage
	}
	if fs.NArg() > 0 {
		_, _ = fmt.Fprintf(stderr, "corsd: unexpected arguments: %q\n", fs.Args())
		return nil, errUsage
	}
	if *showVersion {
		return nil, errShowVersion
	}
	given := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { given[f.Name] = true })
	var errs []error
	fs.VisitAll(func(f *flag.Flag) {
		if given[f.Name] {
			return
		}
		if v, ok := lookupEnv(envName(f.Name)); ok {
			if err := fs.Set(f.Name, v); err != nil {
				errs = append(errs, fmt.Errorf("%s=%q: %w", envName(f.Name), v, err))
			}
		}
	})
	c.tokensEnv, _ = lookupEnv("CORSD_TOKENS")
	c.etcdPasswordEnv, _ = lookupEnv("CORSD_ETCD_PASSWORD")
	dbGiven := given["db"]
	if _, ok := lookupEnv("CORSD_DB"); ok {
		dbGiven = true
	}
	switch {
	case c.storeFlag != "":
		spec, err := parseStore(c.storeFlag)
		if err != nil {
			errs = append(errs, err)
		} else if dbGiven && (spec.kind != "bolt" || spec.path != c.db) {
			errs = append(errs, fmt.Errorf("--db %q and --store %q name different stores; give one", c.db, c.storeFlag))
		}
		c.store = spec
	default:
		c.store = storeSpec{kind: "bolt", path: c.db}
	}
	if !given["console"] {
		if _, ok := lookupEnv(envName("console")); !ok {
			c.console = c.httpAPI && c.httpListen != "" && server.IsLoopbackAddress(c.httpListen)
		}
	}
	if err := c.check(); err != nil {
		errs = append(errs, err)
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return c, nil
}

func (c *config) check() error {
	var errs []error
	if c.listen == "" {
		errs = append(errs, errors.New("--listen is empty"))
	}
	if c.db == "" {
		errs = append(errs, errors.New("--db is empty"))
	}
	if c.store.kind == "etcd" {
		if c.retainAge > 0 {
			errs = append(errs, errors.New("--retain-age is not supported with an etcd store yet; bound the change log with --retain-changes"))
		}
		if c.restoreOverwrite {
			errs = append(errs, errors.New("--restore-overwrite applies to bolt stores; restore into an empty etcd prefix instead"))
		}
	} else if c.etcdCert != "" || c.etcdCA != "" || c.etcdUsername != "" || c.etcdPasswordFile != "" {
		errs = append(errs, errors.New("--etcd-* flags need --store etcd://HOST:PORT/PREFIX"))
	}
	if (c.etcdCert == "") != (c.etcdKey == "") {
		errs = append(errs, errors.New("--etcd-cert and --etcd-key go together"))
	}
	if (c.tlsCert == "") != (c.tlsKey == "") {
		errs = append(errs, errors.New("--tls-cert and --tls-key go together"))
	}
	if c.tlsClientCA != "" && c.tlsCert == "" {
		errs = append(errs, errors.New("--tls-client-ca needs --tls-cert and --tls-key"))
	}
	if c.logFormat != "text" && c.logFormat != "json" {
		errs = append(errs, fmt.Errorf("--log-format %q: use text or json", c.logFormat))
	}
	if c.shutdownTimeout <= 0 {
		errs = append(errs, fmt.Errorf("--shutdown-timeout %v must be positive", c.shutdownTimeout))
	}
	if c.retainChanges < 0 {
		errs = append(errs, fmt.Errorf("--retain-changes %d must not be negative", c.retainChanges))
	}
	if c.console && (!c.httpAPI || c.httpListen == "") {
		errs = append(errs, errors.New("--console needs the JSON/HTTP API (--http-api) on --http-listen"))
	}
	if c.retainAge < 0 {
		errs = append(errs, fmt.Errorf("--retain-age %v must not be negative", c.retainAge))
	}
	return errors.Join(errs...)
}
