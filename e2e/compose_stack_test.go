package e2e

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	mrand "math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/p2pd/p2pd/internal/probereport"
)

// stack is one compose project of the deployment in deployments/compose,
// driven through the compose command and the docker CLI, as an operator
// would. Everything it creates carries its unique project name.
type stack struct {
	t       *testing.T
	compose []string // "docker compose" or "docker-compose"
	project string
	files   []string // the deployment's compose file, then the test's override
	env     []string
	tag     string
	media   string
	token   string // the admin API's bearer token
	network string // the project's network, once up
	probes  atomic.Int32
}

// composeCommand finds the compose command: $P2PD_COMPOSE when set, else
// the docker compose plugin, else docker-compose.
func composeCommand() ([]string, error) {
	if c := strings.Fields(os.Getenv("P2PD_COMPOSE")); len(c) > 0 {
		return c, nil
	}
	for _, c := range [][]string{{"docker", "compose"}, {"docker-compose"}} {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		err := exec.CommandContext(ctx, c[0], append(c[1:], "version")...).Run()
		cancel()
		if err == nil {
			return c, nil
		}
	}
	return nil, errors.New("neither `docker compose` nor `docker-compose` works")
}

// newStack skips the test when no Docker engine or compose command
// answers; otherwise it builds the images and returns a stack that is not
// up yet, torn down (down -v) when the test ends.
func newStack(t *testing.T, media string) *stack {
	t.Helper()
	if testing.Short() {
		t.Skip("compose e2e: skipped in -short mode")
	}
	if os.Getenv("P2PD_SKIP_COMPOSE") != "" {
		t.Skip("compose e2e: skipped because P2PD_SKIP_COMPOSE is set")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	out, err := exec.CommandContext(ctx, "docker", "info", "--format", "{{.ServerVersion}}").CombinedOutput()
	cancel()
	if err != nil {
		t.Skipf("compose e2e: skipped: no Docker engine answers (`docker info`: %v: %s)", err, bytes.TrimSpace(out))
	}
	compose, err := composeCommand()
	if err != nil {
		t.Skipf("compose e2e: skipped: %v", err)
	}
	root, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	s := &stack{
		t:       t,
		compose: compose,
		project: "p2pde2e" + hex.EncodeToString(randBytes(4)),
		tag:     "dev",
		media:   media,
	}
	if v := os.Getenv("P2PD_TAG"); v != "" {
		s.tag = v
	}
	t.Logf("compose e2e: engine %s, %s, project %s", bytes.TrimSpace(out), strings.Join(compose, " "), s.project)

	buildImages(t, root, s.tag)

	// The host reaches published ports on loopback only, each on a port
	// the engine picks, so this project collides with no other stack.
	override := filepath.Join(t.TempDir(), "compose.e2e.yml")
	if err := os.WriteFile(override, []byte(opsOverride), 0o644); err != nil {
		t.Fatal(err)
	}
	s.files = []string{filepath.Join(root, "deployments/compose/docker-compose.yml"), override}
	// The admin token as `make up` makes it: a file the origin reads
	// through a bind mount, readable by its unprivileged user.
	s.token = hex.EncodeToString(randBytes(16))
	tokenFile := filepath.Join(t.TempDir(), "admin-token")
	if err := os.WriteFile(tokenFile, []byte(s.token+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	s.env = append(os.Environ(),
		"P2PD_ADMIN_TOKEN_FILE="+tokenFile,
		"P2PD_TAG="+s.tag,
		"P2PD_MEDIA_DIR="+media,
		"P2PD_EDGE_PORTS=127.0.0.1:",
		"P2PD_ORIGIN_OPS=127.0.0.1:",
		"P2PD_JAEGER_UI=127.0.0.1:",
		"P2PD_CACHE_MAX_BYTES=2G",
		"P2PD_ORIGIN_TOKEN="+e2eOriginToken,
	)
	t.Cleanup(s.teardown)
	return s
}

// buildImages builds the images exactly as `make images` does.
func buildImages(t *testing.T, root, tag string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 25*time.Minute)
	defer cancel()
	start := time.Now()
	build := exec.CommandContext(ctx, "make", "--no-print-directory", "-C", root,
		"-f", "deployments/compose/compose.mk", "images", "P2PD_TAG="+tag)
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("make images: %v\n%s", err, out)
	}
	t.Logf("images built in %v", time.Since(start).Round(time.Second))
}

// opsOverride publishes every node's ops listener on a random loopback
// port, so the test reads their metrics from the host.
const opsOverride = `services:
  tracker-1: {ports: ["127.0.0.1::9091"]}
  tracker-2: {ports: ["127.0.0.1::9091"]}
  cachenode: {ports: ["127.0.0.1::9092"]}
  edge: {ports: ["127.0.0.1::9093"]}
`

func randBytes(n int) []byte {
	b := make([]byte, n)
	rand.Read(b)
	return b
}

// run runs a compose command of this project, bounded by d.
func (s *stack) run(d time.Duration, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	full := append([]string{}, s.compose[1:]...)
	full = append(full, "-p", s.project)
	for _, f := range s.files {
		full = append(full, "-f", f)
	}
	full = append(full, args...)
	cmd := exec.CommandContext(ctx, s.compose[0], full...)
	cmd.Env = s.env
	out, err := cmd.CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("%s %s: %w\n%s", strings.Join(s.compose, " "), strings.Join(args, " "), err, out)
	}
	return string(out), nil
}

