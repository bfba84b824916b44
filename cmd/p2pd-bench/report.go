package main

import (
	"fmt"
	"maps"
	"os"
	"slices"
	"strings"
	"time"
)

type hotResult struct {
	Name     string
	Wrk      wrkResult          // the best run
	Runs     []float64          // req/s of every run
	RSS      map[string]int64   // peak during the runs, by process
	CPU      map[string]float64 // CPU seconds per GiB served, by process (best run)
	Profiles map[string]string  // pprof -top, by process
}

type offloadResult struct {
	Egress  float64 // origin bytes sent
	Fetched float64 // bytes the caches fetched from anyone (p2pd)
	Took    time.Duration
}

type results struct {
	Machine               map[string]string
	LoadBefore, LoadAfter string
	Scale                 float64
	Sizes                 map[string]int64

	Hot      map[string]hotResult
	HotOrder []string
	WS       map[string]hotResult // the working set larger than memory
	WSOrder  []string
	Seq      map[string][2]float64 // MB/s: first (cold) and second pass
	SeqCPU   map[string][2]float64 // CPU s/GiB of every process on the path, per pass
	Viewers  map[string]viewerResult

	ChunkDirect, ChunkP2PD, ChunkNginx time.Duration
	ColdP2PD, ColdNginx                download
	// First bytes of every cold whole-file GET: the small probes and the
	// big file.
	TTFBP2PD, TTFBNginx []time.Duration

	OffloadP2PD, OffloadNginx offloadResult

	// Profiles of the p2pd services by measure ("sequential", "cold",
	// "cold-single", "viewers") and service.
	Profiles map[string]map[string]string
	// ViewerProfileN is the size of the viewer trial profiled.
	ViewerProfileN int
}

const (
	beginMark = "<!-- bench:begin (written by `make bench`; edit outside the markers) -->"
	endMark   = "<!-- bench:end -->"
)

func yes(ok bool) string {
	if ok {
		return "**met**"
	}
	return "not met"
}

func ratio(a, b float64) float64 {
	if b == 0 {
		return 0
	}
	return a / b
}

