package server

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"net"
	"os"
	"slices"
	"strings"
	"sync/atomic"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
	"sigs.k8s.io/yaml"

	corsdv1 "github.com/corsd/corsd/proto/corsd/v1"
	"github.com/corsd/corsd/store"
)

// Scope is a permission that a token grants.
type Scope string

// The scopes. PolicyService reads need ScopeRead and writes ScopeWrite;
// CheckOrigin and ext_authz calls need ScopeCheck when decision auth is on
// (WithDecisionAuth); WatchPolicies and ReportDecisions need ScopeCheck
// whenever tokens are configured. A scope implies no other.
const (
	ScopeRead  Scope = "read"
	ScopeWrite Scope = "write"
	ScopeCheck Scope = "check"
)

// LocalActor is the actor recorded for loopback callers when no tokens are
// configured.
const LocalActor = "local"

// minTokenLen is the shortest accepted token: shorter secrets are guessable.
const minTokenLen = 16

// Token is one configured bearer token. Name identifies the caller in the
// change log (the actor) and in logs; Token is the secret.
type Token struct {
	Name   string  `json:"name"`
	Token  string  `json:"token"`
	Scopes []Scope `json:"scopes"`
}

// LoadTokensFile reads tokens from a YAML or JSON file holding a list of
// {name, token, scopes}:
//
//   - name: ci
//     token: 3f0c...      # at least 16 characters
//     scopes: [read, write]
func LoadTokensFile(path string) ([]Token, error) {
	data, err := os.ReadFile(path) //nolint:gosec // G304: the operator names the file
	if err != nil {
		return nil, fmt.Errorf("server: read tokens file: %w", err)
	}
	tokens, err := ParseTokens(data)
	if err != nil {
		return nil, fmt.Errorf("%w (in %s)", err, path)
	}
	return tokens, nil
}

// ParseTokens parses and validates a YAML or JSON list of tokens (see
// LoadTokensFile).
func ParseTokens(data []byte) ([]Token, error) {
	var tokens []Token
	if err := yaml.UnmarshalStrict(data, &tokens); err != nil {
		return nil, fmt.Errorf("server: parse tokens: %w", err)
	}
	if err := validateTokens(tokens); err != nil {
		return nil, err
	}
	return tokens, nil
}

// ParseTokensEnv parses the CORSD_TOKENS format: comma-separated entries
// `name:token:scope1+scope2`, for example
// `ci:0123456789abcdef0123:read+write,envoy:fedcba9876543210fedc:check`.
// Names and tokens cannot contain ':' or ','. Empty entries are ignored.
func ParseTokensEnv(s string) ([]Token, error) {
	var tokens []Token
	for entry := range strings.SplitSeq(s, ",") {
		entry = strings.TrimSpace(entry)
		if entry == "" {
			continue
		}
		parts := strings.Split(entry, ":")
		if len(parts) != 3 {
			return nil, fmt.Errorf("server: token entry %d: want name:token:scope1+scope2, got %d ':'-separated parts", len(tokens)+1, len(parts))
		}
		t := Token{Name: parts[0], Token: parts[1]}
		for sc := range strings.SplitSeq(parts[2], "+") {
			t.Scopes = append(t.Scopes, Scope(sc))
		}
		tokens = append(tokens, t)
	}
	if err := validateTokens(tokens); err != nil {
		return nil, err
	}
	return tokens, nil
}

func validateTokens(tokens []Token) error {
	names := make(map[string]bool, len(tokens))
	secrets := make(map[string]bool, len(tokens))
	var errs []error
	for i, t := range tokens {
		where := fmt.Sprintf("token %d (%q)", i+1, t.Name)
		switch {
		case t.Name == "":
			errs = append(errs, fmt.Errorf("server: token %d: name is required", i+1))
		case len(t.Name) > 128 || strings.ContainsFunc(t.Name, func(r rune) bool { return r <= ' ' || r == 0x7f }):
			errs = append(errs, fmt.Errorf("server: %s: name must be 1 to 128 visible characters", where))
		case names[t.Name]:
			errs = append(errs, fmt.Errorf("server: %s: duplicate name", where))
		}
		names[t.Name] = true
		switch {
		case len(t.Token) < minTokenLen:
			errs = append(errs, fmt.Errorf("server: %s: token is shorter than %d characters; generate one with `openssl rand -hex 32`", where, minTokenLen))
		case strings.ContainsFunc(t.Token, func(r rune) bool { return r <= ' ' || r >= 0x7f }):
			errs = append(errs, fmt.Errorf("server: %s: token must be visible ASCII characters without spaces", where))
		case secrets[t.Token]:
			errs = append(errs, fmt.Errorf("server: %s: the same token is configured twice", where))
		}
		secrets[t.Token] = true
		if len(t.Scopes) == 0 {
			errs = append(errs, fmt.Errorf("server: %s: no scopes; use some of read, write, check", where))
		}
		for _, sc := range t.Scopes {
			if _, ok := scopeBits[sc]; !ok {
				errs = append(errs, fmt.Errorf("server: %s: unknown scope %q; use read, write or check", where, sc))
			}
		}
	}
	return errors.Join(errs...)
}

