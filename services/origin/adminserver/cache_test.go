package adminserver

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	trackerv1 "github.com/p2pd/p2pd/gen/tracker/v1"
	"github.com/p2pd/p2pd/internal/manifest"
	"github.com/p2pd/p2pd/services/tracker/trackertest"
)

// commands follows the tracker's commands as a node does.
func (e *env) commands() trackerv1.TrackerService_WatchCommandsClient {
	e.t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	e.t.Cleanup(cancel)
	st, err := e.tracker.WatchCommands(ctx, &trackerv1.WatchCommandsRequest{NodeId: "test"})
	if err != nil {
		e.t.Fatal(err)
	}
	return st
}

func nextCommand(t *testing.T, st trackerv1.TrackerService_WatchCommandsClient) *trackerv1.Command {
	t.Helper()
	resp, err := st.Recv()
	if err != nil {
		t.Fatalf("watch commands: %v", err)
	}
	return resp.Command
}

func TestPrewarmAndPurge(t *testing.T) {
	e := newEnv(t)
	e.writeMedia("films/a.mp4", 3*testChunk)
	if code, ae := e.doJSON("POST", "/v1/files", map[string]any{"path": "films/a.mp4"}, nil); code != 200 {
		t.Fatalf("publish: %d %+v", code, ae)
	}
	m, _ := e.origin.Lookup("films/a.mp4")
	e.joinCachenode("cache-1", m, 0, 1)
	e.joinCachenode("cache-2", m)
	trackertest.EventuallyOK(t, "both cachenodes listed, cache-1 holding chunks", func() error {
		var nodes struct{ Nodes []struct{ Id string } }
		e.doJSON("GET", "/v1/nodes", nil, &nodes)
		var file struct{ Holders []struct{ NodeId string } }
		e.doJSON("GET", "/v1/files/films/a.mp4", nil, &file)
		if len(nodes.Nodes) != 3 || len(file.Holders) != 2 {
			return fmt.Errorf("%d nodes, %d holders", len(nodes.Nodes), len(file.Holders))
		}
		return nil
	})
	st := e.commands()

	for _, tc := range []struct {
		name, path string
		in         map[string]any
		status     int
		code       string
	}{
		{"prewarm, no such file", "/v1/prewarm", map[string]any{"name": "no.mp4", "all": true}, 404, CodeNotPublished},
		{"prewarm, bad name", "/v1/prewarm", map[string]any{"name": "../a.mp4", "all": true}, 400, ""},
		{"prewarm, no nodes chosen", "/v1/prewarm", map[string]any{"name": "films/a.mp4"}, 400, CodeInvalidArgument},
		{"prewarm, all and a list", "/v1/prewarm", map[string]any{"name": "films/a.mp4", "all": true, "nodeIds": []string{"cache-1"}}, 400, CodeInvalidArgument},
		{"prewarm, a list and regions", "/v1/prewarm", map[string]any{"name": "films/a.mp4", "nodeIds": []string{"cache-1"}, "regions": []string{"eu"}}, 400, CodeInvalidArgument},
		{"prewarm, unknown node", "/v1/prewarm", map[string]any{"name": "films/a.mp4", "nodeIds": []string{"cache-9"}}, 400, CodeUnknownNode},
		{"prewarm, an origin", "/v1/prewarm", map[string]any{"name": "films/a.mp4", "nodeIds": []string{"origin-1"}}, 400, CodeUnknownNode},
		{"purge, no such file", "/v1/purge", map[string]any{"name": "no.mp4"}, 404, CodeNotPublished},
		{"purge, unknown field", "/v1/purge", map[string]any{"name": "films/a.mp4", "nodes": 1}, 400, CodeInvalidArgument},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, ae := e.doJSON("POST", tc.path, tc.in, nil)
			if code != tc.status || (tc.code != "" && ae.Code != tc.code) {
				t.Fatalf("got %d %+v, want %d %s", code, ae, tc.status, tc.code)
			}
		})
	}

	type answer struct {
		File      struct{ Name, Root string }
		NodeIds   []string
		CommandId string
	}
	var pre answer
	if code, ae := e.doJSON("POST", "/v1/prewarm", map[string]any{"name": "films/a.mp4", "nodeIds": []string{"cache-2", "cache-2"}}, &pre); code != 200 {
		t.Fatalf("prewarm: %d %+v", code, ae)
	}
	if len(pre.NodeIds) != 1 || pre.NodeIds[0] != "cache-2" || pre.CommandId == "" || pre.File.Name != "films/a.mp4" {
		t.Fatalf("prewarm answer: %+v", pre)
	}
	c := nextCommand(t, st)
	if c.Id != pre.CommandId || c.Action != trackerv1.CommandAction_COMMAND_ACTION_PREWARM || !bytes.Equal(c.Root, m.Root[:]) ||
		c.Nodes.GetAll() || len(c.Nodes.GetNodeIds()) != 1 || c.Nodes.NodeIds[0] != "cache-2" {
		t.Fatalf("prewarm command: %v", c)
	}
	if code, ae := e.doJSON("POST", "/v1/prewarm", map[string]any{"name": "films/a.mp4", "all": true}, &pre); code != 200 || len(pre.NodeIds) != 2 {
		t.Fatalf("prewarm all: %d %+v %+v", code, ae, pre)
	}
	if c := nextCommand(t, st); !c.Nodes.GetAll() {
		t.Fatalf("prewarm all: command %v", c)
	}
	// By region: the default region ("") holds both cachenodes, "eu" none.
	if code, ae := e.doJSON("POST", "/v1/prewarm", map[string]any{"name": "films/a.mp4", "regions": []string{""}}, &pre); code != 200 || len(pre.NodeIds) != 2 {
		t.Fatalf("prewarm the default region: %d %+v %+v", code, ae, pre)
	}
	if c := nextCommand(t, st); c.Nodes.GetAll() || len(c.Nodes.GetRegions()) != 1 || c.Nodes.Regions[0] != "" {
		t.Fatalf("prewarm by region: command %v", c)
	}
	if code, ae := e.doJSON("POST", "/v1/prewarm", map[string]any{"name": "films/a.mp4", "regions": []string{"eu"}}, &pre); code != 200 || len(pre.NodeIds) != 0 {
		t.Fatalf("prewarm a region without cachenodes: %d %+v %+v", code, ae, pre)
	}
	nextCommand(t, st)

	var pur answer
	if code, ae := e.doJSON("POST", "/v1/purge", map[string]any{"name": "films/a.mp4"}, &pur); code != 200 {
		t.Fatalf("purge: %d %+v", code, ae)
	}
	if len(pur.NodeIds) != 1 || pur.NodeIds[0] != "cache-1" {
		t.Fatalf("purge answer lists %v, want the holder cache-1", pur.NodeIds)
	}
	if c := nextCommand(t, st); c.Id != pur.CommandId || c.Action != trackerv1.CommandAction_COMMAND_ACTION_PURGE || !c.Nodes.GetAll() {
		t.Fatalf("purge command: %v", c)
	}

	// Unpublishing purges too, so no node serves the old bytes from memory.
	if code, _, _ := e.do("DELETE", "/v1/files/films/a.mp4", nil); code != 200 {
		t.Fatalf("delete: %d", code)
	}
	if c := nextCommand(t, st); c.Action != trackerv1.CommandAction_COMMAND_ACTION_PURGE || !bytes.Equal(c.Root, m.Root[:]) {
		t.Fatalf("after DELETE: command %v, want a purge of %s", c, m.Root)
	}
}

func TestDeleteKeepsBytesPublishedUnderAnotherName(t *testing.T) {
	e := newEnv(t)
	data := e.writeMedia("a.mp4", 2*testChunk)
	if err := os.WriteFile(filepath.Join(e.media, "b.mp4"), data, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, n := range []string{"a.mp4", "b.mp4"} {
		if code, ae := e.doJSON("POST", "/v1/files", map[string]any{"path": n}, nil); code != 200 {
			t.Fatalf("publish %s: %d %+v", n, code, ae)
		}
	}
	ma, _ := e.origin.Lookup("a.mp4")
	st := e.commands()
	if code, _, _ := e.do("DELETE", "/v1/files/a.mp4", nil); code != 200 {
		t.Fatalf("delete: %d", code)
	}
	// No purge of the shared bytes: the next command seen is this one.
	if code, ae := e.doJSON("POST", "/v1/purge", map[string]any{"name": "b.mp4"}, nil); code != 200 {
		t.Fatalf("purge b: %d %+v", code, ae)
	}
	if c := nextCommand(t, st); c.Name != "b.mp4" || manifest.Digest(c.Root) != ma.Root {
		t.Fatalf("first command after deleting a name whose bytes stay published: %v", c)
	}
}
