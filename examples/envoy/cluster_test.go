package envoy

import (
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"

	bootstrapv3 "github.com/envoyproxy/go-control-plane/envoy/config/bootstrap/v3"
	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	extauthzv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_authz/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/retry/host/previous_hosts/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/protobuf/encoding/protojson"
	"sigs.k8s.io/yaml"
)

// loadBootstrap parses envoy.yaml strictly and validates it.
func loadBootstrap(t *testing.T) *bootstrapv3.Bootstrap {
	t.Helper()
	raw, err := os.ReadFile("envoy.yaml")
	if err != nil {
		t.Fatal(err)
	}
	js, err := yaml.YAMLToJSON(raw)
	if err != nil {
		t.Fatal(err)
	}
	var bs bootstrapv3.Bootstrap
	if err := protojson.Unmarshal(js, &bs); err != nil {
		t.Fatalf("envoy.yaml is not a valid Envoy v3 bootstrap: %v", err)
	}
	if err := bs.ValidateAll(); err != nil {
		t.Fatalf("envoy.yaml fails Envoy's validation rules: %v", err)
	}
	return &bs
}

func hcmOf(t *testing.T, bs *bootstrapv3.Bootstrap) *hcmv3.HttpConnectionManager {
	t.Helper()
	var hcm hcmv3.HttpConnectionManager
	if err := bs.GetStaticResources().GetListeners()[0].GetFilterChains()[0].GetFilters()[0].GetTypedConfig().UnmarshalTo(&hcm); err != nil {
		t.Fatal(err)
	}
	return &hcm
}

// TestEnvoyCorsdCluster checks what keeps ext_authz answered while corsd
// replicas come and go: several endpoints, gRPC health checks of the
// Authorization service, outlier detection, no panic routing to dead
// replicas, and a retry of Check on another replica within a short timeout.
func TestEnvoyCorsdCluster(t *testing.T) {
	bs := loadBootstrap(t)
	var corsd *clusterv3.Cluster
	for _, c := range bs.GetStaticResources().GetClusters() {
		if c.GetName() == "corsd" {
			corsd = c
		}
	}
	if corsd == nil {
		t.Fatal("no corsd cluster")
	}
	n := 0
	for _, le := range corsd.GetLoadAssignment().GetEndpoints() {
		n += len(le.GetLbEndpoints())
	}
	if n < 2 {
		t.Errorf("corsd cluster has %d endpoints, want several replicas", n)
	}
	hcs := corsd.GetHealthChecks()
	if len(hcs) != 1 || hcs[0].GetGrpcHealthCheck() == nil {
		t.Fatalf("corsd health_checks = %v, want one gRPC health check", hcs)
	}
	if got, want := hcs[0].GetGrpcHealthCheck().GetServiceName(), authv3.Authorization_ServiceDesc.ServiceName; got != want {
		t.Errorf("gRPC health check of service %q, want %q (what ext_authz calls)", got, want)
	}
	od := corsd.GetOutlierDetection()
	if od == nil || od.GetConsecutiveGatewayFailure().GetValue() == 0 || od.GetBaseEjectionTime().AsDuration() <= 0 {
		t.Errorf("outlier_detection = %v, want ejection after consecutive gateway failures", od)
	}
	if p := corsd.GetCommonLbConfig().GetHealthyPanicThreshold(); p == nil || p.GetValue() != 0 {
		t.Errorf("healthy_panic_threshold = %v, want 0: never route to replicas known dead", p)
	}

	ea := extAuthz(t, hcmOf(t, bs))
	gs := ea.GetGrpcService()
	if d := gs.GetTimeout().AsDuration(); d <= 0 || d > 250e6 {
		t.Errorf("grpc_service.timeout = %v, want a short positive timeout (<= 250ms)", d)
	}
	rp := gs.GetRetryPolicy()
	if rp.GetNumRetries().GetValue() < 1 {
		t.Fatalf("grpc_service.retry_policy = %v, want retries on another replica", rp)
	}
	on := strings.Split(rp.GetRetryOn(), ",")
	for _, want := range []string{"connect-failure", "reset", "unavailable"} {
		if !slices.Contains(on, want) {
			t.Errorf("retry_on %q lacks %s", rp.GetRetryOn(), want)
		}
	}
	if preds := rp.GetRetryHostPredicate(); len(preds) != 1 || preds[0].GetName() != "envoy.retry_host_predicates.previous_hosts" {
		t.Errorf("retry_host_predicate = %v, want previous_hosts (retry on another replica)", preds)
	}
	if back := rp.GetRetryBackOff().GetMaxInterval().AsDuration(); back <= 0 || int64(rp.GetNumRetries().GetValue())*int64(back) >= int64(gs.GetTimeout().AsDuration()) {
		t.Errorf("retries (%d, backoff up to %v) do not fit in the %v timeout", rp.GetNumRetries().GetValue(), back, gs.GetTimeout().AsDuration())
	}
}

