// Package accesslog writes one line per viewer request in a format log
// tooling already reads: Apache/nginx "combined" (with the range, the
// duration and the trace id appended) or JSON lines.
package accesslog

import (
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"sync"
	"time"

	"github.com/felixge/httpsnoop"
)

// Format is how a request is written.
type Format int

// The formats, by the name --access-log-format takes.
const (
	// Combined is the combined log format followed by the Range header,
	// the duration in seconds and the trace id ("-" when absent):
	//
	//	127.0.0.1 - - [06/Dec/2026:01:02:03 +0000] "GET /a.mp4 HTTP/1.1" 206 100 "-" "curl/8.5" "bytes=0-99" 0.000412 4bf92f3577b34da6a3ce929d0e0e4736
	Combined Format = iota
	// JSON is one JSON object per line, with the fields of Record.
	JSON
)

// ParseFormat reads a format name: combined or json.
func ParseFormat(s string) (Format, error) {
	switch s {
	case "combined", "":
		return Combined, nil
	case "json":
		return JSON, nil
	}
	return 0, fmt.Errorf("access log format %q: want combined or json", s)
}

// Record is one request, as the JSON format writes it.
type Record struct {
	Time      time.Time `json:"time"`
	Client    string    `json:"client"`
	Method    string    `json:"method"`
	Path      string    `json:"path"`
	Proto     string    `json:"proto"`
	Range     string    `json:"range,omitempty"`
	Status    int       `json:"status"`
	Bytes     int64     `json:"bytes"`
	Duration  float64   `json:"duration"` // seconds
	Referer   string    `json:"referer,omitempty"`
	UserAgent string    `json:"user_agent,omitempty"`
	TraceID   string    `json:"trace_id,omitempty"`
}

// Logger writes access log lines to one writer.
type Logger struct {
	format Format
	mu     sync.Mutex // one line per Write, lines never interleaved
	w      io.Writer
	closer io.Closer
}

// New returns a Logger writing to w.
func New(w io.Writer, format Format) *Logger {
	return &Logger{format: format, w: w}
}

// Open returns a Logger writing to dest: "-" or "stderr" for standard
// error, "stdout", or a file appended to (created 0644). An empty dest
// returns a nil Logger, which logs nothing.
func Open(dest string, format Format) (*Logger, error) {
	switch dest {
	case "":
		return nil, nil
	case "-", "stderr":
		return New(os.Stderr, format), nil
	case "stdout":
		return New(os.Stdout, format), nil
	}
	f, err := os.OpenFile(dest, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		return nil, fmt.Errorf("access log: %w", err)
	}
	l := New(f, format)
	l.closer = f
	return l, nil
}

// Close closes the file the Logger writes to, if it opened one.
func (l *Logger) Close() error {
	if l == nil || l.closer == nil {
		return nil
	}
	return l.closer.Close()
}

// Handler logs every request h serves, when it ends (aborted ones too).
// A nil Logger returns h unchanged, so a node without an access log pays
// nothing. The response writer keeps its optional interfaces (Flusher,
// ReaderFrom, ...), so h's fast paths stay fast.
func (l *Logger) Handler(h http.Handler) http.Handler {
	if l == nil {
		return h
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		var status int
		var written int64
		ww := httpsnoop.Wrap(w, httpsnoop.Hooks{
			WriteHeader: func(next httpsnoop.WriteHeaderFunc) httpsnoop.WriteHeaderFunc {
				return func(code int) {
					if status == 0 && code >= 200 {
						status = code
					}
					next(code)
				}
			},
			Write: func(next httpsnoop.WriteFunc) httpsnoop.WriteFunc {
				return func(b []byte) (int, error) {
					if status == 0 {
						status = http.StatusOK
					}
					n, err := next(b)
					written += int64(n)
					return n, err
				}
			},
			ReadFrom: func(next httpsnoop.ReadFromFunc) httpsnoop.ReadFromFunc {
				return func(src io.Reader) (int64, error) {
					if status == 0 {
						status = http.StatusOK
					}
					n, err := next(src)
					written += n
					return n, err
				}
			},
		})
		// Logged even when h panics (the edge aborts a response it cannot
		// finish with http.ErrAbortHandler): those are the lines wanted most.
		defer func() {
			if status == 0 {
				status = http.StatusOK
			}
			host, _, err := net.SplitHostPort(r.RemoteAddr)
			if err != nil {
				host = r.RemoteAddr
			}
			l.write(Record{
				Time:      start,
				Client:    host,
				Method:    r.Method,
				Path:      r.RequestURI,
				Proto:     r.Proto,
				Range:     r.Header.Get("Range"),
				Status:    status,
				Bytes:     written,
				Duration:  time.Since(start).Seconds(),
				Referer:   r.Referer(),
				UserAgent: r.UserAgent(),
				TraceID:   w.Header().Get("X-Trace-Id"),
			})
		}()
		h.ServeHTTP(ww, r)
	})
}

