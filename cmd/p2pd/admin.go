package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"sort"
	"strings"
	"sync/atomic"
	"syscall"
	"text/tabwriter"
	"time"

	adminv1 "github.com/p2pd/p2pd/gen/admin/v1"
	"github.com/p2pd/p2pd/internal/flagenv"
	"github.com/p2pd/p2pd/services/origin/adminclient"
)

const adminUsage = `p2pd admin — operate a p2pd CDN through its origin's admin API.

Usage:
  p2pd admin [global flags] COMMAND [flags] [args]

Commands:
  publish FILE [--name NAME] [--replace]
                     upload FILE and publish it (hashed first, then sent with
                     its SHA-256 so the server verifies it; progress on stderr)
  publish --remote PATH [--replace]
                     publish PATH, a file already in the server's media
                     directory (relative to it)
  ls                 list the published files
  show NAME          describe a file and the nodes holding its chunks
  rm NAME [--keep-file]
                     unpublish a file and delete it from the media directory
                     (--keep-file: only unpublish; a rescan publishes it again)
  nodes              list the live nodes
  stats              show storage and traffic statistics
  prewarm NAME --all | --nodes ID,ID | --regions R,R [--no-wait] [--timeout 30m]
                     have cachenodes fetch NAME in full before viewers ask,
                     through the swarm (the origin sends it about once);
                     waits, with progress, until each holds every chunk
  purge NAME [--no-wait] [--timeout 5m]
                     drop NAME from every cachenode and edge, disk and
                     memory (it stays published; the next request fetches
                     it anew); waits until no cachenode holds a chunk

Global flags (also accepted after the command):
  --server URL       admin API base URL ($P2PD_ADMIN_SERVER, default http://127.0.0.1:9090)
  --token TOKEN      admin token ($P2PD_ADMIN_TOKEN)
  --token-file FILE  read the admin token from FILE
  --json             print the API's JSON answers (errors too) on stdout
  --progress MODE    progress bars on stderr: auto (when stderr is a terminal), always, never

Exit codes:
  0 success              5 token missing, wrong or not configured
  1 other failure        6 server, tracker or network unavailable
  2 usage error          7 request refused (invalid name or path, digest mismatch,
  3 not found              too large for the disk, a prewarm naming an unknown node)
  4 already exists       8 prewarm or purge not finished within --timeout
                           (the nodes go on with it)
`

// Exit codes of p2pd admin, for scripts.
const (
	exitFailure     = 1
	exitUsage       = 2
	exitNotFound    = 3
	exitConflict    = 4
	exitAuth        = 5
	exitUnavailable = 6
	exitRefused     = 7
)

// adminError is a failed admin command and the exit code it calls for.
type adminError struct {
	code int
	err  error
}

func (e *adminError) Error() string { return e.err.Error() }
func (e *adminError) Unwrap() error { return e.err }

// ExitCode is the process exit code for this failure.
func (e *adminError) ExitCode() int { return e.code }

// adminExitCode returns the exit code for an error of runAdmin.
func adminExitCode(err error) int {
	if err == nil {
		return 0
	}
	var ae *adminError
	if errors.As(err, &ae) {
		return ae.code
	}
	return exitFailure
}

func usageErr(format string, args ...any) error {
	return &adminError{code: exitUsage, err: fmt.Errorf(format+" (p2pd admin -h for help)", args...)}
}

// runAdmin is `p2pd admin ARGS`. Its error carries the exit code
// (adminExitCode, or the error's ExitCode method).
func runAdmin(args []string) error {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	a := &adminCLI{stdout: os.Stdout, stderr: os.Stderr, getenv: os.Getenv, now: time.Now}
	if fi, err := os.Stderr.Stat(); err == nil && fi.Mode()&os.ModeCharDevice != 0 {
		a.stderrTTY = true
	}
	return a.run(ctx, args)
}

// adminCLI is one run of p2pd admin, with its surroundings injected.
type adminCLI struct {
	stdout, stderr io.Writer
	stderrTTY      bool
	getenv         func(string) string
	now            func() time.Time

	server, token, tokenFile, progress string
	json                               bool
	client                             *adminclient.Client
}

