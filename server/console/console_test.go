package console_test

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/corsd/corsd/server/console"
)

func TestHandler(t *testing.T) {
	h := console.Handler()
	tests := []struct {
		name, method, path string
		status             int
		ctype              string
	}{
		{name: "index", method: http.MethodGet, path: "/console/", status: 200, ctype: "text/html; charset=utf-8"},
		{name: "module", method: http.MethodGet, path: "/console/app.js", status: 200, ctype: "text/javascript; charset=utf-8"},
		{name: "style", method: http.MethodHead, path: "/console/style.css", status: 200, ctype: "text/css; charset=utf-8"},
		{name: "missing", method: http.MethodGet, path: "/console/nope.js", status: 404},
		{name: "unknown type", method: http.MethodGet, path: "/console/console.go", status: 404},
		{name: "dot dot", method: http.MethodGet, path: "/console/../console.go", status: 404},
		{name: "nested dot dot", method: http.MethodGet, path: "/console/a/../../app.js", status: 404},
		{name: "outside", method: http.MethodGet, path: "/app.js", status: 404},
		{name: "post", method: http.MethodPost, path: "/console/", status: 405},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req := httptest.NewRequest(tt.method, "http://127.0.0.1/", nil)
			req.URL.Path = tt.path // as sent, not cleaned
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, req)
			if rec.Code != tt.status {
				t.Errorf("%s %s = %d, want %d", tt.method, tt.path, rec.Code, tt.status)
			}
			if tt.ctype != "" && rec.Header().Get("Content-Type") != tt.ctype {
				t.Errorf("Content-Type = %q, want %q", rec.Header().Get("Content-Type"), tt.ctype)
			}
			// Every response, errors included, carries the security headers.
			want := map[string]string{
				"Content-Security-Policy": console.ContentSecurityPolicy,
				"X-Content-Type-Options":  "nosniff",
				"Referrer-Policy":         "no-referrer",
				"X-Frame-Options":         "DENY",
			}
			for k, v := range want {
				if got := rec.Header().Get(k); got != v {
					t.Errorf("%s = %q, want %q", k, got, v)
				}
			}
			if rec.Header().Get("Set-Cookie") != "" {
				t.Error("the console sets a cookie")
			}
		})
	}
	for _, directive := range []string{"script-src 'self'", "frame-ancestors 'none'", "default-src 'none'"} {
		if !strings.Contains(console.ContentSecurityPolicy, directive) {
			t.Errorf("CSP lacks %s", directive)
		}
	}
	if strings.Contains(console.ContentSecurityPolicy, "unsafe-inline") || strings.Contains(console.ContentSecurityPolicy, "unsafe-eval") {
		t.Error("CSP allows inline script or eval")
	}
}

// TestNoInlineScript checks that the page needs no inline script or style,
// which the CSP would block.
func TestNoInlineScript(t *testing.T) {
	rec := httptest.NewRecorder()
	console.Handler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/console/", nil))
	body := rec.Body.String()
	for _, bad := range []string{"<script>", "<style", " style=", " onclick=", " onload=", "javascript:"} {
		if strings.Contains(body, bad) {
			t.Errorf("index.html holds %q", bad)
		}
	}
}
