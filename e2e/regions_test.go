//go:build linux

package e2e

import (
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"
)

// TestRegions: two regions (sites) of three cachenodes, an edge and
// viewers each, and a third site with the tracker and the origin; the
// links between sites are slowed. Four viewers per region download the
// same cold file at once: the origin sends it about once, each region
// takes it in about once (counted by the cachenodes' region metrics and
// by the routers' queues), only shields fetch from outside their region.
// Then a region's shield is killed mid-stream and every download is
// still whole. Needs root (ip netns); skipped otherwise.
//
// The file is 32 MiB (P2PD_E2E_REGION_MIB sets another size; the issue's
// figure is 128) so the test stays short on two cores.
func TestRegions(t *testing.T) {
	lab := newNetlab(t)
	size := 32 << 20
	if v, err := strconv.Atoi(os.Getenv("P2PD_E2E_REGION_MIB")); err == nil && v > 0 {
		size = v << 20
	}
	lab.run("ip", "netns", "exec", lab.hub, "sysctl", "-q", "-w", "net.ipv4.ip_forward=1")
	regions := []string{"a", "b"}
	for i, s := range []string{"o", "a", "b"} {
		lab.site(s, i+1)
	}
	lab.addAt("o", "tracker", 2)
	lab.addAt("o", "origin", 3)
	for _, r := range regions {
		for i := 1; i <= 3; i++ {
			lab.addAt(r, fmt.Sprintf("%s%d", r, i), 10+i)
		}
		lab.addAt(r, "edge-"+r, 20)
		lab.addAt(r, "viewer-"+r, 30)
	}
	// Metrics are read from region a's viewer: every site is routed.
	lab.viewer = lab.client("viewer-a")
	how := lab.slowSites()

	media := t.TempDir()
	cold := randomFile(t, media, "cold.mp4", size)
	second := randomFile(t, media, "second.mp4", size)
	tracker := lab.ip["tracker"] + ":7000"
	lab.start("tracker", "tracker", "--listen", tracker, "--embedded-etcd", t.TempDir())
	origin := lab.start("origin", "origin", "--listen", lab.ip["origin"]+":7100", "--tracker", tracker, "--media-dir", media)
	caches := map[string][]*daemon{}
	for _, r := range regions {
		for i := 1; i <= 3; i++ {
			name := fmt.Sprintf("%s%d", r, i)
			args := []string{"--listen", lab.ip[name] + ":7200", "--tracker", tracker, "--cache-dir", t.TempDir(), "--region", r}
			if i == 1 {
				args = append(args, "--shield")
			}
			caches[r] = append(caches[r], lab.start(name, "cachenode", args...))
		}
		lab.start("edge-"+r, "edge", "--listen", lab.ip["edge-"+r]+":8080", "--tracker", tracker, "--region", r, "--node-id", "edge-"+r)
	}
	url := func(r, name string) string { return "http://" + lab.ip["edge-"+r] + ":8080/" + name }
	eventually(t, 30*time.Second, "every node registered and the files served", func() error {
		if n := lab.d["tracker"].metric("p2pd_tracker_nodes", nil); n != 9 { // origin, 6 cachenodes, 2 edges
			return fmt.Errorf("%v nodes", n)
		}
		for _, r := range regions {
			resp, err := lab.client("viewer-" + r).Head(url(r, "cold.mp4"))
			if err != nil {
				return err
			}
			resp.Body.Close()
			if resp.StatusCode != 200 {
				return fmt.Errorf("HEAD in %s: %d", r, resp.StatusCode)
			}
		}
		return nil
	})
	// crossing is what region r's cachenodes fetched from outside it, by
	// their metrics; routed is what its router queued towards it.
	crossing := func(r string) (total, nonShield float64) {
		for i, c := range caches[r] {
			if !c.alive() {
				continue
			}
			in := c.metric("p2pd_cachenode_fetched_region_bytes_total", map[string]string{"destination_region": r})
			local := c.metric("p2pd_cachenode_fetched_region_bytes_total", map[string]string{"destination_region": r, "source_region": r})
			total += in - local
			if i > 0 {
				nonShield += in - local
			}
		}
		return total, nonShield
	}

	t.Run("a cold file crosses once", func(t *testing.T) {
		routed := map[string]int64{}
		for _, r := range regions {
			routed[r] = lab.routedTo(r)
		}
		egress := origin.metric("p2pd_origin_egress_bytes_total", nil)
		start := time.Now()
		viewAll(t, lab, regions, url, "cold.mp4", cold, nil)
		egress = origin.metric("p2pd_origin_egress_bytes_total", nil) - egress
		t.Logf("%d viewers, %d MiB cold, %s: %v; the origin sent %.2f× the file", 4*len(regions), size>>20, how, time.Since(start).Round(time.Millisecond), egress/float64(size))
		if egress > 1.1*float64(size) {
			t.Errorf("the origin sent %.0f bytes for a %d-byte file; want at most 1.1×", egress, size)
		}
		for _, r := range regions {
			in, nonShield := crossing(r)
			queued := lab.routedTo(r) - routed[r]
			t.Logf("region %s: %.2f× the file fetched from outside (metrics; %.0f bytes by stand-ins), %.2f× routed into it", r, in/float64(size), nonShield, float64(queued)/float64(size))
			if in > 1.1*float64(size) {
				t.Errorf("region %s fetched %.0f bytes from outside for a %d-byte file; want at most 1.1×", r, in, size)
			}
			// Only the shield fetches from outside, unless it stalled on a
			// chunk (a busy link, two cores) and a stand-in took that chunk
			// over: a chunk or two (of 1 MiB), never a share of the file.
			if nonShield > max(2<<20, 0.02*float64(size)) {
				t.Errorf("region %s: cachenodes other than the shield fetched %.0f bytes from outside", r, nonShield)
			}
			// Edges that left their region would double what is routed in.
			if float64(queued) > 1.3*float64(size) {
				t.Errorf("region %s: %d bytes routed into it for a %d-byte file; sources were not chosen in-region", r, queued, size)
			}
		}
	})

	t.Run("the shield killed mid-stream", func(t *testing.T) {
		shield := caches["a"][0]
		killed := false
		viewAll(t, lab, regions, url, "second.mp4", second, func(r string, got int) {
			if r == "a" && got >= size/4 && !killed {
				killed = true
				shield.p.stop(syscall.SIGKILL)
			}
		})
		if !killed {
			t.Fatal("the downloads ended before the shield was killed: the test tested nothing")
		}
		in, _ := crossing("a")
		t.Logf("region a after losing its shield: %.2f× the file fetched from outside by the nodes left", in/float64(size))
	})
}

