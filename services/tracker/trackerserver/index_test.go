package trackerserver

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	trackerv1 "github.com/p2pd/p2pd/gen/tracker/v1"
	"github.com/p2pd/p2pd/internal/manifest"
	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/proto"
)

func TestKeysParse(t *testing.T) {
	k := keys{prefix: "/p/"}
	r := manifest.Digest(root("x"))
	tests := []struct {
		key  string
		want parsedKey
	}{
		{"/p/nodes/cache-1", parsedKey{kind: kindNode, id: "cache-1"}},
		{"/p/files/a/b.mp4", parsedKey{kind: kindFile, name: "a/b.mp4"}},
		{k.have(r, "cache-1"), parsedKey{kind: kindHave, id: "cache-1", root: r}},
		{"/q/nodes/cache-1", parsedKey{}},
		{"/p/nodes/", parsedKey{}},
		{"/p/files/../x", parsedKey{}},
		{"/p/have/zz/cache-1", parsedKey{}},
		{"/p/have/" + r.String(), parsedKey{}},
		{"/p/have/" + r.String() + "/a/b", parsedKey{}},
		{"/p/other/x", parsedKey{}},
	}
	for _, tt := range tests {
		if got := k.parse(tt.key); got != tt.want {
			t.Errorf("parse(%q) = %+v, want %+v", tt.key, got, tt.want)
		}
	}
}

// The index follows changes made in etcd by anyone, not just through this
// tracker, and ignores values it cannot read.
func TestIndexFollowsEtcd(t *testing.T) {
	f := newFixture(t)
	c, _ := f.tracker(Config{})
	ctx := testCtx(t)
	k := keys{prefix: f.prefix}
	put := func(key string, m proto.Message) {
		t.Helper()
		v, err := proto.Marshal(m)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := f.etcd.Put(ctx, key, string(v)); err != nil {
			t.Fatal(err)
		}
	}
	r := root("direct")
	put(k.node("cache-9"), &trackerv1.Node{Id: "cache-9", Role: cachenode, GrpcAddr: "127.0.0.1:9"})
	put(k.have(manifest.Digest(r), "cache-9"), have(r, 4, 1))
	put(k.file("direct.mp4"), file("direct.mp4", 4<<20))
	// Garbage the index must survive.
	f.etcd.Put(ctx, k.node("bad"), "\xff\xff not a proto")
	put(k.node("liar"), &trackerv1.Node{Id: "someone-else", Role: cachenode, GrpcAddr: "x:1"})
	f.etcd.Put(ctx, f.prefix+"unknown/key", "x")
	put(k.have(manifest.Digest(root("huge")), "cache-9"), &trackerv1.Have{Root: root("huge"), ChunkCount: 1 << 31, Bitmap: []byte{1}})

	eventually(t, "direct writes to show", func() bool {
		resp, err := c.Locate(ctx, &trackerv1.LocateRequest{Root: r, ChunkCount: 4})
		if err != nil {
			t.Fatal(err)
		}
		got := sources(resp)
		return len(got[1]) == 1 && got[1][0] == "cache-9" && len(got[0]) == 0
	})
	if got := nodeIDs(t, c); !slices.Equal(got, []string{"cache-9"}) {
		t.Errorf("nodes = %v, want only cache-9", got)
	}
	if _, err := c.GetFile(ctx, &trackerv1.GetFileRequest{Name: "direct.mp4"}); err != nil {
		t.Errorf("get file written directly: %v", err)
	}

	if _, err := f.etcd.Delete(ctx, f.prefix, clientv3.WithPrefix()); err != nil {
		t.Fatal(err)
	}
	eventually(t, "direct deletes to show", func() bool {
		_, err := c.GetFile(ctx, &trackerv1.GetFileRequest{Name: "direct.mp4"})
		return len(nodeIDs(t, c)) == 0 && err != nil
	})
}

