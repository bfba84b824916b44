// Package adminclient is the HTTP client of the origin's admin API
// (services/origin/adminserver): the calls `p2pd admin` and the tests
// make, with the API's error answers decoded into an *APIError.
package adminclient

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	adminv1 "github.com/p2pd/p2pd/gen/admin/v1"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
)

// DefaultServer is the admin API's address when none is given: the
// origin's ops listener on this host.
const DefaultServer = "http://127.0.0.1:9090"

// queryTimeout bounds a call that only reads or deletes: it moves no file
// bytes, so a server that takes longer is stuck.
const queryTimeout = 30 * time.Second

// Client calls one origin's admin API with one token.
type Client struct {
	server string // scheme://host[:port], no trailing slash
	token  string
	http   *http.Client
}

// New returns a client of the API at server ("" for DefaultServer; a bare
// HOST:PORT means http). hc nil is a default http.Client.
func New(server, token string, hc *http.Client) (*Client, error) {
	if server == "" {
		server = DefaultServer
	}
	if !strings.Contains(server, "://") {
		server = "http://" + server
	}
	u, err := url.Parse(server)
	if err != nil || u.Host == "" || (u.Scheme != "http" && u.Scheme != "https") {
		return nil, fmt.Errorf("admin server %q: want a URL like http://HOST:PORT", server)
	}
	if hc == nil {
		hc = &http.Client{}
	}
	return &Client{server: strings.TrimSuffix(server, "/"), token: token, http: hc}, nil
}

// Server is the API's base URL, as normalized by New.
func (c *Client) Server() string { return c.server }

// ErrBadRequest is a call whose arguments make no valid request (a name
// that is no URL path, say); nothing was sent.
var ErrBadRequest = errors.New("invalid request")

// APIError is an error answer of the API.
type APIError struct {
	Status  int    // HTTP status
	Code    string // the API's stable error code, or http_<status> for a non-API answer
	Message string
	// JSON is the API's error answer as sent, nil when the answer was not
	// one (a proxy's page, say).
	JSON []byte
}

func (e *APIError) Error() string { return e.Message + " [" + e.Code + "]" }

// UnreachableError is a call that got no complete answer: the server is
// down, the address is wrong, or the connection broke.
type UnreachableError struct {
	Server string
	Err    error
}

func (e *UnreachableError) Error() string {
	return fmt.Sprintf("cannot reach the admin API at %s (is --server right and the origin running?): %v", e.Server, e.Err)
}

func (e *UnreachableError) Unwrap() error { return e.Err }

// Do sends req with the token and returns the body of a 2xx answer. Other
// answers are an *APIError, a failed exchange an *UnreachableError (or
// ctx's error when ctx ended).
func (c *Client) Do(ctx context.Context, req *http.Request) ([]byte, error) {
	req.Header.Set("Authorization", "Bearer "+c.token)
	req.Header.Set("Accept", "application/json")
	resp, err := c.http.Do(req.WithContext(ctx))
	if err != nil {
		if ctx.Err() != nil {
			return nil, fmt.Errorf("interrupted: %w", ctx.Err())
		}
		return nil, &UnreachableError{Server: c.server, Err: err}
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, &UnreachableError{Server: c.server, Err: fmt.Errorf("read answer: %w", err)}
	}
	if resp.StatusCode/100 == 2 {
		return body, nil
	}
	e := &APIError{Status: resp.StatusCode}
	var ae adminv1.Error
	if protojson.Unmarshal(body, &ae) == nil && ae.Code != "" {
		e.Code, e.Message, e.JSON = ae.Code, ae.Message, body
	} else {
		e.Code = "http_" + fmt.Sprint(resp.StatusCode)
		e.Message = fmt.Sprintf("%s %s: %s: %s", req.Method, req.URL.Path, resp.Status, bytes.TrimSpace(body))
	}
	return nil, e
}

// DecodeError is an answer that is not the message the call expects.
type DecodeError struct{ Err error }

func (e *DecodeError) Error() string {
	return "unexpected answer from the admin API: " + e.Err.Error()
}

func (e *DecodeError) Unwrap() error { return e.Err }

// Decode decodes an API answer into out, ignoring fields this client does
// not know (a newer server may add some).
func Decode(body []byte, out proto.Message) error {
	if err := (protojson.UnmarshalOptions{DiscardUnknown: true}).Unmarshal(body, out); err != nil {
		return &DecodeError{Err: err}
	}
	return nil
}

