package client_test

import (
	"context"
	"fmt"
	"log"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/local"

	"github.com/corsd/corsd/client"
	"github.com/corsd/corsd/policy"
	corsdv1 "github.com/corsd/corsd/proto/corsd/v1"
)

// New wraps a connection you made yourself; the admin API is a plain
// generated gRPC client.
func ExampleNew() {
	cc, err := grpc.NewClient("127.0.0.1:8443", grpc.WithTransportCredentials(local.NewCredentials()))
	if err != nil {
		log.Fatal(err)
	}
	defer func() { _ = cc.Close() }()
	c := client.New(cc)

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	resp, err := c.Policies().AddOrigin(ctx, &corsdv1.AddOriginRequest{
		Policy: "policies/acme",
		Origin: &corsdv1.OriginRule{Pattern: "https://app.example.com", AllowCredentials: true},
	})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("revision", resp.GetPolicy().GetRevision())
}

// Dial picks the transport from the address: plaintext for loopback, TLS
// for anything else. A token is never sent in clear text off the host.
func ExampleDial() {
	c, err := client.Dial("corsd.internal.example:8443",
		client.WithCAFile("/etc/corsd/ca.pem"),
		client.WithToken(os.Getenv("CORSD_TOKEN")))
	if err != nil {
		log.Fatal(err)
	}
	defer func() { _ = c.Close() }()

	d, err := c.CheckOrigin(context.Background(), &corsdv1.CheckOriginRequest{
		Policy: "policies/acme", Method: "GET", Origin: "https://app.example.com",
	})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(d.GetAllowed(), d.GetMessage())
}

// A service keeps a watched, cached snapshot of its policy and enforces it
// locally on every request.
func ExampleWatcher_Middleware() {
	c, err := client.Dial("127.0.0.1:8443")
	if err != nil {
		log.Fatal(err)
	}
	defer func() { _ = c.Close() }()
	w, err := client.NewWatcher(c, []string{"policies/acme"},
		client.WithCacheFile("/var/cache/acme/cors-policies.json"),
		client.WithLogger(slog.Default()))
	if err != nil {
		log.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() { _ = w.Run(ctx) }()

	mux := http.NewServeMux()
	mux.HandleFunc("GET /items", func(w http.ResponseWriter, _ *http.Request) { _, _ = fmt.Fprintln(w, "[]") })
	// With a snapshot in hand, NewMiddleware refuses a name corsd does not
	// have; without one (corsd down, no cache), it fails closed until then.
	readyCtx, cancelReady := context.WithTimeout(ctx, 5*time.Second)
	_ = w.WaitReady(readyCtx)
	cancelReady()
	cors, err := w.NewMiddleware("policies/acme",
		client.WithDecisionHook(func(r *http.Request, d *policy.Decision) {
			if !d.Allowed && d.Kind != policy.KindNotCORS {
				slog.Info("cors refused", "path", r.URL.Path, "reason", d.Reason.String(), "message", d.Message())
			}
		}))
	if err != nil {
		log.Fatal(err) // e.g. client: unknown policy: "policies/acme" is not in the snapshot at revision 42
	}
	log.Fatal(http.ListenAndServe("127.0.0.1:8080", cors(mux)))
}

// Before a policy is enforced it runs in report-only mode; a Reporter
// sends what the middleware would have refused to corsd, whose metrics and
// decision log then cover every service.
func ExampleReporter() {
	c, err := client.Dial("127.0.0.1:8443")
	if err != nil {
		log.Fatal(err)
	}
	defer func() { _ = c.Close() }()
	w, err := client.NewWatcher(c, []string{"policies/acme"})
	if err != nil {
		log.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() { _ = w.Run(ctx) }()
	rep, err := client.NewReporter(c, "checkout")
	if err != nil {
		log.Fatal(err)
	}
	go func() { _ = rep.Run(ctx) }()

	api := http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = fmt.Fprintln(w, "[]") })
	log.Fatal(http.ListenAndServe("127.0.0.1:8080", w.Middleware("policies/acme", client.WithReporter(rep))(api)))
}

// StaticSource enforces a policy compiled in the program, with no corsd:
// handy in tests.
func ExampleStaticSource() {
	p, err := policy.Compile(policy.Config{
		Name:           "policies/acme",
		Origins:        []policy.Origin{{Pattern: "https://app.example.com"}},
		AllowedMethods: []string{"PUT"},
	})
	if err != nil {
		log.Fatal(err)
	}
	h := client.Middleware("policies/acme", client.StaticSource(p))(http.HandlerFunc(
		func(w http.ResponseWriter, _ *http.Request) { _, _ = fmt.Fprint(w, "ok") }))

	r := httptest.NewRequest("OPTIONS", "http://api.example.com/items", nil)
	r.Header.Set("Origin", "https://app.example.com")
	r.Header.Set("Access-Control-Request-Method", "PUT")
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	fmt.Println(w.Code)
	fmt.Println(w.Header().Get("Access-Control-Allow-Origin"))
	fmt.Println(w.Header().Get("Access-Control-Allow-Methods"))
	// Output:
	// 204
	// https://app.example.com
	// PUT
}

// The classic mistake: wrapping only a method-specific route. The
// browser's preflight is an OPTIONS request, which the "PUT /items" pattern
// does not match: the mux answers 405 before the middleware ever sees it,
// and the browser blocks the PUT. Wrap the whole mux instead.
func ExampleMiddleware_wrapTheMuxNotTheRoute() {
	p, err := policy.Compile(policy.Config{
		Name:           "policies/acme",
		Origins:        []policy.Origin{{Pattern: "https://app.example.com"}},
		AllowedMethods: []string{"PUT"},
	})
	if err != nil {
		log.Fatal(err)
	}
	cors := client.Middleware("policies/acme", client.StaticSource(p))
	put := http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = fmt.Fprint(w, "updated") })

	preflight := func(h http.Handler) int {
		r := httptest.NewRequest("OPTIONS", "http://api.example.com/items", nil)
		r.Header.Set("Origin", "https://app.example.com")
		r.Header.Set("Access-Control-Request-Method", "PUT")
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		return w.Code
	}

	wrong := http.NewServeMux()
	wrong.Handle("PUT /items", cors(put)) // the preflight never gets here
	fmt.Println("route wrapped:", preflight(wrong))

	right := http.NewServeMux()
	right.Handle("PUT /items", put)
	fmt.Println("mux wrapped:  ", preflight(cors(right)))
	// Output:
	// route wrapped: 405
	// mux wrapped:   204
}
