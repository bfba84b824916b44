package main

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"math/rand/v2"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// A viewer behaves as a progressive-download player: it asks for the rest
// of a long file from a random point, starts playing once it holds
// startupBuffer of media, plays at bitrate, keeps at most maxBuffer ahead
// of the play head (a player stops reading when its buffer is full, so
// TCP flow control slows the server down), and counts a rebuffer each
// time the play head catches up with what it has downloaded.
const (
	bitrate       = 8e6 / 8 // 8 Mb/s in bytes per second
	startupBuffer = 4 * time.Second
	maxBuffer     = 30 * time.Second
	// viewerSources is how many loopback addresses the viewers come
	// from: real viewers are many hosts, and an edge may cap the
	// connections of one address.
	viewerSources = 64
)

// viewerTrial is the outcome of n viewers watching for a while.
type viewerTrial struct {
	Viewers   int
	Rebuffers int64 // stalls after playback started
	NoStart   int64 // viewers that never held the start-up buffer
	// Failed counts the server's failures: an answer other than 206, a
	// body cut short, a connection refused, reset or never accepted.
	Failed int64
	// LoadGen counts viewers the load generator itself could not run
	// (out of file descriptors or local ports, no buffer space): neither
	// a pass nor a server failure, so the search for capacity stops.
	LoadGen int64
	Bytes   int64
	CPU     map[string]float64 // CPU seconds per GiB, by process

	mu      sync.Mutex
	Reasons map[string]int64 // failures and load generator errors by kind
}

// ok is a trial every viewer watched without a stall.
func (t *viewerTrial) ok() bool {
	return t.Rebuffers == 0 && t.NoStart == 0 && t.Failed == 0 && t.LoadGen == 0
}

// fail counts a failure of one viewer: the server's, unless err is one of
// the load generator's own limits.
func (t *viewerTrial) fail(reason string, err error) {
	if loadGenLimit(err) {
		atomic.AddInt64(&t.LoadGen, 1)
		reason = "load generator: " + reason
	} else {
		atomic.AddInt64(&t.Failed, 1)
	}
	if err != nil {
		reason += ": " + errKind(err)
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.Reasons == nil {
		t.Reasons = map[string]int64{}
	}
	t.Reasons[reason]++
}

// reasons lists the trial's failures by kind, most frequent first.
func (t *viewerTrial) reasons() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	keys := slices.Collect(maps.Keys(t.Reasons))
	slices.SortFunc(keys, func(a, b string) int { return cmp.Or(cmp.Compare(t.Reasons[b], t.Reasons[a]), strings.Compare(a, b)) })
	var out []string
	for _, k := range keys {
		out = append(out, fmt.Sprintf("%d × %s", t.Reasons[k], k))
	}
	return strings.Join(out, "; ")
}

// loadGenLimit reports an error that is the load generator's own limit,
// not the server's doing: no file descriptor, no local port, no buffer
// space or memory for a socket on this side.
func loadGenLimit(err error) bool {
	for _, e := range []syscall.Errno{syscall.EMFILE, syscall.ENFILE, syscall.EADDRNOTAVAIL, syscall.ENOBUFS, syscall.ENOMEM} {
		if errors.Is(err, e) {
			return true
		}
	}
	return false
}

// errKind names an error without its addresses, so failures of one kind
// count together.
func errKind(err error) string {
	var errno syscall.Errno
	var op *net.OpError
	switch {
	case errors.As(err, &errno):
		if errors.As(err, &op) {
			return op.Op + ": " + errno.Error()
		}
		return errno.Error()
	case errors.Is(err, io.ErrUnexpectedEOF):
		return "unexpected EOF"
	case errors.As(err, &op) && op.Timeout():
		return op.Op + ": timeout"
	}
	return err.Error()
}

