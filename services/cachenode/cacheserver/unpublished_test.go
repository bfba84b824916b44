package cacheserver

import (
	"testing"
	"time"

	trackerv1 "github.com/p2pd/p2pd/gen/tracker/v1"
	"github.com/p2pd/p2pd/internal/manifest"
	"github.com/p2pd/p2pd/services/tracker/trackertest"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

func TestUnpublishedFilesAreDropped(t *testing.T) {
	cl := newCluster(t)
	media := t.TempDir()
	_, gone := testFile(t, media, "gone.mp4", 3*testChunkSize)
	_, kept := testFile(t, media, "kept.mp4", 3*testChunkSize)
	cl.startOrigin(media)
	cl.waitHolders(gone.Root, 0, "cache-1", "origin")
	cl.waitHolders(kept.Root, 0, "cache-1", "origin")
	cn := cl.startCache("cache-1", t.TempDir(), Config{FetchMisses: true, SweepInterval: 50 * time.Millisecond})
	for _, m := range []*manifest.Manifest{gone, kept} {
		if _, err := cn.fetch(t.Context(), m, allChunks(m), false); err != nil {
			t.Fatal(err)
		}
	}
	trackertest.Eventually(t, "both files stored", func() bool {
		return cn.store.Count(gone.Root) == 3 && cn.store.Count(kept.Root) == 3
	})
	if _, err := cl.tracker.UnpublishFile(t.Context(), &trackerv1.UnpublishFileRequest{Name: "gone.mp4"}); err != nil {
		t.Fatal(err)
	}
	trackertest.Eventually(t, "unpublished file dropped", func() bool { return cn.store.Count(gone.Root) == 0 })
	// Memory too: it would still be served over SPP to anyone asking for
	// the root.
	trackertest.Eventually(t, "unpublished file out of memory", func() bool { return cn.inMemory(gone) == 0 })
	if _, err := cn.fetch(t.Context(), gone, allChunks(gone), true); status.Code(err) != codes.NotFound {
		t.Fatalf("local-only fetch of an unpublished file: %v, want NotFound", err)
	}
	trackertest.Eventually(t, "unpublished file dropped", func() bool { return cn.store.Count(gone.Root) == 0 })
	if n := cn.store.Count(kept.Root); n != 3 {
		t.Fatalf("published file: %d chunks left, want 3", n)
	}
}
