package server_test

import (
	"context"
	"fmt"
	"log"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"google.golang.org/grpc"

	"github.com/corsd/corsd/server"
	"github.com/corsd/corsd/store/boltstore"
)

// ExampleNew wires the server the way cmd/corsd does: the grpc.Server is
// built with ServerOptions (auth, metrics, recovery, limits), the services
// are registered, and the HTTP handler serves /metrics, /healthz, /readyz.
func ExampleNew() {
	dir, err := os.MkdirTemp("", "corsd-example")
	if err != nil {
		log.Fatal(err)
	}
	defer func() { _ = os.RemoveAll(dir) }()
	st, err := boltstore.Open(filepath.Join(dir, "corsd.db"))
	if err != nil {
		log.Fatal(err)
	}
	defer func() { _ = st.Close() }()

	tokens, err := server.ParseTokensEnv("ci:0123456789abcdef0123:read+write")
	if err != nil {
		log.Fatal(err)
	}
	srv, err := server.New(st, server.WithTokens(tokens...), server.WithDefaultPolicy("default"))
	if err != nil {
		log.Fatal(err)
	}
	defer func() { _ = srv.Close() }()

	gs := grpc.NewServer(srv.ServerOptions()...)
	srv.Register(gs)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		log.Fatal(err)
	}
	go func() { _ = gs.Serve(lis) }()
	hs := &http.Server{Handler: srv.HTTPHandler(), ReadHeaderTimeout: 5 * time.Second}
	_ = hs // serve it on its own port

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := srv.WaitReady(ctx); err != nil {
		log.Fatal(err)
	}
	fmt.Println("ready")

	// Graceful shutdown: NOT_SERVING first, then stop the gRPC server.
	srv.Shutdown()
	gs.GracefulStop()
	// Output: ready
}

// ExampleParseTokensEnv shows the CORSD_TOKENS format, and the classic
// mistake of a short, guessable token.
func ExampleParseTokensEnv() {
	tokens, err := server.ParseTokensEnv("ci:0123456789abcdef0123:read+write,envoy:fedcba9876543210fedc:check")
	if err != nil {
		log.Fatal(err)
	}
	for _, t := range tokens {
		fmt.Println(t.Name, t.Scopes)
	}
	_, err = server.ParseTokensEnv("admin:secret:read+write")
	fmt.Println(err)
	// Output:
	// ci [read write]
	// envoy [check]
	// server: token 1 ("admin"): token is shorter than 16 characters; generate one with `openssl rand -hex 32`
}