// viewAll runs four viewers per region downloading name at once and
// checks every byte; at, if set, is called as region r's first viewer
// progresses.
func viewAll(t *testing.T, lab *netlab, regions []string, url func(r, name string) string, name string, want []byte, at func(r string, got int)) {
	t.Helper()
	var wg sync.WaitGroup
	var mu sync.Mutex
	errs := []error{}
	for _, r := range regions {
		client := lab.client("viewer-" + r)
		for v := range 4 {
			wg.Go(func() {
				resp, err := client.Get(url(r, name))
				if err != nil {
					mu.Lock()
					errs = append(errs, err)
					mu.Unlock()
					return
				}
				defer resp.Body.Close()
				d := &download{resp: resp}
				for err == nil && len(d.got) < len(want) {
					err = d.read(min(len(d.got)+1<<20, len(want)))
					if at != nil && v == 0 {
						mu.Lock()
						at(r, len(d.got))
						mu.Unlock()
					}
				}
				if err == nil && sum(d.got) != sum(want) {
					err = fmt.Errorf("%d bytes, not the file's", len(d.got))
				}
				if err != nil {
					mu.Lock()
					errs = append(errs, fmt.Errorf("viewer %d in region %s: %w", v, r, err))
					mu.Unlock()
				}
			})
		}
	}
	wg.Wait()
	for _, err := range errs {
		t.Error(err)
	}
}

