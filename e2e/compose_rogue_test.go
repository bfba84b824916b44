package e2e

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"
)

// TestComposeRogue puts the hostile node of issue 12 (cmd/rogue, the
// program TestHostileNode runs on loopback) in a container on the compose
// deployment's network, where any container may reach the trackers'
// port: it tries every attack on the control plane (publish its own root
// for a name, unpublish it, register as an origin, register under every
// live node's id, report rates as them, unregister them with a sweep of
// lease ids, report them failed as a stranger, flood the tracker with
// fake registrations) and then serves random bytes as a registered
// cachenode that claims the whole file. What must hold, checked from
// outside through the admin API and viewers in the network: every attack
// is refused, the name maps to the root the origin published, every
// honest node keeps its registration (same address, same start), and
// viewers get exact bytes.
//
// It skips when no Docker engine or compose command answers.
func TestComposeRogue(t *testing.T) {
	media := t.TempDir()
	file := writeMedia(t, media, "rogue.mp4", 48<<20)
	s := newStack(t, media)
	want := map[string]int{"etcd-1": 1, "etcd-2": 1, "etcd-3": 1, "tracker-1": 1, "tracker-2": 1,
		"origin": 1, "cachenode": 3, "edge": 2, "jaeger": 1}
	step := func(name string, d time.Duration, f func(t *testing.T)) bool {
		return runStep(t, "compose-rogue", name, d, f, s.teardown, s.dumpLogs)
	}
	if !step("up, and the file published", 10*time.Minute, func(t *testing.T) {
		s.up(want)
		for _, e := range s.running("edge") {
			eventually(t, 2*time.Minute, e.Name+" serves "+file.name, func() error {
				code, n, err := head(e.hostAddr(8080), file.name)
				if err != nil {
					return err
				}
				if code != 200 || n != file.size {
					return fmt.Errorf("HEAD: %d, length %d", code, n)
				}
				return nil
			})
		}
	}) {
		return
	}

	type node struct{ ID, Role, GrpcAddr, UpSince string }
	var before struct{ Nodes []node }
	var root string
	if !step("the honest nodes and the published root, before", 2*time.Minute, func(t *testing.T) {
		root = s.fileRoot(t, file.name)
		eventually(t, time.Minute, "every node registered", func() error {
			if code := s.admin(t, "/v1/nodes", &before, false); code != http.StatusOK {
				return fmt.Errorf("status %d", code)
			}
			if n := len(before.Nodes); n != 1+3+2 {
				return fmt.Errorf("%d nodes, want the origin, 3 cachenodes and 2 edges", n)
			}
			return nil
		})
	}) {
		return
	}

	var rep *rogueReport
	if !step("the rogue container attacks", 5*time.Minute, func(t *testing.T) {
		name := s.project + "-rogue"
		s.docker("run", "-d", "--name", name, "--label", "p2pd.e2e.project="+s.project, "--network", s.network,
			"--entrypoint", "/rogue", "p2pd/rogue:"+s.tag,
			"-tracker", "tracker:7000", "-name", file.name, "-listen", ":7300")
		eventually(t, 4*time.Minute, "the rogue's report", func() error {
			out, err := docker(time.Minute, "logs", name)
			if err != nil {
				return err
			}
			for _, line := range strings.Split(out, "\n") {
				if strings.HasPrefix(line, "{") {
					rep = parseRogueReport(t, []byte(line))
					return nil
				}
			}
			if st, _ := docker(time.Minute, "inspect", "-f", "{{.State.Running}}", name); strings.TrimSpace(st) != "true" {
				t.Fatalf("the rogue ended without a report:\n%s", out)
			}
			return fmt.Errorf("no report yet: %.300s", out)
		})
		checkRogueReport(t, rep, len(before.Nodes))
	}) {
		return
	}

	step("viewers get exact bytes with the rogue serving garbage", 6*time.Minute, func(t *testing.T) {
		digestsBefore := sumMetric(t, s.running("cachenode"), cachenodeOps, "p2pd_cachenode_digest_failures_total")
		rep := s.mustProbe(5*time.Minute, "-n", "6", "-c", "3", file.arg())
		digests := sumMetric(t, s.running("cachenode"), cachenodeOps, "p2pd_cachenode_digest_failures_total") - digestsBefore
		t.Logf("cdnprobe: %d downloads of %d MiB in %.1fs, longest stall %.2fs; cachenodes caught %v chunks with wrong bytes",
			rep.Completed, file.size>>20, rep.Seconds, rep.MaxStall, digests)
	})

	step("the name keeps its root, every honest node its registration", 2*time.Minute, func(t *testing.T) {
		if got := s.fileRoot(t, file.name); got != root {
			t.Errorf("%s maps to %s, want the published %s", file.name, got, root)
		}
		var after struct{ Nodes []node }
		if code := s.admin(t, "/v1/nodes", &after, false); code != http.StatusOK {
			t.Fatalf("nodes: status %d", code)
		}
		now := map[string]node{}
		for _, n := range after.Nodes {
			now[n.ID] = n
		}
		for _, n := range before.Nodes {
			if m, ok := now[n.ID]; !ok || m != n {
				t.Errorf("honest node %s is now %+v, want %+v", n.ID, m, n)
			}
		}
		for _, c := range s.containers() {
			if c.service() != "" && !c.State.Running {
				t.Errorf("%s is not running", c.Name)
			}
		}
	})
}

// fileRoot returns the root the tracker maps name to, through the admin
// API.
func (s *stack) fileRoot(t *testing.T, name string) string {
	t.Helper()
	var f struct{ File struct{ Name, Root string } }
	if code := s.admin(t, "/v1/files/"+name, &f, false); code != http.StatusOK || f.File.Root == "" {
		t.Fatalf("file %s: status %d, root %q", name, code, f.File.Root)
	}
	return f.File.Root
}
