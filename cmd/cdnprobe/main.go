// Command cdnprobe downloads files from a CDN the way a browser behind DNS
// round robin does, and verifies every byte.
//
// It resolves -host through DNS (inside a Docker network: Docker's DNS,
// which answers with the address of every edge under that name), spreads
// downloads over all the addresses it gets, and when a request to one
// address fails — connection refused, reset, a stall, a 5xx — it goes on
// with the next address, resuming a cut-off download with a Range request
// (If-Range on the ETag, so it never mixes two versions). Every completed
// download is checked against its expected SHA-256.
//
// It prints one JSON report on stdout: counts per address, per status and
// the errors met. The exit status is 0 when every download completed with
// the expected digest, 1 otherwise, 2 on bad usage.
//
// Usage:
//
//	cdnprobe [flags] PATH[=SHA256HEX]...
//
// Each PATH is fetched -n times (PATHs taken in turn), -c at a time.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/p2pd/p2pd/internal/flagenv"
)

const usage = `cdnprobe — download files through every address of a DNS name, verify SHA-256.

Usage: cdnprobe [flags] PATH[=SHA256HEX]...
`

func main() {
	cfg, err := parseFlags(os.Args[1:])
	if err != nil {
		os.Exit(flagenv.Report(os.Stdout, os.Stderr, "cdnprobe", err))
	}
	ctx, cancel := context.WithTimeout(context.Background(), cfg.Timeout)
	defer cancel()
	rep := run(ctx, cfg)
	enc := json.NewEncoder(os.Stdout)
	enc.SetIndent("", "  ")
	if err := enc.Encode(rep); err != nil {
		fmt.Fprintln(os.Stderr, "cdnprobe:", err)
		os.Exit(1)
	}
	if !rep.OK {
		os.Exit(1)
	}
}

func parseFlags(args []string) (Config, error) {
	var cfg Config
	fs := flagenv.NewFlagSet("cdnprobe")
	fs.StringVar(&cfg.Host, "host", "cdn", "DNS name whose every address is used")
	fs.IntVar(&cfg.Port, "port", 8080, "HTTP port on every address")
	fs.IntVar(&cfg.N, "n", 1, "downloads of each PATH")
	fs.IntVar(&cfg.C, "c", 4, "concurrent downloads")
	fs.IntVar(&cfg.Attempts, "attempts", 20, "requests one download may take (1: no retry)")
	fs.DurationVar(&cfg.Timeout, "timeout", 5*time.Minute, "give up on everything after this long")
	fs.DurationVar(&cfg.Stall, "stall", 10*time.Second, "abandon a request (and retry elsewhere) that delivers no byte for this long")
	fs.Int64Var(&cfg.Rate, "rate", 0, "limit each download to this many bytes/s (0: unlimited), to keep downloads in flight")
	fs.Int64Var(&cfg.RangeStart, "range-start", 0, "start every download at this byte offset (a seek)")
	fs.Int64Var(&cfg.RangeLen, "range-len", 0, "download only this many bytes (0: to the end); the digest then covers that range")
	fs.BoolVar(&cfg.Quiet, "q", false, "no progress log on stderr")
	fs.Usage = flagenv.ToolUsage(fs, usage)
	if err := flagenv.ParseArgs(fs, args); err != nil {
		return cfg, err
	}
	if fs.NArg() == 0 {
		return cfg, flagenv.Usagef("no PATH given")
	}
	for _, a := range fs.Args() {
		t, err := parseTarget(a)
		if err != nil {
			return cfg, &flagenv.UsageError{Err: err}
		}
		cfg.Targets = append(cfg.Targets, t)
	}
	if cfg.N < 1 || cfg.C < 1 || cfg.Attempts < 1 {
		return cfg, flagenv.Usagef("-n, -c and --attempts must be at least 1")
	}
	return cfg, nil
}

func parseTarget(s string) (Target, error) {
	path, hexsum, _ := strings.Cut(s, "=")
	if !strings.HasPrefix(path, "/") {
		path = "/" + path
	}
	t := Target{Path: path, SHA256: strings.ToLower(hexsum)}
	if t.SHA256 != "" && len(t.SHA256) != 64 {
		return t, fmt.Errorf("%s: SHA-256 must be 64 hex digits", s)
	}
	return t, nil
}

func run(ctx context.Context, cfg Config) *Report {
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	if cfg.Quiet {
		log = slog.New(slog.DiscardHandler)
	}
	p := newProber(cfg, log)
	return p.Run(ctx)
}

// newTransport gives every request a fresh view of the network: no
// keep-alive reuse across addresses is assumed, and dialling is bounded
// so a vanished edge fails fast.
func newTransport() *http.Transport {
	d := &net.Dialer{Timeout: 3 * time.Second, KeepAlive: 15 * time.Second}
	return &http.Transport{
		DialContext:           d.DialContext,
		MaxIdleConnsPerHost:   16,
		IdleConnTimeout:       30 * time.Second,
		ResponseHeaderTimeout: 30 * time.Second,
		DisableCompression:    true,
	}
}

// copyBody copies r into w, failing if no byte arrives for stall and
// pacing to rate bytes/s when rate > 0. It returns the bytes copied and
// the longest wait for a read (pacing excluded): the stall a player saw.
func copyBody(ctx context.Context, w io.Writer, r io.Reader, stall time.Duration, rate int64, cancel func()) (n int64, longest time.Duration, err error) {
	timer := time.AfterFunc(stall, cancel)
	defer timer.Stop()
	buf := make([]byte, 256<<10)
	if rate > 0 && int64(len(buf)) > rate/8 {
		buf = buf[:max(rate/8, 4096)]
	}
	start := time.Now()
	for {
		t0 := time.Now()
		m, err := r.Read(buf)
		longest = max(longest, time.Since(t0))
		if m > 0 {
			timer.Reset(stall)
			if _, werr := w.Write(buf[:m]); werr != nil {
				return n, longest, werr
			}
			n += int64(m)
			if rate > 0 {
				due := start.Add(time.Duration(float64(n) / float64(rate) * float64(time.Second)))
				if d := time.Until(due); d > 0 {
					select {
					case <-time.After(d):
					case <-ctx.Done():
						return n, longest, ctx.Err()
					}
					timer.Reset(stall)
				}
			}
		}
		if err == io.EOF {
			return n, longest, nil
		}
		if err != nil {
			if ctx.Err() != nil && errors.Is(context.Cause(ctx), errStalled) {
				return n, longest, fmt.Errorf("%w after %d bytes", errStalled, n)
			}
			return n, longest, err
		}
	}
}

var errStalled = errors.New("stalled")
