// Package trackerclient is how nodes talk to the trackers: a load-balanced,
// failing-over connection to all of them (Client), and a background
// membership (Member) that keeps a node registered, heartbeating and its
// holdings announced in batches.
package trackerclient

import (
	"errors"
	"fmt"
	"net"
	"strings"

	trackerv1 "github.com/p2pd/p2pd/gen/tracker/v1"
	"github.com/p2pd/p2pd/internal/service"
	"github.com/p2pd/p2pd/internal/telemetry"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/resolver"
	"google.golang.org/grpc/resolver/manual"
)

// serviceConfig spreads calls over every tracker and retries a call that
// found its tracker unavailable on another one: trackers are stateless
// fronts to the same etcd, so any of them can answer.
const serviceConfig = `{
  "loadBalancingConfig": [{"round_robin": {}}],
  "methodConfig": [{
    "name": [{"service": "tracker.v1.TrackerService"}],
    "retryPolicy": {
      "maxAttempts": 3,
      "initialBackoff": "0.1s",
      "maxBackoff": "1s",
      "backoffMultiplier": 2,
      "retryableStatusCodes": ["UNAVAILABLE"]
    }
  }]
}`

// listScheme is the resolver scheme for a comma-separated list of trackers.
// The resolver is registered on the connection only (grpc.WithResolvers),
// never globally.
const listScheme = "p2pd-trackers"

// Client is a connection to the trackers.
type Client struct {
	trackerv1.TrackerServiceClient
	conn *grpc.ClientConn
}

// Dial connects to the trackers at addrs: a comma-separated list of
// host:port (load-balanced round robin, failing over), or a single DNS name
// that may resolve to several trackers ("dns:///tracker:7000"; a plain
// host:port is resolved the same way). Connections are made lazily;
// transport security defaults to none and opts may override it. Calls are
// traced (OpenTelemetry) and carry the caller's trace context.
func Dial(addrs string, opts ...grpc.DialOption) (*Client, error) {
	target, extra, err := parseTarget(addrs)
	if err != nil {
		return nil, err
	}
	all := []grpc.DialOption{
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultServiceConfig(serviceConfig),
		// ListNodes of a large CDN can outgrow gRPC's 4 MiB default.
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(64 << 20)),
		telemetry.GRPCDialOption(),
		service.ReconnectQuickly(), // a restarted tracker is asked again within seconds
	}
	all = append(all, extra...)
	all = append(all, opts...)
	conn, err := grpc.NewClient(target, all...)
	if err != nil {
		return nil, fmt.Errorf("dial trackers %q: %w", addrs, err)
	}
	return &Client{TrackerServiceClient: trackerv1.NewTrackerServiceClient(conn), conn: conn}, nil
}

// parseTarget turns Dial's addrs into a gRPC target and the options it
// needs.
func parseTarget(addrs string) (string, []grpc.DialOption, error) {
	addrs = strings.TrimSpace(addrs)
	if addrs == "" {
		return "", nil, errors.New("dial trackers: no address given")
	}
	if strings.Contains(addrs, "://") {
		if strings.Contains(addrs, ",") {
			return "", nil, fmt.Errorf("dial trackers %q: give either one target URI or a comma-separated host:port list", addrs)
		}
		return addrs, nil, nil
	}
	var list []resolver.Address
	for _, a := range strings.Split(addrs, ",") {
		a = strings.TrimSpace(a)
		if _, _, err := net.SplitHostPort(a); err != nil {
			return "", nil, fmt.Errorf("dial trackers %q: %q: %w", addrs, a, err)
		}
		list = append(list, resolver.Address{Addr: a})
	}
	if len(list) == 1 {
		// gRPC's default dns resolver balances over every address the
		// name resolves to and follows changes.
		return "dns:///" + list[0].Addr, nil, nil
	}
	r := manual.NewBuilderWithScheme(listScheme)
	r.InitialState(resolver.State{Addresses: list})
	return listScheme + ":///trackers", []grpc.DialOption{grpc.WithResolvers(r)}, nil
}

// Close closes the connection. Members must be closed first.
func (c *Client) Close() error { return c.conn.Close() }
