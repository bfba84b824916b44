// Command p2pd-bench measures p2pd against nginx on this machine, in one
// run, and writes the results into docs/benchmarks.md (`make bench`).
//
// Everything runs on loopback addresses 127.0.0.x: p2pd as separate
// services (tracker, origin, cachenode, edge), p2pd as the single binary
// (a server and eight caches), and one nginx holding an origin, a plain
// disk server and eight independent proxy_cache+slice caches. The
// measures:
//
//   - random 1 MiB Range requests (wrk, 50 connections) over a working
//     set four times the memory caches on the path, and over one hot file
//     that fits them: the p2pd edge and a single p2pd cache node vs nginx
//     from disk and nginx proxy_cache+slice, with peak RSS, CPU seconds
//     per GiB and CPU profiles;
//   - viewer capacity: the most 8 Mb/s player-like viewers the edge
//     carries with no rebuffer, vs nginx proxy_cache+slice;
//   - one sequential download of a 512 MiB file, cold and hot, in MB/s
//     and CPU seconds per GiB;
//   - the time to first and last byte of a cold 256 MiB file, next to the
//     time to fetch and verify one chunk;
//   - origin egress when 32 viewers on 8 caches start the same cold
//     256 MiB file.
//
// nginx and wrk are installed from Debian when missing. -scale shrinks
// every file for a quick run.
package main

import (
	"context"
	"crypto/sha256"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	sppv1 "github.com/p2pd/p2pd/gen/spp/v1"
	"github.com/p2pd/p2pd/internal/manifest"
	"github.com/p2pd/p2pd/internal/service"
	"github.com/p2pd/p2pd/internal/spp"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
)

type config struct {
	scale       float64
	duration    time.Duration
	conns       int
	rounds      int
	out         string
	work        string
	keep        bool
	skipInstall bool
	only        string
	maxViewers  int
}

func main() {
	var cfg config
	flag.Float64Var(&cfg.scale, "scale", 1, "scale every file size by this factor (0.1 for a quick run)")
	flag.DurationVar(&cfg.duration, "duration", 10*time.Second, "length of each wrk run")
	flag.IntVar(&cfg.conns, "conns", 50, "wrk connections")
	flag.IntVar(&cfg.rounds, "rounds", 2, "wrk runs per target (the best counts: the machine may be shared)")
	flag.StringVar(&cfg.out, "out", "docs/benchmarks.md", "markdown file whose results section is rewritten (empty: print only)")
	flag.StringVar(&cfg.work, "work", "", "working directory (default: a new temporary one, removed afterwards)")
	flag.BoolVar(&cfg.keep, "keep", false, "keep the working directory")
	flag.BoolVar(&cfg.skipInstall, "no-install", false, "do not apt-get install nginx and wrk when missing")
	flag.StringVar(&cfg.only, "only", "", "run only these measures, comma-separated: hot, ws, viewers, sequential, cold, offload (numbers in the log, no report)")
	flag.IntVar(&cfg.maxViewers, "max-viewers", 3200, "the most viewers a capacity trial starts")
	flag.Parse()
	if err := run(cfg); err != nil {
		fmt.Fprintln(os.Stderr, "p2pd-bench:", err)
		os.Exit(1)
	}
}

// sizes of the files, at scale 1.
const (
	hotSize   = 256 << 20
	bigSize   = 512 << 20
	coldSize  = 256 << 20
	swarmSize = 256 << 20
	probeSize = 4 << 20
	probes    = 5
	chunkSize = manifest.DefaultChunkSize
	// The working set: wsFiles files of wsSize, 2 GiB at scale 1, four
	// times the memory caches of the edge and the cachenode together
	// (memCache each, scaled with the files).
	wsSize   = 512 << 20
	wsFiles  = 4
	memCache = 256 << 20
)

// wsNames are the working set's files.
func wsNames() []string {
	var names []string
	for i := range wsFiles {
		names = append(names, fmt.Sprintf("ws%d.bin", i))
	}
	return names
}

// memoryCache is the --memory-cache every p2pd node gets: 256 MiB at
// scale 1, scaled with the files so the working set stays four times the
// memory caches in a quick run.
func (b *bench) memoryCache() string {
	return strconv.FormatInt(max(4*chunkSize, int64(float64(memCache)*b.cfg.scale)), 10)
}

