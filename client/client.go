package client

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/credentials/local"
	_ "google.golang.org/grpc/health" // client-side health checking (healthCheckConfig)
	"google.golang.org/grpc/resolver"
	"google.golang.org/grpc/resolver/manual"
	"google.golang.org/grpc/status"

	corsdv1 "github.com/corsd/corsd/proto/corsd/v1"
)

// Client is a thin, typed client of corsd's gRPC API. It is safe for
// concurrent use. The zero value is not usable: build one with New or Dial.
type Client struct {
	policies  corsdv1.PolicyServiceClient
	decisions corsdv1.DecisionServiceClient
	closer    io.Closer // the connection Dial made; nil with New
}

// New returns a Client that calls corsd over cc. The caller owns cc:
// Close does not close it.
func New(cc grpc.ClientConnInterface) *Client {
	return &Client{
		policies:  corsdv1.NewPolicyServiceClient(cc),
		decisions: corsdv1.NewDecisionServiceClient(cc),
	}
}

// Policies returns the admin API client (create, get, list, update, delete
// policies; add and remove origins; list changes).
func (c *Client) Policies() corsdv1.PolicyServiceClient { return c.policies }

// Decisions returns the decision API client (CheckOrigin, WatchPolicies).
func (c *Client) Decisions() corsdv1.DecisionServiceClient { return c.decisions }

// CheckOrigin asks corsd to decide one request. A refusal is a decision
// with Allowed false, not an error. Services that decide often should use a
// Watcher and Middleware instead, which decide locally.
func (c *Client) CheckOrigin(ctx context.Context, req *corsdv1.CheckOriginRequest) (*corsdv1.Decision, error) {
	resp, err := c.decisions.CheckOrigin(ctx, req)
	if err != nil {
		return nil, err
	}
	return resp.GetDecision(), nil
}

// ListAllPolicies returns every policy, following ListPolicies pages.
func (c *Client) ListAllPolicies(ctx context.Context) ([]*corsdv1.Policy, error) {
	var (
		all   []*corsdv1.Policy
		token string
	)
	for {
		resp, err := c.policies.ListPolicies(ctx, &corsdv1.ListPoliciesRequest{PageSize: 1000, PageToken: token})
		if err != nil {
			return nil, err
		}
		all = append(all, resp.GetPolicies()...)
		token = resp.GetNextPageToken()
		if token == "" {
			return all, nil
		}
	}
}

// Close closes the connection that Dial made. It does nothing for a Client
// made with New.
func (c *Client) Close() error {
	if c.closer == nil {
		return nil
	}
	return c.closer.Close()
}

// DialOption configures Dial.
type DialOption func(*dialConfig)

type dialConfig struct {
	token       string
	tlsConfig   *tls.Config
	useTLS      bool
	caFile      string
	plaintext   bool
	dangerously bool
	grpcOpts    []grpc.DialOption
}

// WithToken sends token as a bearer token (`authorization: Bearer TOKEN`)
// on every call. The token is only ever sent over TLS or to a loopback
// address: Dial refuses a token with plaintext to any other address, and the
// credentials refuse at call time a connection that turns out insecure.
func WithToken(token string) DialOption {
	return func(c *dialConfig) { c.token = token }
}

// WithTLSConfig uses TLS with cfg (nil: the system roots). Use it for mTLS.
func WithTLSConfig(cfg *tls.Config) DialOption {
	return func(c *dialConfig) { c.useTLS, c.tlsConfig = true, cfg }
}

// WithCAFile uses TLS and verifies corsd's certificate against the PEM
// certificates in path instead of the system roots.
func WithCAFile(path string) DialOption {
	return func(c *dialConfig) { c.useTLS, c.caFile = true, path }
}

// WithInsecure uses plaintext. It is only allowed to a loopback address
// (127.0.0.0/8, ::1, localhost, a unix socket), which is also the default
// for such addresses; the connection is checked to be local when it is made.
func WithInsecure() DialOption {
	return func(c *dialConfig) { c.plaintext = true }
}