// watch plays one viewer for d: GET url with Range bytes=off-, read as a
// player does, and report what happened.
func watch(ctx context.Context, c *http.Client, url string, off int64, d time.Duration, tr *viewerTrial) {
	ctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, "GET", url, nil)
	if err != nil {
		tr.fail("request", err)
		return
	}
	req.Header.Set("Range", fmt.Sprintf("bytes=%d-", off))
	resp, err := c.Do(req)
	if err != nil {
		if ctx.Err() == nil {
			tr.fail("no answer", err)
		} else {
			atomic.AddInt64(&tr.NoStart, 1)
		}
		return
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusPartialContent {
		tr.fail(fmt.Sprintf("status %d", resp.StatusCode), nil)
		return
	}
	var (
		have     float64 // bytes downloaded
		played   float64 // bytes played when the clock last stopped
		playing  bool
		since    time.Time // when playback last (re)started
		buf      = make([]byte, 64<<10)
		startLen = bitrate * startupBuffer.Seconds()
		capLen   = bitrate * maxBuffer.Seconds()
	)
	head := func(now time.Time) float64 {
		if !playing {
			return played
		}
		return played + bitrate*now.Sub(since).Seconds()
	}
	started := false
	for {
		now := time.Now()
		if playing {
			if ahead := have - head(now); ahead >= capLen {
				// Buffer full: stop reading until playback makes room.
				wait := time.Duration((ahead - capLen + float64(len(buf))) / bitrate * float64(time.Second))
				select {
				case <-ctx.Done():
				case <-time.After(wait):
				}
			}
		}
		n, err := resp.Body.Read(buf)
		now = time.Now()
		if playing && head(now) > have {
			// The play head reached the end of what had arrived before
			// this read: a stall.
			atomic.AddInt64(&tr.Rebuffers, 1)
			played, playing = have, false
		}
		have += float64(n)
		atomic.AddInt64(&tr.Bytes, int64(n))
		if !playing && have-played >= startLen {
			playing, since, started = true, now, true
		}
		if err != nil {
			switch {
			case ctx.Err() != nil:
				if !started {
					atomic.AddInt64(&tr.NoStart, 1)
				}
			case errors.Is(err, io.EOF):
				// The file ended: a viewer that reached it watched fine.
			default:
				tr.fail("body cut", err)
			}
			return
		}
	}
}

// viewerClient is one HTTP client whose connections come from the given
// loopback source address.
func viewerClient(source string) *http.Client {
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(source)}, Timeout: 10 * time.Second}
	return &http.Client{Transport: &http.Transport{
		DialContext:         d.DialContext,
		DisableCompression:  true,
		MaxIdleConnsPerHost: 1024,
		ReadBufferSize:      64 << 10,
	}}
}

// runViewers starts n viewers against addr, spread evenly over ramp, each
// watching a random point of one of files for d, and waits for all.
func runViewers(ctx context.Context, addr string, files []wrkFile, n int, ramp, d time.Duration, pids map[string]int, tree bool) *viewerTrial {
	tr := &viewerTrial{Viewers: n}
	clients := make([]*http.Client, viewerSources)
	for i := range clients {
		clients[i] = viewerClient(fmt.Sprintf("127.0.3.%d", i+1))
	}
	defer func() {
		for _, c := range clients {
			c.CloseIdleConnections()
		}
	}()
	cpu := meterCPU(pids, tree)
	// Each viewer needs d of media after its offset, with a margin.
	need := int64(bitrate*(d+maxBuffer).Seconds()) + 1<<20
	rng := rand.New(rand.NewPCG(uint64(n), 7))
	var wg sync.WaitGroup
	for i := range n {
		f := files[i%len(files)]
		off := int64(0)
		if f.size > need {
			off = rng.Int64N(f.size - need)
		}
		delay := ramp * time.Duration(i) / time.Duration(n)
		c := clients[i%len(clients)]
		wg.Go(func() {
			select {
			case <-ctx.Done():
				return
			case <-time.After(delay):
			}
			watch(ctx, c, "http://"+addr+f.path, off, d, tr)
		})
	}
	wg.Wait()
	tr.CPU = cpu.perGiB(float64(tr.Bytes))
	return tr
}

