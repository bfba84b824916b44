package trackerserver

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	trackerv1 "github.com/p2pd/p2pd/gen/tracker/v1"
	"github.com/p2pd/p2pd/internal/bitmap"
	"github.com/p2pd/p2pd/internal/manifest"
	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/protobuf/proto"
)

// listPageSize is how many keys one Get of the initial listing returns, so
// a large membership never needs one huge response.
const listPageSize = 1000

// nodeEntry is a live node with the lease its record is attached to.
type nodeEntry struct {
	node  *trackerv1.Node
	lease int64
}

// state is the tracker's view of etcd. Values are replaced, never mutated,
// so readers may keep pointers after releasing the lock.
type state struct {
	nodes  map[string]nodeEntry
	files  map[string]*trackerv1.File
	byRoot map[manifest.Digest]map[string]*trackerv1.File
	have   map[manifest.Digest]map[string]*bitmap.Bitmap
}

func newState() *state {
	return &state{
		nodes:  map[string]nodeEntry{},
		files:  map[string]*trackerv1.File{},
		byRoot: map[manifest.Digest]map[string]*trackerv1.File{},
		have:   map[manifest.Digest]map[string]*bitmap.Bitmap{},
	}
}

// change is one decoded etcd event, prepared outside the index lock so
// inflating bitmaps never blocks Locate.
type change struct {
	key   parsedKey
	del   bool
	node  *trackerv1.Node
	lease int64
	file  *trackerv1.File
	bits  *bitmap.Bitmap // nil for a have deleted or emptied
}

// decode turns a key-value into a change; ok is false for keys the tracker
// does not know, or values it cannot use (logged).
func decode(k keys, kv *mvccpb.KeyValue, del bool, maxChunks uint32, log *slog.Logger) (change, bool) {
	c := change{key: k.parse(string(kv.Key)), del: del, lease: kv.Lease}
	if c.key.kind == kindUnknown {
		return c, false
	}
	if del {
		return c, true
	}
	var err error
	switch c.key.kind {
	case kindNode:
		c.node = &trackerv1.Node{}
		if err = proto.Unmarshal(kv.Value, c.node); err == nil && c.node.GetId() != c.key.id {
			err = fmt.Errorf("record names node %q", c.node.GetId())
		}
	case kindFile:
		c.file = &trackerv1.File{}
		if err = proto.Unmarshal(kv.Value, c.file); err == nil && c.file.GetName() != c.key.name {
			err = fmt.Errorf("record names file %q", c.file.GetName())
		}
	case kindHave:
		var h trackerv1.Have
		err = proto.Unmarshal(kv.Value, &h)
		switch {
		case err != nil:
		case h.ChunkCount > maxChunks:
			// Announce refuses these; one written around it must not
			// make the tracker allocate gigabytes.
			err = fmt.Errorf("chunk_count %d over %d", h.ChunkCount, maxChunks)
		default:
			c.bits, err = bitmap.Decode(h.GetBitmap(), int(h.GetChunkCount()))
		}
	}
	if err != nil {
		// A value this tracker cannot read must not take the index down;
		// for a have, treating it as absent is the safe reading.
		log.Warn("ignoring unreadable etcd value", "key", string(kv.Key), "err", err)
		if c.key.kind != kindHave {
			return c, false
		}
		c.del = true
	}
	return c, true
}