// DangerouslyAllowPlaintext uses plaintext even to a non-loopback address,
// where anyone on the path can read and change decisions and policies. A
// token is still refused over such a connection.
func DangerouslyAllowPlaintext() DialOption {
	return func(c *dialConfig) { c.plaintext, c.dangerously = true, true }
}

// WithGRPCOptions adds options to the underlying grpc.NewClient call (for
// interceptors, keepalive, a custom dialer...). A transport credentials
// option given here overrides the one Dial chooses.
func WithGRPCOptions(opts ...grpc.DialOption) DialOption {
	return func(c *dialConfig) { c.grpcOpts = append(c.grpcOpts, opts...) }
}

// Dial connects to corsd at target, which is one of:
//
//   - "host:port": every address the name resolves to;
//   - "host1:port,host2:port,...": a list of replicas (at most MaxEndpoints);
//   - any gRPC target, such as "dns:///corsd.internal:8443" (every A and
//     AAAA record, re-resolved as replicas come and go) or
//     "unix:///run/corsd.sock".
//
// Calls are spread over every replica that is up (gRPC's round_robin
// policy) and that reports SERVING for corsd.v1.DecisionService through
// grpc.health.v1 (client-side health checking): a replica that is
// unreachable, starting or shutting down gets no calls until it is back.
// Reads (CheckOrigin, GetPolicy, ListPolicies, ListChanges) that fail with
// Unavailable are retried, at most twice, on another replica; writes are
// not, since corsd may have applied them. A Watcher resumes its stream from
// its revision on whichever replica is up: replicas sharing one store have
// the same revisions.
//
// Without a transport option Dial uses plaintext when every address is a
// loopback address and TLS with the system roots otherwise; with TLS each
// replica's certificate is verified against its own host name. The
// connections are made lazily: Dial fails only on invalid options and
// targets.
func Dial(target string, opts ...DialOption) (*Client, error) {
	var cfg dialConfig
	for _, o := range opts {
		o(&cfg)
	}
	endpoints, err := splitEndpoints(target)
	if err != nil {
		return nil, err
	}
	loopback := IsLoopback(target)
	if cfg.useTLS && cfg.plaintext {
		return nil, errors.New("client: both TLS and plaintext requested; choose one")
	}
	plaintext := cfg.plaintext || (!cfg.useTLS && loopback)

	var creds credentials.TransportCredentials
	switch {
	case plaintext && loopback:
		// local credentials check at connect time that the peer is really
		// on this host, even when a name resolved to something else.
		creds = local.NewCredentials()
	case plaintext:
		if !cfg.dangerously {
			return nil, fmt.Errorf("client: refusing plaintext to non-loopback address %q; use TLS (WithCAFile, WithTLSConfig) or DangerouslyAllowPlaintext", target)
		}
		if cfg.token != "" {
			return nil, fmt.Errorf("client: refusing to send a token over plaintext to non-loopback address %q; use TLS", target)
		}
		creds = insecure.NewCredentials()
	default:
		tc, err := tlsConfig(cfg)
		if err != nil {
			return nil, err
		}
		creds = credentials.NewTLS(tc)
	}

	dialOpts := []grpc.DialOption{
		grpc.WithTransportCredentials(creds),
		// The service config is ours, never one published in DNS.
		grpc.WithDisableServiceConfig(),
		grpc.WithDefaultServiceConfig(serviceConfig),
		grpc.WithChainUnaryInterceptor(plainStatus),
		// gRPC's default reconnection backoff grows to two minutes: too
		// slow for a Watcher to notice that corsd is back.
		grpc.WithConnectParams(grpc.ConnectParams{
			Backoff:           backoff.Config{BaseDelay: 100 * time.Millisecond, Multiplier: 1.6, Jitter: 0.2, MaxDelay: 5 * time.Second},
			MinConnectTimeout: 5 * time.Second,
		}),
	}
	if cfg.token != "" {
		if strings.ContainsAny(cfg.token, "\r\n") {
			return nil, errors.New("client: the token contains a line break")
		}
		dialOpts = append(dialOpts, grpc.WithPerRPCCredentials(bearerToken(cfg.token)))
	}
	grpcTarget := target
	if endpoints != nil {
		r := manual.NewBuilderWithScheme(endpointsScheme)
		r.InitialState(endpointsState(endpoints))
		dialOpts = append(dialOpts, grpc.WithResolvers(r))
		grpcTarget = endpointsScheme + ":///" + target
	}
	dialOpts = append(dialOpts, cfg.grpcOpts...)
	cc, err := grpc.NewClient(grpcTarget, dialOpts...)
	if err != nil {
		return nil, fmt.Errorf("client: dial %s: %w", target, err)
	}
	c := New(cc)
	c.closer = cc
	return c, nil
}

