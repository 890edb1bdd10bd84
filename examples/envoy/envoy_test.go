// Package envoy holds the Envoy configuration the README documents; its test
// proves the file is valid against Envoy's own v3 schema.
package envoy

import (
	"os"
	"strings"
	"testing"

	bootstrapv3 "github.com/envoyproxy/go-control-plane/envoy/config/bootstrap/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	streamv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/access_loggers/stream/v3"
	extauthzv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_authz/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/router/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/upstreams/http/v3"
	"google.golang.org/protobuf/encoding/protojson"
	"sigs.k8s.io/yaml"
)

// TestEnvoyConfig parses envoy.yaml strictly (unknown fields fail), runs
// Envoy's proto validation rules and checks the settings the README promises.
func TestEnvoyConfig(t *testing.T) {
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

	var hcm hcmv3.HttpConnectionManager
	if err := bs.GetStaticResources().GetListeners()[0].GetFilterChains()[0].GetFilters()[0].GetTypedConfig().UnmarshalTo(&hcm); err != nil {
		t.Fatal(err)
	}
	filters := hcm.GetHttpFilters()
	if got := filters[0].GetName(); got != "envoy.filters.http.ext_authz" {
		t.Fatalf("first HTTP filter = %q, want ext_authz (preflights must be decided before authentication)", got)
	}
	var ea extauthzv3.ExtAuthz
	if err := filters[0].GetTypedConfig().UnmarshalTo(&ea); err != nil {
		t.Fatal(err)
	}
	if ea.GetTransportApiVersion() != corev3.ApiVersion_V3 {
		t.Errorf("transport_api_version = %v, want V3", ea.GetTransportApiVersion())
	}
	if d := ea.GetGrpcService().GetTimeout().AsDuration(); d <= 0 || d > 250e6 {
		t.Errorf("grpc_service.timeout = %v, want a short positive timeout (<= 250ms)", d)
	}
	allowed := map[string]bool{}
	for _, m := range ea.GetAllowedHeaders().GetPatterns() {
		allowed[m.GetExact()] = true
	}
	for _, h := range []string{"origin", "access-control-request-method", "access-control-request-headers", "access-control-request-private-network", "sec-fetch-site"} {
		if !allowed[h] {
			t.Errorf("allowed_headers lacks %q", h)
		}
	}
	for _, h := range []string{"cookie", "authorization"} {
		if allowed[h] {
			t.Errorf("allowed_headers ships %q to corsd", h)
		}
	}

	var perRoute extauthzv3.ExtAuthzPerRoute
	route := hcm.GetRouteConfig().GetVirtualHosts()[0].GetRoutes()[0]
	if err := route.GetTypedPerFilterConfig()["envoy.filters.http.ext_authz"].UnmarshalTo(&perRoute); err != nil {
		t.Fatal(err)
	}
	if got := perRoute.GetCheckSettings().GetContextExtensions()["corsd_policy"]; got == "" {
		t.Error("route does not name a policy in context_extensions[\"corsd_policy\"]")
	}
	// The access log shows corsd's decision record (the minimal form, corsd's
	// default, under the key "corsd").
	logs := hcm.GetAccessLog()
	if len(logs) == 0 {
		t.Fatal("no access_log: the README promises one that shows corsd's decision record")
	}
	var stdout streamv3.StdoutAccessLog
	if err := logs[0].GetTypedConfig().UnmarshalTo(&stdout); err != nil {
		t.Fatal(err)
	}
	if f := stdout.GetLogFormat().GetTextFormatSource().GetInlineString(); !strings.Contains(f, "%DYNAMIC_METADATA(envoy.filters.http.ext_authz:corsd)%") {
		t.Errorf("access log format %q does not show %%DYNAMIC_METADATA(envoy.filters.http.ext_authz:corsd)%%", f)
	}
}
