package e2e

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	promtext "github.com/p2pd/p2pd/internal/metric"
)

// TestComposeSwarm deploys the stack of deployments/swarm on a
// single-node Docker Swarm, as an operator would with `docker stack
// deploy`, and runs it through what orchestration is for: edges and
// cachenodes scaled, an edge update rolled while viewers stream (no viewer
// request fails), a task's container killed and replaced on the same
// volume. Viewers are cdnprobe containers on the stack's overlay network
// resolving tasks.edge; metrics are read inside the tasks (`/healthcheck
// -print`). It initialises the swarm on 127.0.0.1 when the engine is in
// none, and leaves it again at the end; an existing swarm is used and left
// as it was (the node labels it adds are removed).
//
// It skips where no Docker engine answers, in -short mode, and when
// P2PD_SKIP_COMPOSE or P2PD_SKIP_SWARM is set.
func TestComposeSwarm(t *testing.T) {
	sw := newSwarm(t)
	media := t.TempDir()
	if err := os.Chmod(media, 0o755); err != nil {
		t.Fatal(err)
	}
	film := writeMedia(t, media, "films/film.mp4", 16<<20)
	var fresh []mediaFile // never fetched before the step that uses them
	for i := range 8 {
		fresh = append(fresh, writeMedia(t, media, fmt.Sprintf("fresh/%d.bin", i), 8<<20))
	}
	want := map[string]int{"etcd-1": 1, "etcd-2": 1, "etcd-3": 1, "tracker": 2, "origin": 1, "cachenode": 3, "edge": 3}

	step := func(name string, d time.Duration, f func(t *testing.T)) bool {
		return runStep(t, "swarm", name, d, f, sw.teardown, sw.dumpLogs)
	}

	if !step("deploy", 6*time.Minute, func(t *testing.T) {
		sw.deploy(media)
		sw.waitServices(4*time.Minute, want)
		// The origin publishes its media directory at start, even when
		// the trackers come up after it (Swarm orders no start).
		eventually(t, 2*time.Minute, "edges serve "+film.name, func() error {
			rep, err := sw.probe(time.Minute, "-n", "3", "-c", "3", "-attempts", "1", film.arg())
			if err != nil {
				return err
			}
			if !rep.OK {
				return fmt.Errorf("cdnprobe: %v", rep.Errors)
			}
			return nil
		})
	}) {
		return
	}

	step("scale edges and cachenodes to 4", 6*time.Minute, func(t *testing.T) {
		// Cachenodes first, alone: the tracker must count exactly one node
		// more (edges may register too, depending on the join token).
		tracker := sw.tasks("tracker")[0]
		// The count to compare with is a settled one: an edge or cachenode
		// of the deploy may still be registering (bounded: a minute).
		nodes := sw.metric(tracker, trackerOps, "p2pd_tracker_nodes")
		for settle := time.Now().Add(time.Minute); time.Now().Before(settle); {
			time.Sleep(3 * time.Second)
			again := sw.metric(tracker, trackerOps, "p2pd_tracker_nodes")
			if again == nodes {
				break
			}
			nodes = again
		}
		sw.docker(3*time.Minute, "service", "scale", "--detach", sw.stack+"_cachenode=4")
		want["cachenode"] = 4
		sw.waitServices(3*time.Minute, want)
		eventually(t, time.Minute, "the tracker counts the new cachenode", func() error {
			if n := sw.metric(tracker, trackerOps, "p2pd_tracker_nodes"); n != nodes+1 {
				return fmt.Errorf("p2pd_tracker_nodes %v, was %v", n, nodes)
			}
			return nil
		})
		sw.docker(3*time.Minute, "service", "scale", "--detach", sw.stack+"_edge=4")
		want["edge"] = 4
		sw.waitServices(3*time.Minute, want)
		rep := sw.mustProbe(2*time.Minute, "-n", "12", "-c", "4", film.arg())
		t.Logf("cdnprobe: %d downloads over %v", rep.Completed, rep.Addresses)
		if len(rep.Addresses) != 4 {
			t.Errorf("tasks.edge gave cdnprobe %v, want the 4 edges", rep.Addresses)
		}
		for a, n := range rep.PerAddr {
			if n.Completed < 1 {
				t.Errorf("edge %s completed no download: %+v", a, n)
			}
		}
		added := sw.task("cachenode", 4)
		if !slices.Contains(added.volumes(), sw.stack+"_cache-4") {
			t.Errorf("cachenode 4 mounts %v, want its own volume %s_cache-4", added.volumes(), sw.stack)
		}
		if !sw.receivesChunks(added, &fresh, 2*time.Minute) {
			t.Errorf("cachenode 4 received no chunk")
		}
	})

	step("roll an edge update while viewers stream", 8*time.Minute, func(t *testing.T) {
		before := sw.tasks("edge")
		// About 100 downloads of 2 s each, 4 at a time, no retry: every
		// request that fails fails the step. They run through the whole
		// update (one edge at a time, the new one started first).
		p := sw.startProbe(5*time.Minute, "-n", "100", "-c", "4", "-attempts", "1", "-stall", "20s", "-rate", "8000000", film.arg())
		time.Sleep(3 * time.Second)
		start := time.Now()
		sw.docker(5*time.Minute, "service", "update", "--force", "--detach=false", "--quiet",
			"--env-add", "P2PD_ROLLED="+strconv.FormatInt(start.Unix(), 10), sw.stack+"_edge")
		t.Logf("update rolled over the edges in %v", time.Since(start).Round(100*time.Millisecond))
		rep := p.wait(t)
		t.Logf("cdnprobe: %d of %d downloads in %.0fs over %d addresses, %d failed, statuses %v",
			rep.Completed, rep.Downloads, rep.Seconds, len(rep.Addresses), rep.Failed, rep.Statuses)
		if !rep.OK || rep.Failed != 0 {
			t.Errorf("viewer requests failed during the rolling update: %s\n%s", rep, p.log)
		}
		if rep.Seconds < time.Since(start).Seconds()-5 {
			t.Errorf("the viewers stopped (%.0fs) before the update ended: they did not cover it", rep.Seconds)
		}
		sw.waitServices(2*time.Minute, want)
		for _, old := range before {
			for _, now := range sw.tasks("edge") {
				if now.ID == old.ID {
					t.Errorf("edge container %s was not replaced by the update", old.Name)
				}
			}
		}
		if len(rep.Addresses) < 5 {
			t.Errorf("cdnprobe used %v: want old and new edges", rep.Addresses)
		}
	})

	step("kill a cachenode's container: its task comes back on its volume", 4*time.Minute, func(t *testing.T) {
		victim := sw.task("cachenode", 1)
		held := sw.metric(victim, cachenodeOps, "p2pd_cachenode_store_bytes")
		sw.docker(time.Minute, "kill", victim.ID)
		var back swarmTask
		eventually(t, 3*time.Minute, "a new cachenode task in slot 1, healthy", func() error {
			for _, c := range sw.tasks("cachenode") {
				if c.slot() == 1 && c.ID != victim.ID && c.healthy() {
					back = c
					return nil
				}
			}
			return errors.New("not yet")
		})
		if !slices.Equal(back.volumes(), victim.volumes()) {
			t.Errorf("replacement mounts %v, the killed task mounted %v", back.volumes(), victim.volumes())
		}
		now := sw.metric(back, cachenodeOps, "p2pd_cachenode_store_bytes")
		t.Logf("slot 1 held %.1f MiB before the kill, %.1f MiB after", held/(1<<20), now/(1<<20))
		if held > 0 && now < held {
			t.Errorf("the replacement holds %v bytes, the killed task held %v: chunks lost", now, held)
		}
		sw.waitServices(2*time.Minute, want)
		sw.mustProbe(2*time.Minute, "-n", "4", "-c", "4", film.arg())
	})

	step("remove the stack", 4*time.Minute, func(t *testing.T) {
		if left := sw.remove(); len(left) > 0 {
			t.Errorf("after docker stack rm and volume removal: %v", left)
		}
	})
}