// mustRun is run failing the test.
func (s *stack) mustRun(d time.Duration, args ...string) string {
	s.t.Helper()
	out, err := s.run(d, args...)
	if err != nil {
		s.t.Fatal(err)
	}
	return out
}

// docker runs a docker CLI command, bounded by d.
func docker(d time.Duration, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	out, err := exec.CommandContext(ctx, "docker", args...).CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("docker %s: %w: %s", strings.Join(args, " "), err, bytes.TrimSpace(out))
	}
	return string(out), nil
}

func (s *stack) docker(args ...string) string {
	s.t.Helper()
	out, err := docker(2*time.Minute, args...)
	if err != nil {
		s.t.Fatal(err)
	}
	return out
}

// container is what the test needs of `docker inspect`.
type container struct {
	ID    string
	Name  string
	State struct {
		Status    string
		Running   bool
		StartedAt string
		Health    *struct{ Status string }
	}
	RestartCount int
	Config       struct{ Labels map[string]string }
	Mounts       []struct {
		Type string
		Name string
	}
	NetworkSettings struct {
		Networks map[string]struct {
			IPAddress string
			Aliases   []string
		}
		Ports map[string][]struct{ HostIp, HostPort string }
	}
}

func (c container) service() string { return c.Config.Labels["com.docker.compose.service"] }

func (c container) number() int {
	n, _ := strconv.Atoi(c.Config.Labels["com.docker.compose.container-number"])
	return n
}

func (c container) healthy() bool {
	return c.State.Running && (c.State.Health == nil || c.State.Health.Status == "healthy")
}

// hostAddr is the loopback host:port where the container's port is
// published.
func (c container) hostAddr(port int) string {
	for _, b := range c.NetworkSettings.Ports[strconv.Itoa(port)+"/tcp"] {
		if b.HostPort != "" {
			return "127.0.0.1:" + b.HostPort
		}
	}
	return ""
}

// containers returns the project's containers, all of them or those of
// the given services, ordered by service and replica number.
func (s *stack) containers(services ...string) []container {
	s.t.Helper()
	ids := strings.Fields(s.docker("ps", "-a", "-q", "--filter", "label=com.docker.compose.project="+s.project))
	if len(ids) == 0 {
		return nil
	}
	var all []container
	if err := json.Unmarshal([]byte(s.docker(append([]string{"inspect"}, ids...)...)), &all); err != nil {
		s.t.Fatalf("docker inspect: %v", err)
	}
	var cs []container
	for _, c := range all {
		if len(services) == 0 || slices.Contains(services, c.service()) {
			cs = append(cs, c)
		}
	}
	slices.SortFunc(cs, func(a, b container) int {
		if c := strings.Compare(a.service(), b.service()); c != 0 {
			return c
		}
		return a.number() - b.number()
	})
	return cs
}

// one returns the container of a single-replica service or replica n.
func (s *stack) one(service string, n int) container {
	s.t.Helper()
	for _, c := range s.containers(service) {
		if c.number() == n {
			return c
		}
	}
	s.t.Fatalf("no container %s #%d in project %s", service, n, s.project)
	return container{}
}

// running returns the running containers of a service.
func (s *stack) running(service string) []container {
	s.t.Helper()
	var cs []container
	for _, c := range s.containers(service) {
		if c.State.Running {
			cs = append(cs, c)
		}
	}
	return cs
}

// ensureRunning starts c again unless it runs (a restart policy may have
// restarted it already). A step defers it, so a failed step leaves the
// stack whole for the next; it never fails the test itself.
func (s *stack) ensureRunning(c container) {
	out, err := docker(time.Minute, "inspect", "-f", "{{.State.Running}}", c.ID)
	if err == nil && strings.TrimSpace(out) == "true" {
		return
	}
	if _, err := docker(2*time.Minute, "start", c.ID); err != nil {
		s.t.Logf("start %s again: %v", c.Name, err)
	}
}

