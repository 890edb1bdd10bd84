package server

import (
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"

	"connectrpc.com/connect"
	"connectrpc.com/vanguard"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"

	corsdv1 "github.com/corsd/corsd/proto/corsd/v1"
	"github.com/corsd/corsd/server/console"
)

// Limits of the JSON/HTTP API.
const (
	// MaxHTTPBodyBytes bounds the body of one JSON/HTTP API request: JSON
	// spells a message of MaxRecvMsgSize in up to about twice its bytes.
	MaxHTTPBodyBytes = 2 * MaxRecvMsgSize
	// MaxHTTPStreams bounds the server streams (WatchPolicies,
	// BackupDatabase) open at once over HTTP; each holds an HTTP/1.1
	// connection. More fail with ResourceExhausted.
	MaxHTTPStreams = 64
)

// httpServices are the services of the JSON/HTTP API. Envoy's ext_authz,
// health and reflection stay gRPC only.
var httpServices = []string{
	corsdv1.PolicyService_ServiceDesc.ServiceName,
	corsdv1.DecisionService_ServiceDesc.ServiceName,
}

// streamMethods are the HTTP paths of server-streaming methods: they may
// outlive the HTTP server's write timeout.
var streamMethods = map[string]bool{
	corsdv1.DecisionService_WatchPolicies_FullMethodName: true,
	corsdv1.PolicyService_BackupDatabase_FullMethodName:  true,
}

// HTTPOption configures NewHTTPHandler.
type HTTPOption func(*httpOptions)

type httpOptions struct {
	gs      *grpc.Server
	console bool
}

// WithHTTPAPI serves PolicyService and DecisionService over HTTP with JSON
// or binary protobuf (the Connect, gRPC-Web and gRPC protocols), each call
// transcoded into a call of the same method of gs, which must be the
// grpc.Server that s is registered on (Register) with s.ServerOptions():
// the calls pass through the same interceptors (metrics, auth and scopes,
// the loopback rule), handlers and error mapping as gRPC calls.
func WithHTTPAPI(gs *grpc.Server) HTTPOption {
	return func(o *httpOptions) { o.gs = gs }
}

// WithConsole serves the web console at /console/.
func WithConsole() HTTPOption {
	return func(o *httpOptions) { o.console = true }
}

// NewHTTPHandler returns the handler of the HTTP port: what HTTPHandler
// serves, and the JSON/HTTP API (WithHTTPAPI) and the console
// (WithConsole) when asked.
//
// The API answers no CORS request: it sends no Access-Control-* header,
// and it refuses calls that a browser marks as coming from another site or
// origin (Sec-Fetch-Site, Origin), so that only the console, served from
// the same origin, can call it from a browser. It reads the caller's
// bearer token from the Authorization header only, never from a cookie.
func (s *Server) NewHTTPHandler(opts ...HTTPOption) (http.Handler, error) {
	var o httpOptions
	for _, opt := range opts {
		opt(&o)
	}
	mux := http.NewServeMux()
	mux.Handle("/", s.HTTPHandler())
	if o.gs != nil {
		api, err := s.newAPIHandler(o.gs)
		if err != nil {
			return nil, err
		}
		for _, name := range httpServices {
			mux.Handle("/"+name+"/", api)
		}
	}
	if o.console {
		mux.Handle("/console/", console.Handler())
		mux.Handle("GET /console", http.RedirectHandler("/console/", http.StatusMovedPermanently))
	}
	return mux, nil
}

// newAPIHandler returns the transcoder of the JSON/HTTP API over gs,
// behind the checks that browsers need (apiGuard).
func (s *Server) newAPIHandler(gs *grpc.Server) (http.Handler, error) {
	services := make([]*vanguard.Service, 0, len(httpServices))
	for _, name := range httpServices {
		services = append(services, vanguard.NewService(name, gs))
	}
	tc, err := vanguard.NewTranscoder(services, vanguard.WithCodec(newJSONCodec), vanguard.WithDefaultServiceOptions(
		// gs speaks gRPC with binary protobuf; the transcoder converts JSON.
		vanguard.WithTargetProtocols(vanguard.ProtocolGRPC),
		vanguard.WithTargetCodecs(vanguard.CodecProto),
		vanguard.WithMaxMessageBufferBytes(MaxHTTPBodyBytes),
	))
	if err != nil {
		return nil, fmt.Errorf("server: JSON/HTTP API: %w", err)
	}
	return &apiGuard{s: s, next: tc, streams: make(chan struct{}, MaxHTTPStreams)}, nil
}

// jsonCodec is vanguard's JSON codec, strict about unknown fields (a
// misspelt field must not be dropped silently from a policy), whose decoding
// errors are InvalidArgument rather than Unknown.
type jsonCodec struct{ *vanguard.JSONCodec }

func newJSONCodec(res vanguard.TypeResolver) vanguard.Codec {
	c := vanguard.NewJSONCodec(res)
	c.UnmarshalOptions.DiscardUnknown = false
	return jsonCodec{c}
}

