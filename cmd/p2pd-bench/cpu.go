package main

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
