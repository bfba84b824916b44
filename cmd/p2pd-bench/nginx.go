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
	dir    string
	port   string
	origin string   // host:port
	disk   string   // host:port
	caches []string // host:port
	// players is the first cache's store served with sendfile off, for
	// the viewer-capacity trials (see nginxConf).
	players   string // host:port
	originLog string // one line per origin response: body bytes sent
	proc      *proc
}

// nginxCache is the location of cache N: proxy_cache + slice in front of
// the origin.
const nginxCache = `{{define "cache"}}location / {
      slice 1m;
      proxy_cache cache{{.}};
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
    }{{end}}`

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
    {{template "cache" $i}}
  }
{{- end}}
  # The first cache's store again, for slow readers (the viewer trials).
  # With sendfile on, every slice nginx has queued ahead of a viewer that
  # reads at its playback rate keeps its cache file open (about 350
  # descriptors per viewer of an open-ended range of a 512 MiB file), and
  # the host's descriptor limit cuts bodies after a hundred viewers or so;
  # with sendfile off nginx reads slices into its output buffers and holds
  # about ten per viewer.
  server {
    listen {{.Players}};
    sendfile off;
    {{template "cache" 0}}
  }
}
`

// startNginx writes the config and starts nginx on hosts: origin, disk,
// the first cache for players, then one host per cache.
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
	n.players = net.JoinHostPort(hosts[2], port)
	for _, h := range hosts[3:] {
		n.caches = append(n.caches, net.JoinHostPort(h, port))
	}
	conf := filepath.Join(dir, "nginx.conf")
	f, err := os.Create(conf)
	if err != nil {
		return nil, err
	}
	err = template.Must(template.Must(template.New("nginx").Parse(nginxCache)).Parse(nginxConf)).Execute(f, map[string]any{
		"Dir": dir, "Media": media, "Origin": n.origin, "Disk": n.disk, "Caches": n.caches, "Players": n.players, "OriginLog": n.originLog,
	})
	f.Close()
	if err != nil {
		return nil, err
	}
	n.proc, err = ps.start("nginx", "nginx", "-c", conf, "-p", dir)
	if err != nil {
		return nil, err
	}
	for _, a := range append([]string{n.origin, n.disk, n.players}, n.caches...) {
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