func tlsConfig(cfg dialConfig) (*tls.Config, error) {
	tc := &tls.Config{MinVersion: tls.VersionTLS12}
	if cfg.tlsConfig != nil {
		tc = cfg.tlsConfig.Clone()
	}
	if cfg.caFile != "" {
		pem, err := os.ReadFile(cfg.caFile)
		if err != nil {
			return nil, fmt.Errorf("client: read CA file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("client: CA file %s holds no PEM certificate", cfg.caFile)
		}
		tc.RootCAs = pool
	}
	return tc, nil
}

// MaxEndpoints bounds the replicas of one comma-separated Dial target.
const MaxEndpoints = 64

// endpointsScheme names the resolver of a comma-separated target. It is
// given to each connection (grpc.WithResolvers), never registered globally.
const endpointsScheme = "corsd-endpoints"

// serviceConfig spreads calls over the healthy replicas and retries reads
// that a dying replica failed. Health is that of the decision service:
// what the SDK needs most, and what corsd keeps SERVING while its store is
// unreachable (it still decides from its snapshot).
const serviceConfig = `{
  "loadBalancingConfig": [{"round_robin": {}}],
  "healthCheckConfig": {"serviceName": "corsd.v1.DecisionService"},
  "methodConfig": [{
    "name": [
      {"service": "corsd.v1.DecisionService", "method": "CheckOrigin"},
      {"service": "corsd.v1.PolicyService", "method": "GetPolicy"},
      {"service": "corsd.v1.PolicyService", "method": "ListPolicies"},
      {"service": "corsd.v1.PolicyService", "method": "ListChanges"}
    ],
    "retryPolicy": {
      "maxAttempts": 3,
      "initialBackoff": "0.05s",
      "maxBackoff": "0.5s",
      "backoffMultiplier": 2,
      "retryableStatusCodes": ["UNAVAILABLE"]
    }
  }]
}`

// plainStatus returns a retried call's error as the status error it wraps:
// gRPC prefixes it with "max retries exhausted", which callers that print
// or compare status errors do not expect.
func plainStatus(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
	err := invoker(ctx, method, req, reply, cc, opts...)
	if err == nil {
		return nil
	}
	// status.FromError would keep the prefix in the message.
	if se, ok := errors.AsType[interface {
		error
		GRPCStatus() *status.Status
	}](err); ok {
		return se.GRPCStatus().Err()
	}
	return err
}

// splitEndpoints returns the replicas of a comma-separated target
// ("h1:p,h2:p"), or nil for any other target (one address, or one with a
// scheme, which gRPC resolves itself).
func splitEndpoints(target string) ([]string, error) {
	if !strings.Contains(target, ",") || hasScheme(target) {
		return nil, nil
	}
	parts := strings.Split(target, ",")
	if len(parts) > MaxEndpoints {
		return nil, fmt.Errorf("client: %d endpoints in the target; at most %d", len(parts), MaxEndpoints)
	}
	seen := make(map[string]bool, len(parts))
	for i, p := range parts {
		if p == "" {
			return nil, fmt.Errorf("client: endpoint %d of %q is empty", i+1, target)
		}
		host, port, err := net.SplitHostPort(p)
		if err != nil || host == "" || port == "" || strings.ContainsAny(p, " \t") {
			return nil, fmt.Errorf("client: endpoint %q of %q is not host:port", p, target)
		}
		if seen[p] {
			return nil, fmt.Errorf("client: endpoint %q is listed twice in %q", p, target)
		}
		seen[p] = true
	}
	return parts, nil
}

// hasScheme reports whether target starts with a gRPC scheme ("dns:",
// "unix:", "passthrough:", ...), as opposed to "host:port".
func hasScheme(target string) bool {
	scheme, rest, ok := strings.Cut(target, ":")
	if !ok || scheme == "" {
		return false
	}
	// "unix:path" and "unix-abstract:name" take no slashes.
	return strings.HasPrefix(rest, "//") || scheme == "unix" || scheme == "unix-abstract"
}

// endpointsState is the resolver state of a list of replicas. Each
// address names its host for TLS, so that every replica's certificate is
// checked against its own name.
func endpointsState(endpoints []string) resolver.State {
	var st resolver.State
	for _, ep := range endpoints {
		host, _, _ := net.SplitHostPort(ep)
		st.Endpoints = append(st.Endpoints, resolver.Endpoint{Addresses: []resolver.Address{{Addr: ep, ServerName: host}}})
	}
	return st
}

// IsLoopback reports whether a gRPC target names this host: a unix socket,
// localhost, or a loopback IP literal, with or without a port and a
// dns/passthrough scheme. A comma-separated list of replicas is loopback
// when every one of them is.
func IsLoopback(target string) bool {
	if eps, err := splitEndpoints(target); err == nil && eps != nil {
		for _, ep := range eps {
			if !isLoopback(ep) {
				return false
			}
		}
		return true
	}
	return isLoopback(target)
}

func isLoopback(target string) bool {
	for _, p := range []string{"unix:", "unix-abstract:"} {
		if strings.HasPrefix(target, p) {
			return true
		}
	}
	for _, p := range []string{"dns:", "passthrough:"} {
		if rest, ok := strings.CutPrefix(target, p); ok {
			target = rest
			if rest, ok := strings.CutPrefix(target, "//"); ok {
				// dns://authority/host:port: the authority is a DNS server.
				_, target, _ = strings.Cut(rest, "/")
			}
			break
		}
	}
	host := target
	if h, _, err := net.SplitHostPort(target); err == nil {
		host = h
	}
	host = strings.TrimSuffix(strings.TrimPrefix(host, "["), "]")
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip, err := netip.ParseAddr(host)
	return err == nil && ip.IsLoopback()
}

// bearerToken is per-RPC credentials that refuse to travel in clear text
// except over a connection the local credentials verified to be loopback.
type bearerToken string

func (t bearerToken) GetRequestMetadata(ctx context.Context, _ ...string) (map[string]string, error) {
	ri, _ := credentials.RequestInfoFromContext(ctx)
	ai := ri.AuthInfo
	secure := ai != nil && (ai.AuthType() == "local" ||
		(ai.AuthType() != "insecure" && credentials.CheckSecurityLevel(ai, credentials.PrivacyAndIntegrity) == nil))
	if !secure {
		return nil, status.Error(codes.Unauthenticated, "client: refusing to send the token over an insecure connection")
	}
	return map[string]string{"authorization": "Bearer " + string(t)}, nil
}

// RequireTransportSecurity is false so that the token also works over
// plaintext loopback; GetRequestMetadata enforces the rule itself.
func (bearerToken) RequireTransportSecurity() bool { return false }