// markdown renders the results section.
func (r *results) markdown() string {
	var w strings.Builder
	p := func(format string, args ...any) { fmt.Fprintf(&w, format+"\n", args...) }
	m := r.Machine
	p("Measured %s on %s CPUs (%s), %s RAM, %s; Go %s, nginx %s, wrk %s. Load average %s before, %s after (the machine may be shared: each wrk target ran %d times, the best run counts).",
		m["date"], m["nproc"], m["cpu"], m["memory"], m["kernel"], strings.TrimPrefix(m["go"], "go"), m["nginx"], m["wrk"],
		r.LoadBefore, r.LoadAfter, len(r.Hot[r.HotOrder[0]].Runs))
	p("")
	if r.Scale != 1 {
		p("**Scaled run (-scale %g)**: sizes below are not the targets' sizes.", r.Scale)
		p("")
	}
	sz := func(name string) string { return fmtBytes(float64(r.Sizes[name])) }

	p("### Targets")
	p("")
	p("Working-set numbers come from files four times larger than every memory cache on the path together, so most requests are served from a node's disk; the files still fit this machine's page cache (%s RAM), so the kernel serves those disk reads from memory, for nginx and p2pd alike. Hot numbers come from a file that fits the memory caches.", m["memory"])
	p("")
	p("| measure | p2pd | nginx | ratio | target | |")
	p("|---|---|---|---|---|---|")
	wsEdge, wsSingle, wsDisk := r.WS["p2pd-edge"], r.WS["p2pd-single"], r.WS["nginx-disk"]
	p("| working set %s: random 1 MiB ranges, edge + cachenode vs nginx from disk | %.0f req/s | %.0f req/s | %.2f× | ≥ 0.6× | %s |",
		fmtBytes(float64(wsFiles*r.Sizes["ws0.bin"])), wsEdge.Wrk.ReqPerSec, wsDisk.Wrk.ReqPerSec, ratio(wsEdge.Wrk.ReqPerSec, wsDisk.Wrk.ReqPerSec),
		yes(ratio(wsEdge.Wrk.ReqPerSec, wsDisk.Wrk.ReqPerSec) >= 0.6))
	p("| working set: single p2pd cache node vs nginx from disk | %.0f req/s | %.0f req/s | %.2f× | ≥ 0.9× | %s |",
		wsSingle.Wrk.ReqPerSec, wsDisk.Wrk.ReqPerSec, ratio(wsSingle.Wrk.ReqPerSec, wsDisk.Wrk.ReqPerSec),
		yes(ratio(wsSingle.Wrk.ReqPerSec, wsDisk.Wrk.ReqPerSec) >= 0.9))
	cpuEdge, cpuDisk := sumCPU(wsEdge.CPU), sumCPU(wsDisk.CPU)
	p("| working set: CPU seconds per GiB, edge + cachenode vs nginx from disk | %.2f s | %.2f s | %.2f× | ≤ 3× | %s |",
		cpuEdge, cpuDisk, ratio(cpuEdge, cpuDisk), yes(cpuDisk > 0 && ratio(cpuEdge, cpuDisk) <= 3))
	p("| one hot sequential stream of %s: edge + cachenode vs nginx from disk | %.0f MB/s | %.0f MB/s | %.2f× | ≥ 0.6× | %s |",
		sz("big.bin"), r.Seq["p2pd-edge"][1], r.Seq["nginx-disk"][1], ratio(r.Seq["p2pd-edge"][1], r.Seq["nginx-disk"][1]),
		yes(ratio(r.Seq["p2pd-edge"][1], r.Seq["nginx-disk"][1]) >= 0.6))
	p("| one cold sequential stream of %s through one cache vs nginx proxy_cache+slice cold | %.0f MB/s | %.0f MB/s | %.2f× | ≥ 0.8× | %s |",
		sz("big.bin"), r.Seq["p2pd-single"][0], r.Seq["nginx-slice"][0], ratio(r.Seq["p2pd-single"][0], r.Seq["nginx-slice"][0]),
		yes(ratio(r.Seq["p2pd-single"][0], r.Seq["nginx-slice"][0]) >= 0.8))
	vp, vn := r.Viewers["p2pd-edge"], r.Viewers["nginx-slice"]
	p("| viewer capacity (8 Mb/s players, no rebuffer): edge + cachenode vs nginx proxy_cache+slice | %s | %s | %.2f× | ≥ 1.0× | %s |",
		capacityText(vp), capacityText(vn), ratio(float64(vp.Best.Viewers), float64(vn.Best.Viewers)),
		capacityVerdict(vp, vn))
	edge, slice := r.Hot["p2pd-edge"].Wrk.ReqPerSec, r.Hot["nginx-slice"].Wrk.ReqPerSec
	single, disk := r.Hot["p2pd-single"].Wrk.ReqPerSec, r.Hot["nginx-disk"].Wrk.ReqPerSec
	p("| hot 1 MiB random ranges, %s file (fits memory): edge vs proxy_cache+slice | %.0f req/s | %.0f req/s | %.2f× | ≥ 1.0× | %s |",
		sz("hot.bin"), edge, slice, ratio(edge, slice), yes(ratio(edge, slice) >= 1.0))
	p("| hot 1 MiB random ranges (fits memory): single p2pd cache node vs nginx from local disk | %.0f req/s | %.0f req/s | %.2f× | ≥ 0.9× | %s |",
		single, disk, ratio(single, disk), yes(ratio(single, disk) >= 0.9))
	fs := float64(r.Sizes["swarm.bin"])
	p("| origin egress, %d caches × 32 viewers, cold %s file | %s (%.2f× file) | %s (%.2f× file) | %.2f× | ≤ 1.1× file | %s |",
		caches, sz("swarm.bin"), fmtBytes(r.OffloadP2PD.Egress), r.OffloadP2PD.Egress/fs,
		fmtBytes(r.OffloadNginx.Egress), r.OffloadNginx.Egress/fs, ratio(r.OffloadP2PD.Egress, r.OffloadNginx.Egress),
		yes(r.OffloadP2PD.Egress <= 1.1*fs))
	ttfbP, ttfbN := median(r.TTFBP2PD), median(r.TTFBNginx)
	p("| cold miss: time to first byte (median of %d cold files, one of %s) | %s | %s | %.2f× | ≤ one cold chunk fetched and verified through the same path (%s) | %s |",
		len(r.TTFBP2PD), sz("cold.bin"), fmtDur(ttfbP), fmtDur(ttfbN), ratio(float64(ttfbP), float64(ttfbN)),
		fmtDur(r.ChunkP2PD), yes(ttfbP <= r.ChunkP2PD))
	p("")

	rangeTable := func(title string, res map[string]hotResult, order []string) {
		p("%s", title)
		p("")
		p("| server | req/s (best) | all runs | MB/s | p50 | p99 | errors | CPU s/GiB | peak RSS |")
		p("|---|---|---|---|---|---|---|---|---|")
		for _, k := range order {
			h := res[k]
			var runs []string
			for _, v := range h.Runs {
				runs = append(runs, fmt.Sprintf("%.0f", v))
			}
			p("| %s | %.0f | %s | %.0f | %s | %s | %d | %s | %s |", h.Name, h.Wrk.ReqPerSec, strings.Join(runs, ", "), h.Wrk.MBPerSec,
				fmtDur(h.Wrk.P50), fmtDur(h.Wrk.P99), h.Wrk.Errors, perProcess(h.CPU, "%.2f"), perProcessBytes(h.RSS))
		}
		p("")
	}
	rangeTable(fmt.Sprintf("### Working set larger than the memory caches: 1 MiB Range requests at random offsets of %d files of %s (wrk, %d connections; memory caches %s each)",
		wsFiles, sz("ws0.bin"), 50, fmtBytes(float64(max(4*chunkSize, int64(float64(memCache)*r.Scale))))), r.WS, r.WSOrder)

	p("### Viewer capacity: players at 8 Mb/s, 4 s start-up buffer, %s buffer cap, random points of the working set", fmtDur(maxBuffer))
	p("")
	p("Each trial starts its viewers over 5 s and lets each watch for %s; a trial passes when no viewer stalls, fails or misses its start. Viewers come from %d loopback addresses. The load generator runs on the same 2 cores as the server. A failure is the server's (an answer other than 206, a body cut short, a connection refused, reset or never accepted); a viewer the load generator itself could not run (out of file descriptors or local ports) is counted apart, as \"gen\", and fails the trial without being the server's failure.", fmtDur(vp.Watch), viewerSources)
	p("")
	p("| server | most viewers with no rebuffer | trials (viewers: rebuffers/no start/failed) | CPU s/GiB at the best trial |")
	p("|---|---|---|---|")
	var why []string
	for _, k := range []string{"nginx-slice", "p2pd-edge"} {
		v := r.Viewers[k]
		var tr []string
		for _, t := range v.Trials {
			s := fmt.Sprintf("%d: %d/%d/%d", t.Viewers, t.Rebuffers, t.NoStart, t.Failed)
			if t.LoadGen > 0 {
				s += fmt.Sprintf(" (+%d gen)", t.LoadGen)
			}
			tr = append(tr, s)
			if rs := t.reasons(); rs != "" {
				why = append(why, fmt.Sprintf("%s, %d viewers: %s", v.Name, t.Viewers, rs))
			}
		}
		p("| %s | %s | %s | %s |", v.Name, capacityText(v), strings.Join(tr, "; "), perProcess(v.Best.CPU, "%.2f"))
	}
	p("")
	if len(why) > 0 {
		p("Failures by kind:")
		p("")
		for _, w := range why {
			p("- %s", w)
		}
		p("")
	}

	rangeTable(fmt.Sprintf("### Hot cache: 1 MiB Range requests at random offsets (wrk, %d connections, %s file that fits the memory caches)", 50, sz("hot.bin")), r.Hot, r.HotOrder)

	p("### One sequential download of a %s file (MB/s, 10⁶ bytes)", sz("big.bin"))
	p("")
	p("| server | first (cold) | second (hot) | CPU s/GiB cold, hot (every process on the path) |")
	p("|---|---|---|---|")
	for _, k := range []struct{ key, name string }{
		{"nginx-disk", "nginx, file on local disk"},
		{"nginx-slice", "nginx proxy_cache + slice"},
		{"p2pd-edge", "p2pd edge + cachenode"},
		{"p2pd-single", "p2pd single cache node"},
	} {
		s, c := r.Seq[k.key], r.SeqCPU[k.key]
		p("| %s | %.0f | %.0f | %.2f, %.2f |", k.name, s[0], s[1], c[0], c[1])
	}
	p("")
	p("Hot edge vs nginx proxy_cache+slice: %.2f×; single cache node vs nginx from disk: %.2f×.",
		ratio(r.Seq["p2pd-edge"][1], r.Seq["nginx-slice"][1]), ratio(r.Seq["p2pd-single"][1], r.Seq["nginx-disk"][1]))
	p("")

	p("### Cold miss (%s file, never requested before)", sz("cold.bin"))
	p("")
	p("| | p2pd edge + cachenode | nginx proxy_cache + slice |")
	p("|---|---|---|")
	p("| time to first byte | %s | %s |", fmtDur(r.ColdP2PD.TTFB), fmtDur(r.ColdNginx.TTFB))
	p("| time to last byte | %s | %s |", fmtDur(r.ColdP2PD.TTLB), fmtDur(r.ColdNginx.TTLB))
	p("| rate | %.0f MB/s | %.0f MB/s |", r.ColdP2PD.MBps(), r.ColdNginx.MBps())
	p("| time to first byte, median over this and %d cold 4 MiB files | %s | %s |", probes, fmtDur(ttfbP), fmtDur(ttfbN))
	p("| one cold 1 MiB chunk, whole request (median of %d) | %s | %s |", probes, fmtDur(r.ChunkP2PD), fmtDur(r.ChunkNginx))
	p("")
	p("One chunk fetched over SPP straight from the origin and verified (median of %d): %s.", probes, fmtDur(r.ChunkDirect))
	p("")

	p("### Origin offload: %d caches, 4 viewers each, all starting the same cold %s file", caches, sz("swarm.bin"))
	p("")
	p("| | origin egress | × file | all 32 downloads done in |")
	p("|---|---|---|---|")
	p("| p2pd (single binary, -i) | %s | %.2f | %s |", fmtBytes(r.OffloadP2PD.Egress), r.OffloadP2PD.Egress/fs, fmtDur(r.OffloadP2PD.Took))
	p("| 8 independent nginx proxy_cache+slice | %s | %.2f | %s |", fmtBytes(r.OffloadNginx.Egress), r.OffloadNginx.Egress/fs, fmtDur(r.OffloadNginx.Took))
	p("")
	p("The p2pd caches fetched %s in all, the origin's %s and the rest from each other.", fmtBytes(r.OffloadP2PD.Fetched), fmtBytes(r.OffloadP2PD.Egress))
	p("")

	profileSection := func(title string, res map[string]hotResult, order []string) {
		p("%s", title)
		p("")
		for _, k := range order {
			h := res[k]
			names := make([]string, 0, len(h.Profiles))
			for n := range h.Profiles {
				names = append(names, n)
			}
			slices.Sort(names)
			for _, n := range names {
				if strings.Contains(h.Profiles[n], "Total samples = 0") {
					p("%s — %s: idle (no CPU sample): every chunk came from memory in front of it.", h.Name, n)
					p("")
					continue
				}
				p("%s — %s:", h.Name, n)
				p("")
				p("```")
				p("%s", h.Profiles[n])
				p("```")
				p("")
			}
		}
	}
	profileSection("### CPU profiles during the working-set test", r.WS, r.WSOrder)
	profileSection("### CPU profiles during the hot test", r.Hot, r.HotOrder)
	for _, m := range []struct{ key, title string }{
		{"sequential", "the hot sequential download through the edge (second pass)"},
		{"cold", "the cold download through the edge"},
		{"cold-single", "the cold sequential download through one cache node of the single binary (first pass)"},
		{"viewers", fmt.Sprintf("the viewer trial of %d viewers through the edge (the first that failed, or else the largest)", r.ViewerProfileN)},
	} {
		profs := r.Profiles[m.key]
		if len(profs) == 0 {
			continue
		}
		p("### CPU profiles during %s", m.title)
		p("")
		for _, n := range []string{"origin", "cachenode", "edge", "p2pd server", "p2pd cache"} {
			if prof, ok := profs[n]; ok {
				p("%s:", n)
				p("")
				p("```")
				p("%s", prof)
				p("```")
				p("")
			}
		}
	}
	return w.String()
}