// A watch from a compacted revision fails, and the index starts over with
// a full listing.
func TestIndexRelistsAfterCompaction(t *testing.T) {
	f := newFixture(t)
	ctx := testCtx(t)
	k := keys{prefix: f.prefix}
	v, _ := proto.Marshal(&trackerv1.Node{Id: "n1", Role: cachenode, GrpcAddr: "x:1"})
	first, err := f.etcd.Put(ctx, k.node("n1"), string(v))
	if err != nil {
		t.Fatal(err)
	}
	v, _ = proto.Marshal(&trackerv1.Node{Id: "n2", Role: cachenode, GrpcAddr: "x:2"})
	last, err := f.etcd.Put(ctx, k.node("n2"), string(v))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.etcd.Compact(ctx, last.Header.Revision); err != nil {
		t.Fatal(err)
	}
	ix := newIndex(k, 1<<20, discard(), nil)
	err = ix.watch(ctx, f.etcd, first.Header.Revision-1)
	if err == nil || !strings.Contains(err.Error(), "compacted") {
		t.Fatalf("watch from a compacted revision: %v, want a compaction error", err)
	}
	rev, err := ix.relist(ctx, f.etcd, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if rev < last.Header.Revision {
		t.Errorf("relist at revision %d, want >= %d", rev, last.Header.Revision)
	}
	ix.read(func(st *state) {
		if len(st.nodes) != 2 {
			t.Errorf("relisted %d nodes, want 2", len(st.nodes))
		}
	})
}

// Listing pages through a prefix larger than one page.
func TestIndexListsInPages(t *testing.T) {
	f := newFixture(t)
	ctx := testCtx(t)
	k := keys{prefix: f.prefix}
	const n = listPageSize + 7
	ops := make([]clientv3.Op, 0, 100)
	flush := func() {
		if _, err := f.etcd.Txn(ctx).Then(ops...).Commit(); err != nil {
			t.Fatal(err)
		}
		ops = ops[:0]
	}
	for i := range n {
		id := fmt.Sprintf("n%05d", i)
		v, _ := proto.Marshal(&trackerv1.Node{Id: id, Role: cachenode, GrpcAddr: "x:1"})
		ops = append(ops, clientv3.OpPut(k.node(id), string(v)))
		if len(ops) == 100 {
			flush()
		}
	}
	flush()
	ix := newIndex(k, 1<<20, discard(), nil)
	if _, err := ix.relist(ctx, f.etcd, 5*time.Second); err != nil {
		t.Fatal(err)
	}
	ix.read(func(st *state) {
		if len(st.nodes) != n {
			t.Errorf("listed %d nodes, want %d", len(st.nodes), n)
		}
	})
}

// Two trackers on one etcd show the same state, whichever one a node
// talks to.
func TestTwoTrackers(t *testing.T) {
	f := newFixture(t)
	a, _ := f.tracker(Config{})
	b, _ := f.tracker(Config{})
	ctx := testCtx(t)
	r := root("shared")

	lease := register(t, a, "cache-1", cachenode)
	announce(t, b, "cache-1", lease, have(r, 4, 0, 2))
	if _, err := b.PublishFile(ctx, &trackerv1.PublishFileRequest{File: file("shared.mp4", 4<<20)}); err != nil {
		t.Fatal(err)
	}
	for name, c := range map[string]trackerv1.TrackerServiceClient{"a": a, "b": b} {
		eventually(t, "tracker "+name+" to see everything", func() bool {
			resp, err := c.Locate(ctx, &trackerv1.LocateRequest{Root: r, ChunkCount: 4})
			if err != nil {
				t.Fatal(err)
			}
			_, ferr := c.GetFile(ctx, &trackerv1.GetFileRequest{Name: "shared.mp4"})
			got := sources(resp)
			return ferr == nil && len(got[0]) == 1 && len(got[1]) == 0 && len(got[2]) == 1
		})
	}
	if _, err := b.Heartbeat(ctx, &trackerv1.HeartbeatRequest{NodeId: "cache-1", LeaseId: lease, Secret: secretOf("cache-1"), Load: 5}); err != nil {
		t.Fatalf("heartbeat through the other tracker: %v", err)
	}
	if _, err := b.Unregister(ctx, &trackerv1.UnregisterRequest{NodeId: "cache-1", LeaseId: lease, Secret: secretOf("cache-1")}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "tracker a to see the node leave", func() bool { return len(nodeIDs(t, a)) == 0 })
}

// Before the index is loaded, reads fail over instead of answering from an
// empty view.
func TestNotReady(t *testing.T) {
	srv := New(newEtcdClient(t), Config{Prefix: testPrefix(t), Logger: discard()})
	if srv.Ready() {
		t.Fatal("ready before Run")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	_, err := srv.Locate(ctx, &trackerv1.LocateRequest{Root: root("x"), ChunkCount: 1})
	wantCode(t, err, codes.Unavailable)
	_, err = srv.ListNodes(ctx, &trackerv1.ListNodesRequest{})
	wantCode(t, err, codes.Unavailable)

	rctx, rcancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { srv.Run(rctx); close(done) }()
	if err := srv.WaitReady(testCtx(t)); err != nil {
		t.Fatal(err)
	}
	if !srv.Ready() {
		t.Error("not ready after WaitReady")
	}
	rcancel()
	<-done
}