// site makes a bridge in the hub for site s, routed to the other sites
// through the hub at 10.202.n.1.
func (l *netlab) site(s string, n int) {
	l.t.Helper()
	br := "br-" + s
	l.run("ip", "-n", l.hub, "link", "add", br, "type", "bridge")
	l.run("ip", "-n", l.hub, "addr", "add", fmt.Sprintf("10.202.%d.1/24", n), "dev", br)
	l.run("ip", "-n", l.hub, "link", "set", br, "up")
	if l.sites == nil {
		l.sites = map[string]int{}
	}
	l.sites[s] = n
}

// addAt makes node's namespace on site s's bridge, address 10.202.n.octet.
func (l *netlab) addAt(s, node string, octet int) {
	l.t.Helper()
	n := l.sites[s]
	ns := l.prefix + node
	hubIf, nodeIf := fmt.Sprintf("h%d-%d", n, octet), fmt.Sprintf("n%d-%d", n, octet)
	l.run("ip", "netns", "add", ns)
	l.t.Cleanup(func() { exec.Command("ip", "netns", "del", ns).Run() })
	l.run("ip", "-n", l.hub, "link", "add", hubIf, "type", "veth", "peer", "name", nodeIf, "netns", ns)
	l.run("ip", "-n", l.hub, "link", "set", hubIf, "master", "br-"+s, "up")
	ip := fmt.Sprintf("10.202.%d.%d", n, octet)
	l.run("ip", "-n", ns, "addr", "add", ip+"/24", "dev", nodeIf)
	l.run("ip", "-n", ns, "link", "set", nodeIf, "up")
	l.run("ip", "-n", ns, "link", "set", "lo", "up")
	l.run("ip", "-n", ns, "route", "add", "default", "via", fmt.Sprintf("10.202.%d.1", n))
	l.ns[node], l.hubIf[node], l.ip[node] = ns, hubIf, ip
}

// client is an HTTP client dialing from node's namespace.
func (l *netlab) client(node string) *http.Client {
	return &http.Client{Timeout: 5 * time.Minute, Transport: &http.Transport{DialContext: l.dialer(node)}}
}

// slowSites slows every link between sites: a token bucket (tbf) on each
// site bridge's hub side queues what the hub routes into the site, while
// traffic inside a site is switched at full speed. tbf rather than netem:
// some kernels here have no netem.
func (l *netlab) slowSites() string {
	l.t.Helper()
	for s := range l.sites {
		l.run("ip", "netns", "exec", l.hub, "tc", "qdisc", "add", "dev", "br-"+s, "root", "tbf", "rate", "200mbit", "burst", "128kb", "latency", "50ms")
	}
	return "links between sites at 200 Mbit/s (tbf)"
}

// sentRE reads the bytes a qdisc sent from `tc -s qdisc show`.
var sentRE = regexp.MustCompile(`Sent (\d+) bytes`)

// routedTo returns the bytes the hub has routed into site s so far.
func (l *netlab) routedTo(s string) int64 {
	l.t.Helper()
	out, err := exec.Command("ip", "netns", "exec", l.hub, "tc", "-s", "qdisc", "show", "dev", "br-"+s).CombinedOutput()
	if err != nil {
		l.t.Fatalf("tc -s qdisc show dev br-%s: %v: %s", s, err, out)
	}
	m := sentRE.FindSubmatch(out)
	if m == nil {
		l.t.Fatalf("no byte count in: %s", out)
	}
	n, _ := strconv.ParseInt(string(m[1]), 10, 64)
	return n
}
