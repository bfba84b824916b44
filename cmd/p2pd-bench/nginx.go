package main

import (
	"bufio"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"text/template"
	"time"
)

// nginx is the comparison: one nginx instance holding every role, each on
// its own loopback address: the origin serving the media directory, the
// same directory served as a plain disk server, and independent caches
// (proxy_cache + slice, 1 MiB slices, each with its own store) in front
// of the origin. The caches share nothing, as independent nginx caches
// behind DNS round robin do.
type nginx struct {
	dir       string
	port      string
	origin    string   // host:port
	disk      string   // host:port
	caches    []string // host:port
	originLog string   // one line per origin response: body bytes sent
	proc      *proc
}

const nginxConf = `worker_processes auto;
daemon off;
user root;
pid {{.Dir}}/nginx.pid;
error_log {{.Dir}}/error.log warn;
worker_rlimit_nofile 65536;
events { worker_connections 16384; }
http {
  access_log off;
  sendfile on;
  tcp_nopush on;
  keepalive_requests 100000;
  default_type application/octet-stream;
  log_format bytes '$body_bytes_sent';
  upstream origin {
    server {{.Origin}};
    keepalive 64;
  }
  server {
    listen {{.Origin}};
    root {{.Media}};
    access_log {{.OriginLog}} bytes;
  }
  server {
    listen {{.Disk}};
    root {{.Media}};
  }
{{- range $i, $c := .Caches}}
  proxy_cache_path {{$.Dir}}/cache{{$i}} levels=1:2 keys_zone=cache{{$i}}:16m max_size=20g inactive=1d use_temp_path=off;
  server {
    listen {{$c}};
    location / {
      slice 1m;
      proxy_cache cache{{$i}};
      proxy_cache_key $uri$slice_range;
      proxy_set_header Range $slice_range;
      proxy_cache_valid 200 206 1d;
      # Concurrent misses of one slice wait for the first: nginx's own
      # coalescing, within one cache.
      proxy_cache_lock on;
      proxy_cache_lock_timeout 60s;
      proxy_cache_lock_age 60s;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_pass http://origin;
    }
  }
{{- end}}
}
`

// startNginx writes the config and starts nginx on hosts: origin, disk,
// then one host per cache.
func startNginx(ps *procs, dir, media string, hosts []string) (*nginx, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	port, err := samePort(nil, hosts...)
	if err != nil {
		return nil, err
	}
	n := &nginx{dir: dir, port: port, originLog: filepath.Join(dir, "origin-bytes.log")}
	n.origin = net.JoinHostPort(hosts[0], port)
	n.disk = net.JoinHostPort(hosts[1], port)
	for _, h := range hosts[2:] {
		n.caches = append(n.caches, net.JoinHostPort(h, port))
	}
	conf := filepath.Join(dir, "nginx.conf")
	f, err := os.Create(conf)
	if err != nil {
		return nil, err
	}
	err = template.Must(template.New("nginx").Parse(nginxConf)).Execute(f, map[string]any{
		"Dir": dir, "Media": media, "Origin": n.origin, "Disk": n.disk, "Caches": n.caches, "OriginLog": n.originLog,
	})
	f.Close()
	if err != nil {
		return nil, err
	}
	n.proc, err = ps.start("nginx", "nginx", "-c", conf, "-p", dir)
	if err != nil {
		return nil, err
	}
	for _, a := range append([]string{n.origin, n.disk}, n.caches...) {
		// Any answer will do: the media root is a directory (403).
		if err := waitHTTP("http://"+a+"/", 0, 15*time.Second, n.proc); err != nil {
			return nil, fmt.Errorf("nginx on %s: %w", a, err)
		}
	}
	return n, nil
}

// originBytes returns the body bytes the origin has sent so far.
func (n *nginx) originBytes() (int64, error) {
	f, err := os.Open(n.originLog)
	if os.IsNotExist(err) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	defer f.Close()
	var total int64
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		v, err := strconv.ParseInt(strings.TrimSpace(sc.Text()), 10, 64)
		if err == nil {
			total += v
		}
	}
	return total, sc.Err()
}
