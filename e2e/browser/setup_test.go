package browser

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	extauthzv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_authz/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/corsd/corsd/client"
	"github.com/corsd/corsd/internal/envoyemu"
	corsdv1 "github.com/corsd/corsd/proto/corsd/v1"
)

// The policies of the suite; each governs the paths /p/{id}/ of both APIs
// (the SDK middleware per path, the ext_authz route's context extension).
const (
	// polMain trusts app.test (with credentials) and admin.test (without),
	// allows PUT with X-Api-Key and exposes X-Request-Cost.
	polMain = "main"
	// polLive starts trusting app.test only; the live-change case adds and
	// removes admin.test. It exposes no header.
	polLive = "live"
	// polCSRF trusts app.test and has cross-origin protection on.
	polCSRF = "csrf"
	// polReport is polCSRF in report-only mode.
	polReport = "report"
)

var policyIDs = []string{polMain, polLive, polCSRF, polReport}

// api is one way of protecting the API handler.
type api struct {
	name   string // "sdk" or "envoy"
	origin string // https://api.test:PORT
}

// env is the whole system under test.
type env struct {
	origins map[string]string // page host -> https://host:PORT
	corsd   *corsd
	admin   corsdv1.PolicyServiceClient
	apis    []api
	j       *journal
	b       *browser
	seq     atomic.Int64
}

// newEnv starts everything: page servers, corsd with the policies, the API
// behind the SDK and behind the ext_authz emulator, and Chromium, logged in
// on both API sites.
func newEnv(t *testing.T) *env {
	t.Helper()
	start := time.Now()
	chromiumPath(t) // fail before building anything when there is no browser
	e := &env{origins: map[string]string{}, j: &journal{}}
	cert, spki := newCert(t)

	page, err := os.ReadFile(filepath.Join("testdata", "page.html"))
	if err != nil {
		t.Fatal(err)
	}
	for _, host := range []string{hostApp, hostAdmin, hostEvil} {
		s := startTLS(t, cert, pageHandler(page))
		e.origins[host] = originOf(host, s)
	}

	e.corsd = startCorsd(t)
	cc, err := grpc.NewClient(e.corsd.GRPCAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cc.Close() })
	e.admin = corsdv1.NewPolicyServiceClient(cc)
	e.createPolicies(t)

	sdk := e.startSDKAPI(t, cert)
	envoy := e.startEnvoyAPI(t, cert, authv3.NewAuthorizationClient(cc))
	e.apis = []api{sdk, envoy}

	e.b = startBrowser(t, spki)
	ctx, cancel := context.WithTimeout(e.b.tab, caseTimeout)
	defer cancel()
	for _, a := range e.apis {
		// A top-level visit, as a user logging in: the API sets its
		// session cookie (SameSite=None; Secure).
		if err := e.b.visit(ctx, a.origin+"/login"); err != nil {
			t.Fatalf("log in on %s: %v", a.origin, err)
		}
	}
	t.Logf("environment ready in %v: pages %v, APIs %s (SDK) and %s (ext_authz), corsd %s", time.Since(start).Round(time.Millisecond), e.origins, sdk.origin, envoy.origin, e.corsd.GRPCAddr)
	return e
}

func pageHandler(page []byte) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/" {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.Header().Set("Cache-Control", "no-store")
		_, _ = w.Write(page)
	})
}

// createPolicies creates the suite's policies through corsd's admin API.
func (e *env) createPolicies(t *testing.T) {
	t.Helper()
	app, admin := e.origins[hostApp], e.origins[hostAdmin]
	appCred := &corsdv1.OriginRule{Pattern: app, AllowCredentials: true, Description: "the web app"}
	// max_age 0: the browser never caches a preflight, so each case sees
	// corsd's current answer.
	noCache := durationpb.New(0)
	policies := map[string]*corsdv1.Policy{
		polMain: {
			Description:            "browser suite: CORS",
			Origins:                []*corsdv1.OriginRule{appCred, {Pattern: admin, Description: "the admin console"}},
			AllowedMethods:         []string{"PUT"},
			AllowedRequestHeaders:  []string{"X-Api-Key"},
			ExposedResponseHeaders: []string{"X-Request-Cost"},
			MaxAge:                 noCache,
		},
		polLive: {
			Description: "browser suite: live changes",
			Origins:     []*corsdv1.OriginRule{appCred},
			MaxAge:      noCache,
		},
		polCSRF: {
			Description:           "browser suite: cross-origin protection",
			Origins:               []*corsdv1.OriginRule{appCred},
			CrossOriginProtection: true,
			MaxAge:                noCache,
		},
		polReport: {
			Description:           "browser suite: report-only",
			Origins:               []*corsdv1.OriginRule{appCred},
			CrossOriginProtection: true,
			Mode:                  corsdv1.Mode_MODE_REPORT_ONLY,
			MaxAge:                noCache,
		},
	}
	ctx, cancel := context.WithTimeout(context.Background(), caseTimeout)
	defer cancel()
	for _, id := range policyIDs {
		if _, err := e.admin.CreatePolicy(ctx, &corsdv1.CreatePolicyRequest{PolicyId: id, Policy: policies[id]}); err != nil {
			t.Fatalf("CreatePolicy(%s): %v", id, err)
		}
	}
}

// sdkReporter is the name the SDK API reports its decisions under.
const sdkReporter = "browser-suite-sdk-api"