type bench struct {
	cfg   config
	root  string
	work  string
	bin   string
	media string
	ps    *procs
	log   io.Writer

	sizes map[string]int64
	sums  map[string][32]byte

	svc   *services
	p2p   *swarm
	nginx *nginx
	res   results
}

func run(cfg config) error {
	b := &bench{cfg: cfg, log: os.Stderr, sizes: map[string]int64{}, sums: map[string][32]byte{}}
	if err := b.setup(); err != nil {
		return err
	}
	defer b.teardown()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	b.res.Machine = machine()
	b.res.LoadBefore = loadavg()
	b.res.Scale = cfg.scale
	b.res.Sizes = b.sizes
	steps := []struct {
		name string
		f    func(context.Context) error
	}{
		{"start p2pd and nginx", b.start},
		{"hot random ranges", b.hot},
		{"ws working set larger than memory", b.workingSet},
		{"viewers capacity", b.viewers},
		{"sequential download", b.sequential},
		{"cold miss", b.cold},
		{"offload of the origin", b.offload},
	}
	for i, s := range steps {
		if i > 0 && cfg.only != "" && !slices.Contains(strings.Split(cfg.only, ","), strings.Fields(s.name)[0]) {
			continue
		}
		b.logf("== %s", s.name)
		start := time.Now()
		if err := s.f(ctx); err != nil {
			return fmt.Errorf("%s: %w", s.name, err)
		}
		b.logf("   %s done in %v", s.name, time.Since(start).Round(time.Second))
	}
	b.res.LoadAfter = loadavg()
	if cfg.only != "" {
		return nil // a partial run: the log has the numbers
	}
	report := b.res.markdown()
	fmt.Println(report)
	if cfg.out != "" {
		path := cfg.out
		if !filepath.IsAbs(path) {
			path = filepath.Join(b.root, path)
		}
		if err := writeResults(path, report); err != nil {
			return err
		}
		b.logf("results written to %s", path)
	}
	return nil
}

func (b *bench) logf(format string, args ...any) {
	fmt.Fprintf(b.log, format+"\n", args...)
}

// setup installs the tools, builds the binaries and writes the media.
func (b *bench) setup() error {
	out, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil || strings.TrimSpace(string(out)) == "" || strings.TrimSpace(string(out)) == os.DevNull {
		return errors.New("run from inside the p2pd module (make bench)")
	}
	b.root = filepath.Dir(strings.TrimSpace(string(out)))
	if err := ensureTools(b.cfg.skipInstall, b.log); err != nil {
		return err
	}
	b.work = b.cfg.work
	if b.work == "" {
		if b.work, err = os.MkdirTemp("", "p2pd-bench-"); err != nil {
			return err
		}
	}
	b.bin = filepath.Join(b.work, "bin")
	b.media = filepath.Join(b.work, "media")
	logs := filepath.Join(b.work, "logs")
	for _, d := range []string{b.bin, b.media, logs} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return err
		}
	}
	b.ps = &procs{dir: logs}
	b.logf("building binaries into %s", b.bin)
	build := exec.Command("go", "build", "-trimpath", "-o", b.bin+string(os.PathSeparator),
		"./cmd/p2pd", "./services/tracker", "./services/origin", "./services/cachenode", "./services/edge")
	build.Dir = b.root
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		return fmt.Errorf("build: %v\n%s", err, out)
	}
	files := map[string]int64{"hot.bin": hotSize, "big.bin": bigSize, "cold.bin": coldSize, "swarm.bin": swarmSize}
	for i := range 4 * probes {
		files[fmt.Sprintf("probe%d.bin", i)] = probeSize
	}
	for _, name := range wsNames() {
		files[name] = wsSize
	}
	for name, size := range files {
		size = max(4*chunkSize, int64(float64(size)*b.cfg.scale))
		if strings.HasPrefix(name, "probe") {
			size = probeSize // one chunk's cost does not scale
		}
		sum, err := writeRandom(filepath.Join(b.media, name), size, name)
		if err != nil {
			return err
		}
		b.sizes[name], b.sums[name] = size, sum
	}
	b.logf("media written: %v", b.sizes)
	return nil
}

func (b *bench) teardown() {
	b.ps.stopAll()
	if !b.cfg.keep && b.cfg.work == "" {
		os.RemoveAll(b.work)
	} else {
		b.logf("working directory kept: %s", b.work)
	}
}