// swarm is one stack of deployments/swarm on a single-node swarm.
type swarm struct {
	t        *testing.T
	root     string
	stack    string
	tag      string
	dir      string   // tokens
	env      []string // for docker stack deploy
	network  string
	created  bool     // this test ran `docker swarm init`
	gwbridge bool     // and that made docker_gwbridge
	node     string   // the node's ID
	labels   []string // node labels this test added
	probes   int
}

func newSwarm(t *testing.T) *swarm {
	t.Helper()
	if testing.Short() {
		t.Skip("swarm e2e: skipped in -short mode")
	}
	for _, v := range []string{"P2PD_SKIP_COMPOSE", "P2PD_SKIP_SWARM"} {
		if os.Getenv(v) != "" {
			t.Skipf("swarm e2e: skipped because %s is set", v)
		}
	}
	out, err := docker(30*time.Second, "info", "--format", "{{.Swarm.LocalNodeState}} {{.Swarm.ControlAvailable}}")
	if err != nil {
		t.Skipf("swarm e2e: skipped: no Docker engine answers (`docker info`: %v)", err)
	}
	root, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	sw := &swarm{t: t, root: root, stack: "p2pdsw" + hex.EncodeToString(randBytes(3)), tag: "dev", dir: t.TempDir()}
	if v := os.Getenv("P2PD_TAG"); v != "" {
		sw.tag = v
	}
	switch state := strings.Fields(out); {
	case len(state) == 2 && state[0] == "inactive":
		// Only loopback: no other machine can join, and the swarm's
		// overlay networks are ours alone.
		_, err := docker(time.Minute, "network", "inspect", "docker_gwbridge")
		sw.gwbridge = err != nil
		if out, err := docker(time.Minute, "swarm", "init", "--advertise-addr", "127.0.0.1", "--listen-addr", "127.0.0.1:2377"); err != nil {
			t.Skipf("swarm e2e: skipped: `docker swarm init` on 127.0.0.1 failed: %v %s", err, out)
		}
		sw.created = true
	case len(state) == 2 && state[0] == "active" && state[1] == "true":
		t.Logf("swarm e2e: using the engine's swarm (this node is a manager); it is left as it is")
	default:
		t.Skipf("swarm e2e: skipped: this engine is in a swarm it does not manage (%s)", out)
	}
	t.Cleanup(sw.teardown)
	out, err = docker(time.Minute, "info", "--format", "{{.Swarm.NodeID}}")
	if err != nil {
		t.Fatal(err)
	}
	sw.node = strings.TrimSpace(out)
	buildImages(t, root, sw.tag)

	// The placement labels: etcd members, origin and cachenodes all
	// allowed on this one node.
	out, _ = docker(time.Minute, "node", "inspect", "-f", "{{json .Spec.Labels}}", sw.node)
	var have map[string]string
	json.Unmarshal([]byte(out), &have)
	args := []string{"node", "update"}
	for _, l := range []string{"p2pd.etcd-1", "p2pd.etcd-2", "p2pd.etcd-3", "p2pd.origin", "p2pd.cache"} {
		if _, ok := have[l]; !ok {
			sw.labels = append(sw.labels, l)
			args = append(args, "--label-add", l+"=true")
		}
	}
	if len(sw.labels) > 0 {
		sw.docker(time.Minute, append(args, sw.node)...)
	}
	return sw
}