// globals registers the flags every command accepts.
func (a *adminCLI) globals(fs *flag.FlagSet) {
	fs.StringVar(&a.server, "server", a.server, "admin API base URL")
	fs.StringVar(&a.token, "token", a.token, "admin token")
	fs.StringVar(&a.tokenFile, "token-file", a.tokenFile, "file holding the admin token")
	fs.BoolVar(&a.json, "json", a.json, "print JSON")
	fs.StringVar(&a.progress, "progress", a.progress, "auto, always or never")
}

func (a *adminCLI) flagSet(name string) *flag.FlagSet {
	fs := flag.NewFlagSet("p2pd admin "+name, flag.ContinueOnError)
	fs.SetOutput(io.Discard) // errors are returned, usage printed once by us
	a.globals(fs)
	return fs
}

// parse parses flags anywhere among the arguments and returns the
// positional ones.
func parse(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return nil, err
			}
			return nil, usageErr("%v", err)
		}
		args = fs.Args()
		if len(args) == 0 {
			return pos, nil
		}
		pos = append(pos, args[0])
		args = args[1:]
	}
}

func (a *adminCLI) run(ctx context.Context, args []string) error {
	a.server = a.getenv("P2PD_ADMIN_SERVER")
	a.token = a.getenv("P2PD_ADMIN_TOKEN")
	a.progress = "auto"
	fs := a.flagSet("")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fmt.Fprint(a.stdout, adminUsage)
			return nil
		}
		return usageErr("%v", err)
	}
	if fs.NArg() == 0 {
		fmt.Fprint(a.stderr, adminUsage)
		return usageErr("no command given")
	}
	cmd, rest := fs.Arg(0), fs.Args()[1:]
	commands := map[string]func(context.Context, []string) error{
		"publish": a.publish,
		"ls":      a.ls,
		"show":    a.show,
		"rm":      a.rm,
		"nodes":   a.nodes,
		"stats":   a.stats,
		"prewarm": a.prewarm,
		"purge":   a.purge,
	}
	f, ok := commands[cmd]
	if !ok {
		return usageErr("unknown command %q", cmd)
	}
	err := f(ctx, rest)
	if errors.Is(err, flag.ErrHelp) {
		fmt.Fprint(a.stdout, adminUsage)
		return nil
	}
	return err
}

// setup checks the global flags once a command's own are parsed.
func (a *adminCLI) setup() error {
	c, err := adminclient.New(a.server, "", nil)
	if err != nil {
		return usageErr("--server %q: want a URL like http://HOST:PORT", a.server)
	}
	a.server = c.Server()
	if a.token == "" && a.tokenFile != "" {
		b, err := os.ReadFile(a.tokenFile)
		if err != nil {
			return &adminError{code: exitAuth, err: fmt.Errorf("--token-file: %w", err)}
		}
		a.token, _, _ = strings.Cut(strings.TrimSpace(string(b)), "\n")
	}
	if a.token == "" {
		return &adminError{code: exitAuth, err: errors.New("no admin token: pass --token or --token-file, or set P2PD_ADMIN_TOKEN")}
	}
	switch a.progress {
	case "auto", "always", "never":
	default:
		return usageErr("--progress %q: want auto, always or never", a.progress)
	}
	a.client, err = adminclient.New(a.server, a.token, nil)
	return err
}

// shown takes a call's outcome like answer, and in --json mode prints the
// answer: done reports that nothing is left to print.
func (a *adminCLI) shown(raw []byte, err error) (done bool, _ error) {
	raw, err = a.answer(raw, err)
	if err != nil {
		return true, err
	}
	if a.json {
		a.printJSON(raw)
		return true, nil
	}
	return false, nil
}

// noArgCall runs a command that takes no arguments: it checks them, makes
// the call and, in --json mode, prints the answer; done reports that
// nothing is left to print.
func noArgCall[T any](a *adminCLI, cmd string, args []string, call func() (T, []byte, error)) (resp T, done bool, err error) {
	if err := a.noArgs(cmd, args); err != nil {
		return resp, true, err
	}
	resp, body, err := call()
	done, err = a.shown(body, err)
	return resp, done, err
}

