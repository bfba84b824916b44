package main

import (
	"os"
	"os/exec"
	"slices"
	"testing"
)

// The bench measures real processes: this one and a child it starts.
func TestProcfs(t *testing.T) {
	cmd := exec.Command("sleep", "60")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
	})
	self := os.Getpid()
	if kids := children(self); !slices.Contains(kids, cmd.Process.Pid) {
		t.Fatalf("children of %d = %v, want the sleep %d among them", self, kids, cmd.Process.Pid)
	}
	// A Go test process with the race detector or not holds megabytes.
	if r := rss(self, false); r < 1<<20 {
		t.Fatalf("rss = %d bytes, want at least 1 MiB", r)
	}
	if r := rss(cmd.Process.Pid, false); r <= 0 {
		t.Fatalf("rss of the child = %d, want some", r)
	}
	if cpu := cpuSeconds(self, true); cpu <= 0 {
		t.Fatalf("cpu seconds = %v, want some", cpu)
	}
	if r, c := rss(1<<30, true), cpuSeconds(1<<30, true); r != 0 || c != 0 {
		t.Fatalf("a process that does not exist: rss %d, cpu %v; want 0", r, c)
	}
}
