package trackerserver

import (
	"cmp"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"time"

	trackerv1 "github.com/p2pd/p2pd/gen/tracker/v1"
	"github.com/p2pd/p2pd/internal/manifest"
	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
)

// Operators' commands (purge, prewarm) reach the nodes through etcd: the
// admin API posts one (PostCommand), the tracker stores it under
// commands/<id> with a lease of CommandTTL, and every cachenode and edge
// follows WatchCommands on any tracker. Commands are ordered by the etcd
// revision they were stored at, the same on every tracker, so a node that
// reconnects elsewhere asks for those after the last one it saw and
// misses none; one that starts asks for every command still kept.

// maxCommandNodes bounds NodeSelector.node_ids.
const maxCommandNodes = 4096

// PostCommand records a command for the nodes.
//
// Only an origin (the admin API runs in one) or the admin may: a purge
// costs the CDN what it cached, a prewarm the origin's egress. Following
// the commands is open to any node: they name published files only.
func (s *Server) PostCommand(ctx context.Context, req *trackerv1.PostCommandRequest) (*trackerv1.PostCommandResponse, error) {
	// A purge empties caches: only who may unpublish may post one.
	if err := s.callerOf(ctx).mayPublish("post command"); err != nil {
		return nil, err
	}
	c := req.GetCommand()
	if err := checkCommand(c); err != nil {
		return nil, status.Errorf(codes.InvalidArgument, "post command: %v", err)
	}
	c = proto.Clone(c).(*trackerv1.Command)
	if c.Nodes == nil {
		c.Nodes = &trackerv1.NodeSelector{All: true}
	}
	var id [8]byte
	rand.Read(id[:])
	now := s.cfg.Now()
	c.Id = fmt.Sprintf("%016x-%s", now.UnixNano(), hex.EncodeToString(id[:]))
	c.IssuedUnixNano = now.UnixNano()
	c.Revision = 0
	val, err := proto.Marshal(c)
	if err != nil {
		return nil, status.Errorf(codes.Internal, "post command: marshal: %v", err)
	}
	ectx, cancel := s.etcdCtx(ctx)
	defer cancel()
	lease, err := s.cli.Grant(ectx, int64((s.cfg.CommandTTL+time.Second-1)/time.Second))
	if err != nil {
		return nil, etcdError(err, "post %v command: grant lease", c.Action)
	}
	resp, err := s.cli.Put(ectx, s.keys.command(c.Id), string(val), clientv3.WithLease(lease.ID))
	if err != nil {
		s.cli.Revoke(ectx, lease.ID)
		return nil, etcdError(err, "post %v command", c.Action)
	}
	c.Revision = resp.Header.Revision
	s.cfg.Logger.Info("command posted", "id", c.Id, "action", c.Action, "root", hex.EncodeToString(c.Root), "name", c.Name, "revision", c.Revision)
	return &trackerv1.PostCommandResponse{Command: c}, nil
}

// checkCommand validates a command as posted.
func checkCommand(c *trackerv1.Command) error {
	if c == nil {
		return errors.New("command is missing")
	}
	if _, ok := trackerv1.CommandAction_name[int32(c.Action)]; !ok || c.Action == trackerv1.CommandAction_COMMAND_ACTION_UNSPECIFIED {
		return fmt.Errorf("action %v is not a known action", c.Action)
	}
	if _, err := manifest.DigestFromBytes(c.Root); err != nil {
		return fmt.Errorf("root: %w", err)
	}
	if c.Name != "" {
		if err := manifest.CheckName(c.Name); err != nil {
			return err
		}
	}
	sel := c.GetNodes()
	if len(sel.GetNodeIds()) > maxCommandNodes {
		return fmt.Errorf("%d node ids, at most %d", len(sel.GetNodeIds()), maxCommandNodes)
	}
	for _, id := range sel.GetNodeIds() {
		if err := checkNodeID(id); err != nil {
			return err
		}
	}
	if len(sel.GetRegions()) > maxCommandNodes {
		return fmt.Errorf("%d regions, at most %d", len(sel.GetRegions()), maxCommandNodes)
	}
	if c.Action == trackerv1.CommandAction_COMMAND_ACTION_PREWARM && !sel.GetAll() && len(sel.GetNodeIds()) == 0 && len(sel.GetRegions()) == 0 {
		return errors.New("a prewarm must choose its nodes: all, node ids or regions")
	}
	return nil
}

// WatchCommands streams the commands kept after req.after_revision, then
// the new ones, in revision order, until the caller leaves or etcd's
// watch breaks (the caller then asks again, after the last one it got).
func (s *Server) WatchCommands(req *trackerv1.WatchCommandsRequest, stream grpc.ServerStreamingServer[trackerv1.WatchCommandsResponse]) error {
	ctx := stream.Context()
	prefix := s.keys.prefix + commandsDir
	ectx, cancel := s.etcdCtx(ctx)
	resp, err := s.cli.Get(ectx, prefix, clientv3.WithPrefix())
	cancel()
	if err != nil {
		return etcdError(err, "watch commands: list")
	}
	kvs := slices.Clone(resp.Kvs)
	slices.SortFunc(kvs, func(a, b *mvccpb.KeyValue) int { return cmp.Compare(a.ModRevision, b.ModRevision) })
	for _, kv := range kvs {
		if err := s.sendCommand(stream, kv, req.AfterRevision); err != nil {
			return err
		}
	}
	wctx, wcancel := context.WithCancel(clientv3.WithRequireLeader(ctx))
	defer wcancel()
	wch := s.cli.Watch(wctx, prefix, clientv3.WithPrefix(), clientv3.WithRev(resp.Header.Revision+1), clientv3.WithFilterDelete())
	for wr := range wch {
		if err := wr.Err(); err != nil {
			return status.Errorf(codes.Unavailable, "watch commands: etcd: %v", err)
		}
		for _, ev := range wr.Events {
			if err := s.sendCommand(stream, ev.Kv, req.AfterRevision); err != nil {
				return err
			}
		}
	}
	if err := ctx.Err(); err != nil {
		return status.FromContextError(err).Err()
	}
	return status.Error(codes.Unavailable, "watch commands: etcd watch closed")
}

// sendCommand sends the command stored in kv unless it is at or before
// after. A value this tracker cannot read is skipped (logged): it must
// not stop the nodes from getting the others.
func (s *Server) sendCommand(stream grpc.ServerStreamingServer[trackerv1.WatchCommandsResponse], kv *mvccpb.KeyValue, after int64) error {
	if kv.ModRevision <= after {
		return nil
	}
	c := &trackerv1.Command{}
	if err := proto.Unmarshal(kv.Value, c); err != nil {
		s.cfg.Logger.Warn("ignoring unreadable command", "key", string(kv.Key), "err", err)
		return nil
	}
	c.Revision = kv.ModRevision
	return stream.Send(&trackerv1.WatchCommandsResponse{Command: c})
}