func (sw *swarm) docker(d time.Duration, args ...string) string {
	sw.t.Helper()
	out, err := docker(d, args...)
	if err != nil {
		sw.t.Fatal(err)
	}
	return out
}

// deploy writes the tokens and runs docker stack deploy.
func (sw *swarm) deploy(media string) {
	sw.t.Helper()
	for _, f := range []string{"admin-token", "join-token", "origin-token"} {
		if err := os.WriteFile(filepath.Join(sw.dir, f), []byte(hex.EncodeToString(randBytes(24))+"\n"), 0o600); err != nil {
			sw.t.Fatal(err)
		}
	}
	// The routing mesh publishes on every interface: random free ports,
	// which the test never uses (its viewers are inside the network).
	port := func() string {
		_, p, _ := strings.Cut(freeAddr(sw.t, "127.0.0.1"), ":")
		return p
	}
	sw.env = append(os.Environ(),
		"P2PD_TAG="+sw.tag,
		"P2PD_MEDIA_DIR="+media,
		"P2PD_EDGE_PORT="+port(),
		"P2PD_ORIGIN_OPS_PORT="+port(),
		"P2PD_ADMIN_TOKEN_PATH="+filepath.Join(sw.dir, "admin-token"),
		"P2PD_JOIN_TOKEN_PATH="+filepath.Join(sw.dir, "join-token"),
		"P2PD_ORIGIN_TOKEN_PATH="+filepath.Join(sw.dir, "origin-token"),
		"P2PD_CACHE_MAX_BYTES=1G",
	)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "docker", "stack", "deploy", "--resolve-image", "never",
		"-c", filepath.Join(sw.root, "deployments/swarm/p2pd-stack.yml"), sw.stack)
	cmd.Env = sw.env
	if out, err := cmd.CombinedOutput(); err != nil {
		sw.t.Fatalf("docker stack deploy: %v\n%s", err, out)
	}
	sw.network = sw.stack + "_p2pd"
}