// oneName parses a command that takes one NAME and checks the globals.
func (a *adminCLI) oneName(fs *flag.FlagSet, args []string) (string, error) {
	pos, err := parse(fs, args)
	if err != nil {
		return "", err
	}
	if len(pos) != 1 {
		return "", usageErr("%s takes one NAME, got %d arguments", strings.TrimPrefix(fs.Name(), "p2pd admin "), len(pos))
	}
	return pos[0], a.setup()
}

// exitFor maps the API's stable error codes to exit codes.
func exitFor(f *adminclient.APIError) int {
	switch f.Code {
	case "not_published", "path_not_found", "not_found":
		return exitNotFound
	case "already_published", "already_exists":
		return exitConflict
	case "unauthenticated", "admin_disabled":
		return exitAuth
	case "tracker_unavailable":
		return exitUnavailable
	case "invalid_argument", "invalid_name", "outside_media_dir", "not_a_regular_file",
		"digest_mismatch", "too_large", "insufficient_storage", "upload_incomplete", "unknown_node":
		return exitRefused
	}
	if f.Status == http.StatusServiceUnavailable {
		return exitUnavailable
	}
	return exitFailure
}

// answer turns a client call's outcome into the command's: the answer to
// print, or an error with its exit code. In --json mode an API error
// answer is printed on stdout too.
func (a *adminCLI) answer(raw []byte, err error) ([]byte, error) {
	var (
		ae *adminclient.APIError
		ue *adminclient.UnreachableError
		de *adminclient.DecodeError
	)
	switch {
	case err == nil:
		return raw, nil
	case errors.As(err, &ae):
		if a.json && ae.JSON != nil {
			a.printJSON(ae.JSON)
		}
		return nil, &adminError{code: exitFor(ae), err: ae}
	case errors.As(err, &ue):
		return nil, &adminError{code: exitUnavailable, err: ue}
	case errors.As(err, &de):
		return nil, &adminError{code: exitFailure, err: de}
	case errors.Is(err, adminclient.ErrBadRequest):
		return nil, usageErr("%v", err)
	}
	return nil, &adminError{code: exitFailure, err: err}
}

// printJSON prints an API answer indented, as scripts read it.
func (a *adminCLI) printJSON(body []byte) {
	var buf bytes.Buffer
	if json.Indent(&buf, body, "", "  ") != nil {
		buf.Reset()
		buf.Write(bytes.TrimSpace(body))
	}
	buf.WriteByte('\n')
	a.stdout.Write(buf.Bytes())
}

func (a *adminCLI) publish(ctx context.Context, args []string) error {
	fs := a.flagSet("publish")
	name := fs.String("name", "", "publish under this name (default: FILE's base name)")
	replace := fs.Bool("replace", false, "replace a file of the same name")
	remote := fs.Bool("remote", false, "FILE is a path in the server's media directory: publish it in place")
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return usageErr("publish takes one FILE, got %d arguments", len(pos))
	}
	if err := a.setup(); err != nil {
		return err
	}
	var (
		resp *adminv1.PublishFileResponse
		body []byte
	)
	if *remote {
		if *name != "" {
			return usageErr("--name cannot be used with --remote: a file in the media directory is published under its path")
		}
		resp, body, err = a.client.PublishPath(ctx, pos[0], *replace)
		body, err = a.answer(body, err)
	} else {
		resp, body, err = a.upload(ctx, pos[0], *name, *replace)
	}
	if err != nil {
		return err
	}
	if a.json {
		a.printJSON(body)
		return nil
	}
	f := resp.File
	fmt.Fprintf(a.stdout, "published %s: %s, %d chunks, root %s, ETag %s\n", f.Name, flagenv.HumanBytes(f.Size), f.ChunkCount, f.Root, f.Etag)
	return nil
}