func (c jsonCodec) Unmarshal(data []byte, msg proto.Message) error {
	if err := c.JSONCodec.Unmarshal(data, msg); err != nil {
		return connect.NewError(connect.CodeInvalidArgument, fmt.Errorf("server: malformed JSON request: %w", err))
	}
	return nil
}

// apiGuard applies the HTTP-level rules of the API before the transcoder:
// same-origin browser calls only, bounded bodies and streams.
type apiGuard struct {
	s       *Server
	next    http.Handler
	streams chan struct{} // a slot per open server stream
}

func (g *apiGuard) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if err := g.check(r); err != nil {
		writeHTTPError(w, err)
		return
	}
	// Cookies never authenticate an API call; they are not passed on as
	// metadata either.
	r.Header.Del("Cookie")
	if ct := r.Header.Get("Content-Type"); r.Method == http.MethodPost && (ct == "" || ct == "application/x-www-form-urlencoded") {
		// curl -d sends this type by default; a browser cannot send such a
		// request from another origin (check refuses it) nor with a token
		// (Authorization needs a preflight, which is refused).
		r.Header.Set("Content-Type", "application/json")
	}
	if ct := r.Header.Get("Content-Type"); r.Header.Get("Connect-Protocol-Version") == "" && (ct == "application/json" || ct == "application/proto") {
		// A plain JSON POST is a Connect unary call: the API has no REST
		// routes that it could otherwise mean.
		r.Header.Set("Connect-Protocol-Version", "1")
	}
	r.Body = http.MaxBytesReader(w, r.Body, MaxHTTPBodyBytes)
	if streamMethods[r.URL.Path] {
		select {
		case g.streams <- struct{}{}:
			defer func() { <-g.streams }()
		default:
			writeHTTPError(w, &httpError{status: http.StatusTooManyRequests, code: "resource_exhausted", msg: fmt.Sprintf("server: %d streams are open over HTTP already; retry later or use gRPC", MaxHTTPStreams)})
			return
		}
		// A watch lasts until the client or a shutdown ends it, longer than
		// the server's write timeout for ordinary responses.
		// The read deadline too: once the request is read, the server's
		// background read that detects a closed connection would otherwise
		// time out and end the call.
		rc := http.NewResponseController(w)
		_ = rc.SetWriteDeadline(time.Time{})
		_ = rc.SetReadDeadline(time.Time{})
	}
	g.next.ServeHTTP(w, r)
}

// check refuses calls that a browser sent for a page of another origin, and
// requests whose Host is not a loopback name when the loopback rule (no
// tokens) is what authorizes them.
func (g *apiGuard) check(r *http.Request) error {
	if r.Method == http.MethodOptions {
		// A CORS preflight: the API serves no other origin.
		return &httpError{status: http.StatusForbidden, code: "permission_denied", msg: "server: the JSON/HTTP API answers no cross-origin request; call it from the same origin or without a browser"}
	}
	switch r.Header.Get("Sec-Fetch-Site") {
	case "", "same-origin", "none":
	default:
		return &httpError{status: http.StatusForbidden, code: "permission_denied", msg: "server: the JSON/HTTP API refuses calls from pages of another site"}
	}
	if origin := r.Header.Get("Origin"); origin != "" && !sameHost(origin, r.Host) {
		return &httpError{status: http.StatusForbidden, code: "permission_denied", msg: "server: the JSON/HTTP API refuses calls from pages of another origin"}
	}
	if !g.s.auth.hasTokens() && !isLoopbackHost(r.Host) {
		// Without tokens any loopback caller is an admin; a page whose name
		// was rebound to 127.0.0.1 (DNS rebinding) is such a caller.
		return &httpError{status: http.StatusForbidden, code: "permission_denied", msg: "server: no tokens are configured, so the JSON/HTTP API answers only requests to a loopback host (127.0.0.1, [::1], localhost)"}
	}
	return nil
}

// sameHost reports whether an Origin header names the host and port of the
// request. The scheme is not compared: behind a TLS-terminating proxy the
// page is https and the request to corsd plain http.
func sameHost(origin, host string) bool {
	u, err := url.Parse(origin)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || origin != u.Scheme+"://"+u.Host {
		return false
	}
	return strings.EqualFold(u.Host, host)
}

// isLoopbackHost reports whether a Host header names loopback.
func isLoopbackHost(host string) bool {
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	host = strings.TrimSuffix(strings.TrimPrefix(host, "["), "]")
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// httpError is a refusal made before a call reaches the gRPC server,
// written as a Connect error.
type httpError struct {
	status int
	code   string // Connect error code
	msg    string
}

func (e *httpError) Error() string { return e.msg }

func writeHTTPError(w http.ResponseWriter, err error) {
	he, ok := errors.AsType[*httpError](err)
	if !ok {
		he = &httpError{status: http.StatusInternalServerError, code: "internal", msg: "internal error"}
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(he.status)
	_ = json.NewEncoder(w).Encode(map[string]string{"code": he.code, "message": he.msg})
}
