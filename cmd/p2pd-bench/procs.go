package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/p2pd/p2pd/internal/metric"
)

// proc is a process the bench started; every one is stopped at the end.
type proc struct {
	name string
	cmd  *exec.Cmd
	log  string
	done chan struct{}
}

// procs tracks the bench's processes.
type procs struct {
	mu  sync.Mutex
	all []*proc
	dir string // logs
}

// start runs bin with args, logging to dir/name.log.
func (ps *procs) start(name, bin string, args ...string) (*proc, error) {
	logPath := filepath.Join(ps.dir, name+".log")
	f, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = f, f
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		f.Close()
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	p := &proc{name: name, cmd: cmd, log: logPath, done: make(chan struct{})}
	go func() { cmd.Wait(); f.Close(); close(p.done) }()
	ps.mu.Lock()
	ps.all = append(ps.all, p)
	ps.mu.Unlock()
	return p, nil
}

// stopAll terminates every process, newest first, and waits (bounded).
func (ps *procs) stopAll() {
	ps.mu.Lock()
	all := ps.all
	ps.all = nil
	ps.mu.Unlock()
	for i := len(all) - 1; i >= 0; i-- {
		all[i].stop()
	}
}

func (p *proc) stop() {
	select {
	case <-p.done:
		return
	default:
	}
	syscall.Kill(-p.cmd.Process.Pid, syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(10 * time.Second):
		syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
		<-p.done
	}
}

func (p *proc) pid() int { return p.cmd.Process.Pid }

// exited reports whether the process is gone, with the tail of its log.
func (p *proc) exited() (bool, string) {
	select {
	case <-p.done:
		b, _ := os.ReadFile(p.log)
		lines := strings.Split(strings.TrimSpace(string(b)), "\n")
		return true, strings.Join(lines[max(0, len(lines)-15):], "\n")
	default:
		return false, ""
	}
}

// freePort returns a port free on host right now.
func freePort(host string) (string, error) {
	l, err := net.Listen("tcp", net.JoinHostPort(host, "0"))
	if err != nil {
		return "", err
	}
	defer l.Close()
	_, port, _ := net.SplitHostPort(l.Addr().String())
	return port, nil
}

// samePort returns a port free on every host, not among taken.
func samePort(taken []string, hosts ...string) (string, error) {
	for port := 21000; port < 60000; port += 37 {
		if slices.Contains(taken, strconv.Itoa(port)) {
			continue
		}
		ok := true
		for _, h := range hosts {
			l, err := net.Listen("tcp", net.JoinHostPort(h, strconv.Itoa(port)))
			if err != nil {
				ok = false
				break
			}
			l.Close()
		}
		if ok {
			return strconv.Itoa(port), nil
		}
	}
	return "", fmt.Errorf("no port free on all of %v", hosts)
}

// waitHTTP polls url until it answers want (any status when 0), or fails
// after d; p, when given, failing meanwhile ends the wait at once.
func waitHTTP(url string, want int, d time.Duration, p *proc) error {
	deadline := time.Now().Add(d)
	for {
		resp, err := http.Head(url)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == want || want == 0 {
				return nil
			}
			err = fmt.Errorf("status %d", resp.StatusCode)
		}
		if p != nil {
			if gone, tail := p.exited(); gone {
				return fmt.Errorf("%s exited:\n%s", p.name, tail)
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s: not %d within %v: %v", url, want, d, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// opsMetric sums the samples of a Prometheus metric at an ops listener.
func opsMetric(ops, name string) (float64, error) {
	resp, err := http.Get("http://" + ops + "/metrics")
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	return metric.SumText(resp.Body, name, nil)
}

// rssSampler records the peak RSS of processes while it runs.
type rssSampler struct {
	stop chan struct{}
	done chan struct{}
	peak map[string]int64
}

func sampleRSS(pids map[string]int, tree bool) *rssSampler {
	s := &rssSampler{stop: make(chan struct{}), done: make(chan struct{}), peak: map[string]int64{}}
	go func() {
		defer close(s.done)
		t := time.NewTicker(100 * time.Millisecond)
		defer t.Stop()
		for {
			for name, pid := range pids {
				s.peak[name] = max(s.peak[name], rss(pid, tree))
			}
			select {
			case <-s.stop:
				return
			case <-t.C:
			}
		}
	}()
	return s
}

func (s *rssSampler) end() map[string]int64 {
	close(s.stop)
	<-s.done
	return s.peak
}

// profile fetches a CPU profile of seconds from an ops listener into path.
func profile(ctx context.Context, ops string, seconds int, path string) error {
	req, err := http.NewRequestWithContext(ctx, "GET", fmt.Sprintf("http://%s/debug/pprof/profile?seconds=%d", ops, seconds), nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		return fmt.Errorf("profile %s: status %d", ops, resp.StatusCode)
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	defer f.Close()
	_, err = io.Copy(f, resp.Body)
	return err
}

// pprofTop renders the top of a profile.
func pprofTop(bin, prof string, n int) string {
	out, err := exec.Command("go", "tool", "pprof", "-top", fmt.Sprintf("-nodecount=%d", n), bin, prof).CombinedOutput()
	if err != nil {
		return fmt.Sprintf("pprof: %v\n%s", err, out)
	}
	// Keep the summary and the table, drop the file header.
	lines := strings.Split(string(out), "\n")
	var keep []string
	for _, l := range lines {
		if strings.HasPrefix(l, "File:") || strings.HasPrefix(l, "Build ID:") || strings.HasPrefix(l, "Time:") || strings.HasPrefix(l, "Type:") {
			continue
		}
		keep = append(keep, l)
	}
	return strings.TrimSpace(strings.Join(keep, "\n"))
}
