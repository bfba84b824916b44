package edgeserver

import (
	"fmt"
	"io"
	"math"
	"net/http"

	"github.com/p2pd/p2pd/internal/rangeio"
)

// maxHeld bounds the body bytes held back before content has started:
// a multipart boundary and part header, or ServeContent's short error
// texts, never more.
const maxHeld = 8 << 10

// responseWriter defers the real WriteHeader until content has started to
// flow. ServeContent commits to 200/206 before it reads a byte; if the
// first chunk then cannot be had, the handler can still discard what was
// held and answer 502/503 instead, and nothing is ever written twice.
//
// Before content starts it holds a few body bytes (a multipart response
// writes its first boundary before reading the first range). Once content
// started, everything goes straight through.
type responseWriter struct {
	w http.ResponseWriter
	// started reports whether content bytes have been read; nil means
	// every write commits (index pages, error texts).
	started func() bool
	// size is the file size, for the Content-Range of a 416 (-1: none).
	size int64

	status    int
	committed bool
	held      []byte
	written   int64
	err       error // first write error: the viewer is gone
}

func newResponseWriter(w http.ResponseWriter) *responseWriter {
	return &responseWriter{w: w, size: -1}
}

func (rw *responseWriter) Header() http.Header { return rw.w.Header() }

// Unwrap lets http.ResponseController reach the connection.
func (rw *responseWriter) Unwrap() http.ResponseWriter { return rw.w }

func (rw *responseWriter) WriteHeader(code int) {
	if rw.committed || rw.status != 0 {
		return // superfluous: the first status wins, as in net/http
	}
	rw.status = code
}

func (rw *responseWriter) Write(p []byte) (int, error) {
	if rw.status == 0 {
		rw.status = http.StatusOK
	}
	if !rw.committed {
		if rw.started != nil && !rw.started() && len(rw.held)+len(p) <= maxHeld {
			rw.held = append(rw.held, p...)
			return len(p), nil
		}
		if err := rw.commit(); err != nil {
			return 0, err
		}
	}
	n, err := rw.w.Write(p)
	rw.written += int64(n)
	if err != nil && rw.err == nil {
		rw.err = err
	}
	return n, err
}

// ReadFrom is where ServeContent's io.CopyN of a single range lands: a
// body read from a rangeio.Reader is written in place, a chunk (or what
// is left of the range in it) per Write, instead of being copied once
// more through io.Copy's 32 KiB buffer and written 32 KiB at a time.
func (rw *responseWriter) ReadFrom(src io.Reader) (int64, error) {
	lr, ok := src.(*io.LimitedReader)
	var rd *rangeio.Reader
	if ok {
		rd, ok = lr.R.(*rangeio.Reader)
	}
	if !ok {
		return io.Copy(writerOnly{rw}, src)
	}
	var n int64
	for lr.N > 0 {
		b, err := rd.View(int(min(lr.N, math.MaxInt32)))
		if len(b) > 0 {
			lr.N -= int64(len(b))
			w, werr := rw.Write(b)
			n += int64(w)
			if werr != nil {
				return n, werr
			}
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			return n, err
		}
	}
	return n, nil
}

// writerOnly hides ReadFrom, so io.Copy does not call it again.
type writerOnly struct{ io.Writer }

// commit sends the status, the headers and the held bytes.
func (rw *responseWriter) commit() error {
	rw.committed = true
	if rw.status == 0 {
		rw.status = http.StatusOK
	}
	if rw.status == http.StatusPartialContent && rw.size == 0 {
		// A suffix range of an empty file: ServeContent answers 206 with
		// "bytes 0--1/0", which no client can parse. No byte range of an
		// empty representation can be sent, so it is unsatisfiable (RFC
		// 9110 §15.5.17); ServeContent has already answered every
		// precondition and If-Range before it got here.
		rw.status, rw.held = http.StatusRequestedRangeNotSatisfiable, nil
		rw.Header().Del("Content-Type")
		rw.Header().Set("Content-Range", "bytes */0")
		rw.Header().Set("Content-Length", "0")
	}
	if rw.status == http.StatusRequestedRangeNotSatisfiable && rw.size >= 0 && rw.Header().Get("Content-Range") == "" {
		// ServeContent sets it only when the range is valid but past the
		// end; a malformed one gets the same answer, as nginx gives.
		rw.Header().Set("Content-Range", fmt.Sprintf("bytes */%d", rw.size))
	}
	rw.w.WriteHeader(rw.status)
	if len(rw.held) == 0 {
		return nil
	}
	n, err := rw.w.Write(rw.held)
	rw.written += int64(n)
	rw.held = nil
	if err != nil && rw.err == nil {
		rw.err = err
	}
	return err
}

// finish commits whatever is held; the response is complete.
func (rw *responseWriter) finish() {
	if !rw.committed {
		rw.commit()
	}
}

// reset discards the uncommitted response and the headers that described
// content, so an error can be sent instead. It reports false once the
// headers went out: then only aborting the connection is left.
func (rw *responseWriter) reset() bool {
	if rw.committed {
		return false
	}
	rw.status, rw.held, rw.started = 0, nil, nil
	h := rw.Header()
	for _, k := range []string{"Content-Length", "Content-Range", "Content-Type", "Etag", "Last-Modified", "Cache-Control", "Accept-Ranges"} {
		h.Del(k)
	}
	return true
}
