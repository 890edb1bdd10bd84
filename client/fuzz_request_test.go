package client

import (
	"bufio"
	"bytes"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/corsd/corsd/policy"
)

// FuzzMiddlewareRequest: whatever request a client sends, the middleware
// reads it without panic, decides as the engine does on what it read, and
// never answers with an Access-Control-Allow-Origin other than "*" or the
// request's single Origin.
func FuzzMiddlewareRequest(f *testing.F) {
	for _, seed := range []string{
		"OPTIONS /x HTTP/1.1\r\nHost: api.example.com\r\nOrigin: https://app.example.com\r\nAccess-Control-Request-Method: PUT\r\nAccess-Control-Request-Headers: content-type,x-a\r\n\r\n",
		"POST /x HTTP/1.1\r\nHost: api.example.com\r\nOrigin: https://evil.example\r\nSec-Fetch-Site: cross-site\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: a\r\nOrigin: https://app.example.com\r\nOrigin: https://b.example\r\n\r\n",
		"OPTIONS / HTTP/1.1\r\nHost: a\r\nOrigin: null\r\nAccess-Control-Request-Method: get\r\nAccess-Control-Request-Private-Network: true\r\n\r\n",
	} {
		f.Add([]byte(seed))
	}
	p, err := policy.Compile(policy.Config{
		Name:                  "policies/fuzz",
		Origins:               []policy.Origin{{Pattern: "https://app.example.com", AllowCredentials: true}, {Pattern: "https://*.example.org"}, {Pattern: "null"}},
		AllowedMethods:        []string{"PUT", "PATCH"},
		AllowedRequestHeaders: []string{"content-type", "x-a"},
		AllowPrivateNetwork:   true,
		CrossOriginProtection: true,
	})
	if err != nil {
		f.Fatal(err)
	}
	h := Middleware("policies/fuzz", StaticSource(p))(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusTeapot) }))
	f.Fuzz(func(t *testing.T, raw []byte) {
		r, err := http.ReadRequest(bufio.NewReader(bytes.NewReader(raw)))
		if err != nil {
			return
		}
		var a, b policy.Request
		requestOf(r, &a)
		requestOf(r, &b)
		if a != b {
			t.Fatalf("requestOf is not deterministic: %+v, %+v", a, b)
		}
		want := p.Check(a)
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, r)
		acao := rec.Header().Values("Access-Control-Allow-Origin")
		if len(acao) > 1 || (len(acao) == 1 && acao[0] != "*" && (len(r.Header["Origin"]) != 1 || acao[0] != r.Header.Get("Origin"))) {
			t.Fatalf("Access-Control-Allow-Origin %q for Origin %q", acao, r.Header["Origin"])
		}
		if len(acao) == 1 && !want.Allowed {
			t.Fatalf("refused decision %v answered with Access-Control-Allow-Origin %q", want.Reason, acao)
		}
	})
}