// upload hashes the file, then streams it with its digest so that the
// server publishes it only if every byte arrived as it is on this disk.
func (a *adminCLI) upload(ctx context.Context, path, name string, replace bool) (*adminv1.PublishFileResponse, []byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, nil, &adminError{code: exitRefused, err: fmt.Errorf("publish: %w", err)}
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, nil, &adminError{code: exitRefused, err: fmt.Errorf("publish: %w", err)}
	}
	if !st.Mode().IsRegular() {
		return nil, nil, &adminError{code: exitRefused, err: fmt.Errorf("publish: %s is not a regular file", path)}
	}
	if name == "" {
		name = filepath.Base(path)
	}
	size := st.Size()

	h := sha256.New()
	p := a.newProgress("hashing "+name, size)
	_, err = io.Copy(h, &countingReader{r: f, p: p})
	p.finish(err == nil)
	if err != nil {
		return nil, nil, &adminError{code: exitFailure, err: fmt.Errorf("hash %s: %w", path, err)}
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return nil, nil, &adminError{code: exitFailure, err: fmt.Errorf("publish: %w", err)}
	}

	p = a.newProgress("uploading "+name, size)
	resp, body, err := a.client.Upload(ctx, name, &countingReader{r: f, p: p}, size, h.Sum(nil), replace)
	p.finish(err == nil)
	body, err = a.answer(body, err)
	return resp, body, err
}