// call sends method path with body and decodes the answer into out. It
// returns the answer as sent too, for callers that print it.
func (c *Client) call(ctx context.Context, method, path string, body io.Reader, out proto.Message) ([]byte, error) {
	req, err := http.NewRequest(method, c.server+path, body)
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w: %w", method, path, ErrBadRequest, err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	raw, err := c.Do(ctx, req)
	if err != nil {
		return nil, err
	}
	if out == nil {
		return raw, nil
	}
	return raw, Decode(raw, out)
}

// query is call bounded by queryTimeout.
func (c *Client) query(ctx context.Context, method, path string, out proto.Message) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, queryTimeout)
	defer cancel()
	return c.call(ctx, method, path, nil, out)
}

// FilePath is the API path of a published name, each segment escaped.
func FilePath(name string) string {
	segs := strings.Split(name, "/")
	for i, s := range segs {
		segs[i] = url.PathEscape(s)
	}
	return "/v1/files/" + strings.Join(segs, "/")
}

// ListFiles lists the published files.
func (c *Client) ListFiles(ctx context.Context) (*adminv1.ListFilesResponse, []byte, error) {
	var out adminv1.ListFilesResponse
	raw, err := c.query(ctx, http.MethodGet, "/v1/files", &out)
	return &out, raw, err
}

// GetFile describes one published file and its holders.
func (c *Client) GetFile(ctx context.Context, name string) (*adminv1.GetFileResponse, []byte, error) {
	var out adminv1.GetFileResponse
	raw, err := c.query(ctx, http.MethodGet, FilePath(name), &out)
	return &out, raw, err
}

// ListNodes lists the live nodes.
func (c *Client) ListNodes(ctx context.Context) (*adminv1.ListNodesResponse, []byte, error) {
	var out adminv1.ListNodesResponse
	raw, err := c.query(ctx, http.MethodGet, "/v1/nodes", &out)
	return &out, raw, err
}

// Stats returns the CDN's storage and traffic statistics.
func (c *Client) Stats(ctx context.Context) (*adminv1.GetStatsResponse, []byte, error) {
	var out adminv1.GetStatsResponse
	raw, err := c.query(ctx, http.MethodGet, "/v1/stats", &out)
	return &out, raw, err
}

// Unpublish unpublishes name and deletes its file from the media
// directory, or keeps the file when keepFile is set.
func (c *Client) Unpublish(ctx context.Context, name string, keepFile bool) ([]byte, error) {
	path := FilePath(name)
	if keepFile {
		path += "?keepFile=true"
	}
	return c.query(ctx, http.MethodDelete, path, nil)
}

// PublishPath publishes a file already in the server's media directory
// (path relative to it).
func (c *Client) PublishPath(ctx context.Context, path string, replace bool) (*adminv1.PublishFileResponse, []byte, error) {
	in, err := json.Marshal(map[string]any{"path": path, "replace": replace})
	if err != nil {
		return nil, nil, fmt.Errorf("publish %s: %w", path, err)
	}
	var out adminv1.PublishFileResponse
	raw, err := c.call(ctx, http.MethodPost, "/v1/files", bytes.NewReader(in), &out)
	return &out, raw, err
}

// Upload sends size bytes from body and publishes them as name. sha256 is
// the digest of those bytes: the server publishes them only if every byte
// arrived as hashed.
func (c *Client) Upload(ctx context.Context, name string, body io.Reader, size int64, sha256 []byte, replace bool) (*adminv1.PublishFileResponse, []byte, error) {
	u := c.server + FilePath(name)
	if replace {
		u += "?replace=true"
	}
	req, err := http.NewRequest(http.MethodPut, u, body)
	if err != nil {
		return nil, nil, fmt.Errorf("upload %q: %w: %w", name, ErrBadRequest, err)
	}
	req.ContentLength = size
	if size == 0 {
		req.Body = http.NoBody // else an empty body is sent chunked
	}
	req.Header.Set("Content-Type", "application/octet-stream")
	req.Header.Set("Repr-Digest", "sha-256=:"+base64.StdEncoding.EncodeToString(sha256)+":")
	// The server can refuse (name taken, disk too small) before the body
	// is sent.
	req.Header.Set("Expect", "100-continue")
	raw, err := c.Do(ctx, req)
	if err != nil {
		return nil, nil, err
	}
	var out adminv1.PublishFileResponse
	return &out, raw, Decode(raw, &out)
}
