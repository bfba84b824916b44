// Command healthcheck is the container health probe of the p2pd images.
// The images are FROM scratch and have no shell or curl, so Docker's
// HEALTHCHECK runs this: it GETs one URL and exits 0 when the answer is
// 2xx, 1 otherwise (printing why, which `docker inspect` shows).
//
// With --print it also writes the body to standard output, so an operator
// reads a task's /metrics with `docker exec TASK /healthcheck --print URL`.
//
// Usage: healthcheck [--timeout 3s] [--print] URL
package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"time"

	"github.com/p2pd/p2pd/internal/flagenv"
)

func main() {
	fs := flagenv.NewFlagSet("healthcheck")
	timeout := fs.Duration("timeout", 3*time.Second, "give up after this long")
	show := fs.Bool("print", false, "write the body to standard output")
	fs.Usage = flagenv.ToolUsage(fs, "usage: healthcheck [--timeout D] [--print] URL  (exit 0 when GET URL answers 2xx)\n")
	err := flagenv.ParseArgs(fs, os.Args[1:])
	if err == nil && fs.NArg() != 1 {
		err = flagenv.Usagef("want one URL")
	}
	if err != nil {
		os.Exit(flagenv.Report(os.Stdout, os.Stderr, "healthcheck", err))
	}
	var out io.Writer = io.Discard
	if *show {
		out = os.Stdout
	}
	if err := check(*timeout, fs.Arg(0), out); err != nil {
		fmt.Fprintln(os.Stderr, "unhealthy:", err)
		os.Exit(1)
	}
}

// check GETs url and copies a 2xx body to out.
func check(timeout time.Duration, url string, out io.Writer) error {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	// Probes must not keep connections open in the probed process.
	req.Close = true
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return fmt.Errorf("GET %s: %s: %s", url, resp.Status, body)
	}
	if _, err := out.Write(body); err != nil {
		return err
	}
	_, err = io.Copy(out, resp.Body)
	return err
}