// ensureConnected connects c to the project network under aliases unless
// it is connected.
func (s *stack) ensureConnected(c container, aliases []string) error {
	out, err := docker(time.Minute, "inspect", "-f", "{{json .NetworkSettings.Networks}}", c.ID)
	if err == nil && strings.Contains(out, `"`+s.network+`"`) {
		return nil
	}
	args := []string{"network", "connect"}
	for _, a := range aliases {
		args = append(args, "--alias", a)
	}
	_, err = docker(time.Minute, append(args, s.network, c.ID)...)
	return err
}

// waitHealthy waits until every container of the project is running and
// healthy and the services have the given replica counts.
func (s *stack) waitHealthy(d time.Duration, want map[string]int) {
	s.t.Helper()
	eventually(s.t, d, "project healthy", func() error {
		count := map[string]int{}
		var bad []string
		for _, c := range s.containers() {
			if !c.healthy() {
				st := c.State.Status
				if c.State.Health != nil {
					st += "/" + c.State.Health.Status
				}
				bad = append(bad, c.Name+" "+st)
				continue
			}
			count[c.service()]++
		}
		for svc, n := range want {
			if count[svc] != n {
				bad = append(bad, fmt.Sprintf("%s: %d healthy, want %d", svc, count[svc], n))
			}
		}
		if len(bad) > 0 {
			return errors.New(strings.Join(bad, "; "))
		}
		return nil
	})
}

// up starts (or rescales) the project and waits until it is healthy.
func (s *stack) up(want map[string]int) {
	s.t.Helper()
	args := []string{"up", "-d", "--remove-orphans"}
	for _, svc := range []string{"edge", "cachenode"} {
		if n, ok := want[svc]; ok {
			args = append(args, "--scale", fmt.Sprintf("%s=%d", svc, n))
		}
	}
	s.mustRun(6*time.Minute, args...)
	s.waitHealthy(3*time.Minute, want)
	if s.network == "" {
		s.network = strings.TrimSpace(s.docker("network", "ls", "-q", "--filter", "label=com.docker.compose.project="+s.project, "--format", "{{.Name}}"))
		if s.network == "" || strings.Contains(s.network, "\n") {
			s.t.Fatalf("project network: got %q, want exactly one", s.network)
		}
	}
}

// dumpLogs logs the last lines of every container of the project.
func (s *stack) dumpLogs() {
	if out, err := s.run(time.Minute, "logs", "--no-color", "--tail", "40"); err == nil {
		s.t.Logf("---- compose logs (last lines per container) ----\n%s", out)
	}
}

// teardown removes everything of the project, also after a failure.
func (s *stack) teardown() {
	if out, err := docker(time.Minute, "ps", "-a", "-q", "--filter", "label=p2pd.e2e.project="+s.project); err == nil {
		if ids := strings.Fields(out); len(ids) > 0 {
			docker(time.Minute, append([]string{"rm", "-f"}, ids...)...)
		}
	}
	if _, err := s.run(3*time.Minute, "down", "-v", "--remove-orphans", "--timeout", "5"); err != nil {
		s.t.Errorf("teardown: %v", err)
	}
}

// leftovers lists what of the project still exists: containers, networks,
// and the given volumes.
func (s *stack) leftovers(volumes []string) []string {
	s.t.Helper()
	var left []string
	for _, kind := range []string{"ps -a -q", "network ls -q", "volume ls -q"} {
		args := append(strings.Fields(kind), "--filter", "label=com.docker.compose.project="+s.project)
		for _, id := range strings.Fields(s.docker(args...)) {
			left = append(left, strings.Fields(kind)[0]+" "+id)
		}
	}
	for _, v := range volumes {
		if _, err := docker(time.Minute, "volume", "inspect", v); err == nil {
			left = append(left, "volume "+v)
		}
	}
	return left
}

// volumes lists the volumes mounted into the project's containers.
func (s *stack) volumes() []string {
	s.t.Helper()
	var vs []string
	for _, c := range s.containers() {
		for _, m := range c.Mounts {
			if m.Type == "volume" && !slices.Contains(vs, m.Name) {
				vs = append(vs, m.Name)
			}
		}
	}
	return vs
}

// probeReport is cdnprobe's JSON report.
type probeReport struct{ probereport.Report }

func (r *probeReport) String() string {
	b, _ := json.Marshal(r)
	return string(b)
}

// probeRun is a cdnprobe container running in the project's network.
type probeRun struct {
	name string
	done chan struct{}
	rep  *probeReport
	err  error
	log  string
}