// ensureTools installs nginx and wrk from Debian when missing.
func ensureTools(skip bool, log io.Writer) error {
	var missing []string
	for _, t := range []string{"nginx", "wrk"} {
		if _, err := exec.LookPath(t); err != nil {
			missing = append(missing, t)
		}
	}
	if len(missing) == 0 {
		return nil
	}
	if skip {
		return fmt.Errorf("%v not installed (and -no-install given)", missing)
	}
	fmt.Fprintf(log, "installing %v from Debian\n", missing)
	install := func() error {
		cmd := exec.Command("apt-get", append([]string{"install", "-y", "--no-install-recommends"}, missing...)...)
		cmd.Env = append(os.Environ(), "DEBIAN_FRONTEND=noninteractive")
		cmd.Stdout, cmd.Stderr = log, log
		return cmd.Run()
	}
	if install() == nil {
		return nil
	}
	update := exec.Command("apt-get", "update")
	update.Stdout, update.Stderr = log, log
	if err := update.Run(); err != nil {
		return fmt.Errorf("apt-get update: %w", err)
	}
	if err := install(); err != nil {
		return fmt.Errorf("apt-get install %v: %w", missing, err)
	}
	return nil
}

// writeRandom writes size pseudo-random bytes (seeded by name) to path and
// returns their SHA-256.
func writeRandom(path string, size int64, name string) ([32]byte, error) {
	var seed [32]byte
	copy(seed[:], name)
	rng := rand.NewChaCha8(seed)
	f, err := os.Create(path)
	if err != nil {
		return [32]byte{}, err
	}
	defer f.Close()
	h := sha256.New()
	buf := make([]byte, 1<<20)
	for left := size; left > 0; {
		n := int(min(left, int64(len(buf))))
		rng.Read(buf[:n])
		h.Write(buf[:n])
		if _, err := f.Write(buf[:n]); err != nil {
			return [32]byte{}, err
		}
		left -= int64(n)
	}
	var sum [32]byte
	copy(sum[:], h.Sum(nil))
	return sum, f.Close()
}

// services is p2pd as four separate services.
type services struct {
	tracker, origin, cache, edge          *proc
	edgeAddr, cacheAddr, originAddr       string
	trackerOps, originOps, cacheOps, eOps string
}

// swarm is p2pd as the single binary: a server and caches.
type swarm struct {
	server    *proc
	serverOps string
	port      string
	caches    []*proc
	cacheHTTP []string // host:port
	cacheOps  []string
}

const caches = 8

func (b *bench) start(ctx context.Context) error {
	var err error
	start := time.Now()
	if b.svc, err = b.startServices(); err != nil {
		return err
	}
	b.logf("   p2pd services ready in %v", time.Since(start).Round(time.Millisecond))
	start = time.Now()
	if b.p2p, err = b.startSwarm(); err != nil {
		return err
	}
	b.logf("   p2pd single-binary swarm ready in %v", time.Since(start).Round(time.Millisecond))
	hosts := []string{"127.0.0.90", "127.0.0.91", "127.0.0.89"}
	for i := range caches {
		hosts = append(hosts, fmt.Sprintf("127.0.0.%d", 92+i))
	}
	b.nginx, err = startNginx(b.ps, filepath.Join(b.work, "nginx"), b.media, hosts)
	return err
}

