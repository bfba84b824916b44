// Package observability checks the files operators load into Prometheus
// and Grafana against the code: every PromQL expression in the alert rules
// and the dashboard parses, the scrape config loads, and every metric an
// expression names is exported by a running p2pd service (the real
// binaries, started on loopback). Alert selectors must match a series
// before anything went wrong: a counter that appears with its first error
// hides that error from rate() and increase().
package observability

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/config"
	// The scrape config finds scaled compose services through DNS.
	_ "github.com/prometheus/prometheus/discovery/dns"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/model/rulefmt"
	"github.com/prometheus/prometheus/promql/parser"
)

// repo is the repository root, from this module's directory.
const repo = "../.."

// fromPrometheus tells the series Prometheus makes itself, not any
// service, apart.
func fromPrometheus(name string) bool { return name == "up" }

// expr is one PromQL expression and where it comes from.
type expr struct {
	where string
	text  string
	alert bool
}

func alertExprs(t *testing.T) []expr {
	t.Helper()
	path := filepath.Join(repo, "deployments/prometheus/alerts.yml")
	groups, errs := rulefmt.ParseFile(path, false, model.UTF8Validation, parser.NewParser(parser.Options{}), slog.New(slog.DiscardHandler))
	// rulefmt has parsed every expression (and template) already; the
	// metric check parses them again for their selectors.
	if len(errs) > 0 {
		t.Fatalf("%s: %v", path, errs)
	}
	var out []expr
	for _, g := range groups.Groups {
		for _, r := range g.Rules {
			name := r.Alert
			if name == "" {
				name = r.Record
			}
			out = append(out, expr{where: "alerts.yml " + name, text: r.Expr, alert: r.Alert != ""})
		}
	}
	if len(out) == 0 {
		t.Fatalf("%s has no rules", path)
	}
	return out
}

func dashboardExprs(t *testing.T) []expr {
	t.Helper()
	paths, err := filepath.Glob(filepath.Join(repo, "deployments/grafana/*.json"))
	if err != nil || len(paths) == 0 {
		t.Fatalf("no Grafana dashboards: %v", err)
	}
	type panel struct {
		Title   string
		Targets []struct{ Expr string }
		Panels  json.RawMessage // a collapsed row's panels
	}
	var out []expr
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		var d struct {
			Title  string
			UID    string
			Panels []panel
		}
		if err := json.Unmarshal(b, &d); err != nil {
			t.Fatalf("%s: %v", p, err)
		}
		if d.Title == "" || d.UID == "" {
			t.Errorf("%s: a dashboard needs a title and a uid", p)
		}
		for _, pn := range d.Panels {
			for _, tg := range pn.Targets {
				out = append(out, expr{where: filepath.Base(p) + " " + pn.Title, text: tg.Expr})
			}
		}
	}
	if len(out) == 0 {
		t.Fatal("the dashboards have no queries")
	}
	return out
}

func TestScrapeConfigLoads(t *testing.T) {
	path := filepath.Join(repo, "deployments/prometheus/prometheus.yml")
	cfg, err := config.LoadFile(path, false, nil)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	jobs := map[string]bool{}
	for _, sc := range cfg.ScrapeConfigs {
		jobs[sc.JobName] = true
	}
	for _, j := range []string{"p2pd-tracker", "p2pd-origin", "p2pd-cachenode", "p2pd-edge"} {
		if !jobs[j] {
			t.Errorf("%s: no job %s", path, j)
		}
	}
	if !slices.Contains(cfg.RuleFiles, filepath.Join(filepath.Dir(path), "alerts.yml")) {
		t.Errorf("%s: rule_files %v do not load alerts.yml", path, cfg.RuleFiles)
	}
}

func TestExpressionsNameExportedMetrics(t *testing.T) {
	exprs := append(alertExprs(t), dashboardExprs(t)...)
	type use struct {
		where string
		sel   *parser.VectorSelector
		alert bool
	}
	var uses []use
	p := parser.NewParser(parser.Options{})
	for _, e := range exprs {
		ast, err := p.ParseExpr(e.text)
		if err != nil {
			t.Errorf("%s: %v\n%s", e.where, err, e.text)
			continue
		}
		parser.Inspect(ast, func(n parser.Node, _ []parser.Node) error {
			if vs, ok := n.(*parser.VectorSelector); ok {
				uses = append(uses, use{e.where, vs, e.alert})
			}
			return nil
		})
	}
	if t.Failed() {
		return
	}

	series := runningServices(t)
	names := map[string]bool{}
	for _, s := range series {
		names[s.Get(model.MetricNameLabel)] = true
	}
	for _, u := range uses {
		name := u.sel.Name
		if fromPrometheus(name) {
			continue
		}
		if !names[name] {
			t.Errorf("%s: %s is not exported by any p2pd service", u.where, u.sel)
			continue
		}
		if !u.alert {
			continue
		}
		matched := slices.ContainsFunc(series, func(s labels.Labels) bool {
			for _, m := range u.sel.LabelMatchers {
				if !m.Matches(s.Get(m.Name)) {
					return false
				}
			}
			return true
		})
		if !matched {
			t.Errorf("%s: %s matches no series until it happens: initialise its labels at zero", u.where, u.sel)
		}
	}
}