// apply records one change. The caller holds the write lock (or owns s).
func (s *state) apply(c change) {
	switch c.key.kind {
	case kindNode:
		if c.del {
			delete(s.nodes, c.key.id)
		} else {
			s.nodes[c.key.id] = nodeEntry{node: c.node, lease: c.lease}
		}
	case kindFile:
		if old, ok := s.files[c.key.name]; ok {
			if r, err := manifest.DigestFromBytes(old.GetRoot()); err == nil {
				delete(s.byRoot[r], c.key.name)
				if len(s.byRoot[r]) == 0 {
					delete(s.byRoot, r)
				}
			}
		}
		if c.del {
			delete(s.files, c.key.name)
			return
		}
		s.files[c.key.name] = c.file
		if r, err := manifest.DigestFromBytes(c.file.GetRoot()); err == nil {
			if s.byRoot[r] == nil {
				s.byRoot[r] = map[string]*trackerv1.File{}
			}
			s.byRoot[r][c.key.name] = c.file
		}
	case kindHave:
		if c.del || c.bits == nil || c.bits.Count() == 0 {
			delete(s.have[c.key.root], c.key.id)
			if len(s.have[c.key.root]) == 0 {
				delete(s.have, c.key.root)
			}
			return
		}
		if s.have[c.key.root] == nil {
			s.have[c.key.root] = map[string]*bitmap.Bitmap{}
		}
		s.have[c.key.root][c.key.id] = c.bits
	}
}

// index is the in-memory view of etcd, fed by a watch.
type index struct {
	keys      keys
	log       *slog.Logger
	maxChunks uint32 // largest Have.chunk_count accepted

	mu       sync.RWMutex
	st       *state
	rev      int64         // etcd revision the view reflects
	advanced chan struct{} // closed (and replaced) when rev grows
	ready    chan struct{} // closed after the first full listing
	isReady  bool

	// onNodesGone is called, outside the lock, with nodes that left.
	onNodesGone func(ids []string)
	// onNodeSeen, when set, is called outside the lock with every node
	// (re)registered: the prober looks at it before anyone asks for it.
	onNodeSeen func(n *trackerv1.Node)
}

func newIndex(k keys, maxChunks uint32, log *slog.Logger, onNodesGone func([]string)) *index {
	return &index{
		keys: k, maxChunks: maxChunks, log: log, st: newState(),
		advanced: make(chan struct{}), ready: make(chan struct{}),
		onNodesGone: onNodesGone,
	}
}

// sawNodes tells onNodeSeen, if set, of nodes (re)registered.
func (ix *index) sawNodes(nodes []*trackerv1.Node) {
	if ix.onNodeSeen == nil {
		return
	}
	for _, n := range nodes {
		ix.onNodeSeen(n)
	}
}

// read runs f with the current state under the read lock.
func (ix *index) read(f func(*state)) {
	ix.mu.RLock()
	defer ix.mu.RUnlock()
	f(ix.st)
}