func (b *bench) startServices() (*services, error) {
	s := &services{}
	addr := func(host string) string {
		port, err := freePort(host)
		if err != nil {
			panic(err)
		}
		return net.JoinHostPort(host, port)
	}
	quiet := []string{"--log-level", "warn"}
	mem := append(slices.Clone(quiet), "--memory-cache", b.memoryCache())
	// The trackers let only the origin credential's holder publish
	// (docs/security.md): the tracker and the origin share one.
	originToken := filepath.Join(b.work, "origin-token")
	if err := os.WriteFile(originToken, []byte(strconv.FormatInt(time.Now().UnixNano(), 36)+"-bench-origin\n"), 0o600); err != nil {
		return nil, err
	}
	trackerAddr := addr("127.0.0.70")
	s.trackerOps = addr("127.0.0.70")
	var err error
	s.tracker, err = b.ps.start("tracker", filepath.Join(b.bin, "tracker"), append([]string{"--listen", trackerAddr,
		"--embedded-etcd", filepath.Join(b.work, "etcd"), "--etcd-client-addr", addr("127.0.0.70"),
		"--etcd-peer-addr", addr("127.0.0.70"), "--ops", s.trackerOps, "--origin-token-file", originToken}, quiet...)...)
	if err != nil {
		return nil, err
	}
	if err := waitHTTP("http://"+s.trackerOps+"/readyz", 200, time.Minute, s.tracker); err != nil {
		return nil, err
	}
	s.originAddr, s.originOps = addr("127.0.0.71"), addr("127.0.0.71")
	if s.origin, err = b.ps.start("origin", filepath.Join(b.bin, "origin"), append([]string{"--listen", s.originAddr,
		"--tracker", trackerAddr, "--media-dir", b.media, "--ops", s.originOps, "--origin-token-file", originToken}, quiet...)...); err != nil {
		return nil, err
	}
	s.cacheAddr, s.cacheOps = addr("127.0.0.72"), addr("127.0.0.72")
	if s.cache, err = b.ps.start("cachenode", filepath.Join(b.bin, "cachenode"), append([]string{"--listen", s.cacheAddr,
		"--tracker", trackerAddr, "--cache-dir", filepath.Join(b.work, "cachenode"), "--ops", s.cacheOps}, mem...)...); err != nil {
		return nil, err
	}
	s.edgeAddr, s.eOps = addr("127.0.0.73"), addr("127.0.0.73")
	if s.edge, err = b.ps.start("edge", filepath.Join(b.bin, "edge"), append([]string{"--listen", s.edgeAddr,
		"--tracker", trackerAddr, "--ops", s.eOps}, mem...)...); err != nil {
		return nil, err
	}
	for _, p := range []struct {
		p   *proc
		ops string
	}{{s.origin, s.originOps}, {s.cache, s.cacheOps}, {s.edge, s.eOps}} {
		if err := waitHTTP("http://"+p.ops+"/readyz", 200, time.Minute, p.p); err != nil {
			return nil, err
		}
	}
	// Publishing hashes every file first.
	for name := range b.sizes {
		if err := waitHTTP("http://"+s.edgeAddr+"/"+name, 200, 2*time.Minute, s.origin); err != nil {
			return nil, err
		}
	}
	return s, nil
}

