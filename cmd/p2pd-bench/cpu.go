package main

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
func cpuSeconds(pid int, tree bool) float64 {
	total := cpuOf(pid)
	if !tree {
		return total
	}
	for _, child := range children(pid) {
		total += cpuOf(child)
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

// cpuMeter measures the CPU time processes spend between start and stop.
type cpuMeter struct {
	pids  map[string]int
	tree  bool
	start map[string]float64
}

func meterCPU(pids map[string]int, tree bool) *cpuMeter {
	m := &cpuMeter{pids: pids, tree: tree, start: map[string]float64{}}
	for name, pid := range pids {
		m.start[name] = cpuSeconds(pid, tree)
	}
	return m
}

// perGiB returns each process's CPU seconds since the meter started,
// divided by the GiB served meanwhile.
func (m *cpuMeter) perGiB(bytes float64) map[string]float64 {
	out := map[string]float64{}
	if bytes <= 0 {
		return out
	}
	for name, pid := range m.pids {
		out[name] = (cpuSeconds(pid, m.tree) - m.start[name]) / (bytes / (1 << 30))
	}
	return out
}

// sumCPU adds up the per-process figures: the cost of the whole path.
func sumCPU(perProc map[string]float64) float64 {
	var s float64
	for _, v := range perProc {
		s += v
	}
	return s
}