func extAuthz(t *testing.T, hcm *hcmv3.HttpConnectionManager) *extauthzv3.ExtAuthz {
	t.Helper()
	var ea extauthzv3.ExtAuthz
	for _, f := range hcm.GetHttpFilters() {
		if f.GetName() == "envoy.filters.http.ext_authz" {
			if err := f.GetTypedConfig().UnmarshalTo(&ea); err != nil {
				t.Fatal(err)
			}
			return &ea
		}
	}
	t.Fatal("no ext_authz filter")
	return nil
}

// TestEnvoyRouting selects the route of each request as Envoy does (first
// match wins) and checks that exactly the requests a CORS decision needs go
// to corsd, and that the others still get Vary: Origin.
func TestEnvoyRouting(t *testing.T) {
	routes := hcmOf(t, loadBootstrap(t)).GetRouteConfig().GetVirtualHosts()[0].GetRoutes()
	tests := []struct {
		name      string
		headers   map[string]string
		wantCheck bool
	}{
		{name: "CORS request", headers: map[string]string{"origin": "https://app.acme.example"}, wantCheck: true},
		{name: "preflight", headers: map[string]string{":method": "OPTIONS", "origin": "https://app.acme.example", "access-control-request-method": "PUT"}, wantCheck: true},
		{name: "opaque origin", headers: map[string]string{"origin": "null"}, wantCheck: true},
		{name: "cross-site without Origin", headers: map[string]string{":method": "POST", "sec-fetch-site": "cross-site"}, wantCheck: true},
		{name: "same-site without Origin", headers: map[string]string{":method": "POST", "sec-fetch-site": "same-site"}, wantCheck: true},
		{name: "same-origin navigation", headers: map[string]string{"sec-fetch-site": "same-origin"}},
		{name: "typed in the address bar", headers: map[string]string{"sec-fetch-site": "none"}},
		{name: "server to server", headers: map[string]string{":method": "POST", "authorization": "Bearer x"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := matchRoute(t, routes, tt.headers)
			if r == nil {
				t.Fatal("no route matches")
			}
			if r.GetRoute().GetCluster() != "api" {
				t.Errorf("routed to %q, want api", r.GetRoute().GetCluster())
			}
			var per extauthzv3.ExtAuthzPerRoute
			if cfg := r.GetTypedPerFilterConfig()["envoy.filters.http.ext_authz"]; cfg != nil {
				if err := cfg.UnmarshalTo(&per); err != nil {
					t.Fatal(err)
				}
			}
			if check := !per.GetDisabled(); check != tt.wantCheck {
				t.Fatalf("ext_authz enabled = %v, want %v", check, tt.wantCheck)
			}
			if tt.wantCheck {
				if per.GetCheckSettings().GetContextExtensions()["corsd_policy"] == "" {
					t.Error("route to corsd names no policy in context_extensions[\"corsd_policy\"]")
				}
				return
			}
			vary := false
			for _, h := range r.GetResponseHeadersToAdd() {
				if strings.EqualFold(h.GetHeader().GetKey(), "vary") && h.GetHeader().GetValue() == "Origin" {
					vary = h.GetAppendAction() == corev3.HeaderValueOption_APPEND_IF_EXISTS_OR_ADD // never overwrite the upstream's Vary
				}
			}
			if !vary {
				t.Errorf("response_headers_to_add = %v, want Vary: Origin appended", r.GetResponseHeadersToAdd())
			}
		})
	}
}

// matchRoute returns the first route whose match accepts a request with
// headers, on path "/". It knows the matchers envoy.yaml uses and fails
// the test on any other, so that it never guesses.
func matchRoute(t *testing.T, routes []*routev3.Route, headers map[string]string) *routev3.Route {
	t.Helper()
	for _, r := range routes {
		m := r.GetMatch()
		if m.GetPrefix() != "/" {
			t.Fatalf("route match %v: only prefix \"/\" is emulated", m)
		}
		ok := true
		for _, hm := range m.GetHeaders() {
			v, present := headers[strings.ToLower(hm.GetName())]
			var hit bool
			switch {
			case hm.GetPresentMatch():
				hit = present
			case hm.GetStringMatch().GetSafeRegex() != nil:
				re := regexp.MustCompile("^(?:" + hm.GetStringMatch().GetSafeRegex().GetRegex() + ")$") // Envoy matches the whole value
				hit = present && re.MatchString(v)
			default:
				t.Fatalf("header matcher %v is not emulated", hm)
			}
			if hm.GetInvertMatch() {
				hit = !hit
			}
			ok = ok && hit
		}
		if ok {
			return r
		}
	}
	return nil
}