// swarmTask is what the test needs of a task's container.
type swarmTask struct {
	ID     string
	Name   string
	Config struct{ Labels map[string]string }
	State  struct {
		Running bool
		Health  *struct{ Status string }
	}
	Mounts []struct{ Type, Name string }
}

func (c swarmTask) service() string { return c.Config.Labels["com.docker.swarm.service.name"] }

// slot is the task's slot: stack_svc.SLOT.taskid.
func (c swarmTask) slot() int {
	parts := strings.Split(strings.TrimPrefix(c.Name, "/"), ".")
	if len(parts) < 3 {
		return 0
	}
	n, _ := strconv.Atoi(parts[1])
	return n
}

func (c swarmTask) healthy() bool {
	return c.State.Running && (c.State.Health == nil || c.State.Health.Status == "healthy")
}

func (c swarmTask) volumes() []string {
	var vs []string
	for _, m := range c.Mounts {
		if m.Type == "volume" {
			vs = append(vs, m.Name)
		}
	}
	slices.Sort(vs)
	return vs
}

// containers returns the stack's containers (all, or those of service).
func (sw *swarm) containers(service string) []swarmTask {
	sw.t.Helper()
	filter := "label=com.docker.stack.namespace=" + sw.stack
	if service != "" {
		filter = "label=com.docker.swarm.service.name=" + sw.stack + "_" + service
	}
	ids := strings.Fields(sw.docker(time.Minute, "ps", "-q", "--filter", filter))
	if len(ids) == 0 {
		return nil
	}
	out, err := docker(time.Minute, append([]string{"inspect"}, ids...)...)
	if err != nil {
		// A container that went away between ps and inspect: ask again.
		time.Sleep(time.Second)
		return sw.containers(service)
	}
	var cs []swarmTask
	if err := json.Unmarshal([]byte(out), &cs); err != nil {
		sw.t.Fatal(err)
	}
	slices.SortFunc(cs, func(a, b swarmTask) int { return a.slot() - b.slot() })
	return cs
}

// tasks returns the running containers of a service, by slot.
func (sw *swarm) tasks(service string) []swarmTask {
	var cs []swarmTask
	for _, c := range sw.containers(service) {
		if c.State.Running {
			cs = append(cs, c)
		}
	}
	return cs
}

func (sw *swarm) task(service string, slot int) swarmTask {
	sw.t.Helper()
	for _, c := range sw.tasks(service) {
		if c.slot() == slot {
			return c
		}
	}
	sw.t.Fatalf("no running task %s.%d", service, slot)
	return swarmTask{}
}

// waitServices waits until every service has its replicas running and
// healthy, and no other container of the stack runs.
func (sw *swarm) waitServices(d time.Duration, want map[string]int) {
	sw.t.Helper()
	eventually(sw.t, d, "stack "+sw.stack+" healthy", func() error {
		count := map[string]int{}
		var bad []string
		for _, c := range sw.containers("") {
			if !c.healthy() {
				bad = append(bad, c.Name+" not healthy")
				continue
			}
			count[strings.TrimPrefix(c.service(), sw.stack+"_")]++
		}
		for svc, n := range want {
			if count[svc] != n {
				bad = append(bad, fmt.Sprintf("%s: %d healthy, want %d", svc, count[svc], n))
			}
		}
		if len(bad) > 0 {
			time.Sleep(time.Second)
			return errors.New(strings.Join(bad, "; "))
		}
		return nil
	})
}

// metric reads a metric inside a task's container from its ops listener.
func (sw *swarm) metric(c swarmTask, port int, name string) float64 {
	sw.t.Helper()
	out := sw.docker(time.Minute, "exec", c.ID, "/healthcheck", "--print", fmt.Sprintf("http://127.0.0.1:%d/metrics", port))
	v, err := promtext.SumText(strings.NewReader(out), name, nil)
	if err != nil {
		sw.t.Fatalf("metrics of %s: %v", c.Name, err)
	}
	return v
}

// startProbe runs cdnprobe on the stack's network against tasks.edge
// (every edge's own address), bounded by d.
func (sw *swarm) startProbe(d time.Duration, args ...string) *probeRun {
	sw.probes++
	p := &probeRun{name: fmt.Sprintf("%s-probe-%d", sw.stack, sw.probes), done: make(chan struct{})}
	p.run(sw.stack, sw.network, "p2pd/cdnprobe:"+sw.tag, d, append([]string{"-q", "-host", "tasks.edge", "-timeout", d.String()}, args...))
	return p
}

