// Command healthcheck is the container health probe of the p2pd images.
// The images are FROM scratch and have no shell or curl, so Docker's
// HEALTHCHECK runs this: it GETs one URL and exits 0 when the answer is
// 2xx, 1 otherwise (printing why, which `docker inspect` shows).
//
// Usage: healthcheck [--timeout 3s] URL
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
	fs.Usage = flagenv.ToolUsage(fs, "usage: healthcheck [--timeout D] URL  (exit 0 when GET URL answers 2xx)\n")
	err := flagenv.ParseArgs(fs, os.Args[1:])
	if err == nil && fs.NArg() != 1 {
		err = flagenv.Usagef("want one URL")
	}
	if err != nil {
		os.Exit(flagenv.Report(os.Stdout, os.Stderr, "healthcheck", err))
	}
	if err := check(*timeout, fs.Arg(0)); err != nil {
		fmt.Fprintln(os.Stderr, "unhealthy:", err)
		os.Exit(1)
	}
}

func check(timeout time.Duration, url string) error {
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
	return nil
}