// runningServices builds the four services, starts them on loopback as
// `make run` does (an embedded etcd in the tracker), serves one request
// through the edge so the latency histograms have observations, and
// returns every series their /metrics export.
func runningServices(t *testing.T) []labels.Labels {
	t.Helper()
	bin := t.TempDir()
	build := exec.Command("go", "build", "-o", bin+string(os.PathSeparator),
		"./services/tracker", "./services/origin", "./services/cachenode", "./services/edge")
	build.Dir = repo
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build the services: %v\n%s", err, out)
	}
	media := t.TempDir()
	if err := os.WriteFile(filepath.Join(media, "clip.mp4"), make([]byte, 3<<20), 0o644); err != nil {
		t.Fatal(err)
	}
	tracker := freeAddr(t)
	ops := map[string]string{"tracker": freeAddr(t), "origin": freeAddr(t), "cachenode": freeAddr(t), "edge": freeAddr(t)}
	edge := freeAddr(t)
	start(t, bin, "tracker", "--listen", tracker, "--embedded-etcd", t.TempDir(),
		"--etcd-client-addr", freeAddr(t), "--etcd-peer-addr", freeAddr(t), "--ops", ops["tracker"])
	waitFor(t, "tracker ready", func() error { return get("http://" + ops["tracker"] + "/readyz") })
	start(t, bin, "origin", "--listen", freeAddr(t), "--tracker", tracker, "--media-dir", media, "--ops", ops["origin"])
	start(t, bin, "cachenode", "--listen", freeAddr(t), "--tracker", tracker, "--cache-dir", t.TempDir(), "--ops", ops["cachenode"])
	start(t, bin, "edge", "--listen", edge, "--tracker", tracker, "--ops", ops["edge"])
	for name, addr := range ops {
		waitFor(t, name+" ready", func() error { return get("http://" + addr + "/readyz") })
	}
	waitFor(t, "a request served through the edge", func() error { return get("http://" + edge + "/clip.mp4") })

	var out []labels.Labels
	for name, addr := range ops {
		fams, err := scrape("http://" + addr + "/metrics")
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		for _, f := range fams {
			out = append(out, samples(f)...)
		}
	}
	return out
}

// samples lists a family's series as Prometheus stores them: a histogram
// is its _bucket, _sum and _count series, a summary its quantiles, _sum
// and _count.
func samples(f *dto.MetricFamily) []labels.Labels {
	var out []labels.Labels
	for _, m := range f.Metric {
		b := labels.NewScratchBuilder(len(m.Label) + 1)
		for _, l := range m.Label {
			b.Add(l.GetName(), l.GetValue())
		}
		with := func(name string) labels.Labels {
			c := labels.NewBuilder(b.Labels())
			c.Set(model.MetricNameLabel, name)
			return c.Labels()
		}
		switch f.GetType() {
		case dto.MetricType_HISTOGRAM, dto.MetricType_GAUGE_HISTOGRAM:
			out = append(out, with(f.GetName()+"_bucket"), with(f.GetName()+"_sum"), with(f.GetName()+"_count"))
		case dto.MetricType_SUMMARY:
			out = append(out, with(f.GetName()), with(f.GetName()+"_sum"), with(f.GetName()+"_count"))
		default:
			out = append(out, with(f.GetName()))
		}
	}
	return out
}

func scrape(url string) (map[string]*dto.MetricFamily, error) {
	resp, err := http.Get(url)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	return p.TextToMetricFamilies(resp.Body)
}

func get(url string) error {
	resp, err := http.Get(url)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	io.Copy(io.Discard, resp.Body)
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	return nil
}

// start runs a service until the test ends; its log is shown if the test
// fails.
func start(t *testing.T, bin, name string, args ...string) {
	t.Helper()
	log, err := os.Create(filepath.Join(t.TempDir(), name+".log"))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cmd := exec.CommandContext(ctx, filepath.Join(bin, name), args...)
	cmd.Stdout, cmd.Stderr = log, log
	// The tracker lets only the holder of the origin credential publish.
	cmd.Env = append(os.Environ(), "P2PD_ORIGIN_TOKEN=observability-test-origin")
	cmd.Cancel = func() error { return cmd.Process.Signal(os.Interrupt) }
	cmd.WaitDelay = 10 * time.Second
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	t.Cleanup(func() {
		cancel()
		cmd.Wait()
		log.Close()
		if t.Failed() {
			b, _ := os.ReadFile(log.Name())
			t.Logf("---- %s log ----\n%s", name, b)
		}
	})
}

// waitFor retries f for up to a minute: services take a moment to start.
func waitFor(t *testing.T, what string, f func() error) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for {
		err := f()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: %v", what, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}