// writeResults replaces the marked section of path with section, creating
// the file (with a title) when it does not exist.
func writeResults(path, section string) error {
	b, err := os.ReadFile(path)
	if os.IsNotExist(err) {
		b = []byte("# Benchmarks\n\n" + beginMark + "\n" + endMark + "\n")
	} else if err != nil {
		return err
	}
	s := string(b)
	i, j := strings.Index(s, beginMark), strings.Index(s, endMark)
	if i < 0 || j < i {
		s += "\n" + beginMark + "\n" + endMark + "\n"
		i, j = strings.Index(s, beginMark), strings.Index(s, endMark)
	}
	s = s[:i+len(beginMark)] + "\n" + section + s[j:]
	return os.WriteFile(path, []byte(s), 0o644)
}

// capacityText is a viewer capacity, marked when the largest trial passed
// (the server may carry more than was tried).
func capacityText(v viewerResult) string {
	if v.Best.Viewers >= v.Limit && v.Limit > 0 {
		return fmt.Sprintf("≥ %d (the most tried)", v.Best.Viewers)
	}
	return fmt.Sprintf("%d", v.Best.Viewers)
}

// perProcess prints a per-process figure, names sorted.
func perProcess(m map[string]float64, format string) string {
	var out []string
	for _, n := range slices.Sorted(maps.Keys(m)) {
		out = append(out, n+" "+fmt.Sprintf(format, m[n]))
	}
	return strings.Join(out, ", ")
}

// perProcessBytes prints per-process sizes, names sorted.
func perProcessBytes(m map[string]int64) string {
	var out []string
	for _, n := range slices.Sorted(maps.Keys(m)) {
		out = append(out, n+" "+fmtBytes(float64(m[n])))
	}
	return strings.Join(out, ", ")
}

// capacityVerdict compares viewer capacities: a server that passed the
// largest trial may carry more, so a ratio against it says nothing.
func capacityVerdict(p2pd, nginx viewerResult) string {
	switch {
	case nginx.Best.Viewers == 0:
		return "not measured"
	case nginx.Best.Viewers >= nginx.Limit && p2pd.Best.Viewers >= p2pd.Limit:
		return "both carried the most tried: raise -max-viewers"
	default:
		return yes(float64(p2pd.Best.Viewers) >= float64(nginx.Best.Viewers))
	}
}