// probe starts cdnprobe in the project's network with args: it resolves
// `cdn` through Docker's DNS like a browser would. Bounded by d.
func (s *stack) probe(d time.Duration, args ...string) *probeRun {
	s.t.Helper()
	p := &probeRun{
		name: fmt.Sprintf("%s-probe-%d", s.project, s.probes.Add(1)),
		done: make(chan struct{}),
	}
	args = append([]string{"-timeout", d.String()}, args...)
	p.run(s.project, s.network, "p2pd/cdnprobe:"+s.tag, d, args)
	return p
}

// run starts the probe container on network with cdnprobe's args, in the
// background (p.done closes when it ended), bounded by d plus a minute.
func (p *probeRun) run(project, network, image string, d time.Duration, args []string) {
	full := append([]string{"run", "--rm", "--name", p.name, "--label", "p2pd.e2e.project=" + project,
		"--network", network, "--entrypoint", "/cdnprobe", image}, args...)
	go func() {
		defer close(p.done)
		ctx, cancel := context.WithTimeout(context.Background(), d+time.Minute)
		defer cancel()
		cmd := exec.CommandContext(ctx, "docker", full...)
		var stdout, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		err := cmd.Run()
		p.log = string(tail(stderr.Bytes(), 30))
		var rep probeReport
		if jerr := json.Unmarshal(stdout.Bytes(), &rep); jerr != nil {
			p.err = fmt.Errorf("cdnprobe: %v (report: %v): %s", err, jerr, p.log)
			return
		}
		p.rep = &rep
	}()
}

// wait returns the report, failing the test if cdnprobe gave none.
func (p *probeRun) wait(t *testing.T) *probeReport {
	t.Helper()
	<-p.done
	if p.err != nil {
		t.Fatal(p.err)
	}
	return p.rep
}

// mustProbe runs cdnprobe to the end and requires every download verified.
func (s *stack) mustProbe(d time.Duration, args ...string) *probeReport {
	s.t.Helper()
	p := s.probe(d, args...)
	rep := p.wait(s.t)
	if !rep.OK {
		s.t.Fatalf("cdnprobe %v: %s\n%s", args, rep, p.log)
	}
	return rep
}

// opsMetric reads a metric from a container's published ops port, summed
// over the samples whose labels include want.
func opsMetric(t *testing.T, c container, port int, name string, want map[string]string) float64 {
	t.Helper()
	addr := c.hostAddr(port)
	if addr == "" {
		t.Fatalf("%s: ops port %d not published", c.Name, port)
	}
	return metric(t, addr, name, want)
}

// admin calls the origin's admin API from the host, with the token unless
// noToken, decodes a 200 answer's JSON into out and returns the status.
func (s *stack) admin(t *testing.T, path string, out any, noToken bool) int {
	t.Helper()
	addr := s.one("origin", 1).hostAddr(9090)
	if addr == "" {
		t.Fatal("origin: ops port 9090 not published")
	}
	req, err := http.NewRequest("GET", "http://"+addr+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !noToken {
		req.Header.Set("Authorization", "Bearer "+s.token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	if resp.StatusCode == http.StatusOK && out != nil {
		if err := json.Unmarshal(body, out); err != nil {
			t.Fatalf("GET %s: %v: %s", path, err, body)
		}
	} else if resp.StatusCode != http.StatusOK {
		t.Logf("GET %s: %d %s", path, resp.StatusCode, bytes.TrimSpace(body))
	}
	return resp.StatusCode
}

// mediaFile is a generated file and its digest.
type mediaFile struct {
	name   string
	size   int64
	sha256 string
}

// arg is the file as a cdnprobe argument: path=digest.
func (f mediaFile) arg() string { return "/" + f.name + "=" + f.sha256 }

// writeMedia writes size pseudo-random bytes to dir/name, streaming, and
// returns its digest; readable by the containers' unprivileged user.
func writeMedia(t *testing.T, dir, name string, size int64) mediaFile {
	t.Helper()
	p := filepath.Join(dir, filepath.FromSlash(name))
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(p, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var seed [32]byte
	rand.Read(seed[:])
	h := sha256.New()
	src := io.LimitReader(mrand.NewChaCha8(seed), size)
	if _, err := io.Copy(io.MultiWriter(f, h), src); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	os.Chmod(p, 0o644)
	return mediaFile{name: name, size: size, sha256: hex.EncodeToString(h.Sum(nil))}
}

// head asks an edge from the host for a file; it returns the status and
// the length announced.
func head(addr, name string) (int, int64, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodHead, "http://"+addr+"/"+name, nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, 0, err
	}
	resp.Body.Close()
	return resp.StatusCode, resp.ContentLength, nil
}