func (a *adminCLI) ls(ctx context.Context, args []string) error {
	resp, done, err := noArgCall(a, "ls", args, func() (*adminv1.ListFilesResponse, []byte, error) { return a.client.ListFiles(ctx) })
	if done {
		return err
	}
	tw := tabwriter.NewWriter(a.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tSIZE\tCHUNKS\tCACHED ON\tPUBLISHED\tROOT")
	for _, f := range resp.Files {
		fmt.Fprintf(tw, "%s\t%s\t%d\t%d nodes\t%s\t%.12s\n", f.Name, flagenv.HumanBytes(f.Size), f.ChunkCount, f.CachedOnNodes, ago(a.now(), f.PublishedTime.AsTime(), f.PublishedTime != nil), f.Root)
	}
	return tw.Flush()
}

func (a *adminCLI) show(ctx context.Context, args []string) error {
	fs := a.flagSet("show")
	name, err := a.oneName(fs, args)
	if err != nil {
		return err
	}
	resp, body, err := a.client.GetFile(ctx, name)
	if done, err := a.shown(body, err); done {
		return err
	}
	f := resp.File
	tw := tabwriter.NewWriter(a.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "name:\t%s\n", f.Name)
	fmt.Fprintf(tw, "size:\t%s (%d bytes)\n", flagenv.HumanBytes(f.Size), f.Size)
	fmt.Fprintf(tw, "chunks:\t%d of %s\n", f.ChunkCount, flagenv.HumanBytes(uint64(f.ChunkSize)))
	fmt.Fprintf(tw, "type:\t%s\n", f.ContentType)
	fmt.Fprintf(tw, "root:\t%s\n", f.Root)
	fmt.Fprintf(tw, "etag:\t%s\n", f.Etag)
	if f.ModTime != nil {
		fmt.Fprintf(tw, "modified:\t%s\n", f.ModTime.AsTime().Local().Format(time.RFC3339))
	}
	if f.PublishedTime != nil {
		fmt.Fprintf(tw, "published:\t%s\n", f.PublishedTime.AsTime().Local().Format(time.RFC3339))
	}
	fmt.Fprintf(tw, "cached:\t%d chunks on %d nodes\n", f.CachedChunks, f.CachedOnNodes)
	tw.Flush()
	fmt.Fprintln(a.stdout)
	tw = tabwriter.NewWriter(a.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NODE\tROLE\tCHUNKS HELD")
	for _, h := range resp.Holders {
		pct := 0.0
		if f.ChunkCount > 0 {
			pct = 100 * float64(h.Chunks) / float64(f.ChunkCount)
		}
		fmt.Fprintf(tw, "%s\t%s\t%d/%d (%.0f%%)\n", h.NodeId, h.Role, h.Chunks, f.ChunkCount, pct)
	}
	return tw.Flush()
}

func (a *adminCLI) rm(ctx context.Context, args []string) error {
	fs := a.flagSet("rm")
	keep := fs.Bool("keep-file", false, "only unpublish; leave the file in the media directory")
	name, err := a.oneName(fs, args)
	if err != nil {
		return err
	}
	body, err := a.answer(a.client.Unpublish(ctx, name, *keep))
	if err != nil {
		return err
	}
	if a.json {
		a.printJSON(body)
		return nil
	}
	if *keep {
		fmt.Fprintf(a.stdout, "unpublished %s (file kept in the media directory)\n", name)
	} else {
		fmt.Fprintf(a.stdout, "unpublished and deleted %s\n", name)
	}
	return nil
}

func (a *adminCLI) nodes(ctx context.Context, args []string) error {
	resp, done, err := noArgCall(a, "nodes", args, func() (*adminv1.ListNodesResponse, []byte, error) { return a.client.ListNodes(ctx) })
	if done {
		return err
	}
	tw := tabwriter.NewWriter(a.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tROLE\tGRPC\tHTTP\tUP\tVERSION\tSTREAMS\tRATE\tHELD\tFILES\tCHUNKS")
	for _, n := range resp.Nodes {
		held := flagenv.HumanBytes(n.HeldBytes)
		if n.CapacityBytes > 0 {
			held += " / " + flagenv.HumanBytes(n.CapacityBytes)
		}
		rate := "-"
		if n.RateBytesPerSecond > 0 {
			rate = flagenv.HumanBytes(uint64(n.RateBytesPerSecond)) + "/s"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%d\t%s\t%s\t%d\t%d\n", n.Id, n.Role, dash(n.GrpcAddr), dash(n.HttpAddr),
			ago(a.now(), n.UpSince.AsTime(), n.UpSince != nil), dash(n.Version), n.Load, rate, held, n.Files, n.Chunks)
	}
	return tw.Flush()
}

func (a *adminCLI) stats(ctx context.Context, args []string) error {
	s, done, err := noArgCall(a, "stats", args, func() (*adminv1.GetStatsResponse, []byte, error) { return a.client.Stats(ctx) })
	if done {
		return err
	}
	tw := tabwriter.NewWriter(a.stdout, 0, 4, 2, ' ', 0)
	roles := make([]string, 0, len(s.NodesByRole))
	for r, n := range s.NodesByRole {
		roles = append(roles, fmt.Sprintf("%d %s", n, r))
	}
	sort.Strings(roles)
	fmt.Fprintf(tw, "nodes:\t%s\n", dash(strings.Join(roles, ", ")))
	fmt.Fprintf(tw, "published:\t%d files, %s in %d chunks\n", s.Files, flagenv.HumanBytes(s.PublishedBytes), s.PublishedChunks)
	capacity := ""
	if s.CacheCapacityBytes > 0 {
		capacity = " of " + flagenv.HumanBytes(s.CacheCapacityBytes)
	}
	fmt.Fprintf(tw, "cached:\t%s%s on cachenodes, replication %.2fx\n", flagenv.HumanBytes(s.CachedBytes), capacity, s.CacheReplication)
	fmt.Fprintf(tw, "active streams:\t%d\n", s.ActiveStreams)
	fmt.Fprintf(tw, "origin egress:\t%s\n", flagenv.HumanBytes(s.OriginEgressBytes))
	if len(s.BytesServedBySource) > 0 {
		srcs := make([]string, 0, len(s.BytesServedBySource))
		for k, v := range s.BytesServedBySource {
			srcs = append(srcs, k+" "+flagenv.HumanBytes(v))
		}
		sort.Strings(srcs)
		fmt.Fprintf(tw, "served by source:\t%s (this process's cachenode)\n", strings.Join(srcs, ", "))
		fmt.Fprintf(tw, "hit ratio:\t%.1f%%\n", 100*s.HitRatio)
	}
	if s.EdgeBytesSent > 0 {
		fmt.Fprintf(tw, "sent to viewers:\t%s (this process's edge)\n", flagenv.HumanBytes(s.EdgeBytesSent))
	}
	return tw.Flush()
}

// noArgs parses a command that takes no arguments.
func (a *adminCLI) noArgs(cmd string, args []string) error {
	pos, err := parse(a.flagSet(cmd), args)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return usageErr("%s takes no arguments, got %q", cmd, pos)
	}
	return a.setup()
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// ago renders how long before now t was, or "-" when unknown.
func ago(now, t time.Time, known bool) string {
	if !known {
		return "-"
	}
	d := now.Sub(t)
	switch {
	case d < time.Minute:
		return fmt.Sprintf("%ds", int(d.Seconds()))
	case d < time.Hour:
		return fmt.Sprintf("%dm", int(d.Minutes()))
	case d < 48*time.Hour:
		return fmt.Sprintf("%dh%02dm", int(d.Hours()), int(d.Minutes())%60)
	}
	return fmt.Sprintf("%dd", int(d.Hours()/24))
}

// progress draws a progress bar with rate and ETA on stderr while a file
// is hashed or uploaded: redrawn in place on a terminal, one line per
// update otherwise.
type progress struct {
	w       io.Writer // nil: not shown
	tty     bool
	label   string
	total   int64
	now     func() time.Time
	start   time.Time
	done    atomic.Int64
	stop    chan struct{}
	stopped chan struct{}
}

// progressEvery is how often the bar is redrawn.
const progressEvery = 250 * time.Millisecond

func (a *adminCLI) newProgress(label string, total int64) *progress {
	p := &progress{label: label, total: total, now: a.now, start: a.now(), tty: a.stderrTTY}
	if a.progress == "always" || (a.progress == "auto" && a.stderrTTY) {
		p.w = a.stderr
		p.stop, p.stopped = make(chan struct{}), make(chan struct{})
		go p.loop()
	}
	return p
}

func (p *progress) add(n int) { p.done.Add(int64(n)) }

func (p *progress) loop() {
	defer close(p.stopped)
	t := time.NewTicker(progressEvery)
	defer t.Stop()
	for {
		select {
		case <-p.stop:
			return
		case <-t.C:
			p.draw(false)
		}
	}
}

func (p *progress) draw(final bool) {
	line := progressLine(p.label, p.done.Load(), p.total, p.now().Sub(p.start), final)
	if p.tty {
		fmt.Fprintf(p.w, "\r%s\x1b[K", line)
		if final {
			fmt.Fprintln(p.w)
		}
		return
	}
	fmt.Fprintln(p.w, line)
}

// finish stops redrawing; a successful run ends with a complete bar.
func (p *progress) finish(ok bool) {
	if p.w == nil {
		return
	}
	close(p.stop)
	<-p.stopped
	if ok {
		p.draw(true)
	} else if p.tty {
		fmt.Fprintln(p.w)
	}
}

// progressLine renders one state of the bar.
func progressLine(label string, done, total int64, elapsed time.Duration, final bool) string {
	const width = 24
	frac := 1.0
	if total > 0 {
		frac = min(1, float64(done)/float64(total))
	}
	filled := int(frac * width)
	bar := strings.Repeat("=", filled)
	if filled < width {
		bar += ">" + strings.Repeat(" ", width-filled-1)
	}
	rate := 0.0
	if elapsed > 0 {
		rate = float64(done) / elapsed.Seconds()
	}
	tail := "ETA --"
	switch {
	case final:
		tail = "in " + elapsed.Round(100*time.Millisecond).String()
	case rate > 0:
		eta := time.Duration(float64(total-done) / rate * float64(time.Second))
		tail = "ETA " + eta.Round(time.Second).String()
	}
	return fmt.Sprintf("%s %3.0f%% [%s] %s / %s  %s/s  %s", label, 100*frac, bar,
		flagenv.HumanBytes(uint64(done)), flagenv.HumanBytes(uint64(total)), flagenv.HumanBytes(uint64(rate)), tail)
}

// countingReader reports what is read through it to a progress bar.
type countingReader struct {
	r io.Reader
	p *progress
}

func (c *countingReader) Read(b []byte) (int, error) {
	n, err := c.r.Read(b)
	c.p.add(n)
	return n, err
}