func (b *bench) startSwarm() (*swarm, error) {
	hosts := []string{"127.0.0.80"}
	for i := range caches {
		hosts = append(hosts, fmt.Sprintf("127.0.0.%d", 81+i))
	}
	port, err := samePort(nil, hosts...)
	if err != nil {
		return nil, err
	}
	w := &swarm{port: port}
	opsPort, err := samePort([]string{port}, hosts...)
	if err != nil {
		return nil, err
	}
	w.serverOps = net.JoinHostPort(hosts[0], opsPort)
	w.server, err = b.ps.start("p2pd-server", filepath.Join(b.bin, "p2pd"), "-i", "-p", b.media, "-P", port, "-B", hosts[0],
		"--ops", w.serverOps, "--etcd-dir", filepath.Join(b.work, "p2pd-etcd"), "--log-level", "warn", "--memory-cache", b.memoryCache())
	if err != nil {
		return nil, err
	}
	if err := waitHTTP("http://"+w.serverOps+"/readyz", 200, time.Minute, w.server); err != nil {
		return nil, err
	}
	server := net.JoinHostPort(hosts[0], port)
	for name := range b.sizes {
		if err := waitHTTP("http://"+server+"/"+name, 200, 2*time.Minute, w.server); err != nil {
			return nil, err
		}
	}
	for i, h := range hosts[1:] {
		ops := net.JoinHostPort(h, opsPort)
		p, err := b.ps.start(fmt.Sprintf("p2pd-cache%d", i+1), filepath.Join(b.bin, "p2pd"), "-c", filepath.Join(b.work, fmt.Sprintf("p2pd-cache%d", i+1)),
			"-n", "-N", "-S", server, "-P", port, "-B", h, "--ops", ops, "--log-level", "warn", "--memory-cache", b.memoryCache())
		if err != nil {
			return nil, err
		}
		w.caches = append(w.caches, p)
		w.cacheOps = append(w.cacheOps, ops)
		w.cacheHTTP = append(w.cacheHTTP, net.JoinHostPort(h, port))
	}
	for i, p := range w.caches {
		if err := waitHTTP("http://"+w.cacheOps[i]+"/readyz", 200, time.Minute, p); err != nil {
			return nil, err
		}
	}
	deadline := time.Now().Add(time.Minute)
	for {
		n, err := opsMetric(w.serverOps, "p2pd_tracker_nodes")
		if err == nil && n == caches+1 {
			break
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("tracker sees %v nodes, want %d: %v", n, caches+1, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	return w, nil
}

// fetchFull downloads name from addr and checks its bytes.
func (b *bench) fetchFull(ctx context.Context, addr, name string) (download, error) {
	d, err := get(ctx, "http://"+addr+"/"+name, "", true)
	if err != nil {
		return d, err
	}
	if d.Sum != b.sums[name] || d.Bytes != b.sizes[name] {
		return d, fmt.Errorf("%s from %s: %d bytes, wrong content", name, addr, d.Bytes)
	}
	return d, nil
}

// hotTarget is one server under the hot test.
type hotTarget struct {
	key, name string
	addr      string
	rss       map[string]int // process name -> pid
	tree      bool           // count children (nginx workers)
	profile   map[string]string
	bins      map[string]string
}

// wrkTargets are the four servers every range measure compares.
func (b *bench) wrkTargets() []hotTarget {
	return []hotTarget{
		{key: "nginx-disk", name: "nginx, file on local disk", addr: b.nginx.disk,
			rss: map[string]int{"nginx": b.nginx.proc.pid()}, tree: true},
		{key: "nginx-slice", name: "nginx proxy_cache + slice (1 MiB)", addr: b.nginx.caches[0],
			rss: map[string]int{"nginx": b.nginx.proc.pid()}, tree: true},
		{key: "p2pd-edge", name: "p2pd edge + cachenode (separate services)", addr: b.svc.edgeAddr,
			rss:     map[string]int{"edge": b.svc.edge.pid(), "cachenode": b.svc.cache.pid()},
			profile: map[string]string{"edge": b.svc.eOps, "cachenode": b.svc.cacheOps},
			bins:    map[string]string{"edge": filepath.Join(b.bin, "edge"), "cachenode": filepath.Join(b.bin, "cachenode")}},
		{key: "p2pd-single", name: "p2pd single binary, one cache node", addr: b.p2p.cacheHTTP[0],
			rss:     map[string]int{"p2pd cache": b.p2p.caches[0].pid()},
			profile: map[string]string{"p2pd cache": b.p2p.cacheOps[0]},
			bins:    map[string]string{"p2pd cache": filepath.Join(b.bin, "p2pd")}},
	}
}

// hot measures random 1 MiB ranges of one file that fits every memory
// cache.
func (b *bench) hot(ctx context.Context) error {
	const name = "hot.bin"
	var err error
	b.res.Hot, b.res.HotOrder, err = b.ranges(ctx, "hot", []string{name}, 2)
	return err
}

// workingSet measures random 1 MiB ranges over files that together are
// at least four times every memory cache on the path: most requests are
// served from a node's disk (and the kernel's page cache), as on a node
// whose catalogue is larger than its memory.
func (b *bench) workingSet(ctx context.Context) error {
	var err error
	b.res.WS, b.res.WSOrder, err = b.ranges(ctx, "ws", wsNames(), 1)
	return err
}

// ranges warms files through every target (warm full reads each), then
// runs wrk rounds of random 1 MiB ranges over them, with peak RSS, CPU
// per GiB and, in the first round, CPU profiles of the p2pd processes.
func (b *bench) ranges(ctx context.Context, measure string, names []string, warm int) (map[string]hotResult, []string, error) {
	targets := b.wrkTargets()
	var files []wrkFile
	for _, name := range names {
		files = append(files, wrkFile{"/" + name, b.sizes[name]})
	}
	for _, t := range targets {
		// Warm: every file through the target (a second read also checks
		// the hot path's bytes).
		for range warm {
			for _, name := range names {
				if _, err := b.fetchFull(ctx, t.addr, name); err != nil {
					return nil, nil, fmt.Errorf("%s: warm-up: %w", t.key, err)
				}
			}
		}
	}
	res := map[string]hotResult{}
	var order []string
	profDir := filepath.Join(b.work, "profiles")
	os.MkdirAll(profDir, 0o755)
	for round := range b.cfg.rounds {
		for _, t := range targets {
			b.logf("   wrk %s %s (round %d)", measure, t.key, round+1)
			sampler := sampleRSS(t.rss, t.tree)
			cpu := meterCPU(t.rss, t.tree)
			var wg sync.WaitGroup
			profs := map[string]string{}
			if round == 0 && len(t.profile) > 0 {
				secs := max(1, min(5, int(b.cfg.duration.Seconds())-2))
				for pname, ops := range t.profile {
					path := filepath.Join(profDir, strings.ReplaceAll(measure+"-"+t.key+"-"+pname, " ", "_")+".pprof")
					profs[pname] = path
					wg.Go(func() {
						time.Sleep(time.Second)
						if err := profile(ctx, ops, secs, path); err != nil {
							b.logf("   profile %s: %v", pname, err)
						}
					})
				}
			}
			r, err := runWrk(b.work, t.addr, files, 1<<20, b.cfg.conns, 2, b.cfg.duration)
			wg.Wait()
			peak := sampler.end()
			if err != nil {
				return nil, nil, fmt.Errorf("%s: %w", t.key, err)
			}
			perGiB := cpu.perGiB(float64(r.Requests) * (1 << 20))
			b.logf("   %s: %.0f req/s, %.0f MB/s, p50 %v, p99 %v, %d errors, %.2f CPU s/GiB", t.key, r.ReqPerSec, r.MBPerSec, r.P50, r.P99, r.Errors, sumCPU(perGiB))
			if r.Errors > 0 {
				// What wrk counted: answers other than 2xx, or sockets
				// it saw fail (connect, read, write, its 30 s timeout).
				for _, l := range strings.Split(r.RawSummary, "\n") {
					if strings.Contains(l, "Socket errors") || strings.Contains(l, "Non-2xx") {
						b.logf("   %s: wrk: %s", t.key, strings.TrimSpace(l))
					}
				}
			}
			prev, seen := res[t.key]
			if !seen {
				order = append(order, t.key)
			}
			hr := hotResult{Name: t.name, Wrk: r, RSS: peak, CPU: perGiB, Runs: append(prev.Runs, r.ReqPerSec), Profiles: prev.Profiles}
			if seen && prev.Wrk.ReqPerSec >= r.ReqPerSec {
				hr.Wrk, hr.CPU = prev.Wrk, prev.CPU
			}
			if seen {
				for k, v := range prev.RSS {
					hr.RSS[k] = max(hr.RSS[k], v)
				}
			}
			for pname, path := range profs {
				if hr.Profiles == nil {
					hr.Profiles = map[string]string{}
				}
				hr.Profiles[pname] = pprofTop(t.bins[pname], path, 14)
			}
			res[t.key] = hr
		}
	}
	return res, order, nil
}

func (b *bench) sequential(ctx context.Context) error {
	const name = "big.bin"
	nginx := map[string]int{"nginx": b.nginx.proc.pid()}
	targets := []struct {
		key, addr string
		pids      map[string]int
		tree      bool
	}{
		{"nginx-disk", b.nginx.disk, nginx, true},
		{"nginx-slice", b.nginx.caches[0], nginx, true},
		{"p2pd-edge", b.svc.edgeAddr, map[string]int{"edge": b.svc.edge.pid(), "cachenode": b.svc.cache.pid(), "origin": b.svc.origin.pid()}, false},
		{"p2pd-single", b.p2p.cacheHTTP[0], map[string]int{"cache": b.p2p.caches[0].pid(), "server": b.p2p.server.pid()}, false},
	}
	b.res.Seq = map[string][2]float64{}
	b.res.SeqCPU = map[string][2]float64{}
	for _, t := range targets {
		var rates, cpu [2]float64
		for pass := range 2 {
			if pass == 0 {
				// A cold pass writes the file to the cache's disk. Start
				// each on a disk with nothing left to write back from the
				// target before it, which would slow it (and a cache that
				// syncs its writes most) for another's sake.
				syscall.Sync()
			}
			meter := meterCPU(t.pids, t.tree)
			var stop func()
			if t.key == "p2pd-edge" && pass == 1 {
				// Where the time of a hot sequential read goes.
				stop = b.profileDuring(ctx, "sequential", 2, map[string]string{
					"cachenode": b.svc.cacheOps, "edge": b.svc.eOps})
			}
			if t.key == "p2pd-single" && pass == 0 {
				// And of a cold one through a cache node of the swarm.
				stop = b.profileDuring(ctx, "cold-single", 2, map[string]string{
					"p2pd cache": b.p2p.cacheOps[0], "p2pd server": b.p2p.serverOps})
			}
			d, err := b.fetchFull(ctx, t.addr, name)
			if stop != nil {
				stop()
			}
			if err != nil {
				return fmt.Errorf("%s: %w", t.key, err)
			}
			rates[pass] = d.MBps()
			cpu[pass] = sumCPU(meter.perGiB(float64(d.Bytes)))
			b.logf("   %s pass %d: %.0f MB/s, %.2f CPU s/GiB", t.key, pass+1, d.MBps(), cpu[pass])
		}
		b.res.Seq[t.key] = rates
		b.res.SeqCPU[t.key] = cpu
	}
	return nil
}

func (b *bench) cold(ctx context.Context) error {
	const name = "cold.bin"
	// The cost of one chunk, fetched and verified straight from the origin
	// over SPP: what a cold first byte cannot beat without sending
	// unverified bytes.
	pool := spp.NewPool(append(service.GRPCDialOptions(), grpc.WithTransportCredentials(insecure.NewCredentials()))...)
	defer pool.Close()
	c, err := pool.Client(b.svc.originAddr)
	if err != nil {
		return err
	}
	var direct, p2pdOne, nginxOne []time.Duration
	for i := range probes {
		pname := fmt.Sprintf("probe%d.bin", i)
		resp, err := c.GetManifest(ctx, &sppv1.GetManifestRequest{File: &sppv1.GetManifestRequest_Name{Name: pname}})
		if err != nil {
			return err
		}
		m, err := manifest.FromProto(resp.Manifest)
		if err != nil {
			return err
		}
		start := time.Now()
		r, err := spp.Open(ctx, c, m, &sppv1.FetchRequest{Root: m.Root[:], Chunks: []uint32{0}}, 10*time.Second)
		if err != nil {
			return err
		}
		_, _, err = r.Next(nil)
		r.Close()
		if err != nil {
			return err
		}
		direct = append(direct, time.Since(start))
		// One chunk, cold, through the p2pd edge: manifest, locate,
		// cachenode miss, origin, verified twice.
		d, err := get(ctx, "http://"+b.svc.edgeAddr+"/"+pname, fmt.Sprintf("bytes=0-%d", chunkSize-1), false)
		if err != nil {
			return err
		}
		p2pdOne = append(p2pdOne, d.TTLB)
		d, err = get(ctx, "http://"+b.nginx.caches[0]+"/"+fmt.Sprintf("probe%d.bin", probes+i), fmt.Sprintf("bytes=0-%d", chunkSize-1), false)
		if err != nil {
			return err
		}
		nginxOne = append(nginxOne, d.TTLB)
		// The first byte of whole cold files: one sample is noise.
		d, err = b.fetchFull(ctx, b.svc.edgeAddr, fmt.Sprintf("probe%d.bin", 2*probes+i))
		if err != nil {
			return err
		}
		b.res.TTFBP2PD = append(b.res.TTFBP2PD, d.TTFB)
		d, err = b.fetchFull(ctx, b.nginx.caches[0], fmt.Sprintf("probe%d.bin", 3*probes+i))
		if err != nil {
			return err
		}
		b.res.TTFBNginx = append(b.res.TTFBNginx, d.TTFB)
	}
	b.res.ChunkDirect, b.res.ChunkP2PD, b.res.ChunkNginx = median(direct), median(p2pdOne), median(nginxOne)

	syscall.Sync() // as before every cold pass (see sequential)
	stop := b.profileDuring(ctx, "cold", 1, map[string]string{
		"origin": b.svc.originOps, "cachenode": b.svc.cacheOps, "edge": b.svc.eOps})
	p, err := b.fetchFull(ctx, b.svc.edgeAddr, name)
	stop()
	if err != nil {
		return fmt.Errorf("p2pd: %w", err)
	}
	syscall.Sync()
	n, err := b.fetchFull(ctx, b.nginx.caches[0], name)
	if err != nil {
		return fmt.Errorf("nginx: %w", err)
	}
	b.res.ColdP2PD, b.res.ColdNginx = p, n
	b.res.TTFBP2PD = append(b.res.TTFBP2PD, p.TTFB)
	b.res.TTFBNginx = append(b.res.TTFBNginx, n.TTFB)
	b.logf("   p2pd TTFB %v TTLB %v; nginx TTFB %v TTLB %v; one chunk: direct %v, p2pd %v, nginx %v",
		p.TTFB, p.TTLB, n.TTFB, n.TTLB, b.res.ChunkDirect, b.res.ChunkP2PD, b.res.ChunkNginx)
	return nil
}

// profileDuring takes CPU profiles of the services at ops (by name) for
// seconds, starting now; the returned function waits for them and files
// their tops under measure in the results.
func (b *bench) profileDuring(ctx context.Context, measure string, seconds int, ops map[string]string) func() {
	dir := filepath.Join(b.work, "profiles")
	os.MkdirAll(dir, 0o755)
	bins := map[string]string{"origin": "origin", "cachenode": "cachenode", "edge": "edge", "p2pd cache": "p2pd", "p2pd server": "p2pd"}
	var wg sync.WaitGroup
	paths := map[string]string{}
	for name, addr := range ops {
		path := filepath.Join(dir, strings.ReplaceAll(measure+"-"+name, " ", "_")+".pprof")
		paths[name] = path
		wg.Go(func() {
			if err := profile(ctx, addr, seconds, path); err != nil {
				b.logf("   profile %s: %v", name, err)
			}
		})
	}
	return func() {
		wg.Wait()
		if b.res.Profiles == nil {
			b.res.Profiles = map[string]map[string]string{}
		}
		b.res.Profiles[measure] = map[string]string{}
		for name, path := range paths {
			b.res.Profiles[measure][name] = pprofTop(filepath.Join(b.bin, bins[name]), path, 12)
		}
	}
}

func median(ds []time.Duration) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[len(s)/2]
}

// offload starts 4 viewers per cache on the same cold file at once.
func (b *bench) offload(ctx context.Context) error {
	const name, viewers = "swarm.bin", 4
	rush := func(addrs []string) (time.Duration, error) {
		var wg sync.WaitGroup
		errs := make(chan error, len(addrs)*viewers)
		start := time.Now()
		for _, a := range addrs {
			for range viewers {
				wg.Go(func() {
					if _, err := b.fetchFull(ctx, a, name); err != nil {
						errs <- err
					}
				})
			}
		}
		wg.Wait()
		close(errs)
		return time.Since(start), <-errs
	}
	before, err := opsMetric(b.p2p.serverOps, "p2pd_origin_egress_bytes_total")
	if err != nil {
		return err
	}
	took, err := rush(b.p2p.cacheHTTP)
	if err != nil {
		return fmt.Errorf("p2pd: %w", err)
	}
	after, err := opsMetric(b.p2p.serverOps, "p2pd_origin_egress_bytes_total")
	if err != nil {
		return err
	}
	b.res.OffloadP2PD = offloadResult{Egress: after - before, Took: took}
	var peer float64
	for _, ops := range b.p2p.cacheOps {
		v, _ := opsMetric(ops, "p2pd_cachenode_fetched_bytes_total")
		peer += v
	}
	b.res.OffloadP2PD.Fetched = peer

	nb, err := b.nginx.originBytes()
	if err != nil {
		return err
	}
	took, err = rush(b.nginx.caches)
	if err != nil {
		return fmt.Errorf("nginx: %w", err)
	}
	na, err := b.nginx.originBytes()
	if err != nil {
		return err
	}
	b.res.OffloadNginx = offloadResult{Egress: float64(na - nb), Took: took}
	b.logf("   origin egress: p2pd %s in %v, nginx %s in %v", fmtBytes(b.res.OffloadP2PD.Egress), b.res.OffloadP2PD.Took.Round(time.Millisecond),
		fmtBytes(b.res.OffloadNginx.Egress), b.res.OffloadNginx.Took.Round(time.Millisecond))
	return nil
}

// machine describes where the numbers come from.
func machine() map[string]string {
	m := map[string]string{"nproc": strconv.Itoa(runtime.NumCPU()), "go": runtime.Version()}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(l, "model name"); ok {
				m["cpu"] = strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(v), ":"))
				break
			}
		}
	}
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(l, "MemTotal:"); ok {
				kb, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
				m["memory"] = fmt.Sprintf("%.1f GiB", float64(kb)/(1<<20))
			}
		}
	}
	if out, err := exec.Command("uname", "-sr").Output(); err == nil {
		m["kernel"] = strings.TrimSpace(string(out))
	}
	if out, err := exec.Command("nginx", "-v").CombinedOutput(); err == nil {
		m["nginx"] = strings.TrimPrefix(strings.TrimSpace(string(out)), "nginx version: ")
	}
	if out, err := exec.Command("wrk", "--version").CombinedOutput(); len(out) > 0 {
		_ = err // wrk --version exits 1
		m["wrk"] = strings.Fields(string(out))[1]
	}
	m["date"] = time.Now().UTC().Format("2006-01-02 15:04 UTC")
	return m
}

func loadavg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	f := strings.Fields(string(b))
	return strings.Join(f[:3], " ")
}
