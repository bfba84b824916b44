package cacheserver

import (
	"context"
	"sync"
)

// housekeeping is the node's care of itself: its background work and
// shutdown (lifecycle), operators' commands (commands.go), and dropping
// chunks it may no longer serve: those without a manifest, those of
// unpublished files (unpublished.go).
type housekeeping struct {
	*base
	*known
	*lifecycle
	fetcher  *fetcher // prewarms fetch as misses do
	purges   *purgeLog
	prewarms prewarms
}

// dropOrphans deletes chunks whose manifest is gone: they can be neither
// announced (the chunk count is unknown) nor verified.
func (s *housekeeping) dropOrphans() {
	for _, root := range s.store.Roots() {
		if _, err := s.localManifest(root); err != nil {
			s.log.Warn("dropping chunks without a manifest", "root", root, "err", err)
			s.dropFile(root)
		}
	}
}

// lifecycle is the node's housekeeping of its own goroutines: upstream
// fetches and stores run in the background, outliving the request that
// started them (other requests may wait on them) but not the server.
type lifecycle struct {
	// life bounds background work; stop ends it.
	life context.Context
	stop context.CancelFunc
	// bg counts background work, so shutdown can wait for it; closed
	// refuses new work once shutdown began.
	bgMu   sync.Mutex
	bg     sync.WaitGroup
	closed bool
	puts   chan struct{} // semaphore of stores in progress
}

// start readies l, allowing stores stores in progress at once.
func (l *lifecycle) start(stores int) {
	l.puts = make(chan struct{}, stores)
	l.life, l.stop = context.WithCancel(context.Background())
}

// Close cancels upstream fetches and waits for background work to end;
// requests still being served then fail their misses. Run closes the
// server when it returns; Close is for a server that never ran.
func (s *Server) Close() { s.shutdown() }

// shutdown refuses new background work, cancels what runs and waits for
// it.
func (l *lifecycle) shutdown() {
	l.bgMu.Lock()
	l.closed = true
	l.bgMu.Unlock()
	l.stop()
	l.bg.Wait()
}

// background runs f in a goroutine Close waits for. It reports false, and
// does not run f, once Close has begun.
func (l *lifecycle) background(f func()) bool {
	l.bgMu.Lock()
	defer l.bgMu.Unlock()
	if l.closed {
		return false
	}
	l.bg.Go(f)
	return true
}
