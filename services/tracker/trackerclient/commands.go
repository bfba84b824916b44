package trackerclient

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"slices"
	"time"

	trackerv1 "github.com/p2pd/p2pd/gen/tracker/v1"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// FollowCommands calls apply with every operator's command (purge,
// prewarm) the trackers record, in order, until ctx ends: first those
// still kept (a node that starts carries out recent purges and
// prewarms), then each new one as it is posted. When a stream breaks (a
// tracker restarts) it asks again, on any tracker, for the commands after
// the last one it applied, so none is missed or applied twice. apply runs
// on FollowCommands' goroutine: it must hand long work off. Selecting the
// commands meant for the node is apply's job.
func (c *Client) FollowCommands(ctx context.Context, nodeID string, log *slog.Logger, apply func(*trackerv1.Command)) {
	if log == nil {
		log = slog.Default()
	}
	bo := &backoff{min: 100 * time.Millisecond, max: 5 * time.Second, cur: 100 * time.Millisecond}
	var after int64
	for ctx.Err() == nil {
		got, err := c.followOnce(ctx, nodeID, &after, apply)
		if ctx.Err() != nil {
			return
		}
		if got {
			bo.reset()
		}
		log.Debug("tracker: command stream ended; following again", "after_revision", after, "err", err)
		bo.wait(ctx)
	}
}

// followOnce follows one stream; got reports whether it delivered
// anything (or was open long enough to count as healthy).
func (c *Client) followOnce(ctx context.Context, nodeID string, after *int64, apply func(*trackerv1.Command)) (bool, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	start := time.Now()
	st, err := c.WatchCommands(ctx, &trackerv1.WatchCommandsRequest{AfterRevision: *after, NodeId: nodeID})
	if err != nil {
		return false, err
	}
	got := false
	for {
		resp, err := st.Recv()
		if err != nil {
			if errors.Is(err, io.EOF) {
				err = status.Error(codes.Unavailable, "tracker ended the command stream")
			}
			return got || time.Since(start) > 5*time.Second, err
		}
		cmd := resp.GetCommand()
		if cmd == nil || cmd.Revision <= *after {
			continue
		}
		got = true
		*after = cmd.Revision
		apply(cmd)
	}
}

// Chosen reports whether a command's selector chooses the node id of
// region: every node, one of those it names, or one of its regions.
func Chosen(sel *trackerv1.NodeSelector, nodeID, region string) bool {
	return sel.GetAll() || slices.Contains(sel.GetNodeIds(), nodeID) || slices.Contains(sel.GetRegions(), region)
}
