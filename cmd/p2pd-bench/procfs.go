package main

// What the bench reads of the processes it measures, all from
// /proc/PID/stat: CPU time, resident set, parent.

import (
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
)

// clockTicks is USER_HZ, the unit of utime and stime in /proc/PID/stat
// (100 on every Linux this runs on; asked once in case it is not).
var clockTicks = func() float64 {
	out, err := exec.Command("getconf", "CLK_TCK").Output()
	if err != nil {
		return 100
	}
	v, err := strconv.ParseFloat(strings.TrimSpace(string(out)), 64)
	if err != nil || v <= 0 {
		return 100
	}
	return v
}()

// cpuSeconds is the user+system CPU time a process has used, with its
// direct children's (nginx's workers) when tree is set.
func cpuSeconds(pid int, tree bool) float64 { return treeSum(pid, tree, cpuOf) }

// rss returns a process's resident set in bytes, with its direct
// children's when tree is set.
func rss(pid int, tree bool) int64 { return treeSum(pid, tree, rssOf) }

// treeSum is of(pid), plus of each direct child of pid when tree is set.
func treeSum[T int64 | float64](pid int, tree bool, of func(int) T) T {
	total := of(pid)
	if !tree {
		return total
	}
	for _, child := range children(pid) {
		total += of(child)
	}
	return total
}

// statFields returns the fields of /proc/PID/stat after the command name
// (field 3, the state, is the first).
func statFields(pid int) []string {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return nil
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return nil
	}
	return strings.Fields(s[i+1:])
}

func cpuOf(pid int) float64 {
	f := statFields(pid)
	if len(f) < 13 {
		return 0
	}
	// utime and stime are fields 14 and 15 of stat, 12 and 13 here.
	u, _ := strconv.ParseFloat(f[11], 64)
	s, _ := strconv.ParseFloat(f[12], 64)
	return (u + s) / clockTicks
}

func rssOf(pid int) int64 {
	f := statFields(pid)
	if len(f) < 22 {
		return 0
	}
	// rss, in pages, is field 24 of stat, 22 here.
	pages, _ := strconv.ParseInt(f[21], 10, 64)
	return pages * int64(os.Getpagesize())
}

// children lists the processes whose parent is pid.
func children(pid int) []int {
	var out []int
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		child, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if f := statFields(child); len(f) > 1 && f[1] == strconv.Itoa(pid) {
			out = append(out, child)
		}
	}
	return out
}
