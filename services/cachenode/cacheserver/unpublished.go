package cacheserver

import (
	"context"

	trackerv1 "github.com/p2pd/p2pd/gen/tracker/v1"
	"github.com/p2pd/p2pd/internal/manifest"
)

// sweeper drops the chunks of files that are no longer published: the
// tracker's file list is the truth, and an unpublished file (or the old
// version of a replaced one) is content nobody may be sent again, so its
// bytes only take room from files that are.
type sweeper struct {
	// suspects were unpublished at the previous sweep. A root is dropped
	// only when two sweeps in a row miss it, which gives a viewer still
	// streaming a just-replaced version one sweep interval to finish.
	suspects map[manifest.Digest]bool
}

// sweep runs one pass; it does nothing when the tracker cannot answer.
func (s *housekeeping) sweep(ctx context.Context, sw *sweeper) {
	ctx, cancel := context.WithTimeout(ctx, s.cfg.RPCTimeout)
	defer cancel()
	resp, err := s.tracker.ListFiles(ctx, &trackerv1.ListFilesRequest{})
	if err != nil {
		return
	}
	published := make(map[manifest.Digest]bool, len(resp.Files))
	for _, f := range resp.Files {
		if root, err := manifest.DigestFromBytes(f.Root); err == nil {
			published[root] = true
		}
	}
	next := map[manifest.Digest]bool{}
	for _, root := range s.store.Roots() {
		if published[root] {
			continue
		}
		if !sw.suspects[root] {
			next[root] = true
			continue
		}
		// Memory too: a chunk left there would still be served over SPP
		// to anyone who asks for the root.
		s.log.Info("dropping chunks of an unpublished file", "root", root)
		s.dropFile(root)
	}
	sw.suspects = next
}
