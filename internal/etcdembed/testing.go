package etcdembed

import (
	"context"
	"fmt"
	"os"
	"time"
)

// Runner runs a package's tests; *testing.M is one.
type Runner interface{ Run() int }

// RunTests is a TestMain body for packages tested against a real etcd: it
// starts a member in a temporary directory on free loopback ports, stores
// its client endpoints in *endpoints, runs the tests and removes the
// member. Tests share it, each under its own key prefix.
func RunTests(m Runner, endpoints *[]string) int {
	dir, err := os.MkdirTemp("", "p2pd-test-etcd-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "test etcd:", err)
		return 1
	}
	defer os.RemoveAll(dir)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	e, err := Start(ctx, dir, "127.0.0.1:0", "127.0.0.1:0")
	if err != nil {
		fmt.Fprintln(os.Stderr, "test etcd:", err)
		return 1
	}
	defer e.Close()
	*endpoints = e.Endpoints()
	return m.Run()
}