// startSDKAPI serves the API as api.test behind the SDK: a Watcher of
// corsd's policies and its middleware on each policy's paths.
func (e *env) startSDKAPI(t *testing.T, cert tls.Certificate) api {
	t.Helper()
	c, err := client.Dial(e.corsd.GRPCAddr, client.WithInsecure())
	if err != nil {
		t.Fatalf("client.Dial: %v", err)
	}
	t.Cleanup(func() { _ = c.Close() })
	names := make([]string, len(policyIDs))
	for i, id := range policyIDs {
		names[i] = "policies/" + id
	}
	w, err := client.NewWatcher(c, names, client.WithLogger(slog.New(slog.NewTextHandler(io.Discard, nil))))
	if err != nil {
		t.Fatalf("client.NewWatcher: %v", err)
	}
	runUntilCleanup(t, "Watcher.Run", w.Run)
	wctx, wcancel := context.WithTimeout(context.Background(), startTimeout)
	defer wcancel()
	if err := w.WaitReady(wctx); err != nil {
		t.Fatalf("the SDK watcher got no snapshot within %v: %v", startTimeout, err)
	}

	// The Reporter sends the SDK's decisions to corsd; a short interval
	// keeps the report-only case quick.
	rep, err := client.NewReporter(c, sdkReporter, client.WithReportInterval(50*time.Millisecond))
	if err != nil {
		t.Fatalf("client.NewReporter: %v", err)
	}
	runUntilCleanup(t, "Reporter.Run", rep.Run)

	h := &apiHandler{name: "sdk", j: e.j, ownOrigin: e.origins[hostEvil]}
	mux := http.NewServeMux()
	for i, id := range policyIDs {
		mux.Handle("/p/"+id+"/", w.Middleware(names[i], client.WithDecisionHook(e.j.decisionHook), client.WithReporter(rep))(h))
	}
	mux.Handle("/", h)
	s := startTLS(t, cert, e.j.accessLog("sdk", mux))
	return api{name: "sdk", origin: originOf(hostAPI, s)}
}

// runUntilCleanup runs run in the background until the test's cleanup
// cancels its context; an error it returns fails the test.
func runUntilCleanup(t *testing.T, what string, run func(context.Context) error) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("%s: %v", what, err)
		}
	})
}

// startEnvoyAPI serves the API as api-envoy.test behind the ext_authz
// emulator, which calls corsd's envoy.service.auth.v3.Authorization. The
// filter is configured as the repository's examples/envoy/envoy.yaml
// recommends (only CORS and Fetch metadata headers are sent to corsd; fail
// closed with 503), except for a longer timeout: the race detector and
// Chromium share two cores here.
func (e *env) startEnvoyAPI(t *testing.T, cert tls.Certificate, authz authv3.AuthorizationClient) api {
	t.Helper()
	var patterns []*matcherv3.StringMatcher
	for _, h := range []string{"origin", "access-control-request-method", "access-control-request-headers", "access-control-request-private-network", "sec-fetch-site", "host"} {
		patterns = append(patterns, &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Exact{Exact: h}})
	}
	cfg := &extauthzv3.ExtAuthz{
		TransportApiVersion: corev3.ApiVersion_V3,
		Services: &extauthzv3.ExtAuthz_GrpcService{GrpcService: &corev3.GrpcService{
			TargetSpecifier: &corev3.GrpcService_EnvoyGrpc_{EnvoyGrpc: &corev3.GrpcService_EnvoyGrpc{ClusterName: "corsd"}},
			Timeout:         durationpb.New(5 * time.Second),
		}},
		AllowedHeaders:   &matcherv3.ListStringMatcher{Patterns: patterns},
		FailureModeAllow: false,
		StatusOnError:    &typev3.HttpStatus{Code: typev3.StatusCode_ServiceUnavailable},
	}
	h := &apiHandler{name: "envoy", j: e.j, ownOrigin: e.origins[hostEvil]}
	f, err := envoyemu.New(authz, h, envoyemu.Config{
		ExtAuthz: cfg,
		// Routes /p/{id}/ name their policy, as typed_per_filter_config's
		// check_settings.context_extensions would; other paths name none.
		ContextExtensions: func(r *http.Request) map[string]string {
			rest, ok := strings.CutPrefix(r.URL.Path, "/p/")
			if !ok {
				return nil
			}
			id, _, ok := strings.Cut(rest, "/")
			if !ok {
				return nil
			}
			return map[string]string{"corsd_policy": id}
		},
	})
	if err != nil {
		t.Fatalf("envoyemu.New: %v", err)
	}
	s := startTLS(t, cert, e.j.accessLog("envoy", f))
	return api{name: "envoy", origin: originOf(hostEnvoy, s)}
}

// url returns a fresh URL of a on path: a unique id query parameter keeps
// every request apart in the journal, in Chromium's events, and in its
// preflight and HTTP caches.
func (e *env) url(a api, path string) (u, id string) {
	var b [4]byte
	_, _ = rand.Read(b[:])
	id = fmt.Sprintf("%d-%x", e.seq.Add(1), b)
	return a.origin + path + "?id=" + url.QueryEscape(id), id
}

// ctx returns a per-case context of the tab.
func (e *env) ctx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(e.b.tab, caseTimeout)
	t.Cleanup(cancel)
	return ctx
}
