package e2e

import (
	"bytes"
	"fmt"
	"maps"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// Ops ports of the services inside their containers (docker-compose.yml).
const (
	trackerOps   = 9091
	originOps    = 9090
	cachenodeOps = 9092
	edgeOps      = 9093
)

// TestCompose brings the compose deployment up from nothing in a project
// of its own and attacks it the way operations would meet trouble: edges
// scaled and stopped under load, the cachenode a download streams from
// killed, a cachenode cut off the network, an etcd member stopped, the
// origin stopped, a cachenode added. Viewers are cdnprobe containers in
// the project's network resolving `cdn` through Docker's DNS; every
// download is checked byte-exact by SHA-256. Each step is bounded in time.
//
// It skips when no Docker engine or compose command answers.
func TestCompose(t *testing.T) {
	media := t.TempDir()
	if err := os.Chmod(media, 0o755); err != nil {
		t.Fatal(err)
	}
	big := writeMedia(t, media, "films/big.mp4", 200<<20)
	// The kill and partition steps each stream a file no edge has seen, so
	// a cachenode (not an edge's memory cache) is the one sending it.
	stream1 := writeMedia(t, media, "films/stream1.mp4", 200<<20)
	stream2 := writeMedia(t, media, "films/stream2.mp4", 200<<20)
	never := writeMedia(t, media, "never.bin", 4<<20)
	etcdFile := writeMedia(t, media, "etcd.bin", 16<<20)
	var fresh []mediaFile // never fetched before the step that uses them
	for i := range 10 {
		fresh = append(fresh, writeMedia(t, media, fmt.Sprintf("fresh/%d.bin", i), 16<<20))
	}
	s := newStack(t, media)
	want := map[string]int{"etcd-1": 1, "etcd-2": 1, "etcd-3": 1, "tracker-1": 1, "tracker-2": 1,
		"origin": 1, "cachenode": 3, "edge": 3, "jaeger": 1}

	step := func(name string, d time.Duration, f func(t *testing.T)) bool {
		return runStep(t, "compose", name, d, f, s.teardown, s.dumpLogs)
	}

	if !step("up from nothing", 8*time.Minute, func(t *testing.T) {
		if left := s.containers(); len(left) > 0 {
			t.Fatalf("project %s exists before up: %d containers", s.project, len(left))
		}
		s.up(want)
	}) {
		return
	}

	if !step("published", 3*time.Minute, func(t *testing.T) {
		// The origin publishes its media directory at start; every edge
		// answers HEAD with the full length once the tracker knows it.
		for _, e := range s.running("edge") {
			addr := e.hostAddr(8080)
			eventually(t, 2*time.Minute, e.Name+" serves "+big.name, func() error {
				code, n, err := head(addr, big.name)
				if err != nil {
					return err
				}
				if code != 200 || n != big.size {
					return fmt.Errorf("HEAD: %d, length %d", code, n)
				}
				return nil
			})
		}
	}) {
		return
	}

	step("three edges serve", 5*time.Minute, func(t *testing.T) {
		edges := s.running("edge")
		before := edgeRequests(t, edges)
		rep := s.mustProbe(4*time.Minute, "-n", "6", "-c", "3", big.arg())
		after := edgeRequests(t, edges)
		t.Logf("cdnprobe: %d downloads of %d MiB in %.1fs, per address %v", rep.Completed, big.size>>20, rep.Seconds, rep.PerAddr)
		if len(rep.Addresses) != 3 {
			t.Errorf("DNS gave cdnprobe %v, want the 3 edges", rep.Addresses)
		}
		for _, e := range edges {
			t.Logf("%s: %v requests", e.Name, after[e.ID]-before[e.ID])
			if after[e.ID]-before[e.ID] < 1 {
				t.Errorf("%s served no request (metrics before %v, after %v)", e.Name, before[e.ID], after[e.ID])
			}
		}
	})

	step("the admin API works with the token make up made: edges among the nodes, stats of every node", 3*time.Minute, func(t *testing.T) {
		if code := s.admin(t, "/v1/nodes", nil, true); code != http.StatusUnauthorized {
			t.Errorf("no token: status %d, want 401", code)
		}
		edges := s.running("edge")
		var nodes struct {
			Nodes []struct{ ID, Role, OpsAddr string }
		}
		eventually(t, time.Minute, "every edge registered", func() error {
			if code := s.admin(t, "/v1/nodes", &nodes, false); code != http.StatusOK {
				return fmt.Errorf("status %d", code)
			}
			roles := map[string]int{}
			for _, n := range nodes.Nodes {
				roles[n.Role]++
			}
			if roles["edge"] != len(edges) || roles["cachenode"] != 3 || roles["origin"] != 1 {
				return fmt.Errorf("nodes by role %v", roles)
			}
			return nil
		})
		// p2pd admin, as the README tells an operator to run it.
		cmd := exec.Command(filepath.Join(binDir, "p2pd"), "admin", "nodes")
		cmd.Env = append(cleanEnv(), "P2PD_ADMIN_SERVER=http://"+s.one("origin", 1).hostAddr(9090), "P2PD_ADMIN_TOKEN="+s.token)
		out, err := cmd.CombinedOutput()
		if err != nil || bytes.Count(out, []byte(" edge ")) != len(edges) {
			t.Errorf("p2pd admin nodes: %v, want %d edges:\n%s", err, len(edges), out)
		}
		// The edges' counters, read first: the stats sum them (and they
		// only grow).
		sent := sumMetric(t, edges, edgeOps, "p2pd_edge_bytes_sent_total")
		var stats struct {
			NodesByRole         map[string]int
			EdgeBytesSent       string
			BytesServedBySource map[string]string
			MetricsSources      int
			MetricsMissing      []string
		}
		if code := s.admin(t, "/v1/stats", &stats, false); code != http.StatusOK {
			t.Fatalf("stats: status %d", code)
		}
		t.Logf("stats: %+v (edges' own counters: %.0f bytes sent)", stats, sent)
		got, _ := strconv.ParseFloat(stats.EdgeBytesSent, 64)
		if sent == 0 || got < sent {
			t.Errorf("stats: edges sent %v bytes, the edges' counters say %v", got, sent)
		}
		var served float64
		for _, v := range stats.BytesServedBySource {
			f, _ := strconv.ParseFloat(v, 64)
			served += f
		}
		// origin, 3 cachenodes and 3 edges, each its own process.
		if served == 0 || stats.MetricsSources != 7 || len(stats.MetricsMissing) != 0 || stats.NodesByRole["edge"] != len(edges) {
			t.Errorf("stats not cluster-wide: %+v", stats)
		}
	})

	step("scale edges to 5, stop one under load", 6*time.Minute, func(t *testing.T) {
		want["edge"] = 5
		s.up(want)
		edges := s.running("edge")
		before := edgeRequests(t, edges)
		// 10 paced downloads, 5 at a time, ~7 s each: the stop below
		// lands mid-stream.
		p := s.probe(4*time.Minute, "-n", "10", "-c", "5", "-rate", "30000000", big.arg())
		time.Sleep(3 * time.Second)
		victim := s.one("edge", 2)
		s.docker("stop", "-t", "1", victim.ID)
		defer s.ensureRunning(victim)
		rep := p.wait(t)
		t.Logf("cdnprobe: %s", rep)
		if !rep.OK {
			t.Fatalf("downloads through DNS did not all complete after %s stopped: %s\n%s", victim.Name, rep, p.log)
		}
		if len(rep.Addresses) < 5 {
			t.Errorf("DNS gave cdnprobe %v, want 5 edges", rep.Addresses)
		}
		if rep.Retries == 0 {
			t.Errorf("no download was retried: the stop of %s hit no request", victim.Name)
		}
		for _, e := range edges {
			if e.ID == victim.ID || e.number() <= 3 {
				continue
			}
			n := opsMetric(t, e, edgeOps, "p2pd_edge_requests_total", nil) - before[e.ID]
			t.Logf("new %s: %v requests", e.Name, n)
			if n < 1 {
				t.Errorf("new edge %s received no traffic", e.Name)
			}
		}
		s.ensureRunning(victim)
		s.waitHealthy(2*time.Minute, want)
	})

	step("a request is found in the trace viewer by its X-Trace-Id", 3*time.Minute, func(t *testing.T) {
		// A cold range request: edge, tracker, cachenode and origin all
		// take part, and all export to Jaeger.
		f := fresh[0]
		fresh = fresh[1:]
		edge := s.running("edge")[0]
		req, _ := http.NewRequest("GET", "http://"+edge.hostAddr(8080)+"/"+f.name, nil)
		req.Header.Set("Range", "bytes=0-99")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		id := resp.Header.Get("X-Trace-Id")
		if resp.StatusCode != 206 || id == "" {
			t.Fatalf("GET: status %d, X-Trace-Id %q", resp.StatusCode, id)
		}
		// The dashboard's trace view reads it through the admin API, which
		// asks Jaeger's query API inside the network.
		want := []string{"edge", "tracker", "cachenode", "origin"}
		eventually(t, 2*time.Minute, "trace "+id+" in the admin API with "+strings.Join(want, ", "), func() error {
			var trace struct {
				Spans []struct{ Service, Name, DurationUs string }
			}
			if code := s.admin(t, "/v1/traces/"+id, &trace, false); code != http.StatusOK {
				return fmt.Errorf("status %d", code)
			}
			seen := map[string]bool{}
			for _, sp := range trace.Spans {
				seen[sp.Service] = true
			}
			for _, svc := range want {
				if !seen[svc] {
					return fmt.Errorf("%d spans, services %v: no %s", len(trace.Spans), seen, svc)
				}
			}
			t.Logf("trace %s: %d spans from %v", id, len(trace.Spans), seen)
			return nil
		})
	})

	step("kill the cachenode a download streams from", 5*time.Minute, func(t *testing.T) {
		nodes := s.running("cachenode")
		failovers := sumMetric(t, s.running("edge"), edgeOps, "p2pd_edge_failovers_total")
		// One paced download (~8 s) and no client retry: only the edge's
		// failover can complete it.
		p := s.probe(3*time.Minute, "-n", "1", "-c", "1", "-attempts", "1", "-stall", "30s", "-rate", "25000000", stream1.arg())
		victim := busiest(t, nodes, 2*time.Second)
		t.Logf("killing %s, streaming to an edge", victim.Name)
		s.docker("kill", victim.ID)
		defer s.ensureRunning(victim)
		rep := p.wait(t)
		t.Logf("cdnprobe: completed %d, longest stall %.2fs, errors %v", rep.Completed, rep.MaxStall, rep.Errors)
		if !rep.OK {
			t.Fatalf("download did not survive the kill of %s: %s\n%s", victim.Name, rep, p.log)
		}
		t.Logf("edge failovers: %v", sumMetric(t, s.running("edge"), edgeOps, "p2pd_edge_failovers_total")-failovers)
		s.ensureRunning(victim)
		s.waitHealthy(2*time.Minute, want)
	})

	step("partition a cachenode", 5*time.Minute, func(t *testing.T) {
		// Two paced downloads (~7 s) with no client retry; the node cut
		// off is one sending to an edge at that moment.
		p := s.probe(3*time.Minute, "-n", "2", "-c", "2", "-attempts", "1", "-stall", "30s", "-rate", "30000000", stream2.arg())
		victim := busiest(t, s.running("cachenode"), 2*time.Second)
		aliases := victim.NetworkSettings.Networks[s.network].Aliases
		s.docker("network", "disconnect", s.network, victim.ID)
		defer s.ensureConnected(victim, aliases)
		rep := p.wait(t)
		t.Logf("cdnprobe with %s cut off: completed %d, longest stall %.2fs, errors %v", victim.Name, rep.Completed, rep.MaxStall, rep.Errors)
		if !rep.OK {
			t.Errorf("downloads did not continue with %s cut off: %s\n%s", victim.Name, rep, p.log)
		}
		// Reconnect under the names compose gave it: it must come back
		// by itself, without a restart.
		if err := s.ensureConnected(victim, aliases); err != nil {
			t.Fatal(err)
		}
		rejoined := receivesChunks(t, s, victim, &fresh, 2*time.Minute)
		now := s.one("cachenode", victim.number())
		if now.State.StartedAt != victim.State.StartedAt || now.RestartCount != victim.RestartCount {
			t.Errorf("%s was restarted (started %s, now %s)", victim.Name, victim.State.StartedAt, now.State.StartedAt)
		}
		if !rejoined {
			t.Errorf("%s received no chunk after it was reconnected", victim.Name)
		}
	})

	step("stop an etcd member", 5*time.Minute, func(t *testing.T) {
		member := s.one("etcd-1", 1)
		s.docker("stop", member.ID)
		defer s.ensureRunning(member)
		origin := s.one("origin", 1)
		egress := opsMetric(t, origin, originOps, "p2pd_origin_egress_bytes_total", nil)
		// A file never fetched before: its chunks are new to the tracker.
		// The second round must come from the cachenodes that announced
		// them, not from the origin again.
		s.mustProbe(2*time.Minute, "-n", "2", "-c", "1", etcdFile.arg())
		s.mustProbe(2*time.Minute, "-n", "3", "-c", "3", etcdFile.arg())
		out := opsMetric(t, origin, originOps, "p2pd_origin_egress_bytes_total", nil) - egress
		t.Logf("origin egress for %d MiB fetched 5 times with etcd-1 down: %.1f MiB", etcdFile.size>>20, out/(1<<20))
		if out > 1.5*float64(etcdFile.size) {
			t.Errorf("origin sent %.0f bytes for a %d-byte file: chunks fetched with an etcd member down were not tracked", out, etcdFile.size)
		}
		s.ensureRunning(member)
		s.waitHealthy(2*time.Minute, want)
	})

	step("stop the origin", 4*time.Minute, func(t *testing.T) {
		origin := s.one("origin", 1)
		s.docker("stop", origin.ID)
		defer s.ensureRunning(origin)
		rep := s.mustProbe(2*time.Minute, "-n", "2", "-c", "2", big.arg())
		t.Logf("%s served twice with the origin stopped in %.1fs", big.name, rep.Seconds)
		start := time.Now()
		p := s.probe(90*time.Second, "-n", "1", "-attempts", "1", "-stall", "60s", "/"+never.name)
		rep = p.wait(t)
		took := time.Since(start)
		t.Logf("never-fetched file with the origin stopped: statuses %v in %v, errors %v", rep.Statuses, took.Round(time.Millisecond), rep.Errors)
		if rep.Statuses["502"]+rep.Statuses["503"] != 1 {
			t.Errorf("never-fetched file with the origin stopped: statuses %v, want one 502 or 503", rep.Statuses)
		}
		if took > 45*time.Second {
			t.Errorf("the 502/503 took %v", took)
		}
		s.ensureRunning(origin)
		s.waitHealthy(2*time.Minute, want)
	})

	step("scale cachenodes to 4", 5*time.Minute, func(t *testing.T) {
		want["cachenode"] = 4
		s.up(want)
		added := s.one("cachenode", 4)
		before := movedBytes(t, s.running("cachenode"))
		if !receivesChunks(t, s, added, &fresh, 2*time.Minute) {
			after := movedBytes(t, s.running("cachenode"))
			var moved []string
			for _, c := range s.running("cachenode") {
				moved = append(moved, fmt.Sprintf("%s %.0f MiB", c.Name, (after[c.ID]-before[c.ID])/(1<<20)))
			}
			t.Errorf("new cachenode %s received no chunk; chunk bytes moved by each cachenode meanwhile: %v", added.Name, moved)
		}
	})

	step("down leaves nothing", 4*time.Minute, func(t *testing.T) {
		volumes := s.volumes()
		if len(volumes) < 3 {
			t.Errorf("project volumes %v: want at least the 3 etcd volumes", volumes)
		}
		s.mustRun(3*time.Minute, "down", "-v", "--remove-orphans", "--timeout", "5")
		if left := s.leftovers(volumes); len(left) > 0 {
			t.Errorf("after down: %v", left)
		}
	})
}

// edgeRequests returns each edge's request count, by container ID.
func edgeRequests(t *testing.T, edges []container) map[string]float64 {
	t.Helper()
	m := map[string]float64{}
	for _, e := range edges {
		m[e.ID] = opsMetric(t, e, edgeOps, "p2pd_edge_requests_total", nil)
	}
	return m
}

func sumMetric(t *testing.T, cs []container, port int, name string) float64 {
	t.Helper()
	var sum float64
	for _, c := range cs {
		sum += opsMetric(t, c, port, name, nil)
	}
	return sum
}

// movedBytes returns the chunk bytes each cachenode has served or fetched.
func movedBytes(t *testing.T, nodes []container) map[string]float64 {
	t.Helper()
	m := map[string]float64{}
	for _, n := range nodes {
		m[n.ID] = opsMetric(t, n, cachenodeOps, "p2pd_cachenode_bytes_served_total", nil) +
			opsMetric(t, n, cachenodeOps, "p2pd_cachenode_fetched_bytes_total", nil)
	}
	return m
}

// busiest returns the cachenode sending the most chunk bytes over a
// window, waiting (at most a minute) until some node sends.
func busiest(t *testing.T, nodes []container, window time.Duration) container {
	t.Helper()
	served := func() map[string]float64 {
		m := map[string]float64{}
		for _, n := range nodes {
			m[n.ID] = opsMetric(t, n, cachenodeOps, "p2pd_cachenode_bytes_served_total", nil)
		}
		return m
	}
	pick := func(delta map[string]float64) (best container, most float64) {
		for _, n := range nodes {
			if delta[n.ID] > most {
				best, most = n, delta[n.ID]
			}
		}
		return best, most
	}
	deadline := time.Now().Add(time.Minute)
	prev := served()
	for time.Now().Before(deadline) {
		time.Sleep(window)
		cur := served()
		delta := map[string]float64{}
		for id, v := range cur {
			delta[id] = v - prev[id]
		}
		if best, most := pick(delta); most > 0 {
			return best
		}
		prev = cur
	}
	t.Fatalf("no cachenode sent a byte within a minute: %v", slices.Collect(maps.Keys(prev)))
	return container{}
}

// receivesChunks fetches fresh files (never fetched before, taken off
// *fresh) until node has fetched or served chunk bytes, for at most d.
func receivesChunks(t *testing.T, s *stack, node container, fresh *[]mediaFile, d time.Duration) bool {
	t.Helper()
	moved := func() float64 {
		c := s.one("cachenode", node.number())
		if !c.State.Running {
			return 0
		}
		return movedBytes(t, []container{c})[c.ID]
	}
	start := moved()
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) && len(*fresh) > 0 {
		f := (*fresh)[0]
		*fresh = (*fresh)[1:]
		s.mustProbe(time.Minute, "-n", "1", f.arg())
		if n := moved() - start; n > 0 {
			t.Logf("%s moved %.1f MiB of %s", node.Name, n/(1<<20), f.name)
			return true
		}
		time.Sleep(2 * time.Second)
	}
	return false
}

// runStep runs one step of a long suite as a subtest bounded by d: a step
// whose own bounds fail to end it within d plus a minute tears the whole
// deployment down (teardown) and panics naming the step, rather than
// leave both to the test binary's timeout. A failed step dumps the logs.
func runStep(t *testing.T, suite, name string, d time.Duration, f func(t *testing.T), teardown, dumpLogs func()) bool {
	start := time.Now()
	ok := t.Run(name, func(t *testing.T) {
		done := make(chan struct{})
		go func() {
			select {
			case <-done:
			case <-time.After(d + time.Minute):
				teardown()
				panic(fmt.Sprintf("%s step %q still running after %v", suite, name, d+time.Minute))
			}
		}()
		defer close(done)
		f(t)
	})
	t.Logf("step %s: %v (%v)", name, map[bool]string{true: "ok", false: "FAILED"}[ok], time.Since(start).Round(100*time.Millisecond))
	if !ok {
		dumpLogs()
	}
	return ok
}