type scopeSet uint8

var scopeBits = map[Scope]scopeSet{ScopeRead: 1, ScopeWrite: 2, ScopeCheck: 4}

// methodScopes is the scope each method needs. Methods not listed here and
// not open (openMethodPrefixes) are refused: a service registered later
// without a rule fails closed.
var methodScopes = map[string]Scope{
	corsdv1.PolicyService_GetPolicy_FullMethodName:         ScopeRead,
	corsdv1.PolicyService_ListPolicies_FullMethodName:      ScopeRead,
	corsdv1.PolicyService_ListChanges_FullMethodName:       ScopeRead,
	corsdv1.PolicyService_BackupDatabase_FullMethodName:    ScopeRead,
	corsdv1.PolicyService_CreatePolicy_FullMethodName:      ScopeWrite,
	corsdv1.PolicyService_UpdatePolicy_FullMethodName:      ScopeWrite,
	corsdv1.PolicyService_DeletePolicy_FullMethodName:      ScopeWrite,
	corsdv1.PolicyService_AddOrigin_FullMethodName:         ScopeWrite,
	corsdv1.PolicyService_RemoveOrigin_FullMethodName:      ScopeWrite,
	corsdv1.DecisionService_CheckOrigin_FullMethodName:     ScopeCheck,
	corsdv1.DecisionService_WatchPolicies_FullMethodName:   ScopeCheck,
	corsdv1.DecisionService_ReportDecisions_FullMethodName: ScopeCheck,
	authv3.Authorization_Check_FullMethodName:              ScopeCheck,
}

// gatedMethods need their scope whenever tokens are configured, whatever
// WithDecisionAuth says: a watch hands out every policy and a report feeds
// the metrics, neither of which is a decision that gateways make unauthenticated.
var gatedMethods = map[string]bool{
	corsdv1.DecisionService_WatchPolicies_FullMethodName:   true,
	corsdv1.DecisionService_ReportDecisions_FullMethodName: true,
}

// openMethodPrefixes need no token: health checks and reflection.
var openMethodPrefixes = []string{"/grpc.health.v1.Health/", "/grpc.reflection.v1.ServerReflection/", "/grpc.reflection.v1alpha.ServerReflection/"}

type tokenEntry struct {
	// hash is SHA-256 of the token: comparing fixed-length hashes keeps the
	// comparison constant-time regardless of the tokens' lengths.
	hash   [sha256.Size]byte
	name   string
	scopes scopeSet
}

// authenticator authorizes calls by bearer token and method scope. The
// token set is swapped whole (SetTokens), so a call sees the old set or the
// new one, never a mix.
type authenticator struct {
	tokens       atomic.Pointer[[]tokenEntry]
	decisionAuth bool
}

func newAuthenticator(tokens []Token, decisionAuth bool) (*authenticator, error) {
	a := &authenticator{decisionAuth: decisionAuth}
	if err := a.setTokens(tokens); err != nil {
		return nil, err
	}
	return a, nil
}

// setTokens validates tokens and makes them the set that authorizes the
// next calls; on error the current set stays.
func (a *authenticator) setTokens(tokens []Token) error {
	if err := validateTokens(tokens); err != nil {
		return err
	}
	entries := make([]tokenEntry, 0, len(tokens))
	for _, t := range tokens {
		e := tokenEntry{hash: sha256.Sum256([]byte(t.Token)), name: t.Name}
		for _, sc := range t.Scopes {
			e.scopes |= scopeBits[sc]
		}
		entries = append(entries, e)
	}
	a.tokens.Store(&entries)
	return nil
}

