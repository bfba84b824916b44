package trackerserver

import (
	"testing"

	trackerv1 "github.com/p2pd/p2pd/gen/tracker/v1"
	"github.com/p2pd/p2pd/internal/nodeauth"
	"google.golang.org/grpc/codes"
)

func TestPostCommandRefusesBadCommands(t *testing.T) {
	f := newFixture(t)
	c, _ := f.tracker(Config{})
	purge := trackerv1.CommandAction_COMMAND_ACTION_PURGE
	prewarm := trackerv1.CommandAction_COMMAND_ACTION_PREWARM
	for _, tc := range []struct {
		name string
		cmd  *trackerv1.Command
	}{
		{"missing", nil},
		{"no action", &trackerv1.Command{Root: root("a")}},
		{"unknown action", &trackerv1.Command{Action: 99, Root: root("a")}},
		{"short root", &trackerv1.Command{Action: purge, Root: []byte{1, 2}}},
		{"bad name", &trackerv1.Command{Action: purge, Root: root("a"), Name: "../x"}},
		{"prewarm without nodes", &trackerv1.Command{Action: prewarm, Root: root("a")}},
		{"prewarm, node id with a slash", &trackerv1.Command{Action: prewarm, Root: root("a"), Nodes: &trackerv1.NodeSelector{NodeIds: []string{"a/b"}}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := c.PostCommand(testCtx(t), &trackerv1.PostCommandRequest{Command: tc.cmd})
			wantCode(t, err, codes.InvalidArgument)
		})
	}
	// A cachenode (no origin credential) may follow commands, never post.
	_, err := f.dial().PostCommand(testCtx(t), &trackerv1.PostCommandRequest{Command: &trackerv1.Command{Action: purge, Root: root("a")}})
	wantCode(t, err, codes.PermissionDenied)
	_, err = f.dial(nodeauth.OriginTokenHeader, "wrong").PostCommand(testCtx(t), &trackerv1.PostCommandRequest{Command: &trackerv1.Command{Action: purge, Root: root("a")}})
	wantCode(t, err, codes.PermissionDenied)
	if _, err := c.PostCommand(testCtx(t), &trackerv1.PostCommandRequest{Command: &trackerv1.Command{Action: purge, Root: root("a")}}); err != nil {
		t.Fatalf("the origin posts: %v", err)
	}
	st, err := f.dial().WatchCommands(testCtx(t), &trackerv1.WatchCommandsRequest{NodeId: "cache-1"})
	if err != nil {
		t.Fatal(err)
	}
	if got := recvCommand(t, st); got.Action != purge {
		t.Fatalf("a node without credentials follows %v", got)
	}
}

// recvCommand reads the next command of a watch.
func recvCommand(t *testing.T, st trackerv1.TrackerService_WatchCommandsClient) *trackerv1.Command {
	t.Helper()
	resp, err := st.Recv()
	if err != nil {
		t.Fatalf("watch commands: %v", err)
	}
	return resp.Command
}

func TestWatchCommands(t *testing.T) {
	f := newFixture(t)
	c, _ := f.tracker(Config{})
	c2, _ := f.tracker(Config{}) // another tracker on the same etcd
	ctx := testCtx(t)
	post := func(cmd *trackerv1.Command) *trackerv1.Command {
		t.Helper()
		resp, err := c.PostCommand(ctx, &trackerv1.PostCommandRequest{Command: cmd})
		if err != nil {
			t.Fatalf("post %v: %v", cmd.Action, err)
		}
		return resp.Command
	}
	first := post(&trackerv1.Command{Action: trackerv1.CommandAction_COMMAND_ACTION_PURGE, Root: root("a"), Name: "a.mp4"})
	if first.Id == "" || first.Revision == 0 || first.IssuedUnixNano == 0 {
		t.Fatalf("posted command lacks id, revision or time: %v", first)
	}
	if !first.Nodes.GetAll() {
		t.Errorf("a purge without a selector is for every node, got %v", first.Nodes)
	}

	// A node that starts gets the commands still kept, then new ones.
	st, err := c2.WatchCommands(ctx, &trackerv1.WatchCommandsRequest{NodeId: "n1"})
	if err != nil {
		t.Fatal(err)
	}
	if got := recvCommand(t, st); got.Id != first.Id || got.Revision != first.Revision || got.Action != first.Action || got.Name != "a.mp4" {
		t.Fatalf("first command = %v, want %v", got, first)
	}
	second := post(&trackerv1.Command{Action: trackerv1.CommandAction_COMMAND_ACTION_PREWARM, Root: root("b"),
		Nodes: &trackerv1.NodeSelector{NodeIds: []string{"n1", "n2"}}})
	got := recvCommand(t, st)
	if got.Id != second.Id || got.Revision != second.Revision || len(got.Nodes.GetNodeIds()) != 2 {
		t.Fatalf("second command = %v, want %v", got, second)
	}

	// A node that reconnects asks for those after the last it saw.
	third := post(&trackerv1.Command{Action: trackerv1.CommandAction_COMMAND_ACTION_PURGE, Root: root("c")})
	st2, err := c.WatchCommands(ctx, &trackerv1.WatchCommandsRequest{AfterRevision: second.Revision})
	if err != nil {
		t.Fatal(err)
	}
	if got := recvCommand(t, st2); got.Id != third.Id {
		t.Fatalf("after revision %d: got %v, want %v", second.Revision, got, third)
	}
	if got := recvCommand(t, st); got.Id != third.Id {
		t.Fatalf("the first watch got %v, want %v", got, third)
	}
}
