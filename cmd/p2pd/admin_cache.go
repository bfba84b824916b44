package main

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	adminv1 "github.com/p2pd/p2pd/gen/admin/v1"
	"github.com/p2pd/p2pd/internal/flagenv"
)

// exitTimeout: prewarm or purge did not finish within --timeout; the
// nodes go on with it.
const exitTimeout = 8

// pollEvery is how often prewarm and purge look at the holders.
const pollEvery = 500 * time.Millisecond

// prewarm is `p2pd admin prewarm NAME --all|--nodes a,b`: the command is
// recorded, then the holders are watched until every chosen cachenode
// holds every chunk.
func (a *adminCLI) prewarm(ctx context.Context, args []string) error {
	fs := a.flagSet("prewarm")
	all := fs.Bool("all", false, "every live cachenode")
	nodes := fs.String("nodes", "", "comma-separated cachenode ids")
	regions := fs.String("regions", "", "comma-separated regions")
	noWait := fs.Bool("no-wait", false, "return once the command is recorded")
	timeout := fs.Duration("timeout", 30*time.Minute, "how long to wait for the nodes")
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return usageErr("prewarm takes one NAME, got %d arguments", len(pos))
	}
	ids, regs := commaList(*nodes), commaList(*regions)
	given := 0
	for _, g := range []bool{*all, len(ids) > 0, len(regs) > 0} {
		if g {
			given++
		}
	}
	if given != 1 {
		return usageErr("prewarm: give one of --all, --nodes ID,ID or --regions R,R (p2pd admin nodes lists them)")
	}
	if err := a.setup(); err != nil {
		return err
	}
	resp, raw, err := a.client.Prewarm(ctx, pos[0], *all, ids, regs)
	if _, err := a.answer(raw, err); err != nil {
		return err
	}
	f := resp.File
	if !a.json {
		fmt.Fprintf(a.stdout, "prewarming %s (%s) on %d cachenodes: %s\n", f.Name, flagenv.HumanBytes(f.Size), len(resp.NodeIds), strings.Join(resp.NodeIds, ", "))
	}
	if !*noWait && len(resp.NodeIds) > 0 {
		err = a.watch(ctx, *timeout, "prewarm "+f.Name, int64(f.Size)*int64(len(resp.NodeIds)), func(g *adminv1.GetFileResponse, live []string) (int64, bool, error) {
			var done int64
			complete := true
			for _, id := range resp.NodeIds {
				if !slices.Contains(live, id) {
					return 0, false, fmt.Errorf("cachenode %s left before it held all of %s", id, f.Name)
				}
				held := heldBy(g, id)
				done += min(int64(held)*int64(f.ChunkSize), int64(f.Size))
				complete = complete && held >= f.ChunkCount
			}
			return done, complete, nil
		})
		if err != nil {
			return err
		}
	}
	if a.json {
		a.printJSON(raw)
	} else if !*noWait {
		fmt.Fprintf(a.stdout, "prewarmed %s: every chunk on %d cachenodes\n", f.Name, len(resp.NodeIds))
	}
	return nil
}

// purge is `p2pd admin purge NAME`: the command is recorded, then the
// holders are watched until no cachenode holds a chunk.
func (a *adminCLI) purge(ctx context.Context, args []string) error {
	fs := a.flagSet("purge")
	noWait := fs.Bool("no-wait", false, "return once the command is recorded")
	timeout := fs.Duration("timeout", 5*time.Minute, "how long to wait for the nodes")
	name, err := a.oneName(fs, args)
	if err != nil {
		return err
	}
	resp, raw, err := a.client.Purge(ctx, name)
	if _, err := a.answer(raw, err); err != nil {
		return err
	}
	f := resp.File
	if !a.json {
		fmt.Fprintf(a.stdout, "purging %s from %d cachenodes holding it, and every edge's memory\n", f.Name, len(resp.NodeIds))
	}
	if !*noWait {
		cached := func(g *adminv1.GetFileResponse) int64 {
			var n int64
			for _, h := range g.Holders {
				if h.Role == "cachenode" {
					n += min(int64(h.Chunks)*int64(f.ChunkSize), int64(f.Size))
				}
			}
			return n
		}
		first, graw, err := a.client.GetFile(ctx, f.Name)
		if _, err := a.answer(graw, err); err != nil {
			return err
		}
		total := cached(first)
		err = a.watch(ctx, *timeout, "purge "+f.Name, total, func(g *adminv1.GetFileResponse, _ []string) (int64, bool, error) {
			left := cached(g)
			return max(0, total-left), left == 0, nil
		})
		if err != nil {
			return err
		}
	}
	if a.json {
		a.printJSON(raw)
	} else if !*noWait {
		fmt.Fprintf(a.stdout, "purged %s: no cachenode holds a chunk of it\n", f.Name)
	}
	return nil
}

// commaList splits a comma-separated flag value, dropping empty items.
func commaList(v string) []string {
	var out []string
	for s := range strings.SplitSeq(v, ",") {
		if s = strings.TrimSpace(s); s != "" {
			out = append(out, s)
		}
	}
	return out
}

// heldBy returns how many chunks node id holds in a GetFile answer.
func heldBy(g *adminv1.GetFileResponse, id string) uint32 {
	for _, h := range g.Holders {
		if h.NodeId == id {
			return h.Chunks
		}
	}
	return 0
}

// watch polls the file's holders and the live nodes until check reports
// the work complete, drawing its progress (bytes done of total) on
// stderr.
func (a *adminCLI) watch(ctx context.Context, timeout time.Duration, label string, total int64, check func(*adminv1.GetFileResponse, []string) (int64, bool, error)) error {
	name := strings.SplitN(label, " ", 2)[1]
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	p := a.newProgress(label, total)
	tick := time.NewTicker(pollEvery)
	defer tick.Stop()
	for {
		g, raw, err := a.client.GetFile(ctx, name)
		var nodes *adminv1.ListNodesResponse
		if err == nil {
			nodes, raw, err = a.client.ListNodes(ctx)
		}
		if err != nil {
			p.finish(false)
			if ctx.Err() != nil {
				return a.timedOut(ctx, label, timeout)
			}
			_, err = a.answer(raw, err)
			return err
		}
		var live []string
		for _, n := range nodes.Nodes {
			live = append(live, n.Id)
		}
		done, complete, err := check(g, live)
		if err != nil {
			p.finish(false)
			return &adminError{code: exitUnavailable, err: err}
		}
		p.done.Store(done)
		if complete {
			p.finish(true)
			return nil
		}
		select {
		case <-ctx.Done():
			p.finish(false)
			return a.timedOut(ctx, label, timeout)
		case <-tick.C:
		}
	}
}

// timedOut is the error of a wait cut by --timeout or Ctrl-C.
func (a *adminCLI) timedOut(ctx context.Context, label string, timeout time.Duration) error {
	if errors.Is(ctx.Err(), context.DeadlineExceeded) {
		return &adminError{code: exitTimeout, err: fmt.Errorf("%s: not finished after %s; the nodes go on with it (p2pd admin show shows the holders)", label, timeout)}
	}
	return &adminError{code: exitFailure, err: fmt.Errorf("%s: stopped waiting: %w; the nodes go on with it", label, ctx.Err())}
}