func (l *Logger) write(rec Record) {
	var line []byte
	if l.format == JSON {
		line, _ = json.Marshal(rec) // a Record always marshals
	} else {
		line = appendCombined(make([]byte, 0, 256), rec)
	}
	line = append(line, '\n')
	l.mu.Lock()
	defer l.mu.Unlock()
	l.w.Write(line) // a lost log line must not fail the request
}

// appendCombined writes rec in the combined format plus range, duration
// and trace id.
func appendCombined(b []byte, rec Record) []byte {
	b = append(b, rec.Client...)
	b = append(b, " - - ["...)
	b = rec.Time.AppendFormat(b, "02/Jan/2006:15:04:05 -0700")
	b = append(b, "] "...)
	b = appendQuoted(b, rec.Method+" "+rec.Path+" "+rec.Proto)
	b = append(b, ' ')
	b = strconv.AppendInt(b, int64(rec.Status), 10)
	b = append(b, ' ')
	if rec.Bytes == 0 {
		b = append(b, '-')
	} else {
		b = strconv.AppendInt(b, rec.Bytes, 10)
	}
	for _, s := range []string{rec.Referer, rec.UserAgent, rec.Range} {
		b = append(b, ' ')
		b = appendQuoted(b, orDash(s))
	}
	b = append(b, ' ')
	b = strconv.AppendFloat(b, rec.Duration, 'f', 6, 64)
	b = append(b, ' ')
	return append(b, orDash(rec.TraceID)...)
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// appendQuoted writes s in double quotes, escaping quotes, backslashes and
// bytes outside printable ASCII as nginx does (\xHH), so a client cannot
// forge a line or a field.
func appendQuoted(b []byte, s string) []byte {
	const hex = "0123456789ABCDEF"
	b = append(b, '"')
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '"' || c == '\\':
			b = append(b, '\\', c)
		case c < 0x20 || c >= 0x7f:
			b = append(b, '\\', 'x', hex[c>>4], hex[c&0xf])
		default:
			b = append(b, c)
		}
	}
	return append(b, '"')
}

// Flags is the command-line setting of the access log.
type Flags struct {
	Dest   string
	Format string
}

// Register adds --access-log and --access-log-format to fs.
func (f *Flags) Register(fs *flag.FlagSet) {
	fs.StringVar(&f.Dest, "access-log", "", "write one line per viewer request to this `file` (appended), or - for stderr; empty: none")
	fs.StringVar(&f.Format, "access-log-format", "combined", "access log format: combined (Apache/nginx, plus range, seconds, trace id) or json (JSON lines)")
}

// Validate checks the flags' values, for a usage error before anything
// starts.
func (f *Flags) Validate() error {
	if _, err := ParseFormat(f.Format); err != nil {
		return fmt.Errorf("--access-log-format: %w", err)
	}
	return nil
}

// Open opens the log the flags name (nil when none).
func (f *Flags) Open() (*Logger, error) {
	if err := f.Validate(); err != nil {
		return nil, err
	}
	format, _ := ParseFormat(f.Format)
	return Open(f.Dest, format)
}
