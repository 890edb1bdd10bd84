// Command etcdnode runs one etcd cluster member with etcd's own server code
// (go.etcd.io/etcd/server/v3/embed), at the version corsd's etcd client is
// built with. The e2e harness (internal/corsdtest) builds it and starts one
// process per member, so that a member can be killed with SIGKILL like a
// real etcd.
//
// It logs JSON lines on stderr: "ready" once the member serves clients, and
// "stopped" after a graceful stop on SIGTERM or SIGINT. etcd's own log
// (zap) goes to stderr too, at --log-level.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/url"
	"os"
	"os/signal"
	"sync"
	"syscall"
	"time"

	"go.etcd.io/etcd/server/v3/embed"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stderr))
}

// readyTimeout bounds the wait for the member to join its cluster: a
// member of a new cluster waits for a quorum of its peers.
const readyTimeout = 2 * time.Minute

func run(args []string, stderr io.Writer) int {
	fs := flag.NewFlagSet("etcdnode", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var (
		name     = fs.String("name", "", "member name, unique in the cluster")
		dir      = fs.String("data-dir", "", "data directory, created when missing")
		peer     = fs.String("peer-url", "", "peer URL to listen on and advertise (http://127.0.0.1:PORT)")
		client   = fs.String("client-url", "", "client URL to listen on and advertise (http://127.0.0.1:PORT)")
		cluster  = fs.String("initial-cluster", "", "name=peer-url,... of every member")
		state    = fs.String("initial-cluster-state", embed.ClusterStateFlagNew, "new or existing")
		token    = fs.String("initial-cluster-token", "etcdnode", "cluster token")
		tick     = fs.Uint("heartbeat-ms", 100, "heartbeat interval in milliseconds")
		election = fs.Uint("election-ms", 1000, "election timeout in milliseconds")
		logLevel = fs.String("log-level", "error", "etcd's log level: debug, info, warn, error")
		maxReq   = fs.Uint("max-request-bytes", 16<<20, "largest request etcd accepts (corsd writes a large policy twice in one transaction)")
	)
	if err := fs.Parse(args); err != nil {
		return 2
	}
	log := slog.New(slog.NewJSONHandler(stderr, nil))
	if *name == "" || *dir == "" || *peer == "" || *client == "" || *cluster == "" {
		log.Error("etcdnode: --name, --data-dir, --peer-url, --client-url and --initial-cluster are required")
		return 2
	}
	pu, err := url.Parse(*peer)
	if err != nil {
		log.Error("etcdnode: --peer-url", "err", err)
		return 2
	}
	cu, err := url.Parse(*client)
	if err != nil {
		log.Error("etcdnode: --client-url", "err", err)
		return 2
	}

	cfg := embed.NewConfig()
	cfg.Name = *name
	cfg.Dir = *dir
	cfg.ListenPeerUrls, cfg.AdvertisePeerUrls = []url.URL{*pu}, []url.URL{*pu}
	cfg.ListenClientUrls, cfg.AdvertiseClientUrls = []url.URL{*cu}, []url.URL{*cu}
	cfg.InitialCluster = *cluster
	cfg.ClusterState = *state
	cfg.InitialClusterToken = *token
	cfg.TickMs, cfg.ElectionMs = *tick, *election
	cfg.LogLevel = *logLevel
	cfg.MaxRequestBytes = *maxReq
	cfg.LogOutputs = []string{"stderr"}

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	e, err := embed.StartEtcd(cfg)
	if err != nil {
		log.Error("etcdnode: start", "err", err)
		return 1
	}
	// Close panics when called twice.
	var closeOnce sync.Once
	closeEtcd := func() { closeOnce.Do(e.Close) }
	defer closeEtcd()
	select {
	case <-e.Server.ReadyNotify():
		log.Info("ready", "name", *name, "client_url", cu.String(), "member_id", fmt.Sprintf("%x", uint64(e.Server.MemberID())))
	case err := <-e.Err():
		log.Error("etcdnode: failed before ready", "err", err)
		return 1
	case <-ctx.Done():
		log.Info("stopped")
		return 0
	case <-time.After(readyTimeout):
		log.Error("etcdnode: not ready in time", "timeout", readyTimeout)
		return 1
	}
	select {
	case err := <-e.Err():
		if err != nil && !errors.Is(err, context.Canceled) {
			log.Error("etcdnode: serve", "err", err)
			return 1
		}
	case <-ctx.Done():
	}
	closeEtcd()
	log.Info("stopped")
	return 0
}