// hasTokens reports whether tokens are configured (otherwise the loopback
// rule authorizes calls).
func (a *authenticator) hasTokens() bool { return len(*a.tokens.Load()) > 0 }

// authorize checks the caller of fullMethod and returns a context carrying
// its actor (store.WithActor) for writes.
func (a *authenticator) authorize(ctx context.Context, fullMethod string) (context.Context, error) {
	need, ok := methodScopes[fullMethod]
	if !ok {
		if slices.ContainsFunc(openMethodPrefixes, func(p string) bool { return strings.HasPrefix(fullMethod, p) }) {
			return ctx, nil
		}
		return ctx, status.Errorf(codes.PermissionDenied, "no access rule for %s", fullMethod)
	}
	tokens := *a.tokens.Load()
	if need == ScopeCheck && !a.decisionAuth && (len(tokens) == 0 || !gatedMethods[fullMethod]) {
		return ctx, nil
	}
	if len(tokens) == 0 {
		if isLoopbackPeer(ctx) {
			return store.WithActor(ctx, LocalActor), nil
		}
		return ctx, status.Error(codes.PermissionDenied, "no tokens are configured, so this call is accepted only from loopback; configure tokens with --tokens-file or CORSD_TOKENS")
	}
	token, err := bearerToken(ctx)
	if err != nil {
		return ctx, err
	}
	h := sha256.Sum256([]byte(token))
	match := -1
	for i := range tokens {
		// No early exit: the time taken does not depend on which token matched.
		if subtle.ConstantTimeCompare(h[:], tokens[i].hash[:]) == 1 {
			match = i
		}
	}
	if match < 0 {
		return ctx, status.Error(codes.Unauthenticated, "invalid bearer token")
	}
	t := &tokens[match]
	if t.scopes&scopeBits[need] == 0 {
		return ctx, status.Errorf(codes.PermissionDenied, "token %q lacks the %q scope that %s needs", t.name, need, fullMethod)
	}
	return store.WithActor(ctx, t.name), nil
}

func bearerToken(ctx context.Context) (string, error) {
	md, _ := metadata.FromIncomingContext(ctx)
	vals := md.Get("authorization")
	if len(vals) == 0 {
		return "", status.Error(codes.Unauthenticated, "missing bearer token: send the metadata 'authorization: Bearer <token>'")
	}
	if len(vals) > 1 {
		return "", status.Error(codes.Unauthenticated, "more than one authorization header")
	}
	scheme, token, ok := strings.Cut(strings.TrimSpace(vals[0]), " ")
	if !ok || !strings.EqualFold(scheme, "bearer") || strings.TrimSpace(token) == "" {
		return "", status.Error(codes.Unauthenticated, "malformed authorization header: want 'Bearer <token>'")
	}
	return strings.TrimSpace(token), nil
}

// isLoopbackPeer reports whether the caller connected over loopback TCP or
// a Unix socket.
func isLoopbackPeer(ctx context.Context) bool {
	p, ok := peer.FromContext(ctx)
	if !ok || p.Addr == nil {
		return false
	}
	switch addr := p.Addr.(type) {
	case *net.TCPAddr:
		return addr.IP.IsLoopback()
	case *net.UnixAddr:
		return true
	}
	// Calls served through grpc.Server.ServeHTTP (the JSON/HTTP API) carry
	// the HTTP request's RemoteAddr, an "ip:port" string of network tcp.
	if p.Addr.Network() != "tcp" {
		return false
	}
	host, _, err := net.SplitHostPort(p.Addr.String())
	if err != nil {
		return false
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// IsLoopbackAddress reports whether a listen address host:port binds only
// loopback interfaces ("127.0.0.1:8443", "[::1]:0", "localhost:8443").
// An empty host binds every interface and is not loopback.
func IsLoopbackAddress(hostport string) bool {
	host, _, err := net.SplitHostPort(hostport)
	if err != nil {
		return false
	}
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

func (a *authenticator) unary(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	ctx, err := a.authorize(ctx, info.FullMethod)
	if err != nil {
		return nil, err
	}
	return handler(ctx, req)
}

func (a *authenticator) stream(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	ctx, err := a.authorize(ss.Context(), info.FullMethod)
	if err != nil {
		return err
	}
	return handler(srv, &ctxStream{ServerStream: ss, ctx: ctx})
}

// ctxStream replaces a stream's context.
type ctxStream struct {
	grpc.ServerStream
	ctx context.Context
}

func (s *ctxStream) Context() context.Context { return s.ctx }
