package main

import (
	"context"
	"crypto/sha256"
	"fmt"
	"io"
	"net/http"
	"net/http/httptrace"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// wrkResult is one wrk run.
type wrkResult struct {
	ReqPerSec  float64
	MBPerSec   float64
	P50, P99   time.Duration
	Requests   int64
	Errors     int64 // non-2xx answers and socket errors
	RawSummary string
}

// wrkScript asks for random rangeLen-byte ranges of files chosen at
// random (a Lua table of {path, size}).
const wrkScript = `local files = {%s}
local len = %d
local counter = 0
function setup(thread)
  counter = counter + 1
  thread:set("id", counter)
end
function init(args)
  math.randomseed(os.time() * 1000 + id)
end
request = function()
  local f = files[math.random(1, #files)]
  local off = math.random(0, f[2] - len)
  return wrk.format("GET", f[1], {["Range"] = "bytes=" .. off .. "-" .. (off + len - 1)})
end
`

// wrkFile is one file wrk asks ranges of.
type wrkFile struct {
	path string // URL path
	size int64
}

// runWrk runs wrk against addr (host:port) with conns connections for d,
// each request a random rangeLen-byte range of one of files.
func runWrk(dir, addr string, files []wrkFile, rangeLen int64, conns, threads int, d time.Duration) (wrkResult, error) {
	var table []string
	for _, f := range files {
		table = append(table, fmt.Sprintf("{%q, %d}", f.path, f.size))
	}
	script := filepath.Join(dir, fmt.Sprintf("ranges-%d.lua", time.Now().UnixNano()))
	if err := os.WriteFile(script, fmt.Appendf(nil, wrkScript, strings.Join(table, ", "), rangeLen), 0o644); err != nil {
		return wrkResult{}, err
	}
	defer os.Remove(script)
	out, err := exec.Command("wrk", "--latency", "-t", strconv.Itoa(threads), "-c", strconv.Itoa(conns),
		"-d", fmt.Sprintf("%ds", int(d.Seconds())), "--timeout", "30s", "-s", script, "http://"+addr+"/").CombinedOutput()
	if err != nil {
		return wrkResult{}, fmt.Errorf("wrk: %v\n%s", err, out)
	}
	return parseWrk(string(out))
}

var (
	reqRe      = regexp.MustCompile(`Requests/sec:\s+([\d.]+)`)
	xferRe     = regexp.MustCompile(`Transfer/sec:\s+([\d.]+)([KMGT]?B)`)
	totalRe    = regexp.MustCompile(`(\d+) requests in`)
	non2xxRe   = regexp.MustCompile(`Non-2xx or 3xx responses: (\d+)`)
	sockErrRe  = regexp.MustCompile(`Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)`)
	latencyRes = map[string]*regexp.Regexp{
		"50": regexp.MustCompile(`\s50%\s+([\d.]+)(us|ms|s)`),
		"99": regexp.MustCompile(`\s99%\s+([\d.]+)(us|ms|s)`),
	}
)

func parseWrk(out string) (wrkResult, error) {
	var r wrkResult
	r.RawSummary = out
	m := reqRe.FindStringSubmatch(out)
	if m == nil {
		return r, fmt.Errorf("wrk output without Requests/sec:\n%s", out)
	}
	r.ReqPerSec, _ = strconv.ParseFloat(m[1], 64)
	if m := xferRe.FindStringSubmatch(out); m != nil {
		v, _ := strconv.ParseFloat(m[1], 64)
		switch m[2] {
		case "KB":
			v /= 1024
		case "GB":
			v *= 1024
		case "B":
			v /= 1 << 20
		}
		r.MBPerSec = v * (1 << 20) / 1e6
	}
	if m := totalRe.FindStringSubmatch(out); m != nil {
		r.Requests, _ = strconv.ParseInt(m[1], 10, 64)
	}
	if m := non2xxRe.FindStringSubmatch(out); m != nil {
		n, _ := strconv.ParseInt(m[1], 10, 64)
		r.Errors += n
	}
	if m := sockErrRe.FindStringSubmatch(out); m != nil {
		for _, s := range m[1:] {
			n, _ := strconv.ParseInt(s, 10, 64)
			r.Errors += n
		}
	}
	parseLat := func(key string) time.Duration {
		m := latencyRes[key].FindStringSubmatch(out)
		if m == nil {
			return 0
		}
		v, _ := strconv.ParseFloat(m[1], 64)
		unit := map[string]time.Duration{"us": time.Microsecond, "ms": time.Millisecond, "s": time.Second}[m[2]]
		return time.Duration(v * float64(unit))
	}
	r.P50, r.P99 = parseLat("50"), parseLat("99")
	return r, nil
}

// download is one GET, timed.
type download struct {
	TTFB, TTLB time.Duration
	Bytes      int64
	Sum        [32]byte
}

// MBps is the download's rate in MB/s (10^6 bytes).
func (d download) MBps() float64 {
	if d.TTLB <= 0 {
		return 0
	}
	return float64(d.Bytes) / d.TTLB.Seconds() / 1e6
}

// client fetches without connection reuse surprises: a fresh transport per
// bench, no compression.
var client = &http.Client{Transport: &http.Transport{
	DisableCompression:  true,
	MaxIdleConnsPerHost: 64,
	ReadBufferSize:      256 << 10,
}}

// get downloads url (with an optional Range), hashing the body when hash.
func get(ctx context.Context, url, rng string, hash bool) (download, error) {
	var d download
	req, err := http.NewRequestWithContext(ctx, "GET", url, nil)
	if err != nil {
		return d, err
	}
	if rng != "" {
		req.Header.Set("Range", rng)
	}
	var first time.Time
	req = req.WithContext(httptrace.WithClientTrace(req.Context(), &httptrace.ClientTrace{
		GotFirstResponseByte: func() { first = time.Now() },
	}))
	start := time.Now()
	resp, err := client.Do(req)
	if err != nil {
		return d, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 && resp.StatusCode != 206 {
		return d, fmt.Errorf("GET %s: status %d", url, resp.StatusCode)
	}
	// First body byte, not just the status line: read one byte.
	var one [1]byte
	n, err := io.ReadFull(resp.Body, one[:])
	if err != nil && err != io.ErrUnexpectedEOF && err != io.EOF {
		return d, err
	}
	if n > 0 {
		first = time.Now()
	}
	d.TTFB = first.Sub(start)
	h := sha256.New()
	if hash {
		h.Write(one[:n])
	}
	var w io.Writer = io.Discard
	if hash {
		w = h
	}
	rest, err := io.CopyBuffer(w, resp.Body, make([]byte, 256<<10))
	if err != nil {
		return d, fmt.Errorf("GET %s: body: %w", url, err)
	}
	d.TTLB = time.Since(start)
	d.Bytes = int64(n) + rest
	if resp.ContentLength >= 0 && d.Bytes != resp.ContentLength {
		return d, fmt.Errorf("GET %s: %d bytes of %d", url, d.Bytes, resp.ContentLength)
	}
	if hash {
		copy(d.Sum[:], h.Sum(nil))
	}
	return d, nil
}

// fmtBytes prints bytes in MiB or GiB.
func fmtBytes(b float64) string {
	if b >= 1<<30 {
		return fmt.Sprintf("%.2f GiB", b/(1<<30))
	}
	return fmt.Sprintf("%.0f MiB", b/(1<<20))
}

func fmtDur(d time.Duration) string {
	switch {
	case d >= time.Second:
		return fmt.Sprintf("%.2f s", d.Seconds())
	case d >= time.Millisecond:
		return fmt.Sprintf("%.1f ms", float64(d)/float64(time.Millisecond))
	default:
		return fmt.Sprintf("%d µs", d.Microseconds())
	}
}
