package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	rpcstatus "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"
)

// Floor modes.
const (
	// floorSmallest answers like the smallest correct ext_authz server:
	// corsd's status code and HTTP answer (OK with the headers to add, or
	// denied with its HTTP status and headers), without dynamic metadata,
	// status message or body, marshaled by grpc-go on every call.
	floorSmallest = "smallest"
	// floorReplay answers corsd's own bytes, prebuilt: no marshaling.
	floorReplay = "replay"
)

// smallestAnswer returns the smallest correct answer carrying the same
// decision as corsd's answer c.
func smallestAnswer(c *authv3.CheckResponse) (*authv3.CheckResponse, error) {
	out := &authv3.CheckResponse{Status: &rpcstatus.Status{Code: c.GetStatus().GetCode()}}
	switch hr := c.GetHttpResponse().(type) {
	case *authv3.CheckResponse_OkResponse:
		out.HttpResponse = &authv3.CheckResponse_OkResponse{OkResponse: &authv3.OkHttpResponse{
			ResponseHeadersToAdd: hr.OkResponse.GetResponseHeadersToAdd(),
		}}
	case *authv3.CheckResponse_DeniedResponse:
		out.HttpResponse = &authv3.CheckResponse_DeniedResponse{DeniedResponse: &authv3.DeniedHttpResponse{
			Status:  hr.DeniedResponse.GetStatus(),
			Headers: hr.DeniedResponse.GetHeaders(),
		}}
	default:
		return nil, fmt.Errorf("loadtest: corsd's answer has no ok_response or denied_response: %v", c)
	}
	return out, nil
}

// answerPath is where the orchestrator leaves corsd's answer to kind for
// the floors.
func answerPath(dir, kind string) string { return filepath.Join(dir, kind+".answer") }

// runFloor serves one floor: a gRPC server per kind on 127.0.0.1:0, each
// answering the same thing to every Check. It prints {"kind": "addr", ...}
// as one line on stdout once all listen, then serves until SIGTERM or
// SIGINT.
func runFloor(args []string) error {
	fs := flag.NewFlagSet("loadtest floor", flag.ContinueOnError)
	mode := fs.String("mode", floorSmallest, "smallest or replay")
	dir := fs.String("answers", "", "directory holding KIND.answer files (corsd's CheckResponses, binary)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *dir == "" || fs.NArg() == 0 {
		return errors.New("floor: -answers DIR and at least one kind are required")
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	addrs := map[string]string{}
	var servers []*grpc.Server
	defer func() {
		for _, s := range servers {
			s.Stop()
		}
	}()
	for _, kind := range fs.Args() {
		b, err := os.ReadFile(answerPath(*dir, kind))
		if err != nil {
			return err
		}
		var gs *grpc.Server
		switch *mode {
		case floorSmallest:
			corsdAnswer := &authv3.CheckResponse{}
			if err := proto.Unmarshal(b, corsdAnswer); err != nil {
				return fmt.Errorf("floor: %s: %w", kind, err)
			}
			resp, err := smallestAnswer(corsdAnswer)
			if err != nil {
				return err
			}
			gs = grpc.NewServer()
			authv3.RegisterAuthorizationServer(gs, constantServer{resp: resp})
		case floorReplay:
			gs = grpc.NewServer(grpc.ForceServerCodec(rawCodec{}))
			gs.RegisterService(replayDesc(encoded(b)), nil)
		default:
			return fmt.Errorf("floor: unknown mode %q", *mode)
		}
		lis, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return err
		}
		servers = append(servers, gs)
		go func() { _ = gs.Serve(lis) }()
		addrs[kind] = lis.Addr().String()
	}
	if err := json.NewEncoder(os.Stdout).Encode(addrs); err != nil {
		return err
	}
	<-ctx.Done()
	return nil
}

// constantServer answers resp to every Check, as a minimal ext_authz
// server would.
type constantServer struct {
	authv3.UnimplementedAuthorizationServer
	resp *authv3.CheckResponse
}

func (s constantServer) Check(context.Context, *authv3.CheckRequest) (*authv3.CheckResponse, error) {
	return s.resp, nil
}

// replayDesc is the ext_authz service answering answer's bytes to every
// Check. The request is still decoded, as any server must.
func replayDesc(answer encoded) *grpc.ServiceDesc {
	return &grpc.ServiceDesc{
		ServiceName: "envoy.service.auth.v3.Authorization",
		HandlerType: (*any)(nil),
		Methods: []grpc.MethodDesc{{
			MethodName: "Check",
			Handler: func(_ any, _ context.Context, dec func(any) error, _ grpc.UnaryServerInterceptor) (any, error) {
				req := &authv3.CheckRequest{}
				if err := dec(req); err != nil {
					return nil, err
				}
				return answer, nil
			},
		}},
		Metadata: "envoy/service/auth/v3/external_auth.proto",
	}
}