func (sw *swarm) probe(d time.Duration, args ...string) (*probeReport, error) {
	p := sw.startProbe(d, args...)
	<-p.done
	return p.rep, p.err
}

func (sw *swarm) mustProbe(d time.Duration, args ...string) *probeReport {
	sw.t.Helper()
	rep, err := sw.probe(d, args...)
	if err != nil {
		sw.t.Fatal(err)
	}
	if !rep.OK {
		sw.t.Fatalf("cdnprobe %v: %s", args, rep)
	}
	return rep
}

// receivesChunks fetches fresh files until node has fetched or served
// chunk bytes, for at most d.
func (sw *swarm) receivesChunks(node swarmTask, fresh *[]mediaFile, d time.Duration) bool {
	sw.t.Helper()
	moved := func() float64 {
		return sw.metric(node, cachenodeOps, "p2pd_cachenode_bytes_served_total") +
			sw.metric(node, cachenodeOps, "p2pd_cachenode_fetched_bytes_total")
	}
	start := moved()
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) && len(*fresh) > 0 {
		f := (*fresh)[0]
		*fresh = (*fresh)[1:]
		sw.mustProbe(time.Minute, "-n", "1", f.arg())
		if n := moved() - start; n > 0 {
			sw.t.Logf("%s moved %.1f MiB of %s", node.Name, n/(1<<20), f.name)
			return true
		}
	}
	return false
}

func (sw *swarm) dumpLogs() {
	for _, svc := range []string{"etcd-1", "tracker", "origin", "cachenode", "edge"} {
		if out, err := docker(time.Minute, "service", "logs", "--no-task-ids", "--tail", "15", sw.stack+"_"+svc); err == nil {
			sw.t.Logf("---- %s (last lines) ----\n%s", svc, out)
		}
	}
}

// remove removes the stack and its volumes and returns what is left of it.
func (sw *swarm) remove() []string {
	docker(2*time.Minute, "stack", "rm", sw.stack)
	if out, err := docker(time.Minute, "ps", "-a", "-q", "--filter", "label=p2pd.e2e.project="+sw.stack); err == nil {
		if ids := strings.Fields(out); len(ids) > 0 {
			docker(time.Minute, append([]string{"rm", "-f"}, ids...)...)
		}
	}
	var left []string
	deadline := time.Now().Add(2 * time.Minute)
	for {
		left = nil
		for _, kind := range []string{"service ls -q", "ps -a -q", "network ls -q", "secret ls -q"} {
			args := append(strings.Fields(kind), "--filter", "label=com.docker.stack.namespace="+sw.stack)
			out, _ := docker(time.Minute, args...)
			for _, id := range strings.Fields(out) {
				left = append(left, strings.Fields(kind)[0]+" "+id)
			}
		}
		if len(left) == 0 || time.Now().After(deadline) {
			break
		}
		time.Sleep(time.Second)
	}
	// Volumes outlive a stack by design (etcd data, chunks): removed here,
	// once no container holds them.
	out, _ := docker(time.Minute, "volume", "ls", "-q", "--filter", "name="+sw.stack+"_")
	for _, v := range strings.Fields(out) {
		if _, err := docker(time.Minute, "volume", "rm", v); err != nil {
			left = append(left, "volume "+v)
		}
	}
	return left
}

// teardown removes the stack, the labels this test added and, when this
// test created the swarm, leaves it.
func (sw *swarm) teardown() {
	if left := sw.remove(); len(left) > 0 {
		sw.t.Errorf("teardown: left %v", left)
	}
	if len(sw.labels) > 0 && !sw.created {
		args := []string{"node", "update"}
		for _, l := range sw.labels {
			args = append(args, "--label-rm", l)
		}
		if _, err := docker(time.Minute, append(args, sw.node)...); err != nil {
			sw.t.Errorf("teardown: %v", err)
		}
		sw.labels = nil
	}
	if sw.created {
		if _, err := docker(2*time.Minute, "swarm", "leave", "--force"); err != nil {
			sw.t.Errorf("teardown: %v", err)
		}
		// swarm init made docker_gwbridge (the tasks' way out); leaving
		// keeps it.
		if sw.gwbridge {
			docker(time.Minute, "network", "rm", "docker_gwbridge")
		}
		sw.created = false
	}
}
