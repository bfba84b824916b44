package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"log/slog"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/p2pd/p2pd/internal/probereport"
)

// Config is what one run does.
type Config struct {
	Host       string
	Port       int
	Targets    []Target
	N, C       int
	Attempts   int
	Timeout    time.Duration
	Stall      time.Duration
	Rate       int64
	RangeStart int64
	RangeLen   int64
	Quiet      bool
}

// Target is one file to fetch and, when known, its expected SHA-256.
type Target struct {
	Path   string
	SHA256 string
}

// Report and AddrStats are cdnprobe's JSON report, shared with the tests
// that read it.
type (
	Report    = probereport.Report
	AddrStats = probereport.AddrStats
)

const maxErrors = 50

type prober struct {
	cfg    Config
	log    *slog.Logger
	client *http.Client
	next   atomic.Uint64 // round-robin cursor over the resolved addresses
	// lookup returns the addresses (host:port) to spread requests over.
	lookup func(ctx context.Context) ([]string, error)

	mu  sync.Mutex
	rep Report
	all map[string]bool
}

func newProber(cfg Config, log *slog.Logger) *prober {
	p := &prober{
		cfg: cfg,
		log: log,
		// Redirects are not followed: an edge answers content or an error.
		client: &http.Client{
			Transport:     newTransport(),
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		},
		rep: Report{PerAddr: map[string]*AddrStats{}, Statuses: map[string]int{}, Digests: map[string]string{}},
		all: map[string]bool{},
	}
	p.lookup = p.lookupDNS
	return p
}

// Run performs every download and returns the report.
func (p *prober) Run(ctx context.Context) *Report {
	start := time.Now()
	jobs := make(chan Target)
	var wg sync.WaitGroup
	for range p.cfg.C {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for t := range jobs {
				p.download(ctx, t)
			}
		}()
	}
	total := p.cfg.N * len(p.cfg.Targets)
feed:
	for i := range total {
		select {
		case jobs <- p.cfg.Targets[i%len(p.cfg.Targets)]:
		case <-ctx.Done():
			p.mu.Lock()
			p.rep.Failed += total - i
			p.rep.Downloads += total - i
			p.addError(fmt.Errorf("%d downloads not started: %w", total-i, ctx.Err()))
			p.mu.Unlock()
			break feed
		}
	}
	close(jobs)
	wg.Wait()
	p.mu.Lock()
	defer p.mu.Unlock()
	p.rep.Seconds = time.Since(start).Seconds()
	for a := range p.all {
		p.rep.Addresses = append(p.rep.Addresses, a)
	}
	slices.Sort(p.rep.Addresses)
	p.rep.OK = p.rep.Failed == 0 && p.rep.Completed == total
	return &p.rep
}

// resolve returns the addresses of the CDN name now, sorted, so that the
// round-robin cursor walks them in a stable order.
func (p *prober) resolve(ctx context.Context) ([]string, error) {
	addrs, err := p.lookup(ctx)
	if err != nil {
		return nil, err
	}
	slices.Sort(addrs)
	p.mu.Lock()
	for _, a := range addrs {
		p.all[a] = true
	}
	p.mu.Unlock()
	return addrs, nil
}

// lookupDNS asks the resolver (Docker's, in a container) for every
// address of the CDN name.
func (p *prober) lookupDNS(ctx context.Context) ([]string, error) {
	rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	ips, err := net.DefaultResolver.LookupHost(rctx, p.cfg.Host)
	if err != nil {
		return nil, fmt.Errorf("resolve %s: %w", p.cfg.Host, err)
	}
	addrs := make([]string, 0, len(ips))
	for _, ip := range ips {
		addrs = append(addrs, net.JoinHostPort(ip, strconv.Itoa(p.cfg.Port)))
	}
	return addrs, nil
}

// dl is the state of one download across its attempts.
type dl struct {
	t      Target
	h      hash.Hash
	got    int64  // bytes hashed so far
	want   int64  // total bytes expected, -1 until known
	etag   string // validator of the version being downloaded
	status int    // last HTTP status
}

// download fetches t until complete and verified or out of attempts.
// Each attempt resolves the name again (edges come and go) and takes the
// next address in turn; after a failure it resumes from the bytes it has.
func (p *prober) download(ctx context.Context, t Target) {
	d := &dl{t: t, h: sha256.New(), want: -1}
	var lastErr error
	retries := 0
	for attempt := 0; attempt < p.cfg.Attempts; attempt++ {
		if attempt > 0 {
			retries++
			// A short pause, growing, as a player's retry would.
			select {
			case <-time.After(time.Duration(min(attempt, 10)) * 100 * time.Millisecond):
			case <-ctx.Done():
			}
		}
		if ctx.Err() != nil {
			lastErr = fmt.Errorf("%s: %w (last error: %v)", t.Path, ctx.Err(), lastErr)
			break
		}
		addrs, err := p.resolve(ctx)
		if err != nil || len(addrs) == 0 {
			lastErr = fmt.Errorf("%s: %v (no address)", t.Path, err)
			continue
		}
		addr := addrs[p.next.Add(1)%uint64(len(addrs))]
		done, retry, err := p.attempt(ctx, d, addr)
		if done {
			p.finish(d, retries, nil)
			return
		}
		lastErr = fmt.Errorf("%s via %s: %w", t.Path, addr, err)
		p.log.Warn("attempt failed", "path", t.Path, "addr", addr, "got", d.got, "err", err)
		if !retry {
			break
		}
	}
	p.finish(d, retries, lastErr)
}