// waitReady waits for the first full listing.
func (ix *index) waitReady(ctx context.Context) error {
	select {
	case <-ix.ready:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// waitRev waits until the view reflects etcd revision rev, so a client
// that wrote through this tracker reads its own write from it.
func (ix *index) waitRev(ctx context.Context, rev int64) error {
	for {
		ix.mu.RLock()
		cur, ch := ix.rev, ix.advanced
		ix.mu.RUnlock()
		if cur >= rev {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// setRevLocked records progress and wakes waitRev callers.
func (ix *index) setRevLocked(rev int64) {
	if rev <= ix.rev {
		return
	}
	ix.rev = rev
	close(ix.advanced)
	ix.advanced = make(chan struct{})
}

// run keeps the view current until ctx ends: list everything, watch from
// the next revision, and list again whenever the watch breaks (compaction,
// lost leader, etcd restart), since events in between may be gone.
func (ix *index) run(ctx context.Context, cli *clientv3.Client, timeout time.Duration) {
	const minBackoff, maxBackoff = 100 * time.Millisecond, 5 * time.Second
	backoff := minBackoff
	for ctx.Err() == nil {
		rev, err := ix.relist(ctx, cli, timeout)
		if err == nil {
			start := time.Now()
			err = ix.watch(ctx, cli, rev)
			if time.Since(start) > maxBackoff {
				backoff = minBackoff
			}
		}
		if ctx.Err() != nil {
			return
		}
		ix.log.Warn("tracker index: resyncing with etcd", "err", err, "retry_in", backoff)
		select {
		case <-time.After(backoff):
		case <-ctx.Done():
			return
		}
		backoff = min(2*backoff, maxBackoff)
	}
}

// relist loads every key under the prefix at one revision, page by page,
// and swaps the new view in whole.
func (ix *index) relist(ctx context.Context, cli *clientv3.Client, timeout time.Duration) (int64, error) {
	st := newState()
	end := clientv3.GetPrefixRangeEnd(ix.keys.prefix)
	from := ix.keys.prefix
	var rev int64
	for {
		opts := []clientv3.OpOption{clientv3.WithRange(end), clientv3.WithLimit(listPageSize)}
		if rev != 0 {
			opts = append(opts, clientv3.WithRev(rev))
		}
		gctx, cancel := context.WithTimeout(ctx, timeout)
		resp, err := cli.Get(gctx, from, opts...)
		cancel()
		if err != nil {
			return 0, fmt.Errorf("list %s: %w", ix.keys.prefix, err)
		}
		if rev == 0 {
			rev = resp.Header.Revision
		}
		for _, kv := range resp.Kvs {
			if c, ok := decode(ix.keys, kv, false, ix.maxChunks, ix.log); ok {
				st.apply(c)
			}
		}
		if !resp.More || len(resp.Kvs) == 0 {
			break
		}
		from = string(resp.Kvs[len(resp.Kvs)-1].Key) + "\x00"
	}

	ix.mu.Lock()
	var gone []string
	for id := range ix.st.nodes {
		if _, ok := st.nodes[id]; !ok {
			gone = append(gone, id)
		}
	}
	seen := make([]*trackerv1.Node, 0, len(st.nodes))
	for _, e := range st.nodes {
		seen = append(seen, e.node)
	}
	ix.st = st
	// A relist may go back in revision only if etcd itself was restored
	// from an older snapshot; the view is the new truth either way.
	if rev < ix.rev {
		ix.rev = rev
	} else {
		ix.setRevLocked(rev)
	}
	if !ix.isReady {
		ix.isReady = true
		close(ix.ready)
	}
	ix.mu.Unlock()
	if len(gone) > 0 && ix.onNodesGone != nil {
		ix.onNodesGone(gone)
	}
	ix.sawNodes(seen)
	return rev, nil
}

// watch applies changes after rev until the watch breaks or ctx ends.
func (ix *index) watch(ctx context.Context, cli *clientv3.Client, rev int64) error {
	wctx, cancel := context.WithCancel(clientv3.WithRequireLeader(ctx))
	defer cancel()
	wch := cli.Watch(wctx, ix.keys.prefix, clientv3.WithPrefix(), clientv3.WithRev(rev+1), clientv3.WithProgressNotify())
	for resp := range wch {
		if resp.CompactRevision != 0 {
			return fmt.Errorf("watch from revision %d: compacted at %d", rev+1, resp.CompactRevision)
		}
		if err := resp.Err(); err != nil {
			return fmt.Errorf("watch %s: %w", ix.keys.prefix, err)
		}
		changes := make([]change, 0, len(resp.Events))
		last := resp.Header.Revision
		if len(resp.Events) > 0 {
			last = resp.Events[len(resp.Events)-1].Kv.ModRevision
		}
		for _, ev := range resp.Events {
			if c, ok := decode(ix.keys, ev.Kv, ev.Type == clientv3.EventTypeDelete, ix.maxChunks, ix.log); ok {
				changes = append(changes, c)
			}
		}
		var gone []string
		var seen []*trackerv1.Node
		ix.mu.Lock()
		for _, c := range changes {
			if c.key.kind == kindNode {
				if c.del {
					gone = append(gone, c.key.id)
				} else {
					seen = append(seen, c.node)
				}
			}
			ix.st.apply(c)
		}
		ix.setRevLocked(last)
		ix.mu.Unlock()
		if len(gone) > 0 && ix.onNodesGone != nil {
			ix.onNodesGone(gone)
		}
		ix.sawNodes(seen)
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	return errors.New("watch closed")
}
