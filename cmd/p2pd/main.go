// Command p2pd is the whole CDN in one binary, with the classic p2pd
// command line: a server (-p) runs an embedded etcd, the tracker, the
// origin and an HTTP front; a cache (-c) runs a cachenode and an HTTP
// front and joins a server (-S). It composes the same packages as the
// separate services; `p2pd admin ...` talks to a server's admin API.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"

	"github.com/p2pd/p2pd/internal/flagenv"
)

func main() {
	if len(os.Args) > 1 && os.Args[1] == "admin" {
		if err := runAdmin(os.Args[2:]); err != nil {
			fmt.Fprintln(os.Stderr, "p2pd admin:", err)
			os.Exit(adminExitCode(err))
		}
		return
	}
	os.Exit(flagenv.Report(os.Stdout, os.Stderr, "p2pd", runNode(os.Args[1:])))
}

func runNode(args []string) error {
	cfg, err := parseFlags(args)
	if err != nil {
		return err
	}
	n, err := newNode(cfg)
	if err != nil {
		return err
	}
	if err := n.run(); err != nil && !errors.Is(err, context.Canceled) {
		return err
	}
	return nil
}