// attempt makes one request to addr. It reports whether the download is
// complete and verified, and when not, whether another attempt may help.
func (p *prober) attempt(ctx context.Context, d *dl, addr string) (done, retry bool, err error) {
	rctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	req, err := http.NewRequestWithContext(rctx, http.MethodGet, "http://"+addr+d.t.Path, nil)
	if err != nil {
		return false, false, err
	}
	req.Host = p.cfg.Host
	if p.cfg.Port != 80 {
		req.Host = net.JoinHostPort(p.cfg.Host, strconv.Itoa(p.cfg.Port))
	}
	from := p.cfg.RangeStart + d.got
	if from > 0 || p.cfg.RangeLen > 0 {
		r := fmt.Sprintf("bytes=%d-", from)
		if p.cfg.RangeLen > 0 {
			r += strconv.FormatInt(p.cfg.RangeStart+p.cfg.RangeLen-1, 10)
		}
		req.Header.Set("Range", r)
		if d.etag != "" {
			req.Header.Set("If-Range", d.etag)
		}
	}
	st := p.stats(addr)
	resp, err := p.client.Do(req)
	if err != nil {
		p.count(st, 0, false)
		return false, true, err
	}
	defer resp.Body.Close()
	d.status = resp.StatusCode
	switch {
	case resp.StatusCode == http.StatusOK && req.Header.Get("Range") == "":
	case resp.StatusCode == http.StatusOK:
		// If-Range failed (the file changed) or ranges are ignored: the
		// body is the whole file, so start the digest again.
		if p.cfg.RangeStart > 0 || p.cfg.RangeLen > 0 {
			p.count(st, 0, false)
			return false, false, errors.New("range request answered 200")
		}
		d.h.Reset()
		d.got = 0
	case resp.StatusCode == http.StatusPartialContent:
	case resp.StatusCode >= 500:
		p.count(st, 0, false)
		return false, true, fmt.Errorf("HTTP %s", resp.Status)
	default:
		p.count(st, 0, false)
		return false, false, fmt.Errorf("HTTP %s", resp.Status)
	}
	if et := resp.Header.Get("ETag"); et != "" && !strings.HasPrefix(et, "W/") {
		d.etag = et
	}
	if d.want < 0 && resp.ContentLength >= 0 {
		d.want = d.got + resp.ContentLength
	}
	n, longest, err := copyBody(rctx, d.h, resp.Body, p.cfg.Stall, p.cfg.Rate, func() { cancel(errStalled) })
	d.got += n
	p.stalled(longest)
	if err == nil && resp.ContentLength >= 0 && n != resp.ContentLength {
		err = fmt.Errorf("short body: %d of %d bytes", n, resp.ContentLength)
	}
	p.count(st, n, err == nil)
	if err != nil {
		return false, true, err
	}
	if d.want >= 0 && d.got != d.want {
		return false, true, fmt.Errorf("have %d of %d bytes", d.got, d.want)
	}
	return true, false, nil
}

func (p *prober) stalled(d time.Duration) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.rep.MaxStall = max(p.rep.MaxStall, d.Seconds())
}

func (p *prober) stats(addr string) *AddrStats {
	p.mu.Lock()
	defer p.mu.Unlock()
	st := p.rep.PerAddr[addr]
	if st == nil {
		st = &AddrStats{}
		p.rep.PerAddr[addr] = st
	}
	return st
}

func (p *prober) count(st *AddrStats, n int64, completed bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	st.Requests++
	st.Bytes += n
	p.rep.Bytes += n
	if completed {
		st.Completed++
	} else {
		st.Errors++
	}
}

// finish records a download's outcome and checks its digest.
func (p *prober) finish(d *dl, retries int, err error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.rep.Downloads++
	p.rep.Retries += retries
	status := "error"
	if d.status != 0 {
		status = strconv.Itoa(d.status)
	}
	p.rep.Statuses[status]++
	if err == nil {
		sum := hex.EncodeToString(d.h.Sum(nil))
		switch prev, seen := p.rep.Digests[d.t.Path]; {
		case d.t.SHA256 != "" && sum != d.t.SHA256:
			err = fmt.Errorf("%s: SHA-256 %s, want %s", d.t.Path, sum, d.t.SHA256)
		case seen && prev != sum:
			err = fmt.Errorf("%s: SHA-256 %s differs from an earlier download's %s", d.t.Path, sum, prev)
		default:
			p.rep.Digests[d.t.Path] = sum
		}
	}
	if err != nil {
		p.rep.Failed++
		p.addError(err)
		p.log.Error("download failed", "path", d.t.Path, "err", err)
		return
	}
	p.rep.Completed++
	p.log.Info("download complete", "path", d.t.Path, "bytes", d.got, "retries", retries)
}

// addError keeps the first errors; p.mu is held.
func (p *prober) addError(err error) {
	if len(p.rep.Errors) < maxErrors {
		p.rep.Errors = append(p.rep.Errors, err.Error())
	}
}
