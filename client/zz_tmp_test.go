package client

import (
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/corsd/corsd/policy"
)

func BenchmarkTmpParts(b *testing.B) {
	p, _ := policy.Compile(policy.Config{Name: "policies/bench", Origins: []policy.Origin{{Pattern: "https://app.example.com", AllowCredentials: true}, {Pattern: "https://*.example.org", AllowCredentials: true}},
		AllowedMethods: []string{"GET", "HEAD", "POST", "PUT", "DELETE"}, AllowedRequestHeaders: []string{"Content-Type", "X-Api-Key", "X-Requested-With"},
		ExposedResponseHeaders: []string{"X-Request-Id"}, MaxAge: 10 * time.Minute, MaxAgeSet: true})
	r := httptest.NewRequest("GET", "http://api.example.com/items", nil)
	r.Header = http.Header{"Origin": {"https://app.example.com"}}
	req := requestOf(r)
	d := p.Check(req)
	h := make(http.Header, 8)
	b.Run("requestOf", func(b *testing.B) {
		for b.Loop() {
			req = requestOf(r)
		}
	})
	b.Run("check", func(b *testing.B) {
		for b.Loop() {
			d = p.Check(req)
		}
	})
	b.Run("clear", func(b *testing.B) {
		for b.Loop() {
			clear(h)
		}
	})
	b.Run("setHeaders+clear", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			clear(h)
			setHeaders(h, d.Headers())
		}
	})
	b.Run("4assign+clear", func(b *testing.B) {
		v := []string{"x"}
		for b.Loop() {
			clear(h)
			h["Access-Control-Allow-Origin"] = v
			h["Access-Control-Allow-Credentials"] = v
			h["Access-Control-Expose-Headers"] = v
			h["Vary"] = v
		}
	})
}