// capacity finds the largest number of viewers a server carries with no
// rebuffer: doubling from start until a trial fails or limit is reached,
// then halving the gap twice. Every trial is bounded in time, and at most
// about a dozen run.
// onTrial, if not nil, is called as a trial of n viewers starts; the
// function it returns, when the trial ends.
func capacity(ctx context.Context, logf func(string, ...any), key, addr string, files []wrkFile, start, limit int, ramp, d time.Duration, pids map[string]int, tree bool, onTrial func(n int) func()) (best *viewerTrial, trials []*viewerTrial) {
	best = &viewerTrial{}
	try := func(n int) *viewerTrial {
		done := func() {}
		if onTrial != nil {
			done = onTrial(n)
		}
		t := runViewers(ctx, addr, files, n, ramp, d, pids, tree)
		done()
		logf("   viewers %s: %d viewers, %d rebuffers, %d never started, %d failed, %d load generator errors, %.0f MB/s, %.2f CPU s/GiB",
			key, n, t.Rebuffers, t.NoStart, t.Failed, t.LoadGen, float64(t.Bytes)/(ramp+d).Seconds()/1e6, sumCPU(t.CPU))
		if r := t.reasons(); r != "" {
			logf("   viewers %s: %d viewers: %s", key, n, r)
		}
		trials = append(trials, t)
		// Let closed connections drain before the next trial.
		time.Sleep(2 * time.Second)
		return t
	}
	lo, hi := 0, 0
	for n := start; n <= limit && ctx.Err() == nil; n *= 2 {
		t := try(n)
		if !t.ok() {
			hi = n
			break
		}
		lo, best = n, t
	}
	for range 2 {
		if hi == 0 || hi-lo <= max(1, lo/10) || ctx.Err() != nil {
			break
		}
		mid := (lo + hi) / 2
		if t := try(mid); t.ok() {
			lo, best = mid, t
		} else {
			hi = mid
		}
	}
	return best, trials
}

// viewers measures viewer capacity: the p2pd edge (separate services)
// against nginx proxy_cache+slice, both serving the working-set files
// already warmed through them.
func (b *bench) viewers(ctx context.Context) error {
	var files []wrkFile
	for _, name := range wsNames() {
		files = append(files, wrkFile{"/" + name, b.sizes[name]})
	}
	// At scale 1 a trial watches 30 s after a 5 s ramp; a quick run
	// watches less (but never less than the start-up buffer and a bit).
	d := max(8*time.Second, time.Duration(float64(30*time.Second)*min(1, b.cfg.scale*4)))
	ramp := 5 * time.Second
	start, limit := 50, b.cfg.maxViewers
	targets := []struct {
		key, name, addr string
		pids            map[string]int
		tree            bool
	}{
		{"nginx-slice", "nginx proxy_cache + slice (1 MiB), sendfile off", b.nginx.players, map[string]int{"nginx": b.nginx.proc.pid()}, true},
		{"p2pd-edge", "p2pd edge + cachenode (separate services)", b.svc.edgeAddr, map[string]int{"edge": b.svc.edge.pid(), "cachenode": b.svc.cache.pid()}, false},
	}
	b.res.Viewers = map[string]viewerResult{}
	for _, t := range targets {
		// Warm: the working set through the target, so capacity is that
		// of a warm cache, not of the origin.
		for _, f := range files {
			if _, err := b.fetchFull(ctx, t.addr, f.path[1:]); err != nil {
				return fmt.Errorf("%s: warm-up: %w", t.key, err)
			}
		}
		var onTrial func(int) func()
		if t.key == "p2pd-edge" {
			// Where the CPU goes at each size; the report keeps the
			// trial that decided the capacity.
			onTrial = func(n int) func() {
				return b.profileDuring(ctx, fmt.Sprintf("viewers-%d", n), int((ramp + d/2).Seconds()), map[string]string{
					"cachenode": b.svc.cacheOps, "edge": b.svc.eOps})
			}
		}
		best, trials := capacity(ctx, b.logf, t.key, t.addr, files, start, limit, ramp, d, t.pids, t.tree, onTrial)
		b.res.Viewers[t.key] = viewerResult{Name: t.name, Best: best, Trials: trials, Watch: d, Limit: limit}
		if onTrial != nil {
			b.keepViewerProfile(best, trials)
		}
	}
	return ctx.Err()
}

// viewerResult is one server's viewer capacity.
type viewerResult struct {
	Name   string
	Best   *viewerTrial // the largest trial with no rebuffer
	Trials []*viewerTrial
	Watch  time.Duration
	Limit  int
}

// keepViewerProfile keeps the profiles of the trial that decided the
// capacity, the first that failed or else the largest, as "viewers", and
// drops the other trials' (their files stay in the work directory).
func (b *bench) keepViewerProfile(best *viewerTrial, trials []*viewerTrial) {
	decisive := best
	for _, t := range trials {
		if !t.ok() {
			decisive = t
			break
		}
	}
	for _, t := range trials {
		key := fmt.Sprintf("viewers-%d", t.Viewers)
		if t == decisive && b.res.Profiles[key] != nil {
			b.res.Profiles["viewers"] = b.res.Profiles[key]
			b.res.ViewerProfileN = t.Viewers
		}
		delete(b.res.Profiles, key)
	}
}
