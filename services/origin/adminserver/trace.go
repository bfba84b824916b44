package adminserver

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	adminv1 "github.com/p2pd/p2pd/gen/admin/v1"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// maxTraceBytes bounds a trace store answer: a trace of a long download
// has thousands of spans, but not hundreds of megabytes of them.
const maxTraceBytes = 64 << 20

// GetTrace reads one trace from the trace store's query API (Jaeger's
// /api/traces/{id}, which Jaeger v1 and v2 both serve) and returns its
// spans by start time. The dashboard draws them as a waterfall, so no
// trace UI needs to be deployed.
func (s *Server) GetTrace(ctx context.Context, req *adminv1.GetTraceRequest) (*adminv1.GetTraceResponse, error) {
	id := strings.ToLower(strings.TrimSpace(req.GetTraceId()))
	if b, err := hex.DecodeString(id); err != nil || len(b) != 16 {
		return nil, errInvalid("trace id %q is not 32 hex digits (an X-Trace-Id header's value)", req.GetTraceId())
	}
	if s.cfg.TraceQueryURL == "" {
		return nil, newError(CodeTracesUnavailable, http.StatusServiceUnavailable, codes.Unavailable, nil,
			"no trace store is configured: start the origin with --trace-query-url (e.g. Jaeger's http://HOST:16686)")
	}
	ctx, cancel := context.WithTimeout(ctx, s.cfg.TrackerTimeout)
	defer cancel()
	u := strings.TrimSuffix(s.cfg.TraceQueryURL, "/") + "/api/traces/" + url.PathEscape(id)
	hreq, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, errInvalid("trace query URL %q: %v", s.cfg.TraceQueryURL, err)
	}
	resp, err := s.cfg.HTTPClient.Do(hreq)
	if err != nil {
		return nil, errTraces(err)
	}
	defer resp.Body.Close()
	switch {
	case resp.StatusCode == http.StatusNotFound:
		return nil, errTraceNotFound(id)
	case resp.StatusCode != http.StatusOK:
		return nil, errTraces(fmt.Errorf("%s answered %s", u, resp.Status))
	}
	var body jaegerTraces
	if err := json.NewDecoder(io.LimitReader(resp.Body, maxTraceBytes)).Decode(&body); err != nil {
		return nil, errTraces(fmt.Errorf("decode %s: %w", u, err))
	}
	out := &adminv1.GetTraceResponse{TraceId: id}
	for _, t := range body.Data {
		out.Spans = append(out.Spans, t.spans()...)
	}
	if len(out.Spans) == 0 {
		return nil, errTraceNotFound(id)
	}
	slices.SortStableFunc(out.Spans, func(a, b *adminv1.Span) int {
		return a.Start.AsTime().Compare(b.Start.AsTime())
	})
	return out, nil
}

func errTraces(err error) *apiError {
	return newError(CodeTracesUnavailable, http.StatusServiceUnavailable, codes.Unavailable, err,
		"the trace store cannot be read (%v); check that it runs and retry", err)
}

func errTraceNotFound(id string) *apiError {
	return newError(CodeTraceNotFound, http.StatusNotFound, codes.NotFound, nil,
		"trace %s is not in the trace store (spans arrive a few seconds after the request; sampled-out requests have none)", id)
}

// jaegerTraces is the body of Jaeger's /api/traces/{id}: the few fields a
// waterfall needs.
type jaegerTraces struct {
	Data []jaegerTrace `json:"data"`
}

type jaegerTrace struct {
	Spans []struct {
		SpanID        string `json:"spanID"`
		OperationName string `json:"operationName"`
		References    []struct {
			RefType string `json:"refType"`
			SpanID  string `json:"spanID"`
		} `json:"references"`
		StartTime int64       `json:"startTime"` // µs since the epoch
		Duration  int64       `json:"duration"`  // µs
		Tags      []jaegerTag `json:"tags"`
		ProcessID string      `json:"processID"`
	} `json:"spans"`
	Processes map[string]struct {
		ServiceName string `json:"serviceName"`
	} `json:"processes"`
}

type jaegerTag struct {
	Key   string `json:"key"`
	Value any    `json:"value"`
}

// spans converts the trace's spans: the parent is the CHILD_OF reference,
// the service the span's process, and "error" tags mark failures.
func (t jaegerTrace) spans() []*adminv1.Span {
	out := make([]*adminv1.Span, 0, len(t.Spans))
	for _, js := range t.Spans {
		sp := &adminv1.Span{
			SpanId:     js.SpanID,
			Service:    t.Processes[js.ProcessID].ServiceName,
			Name:       js.OperationName,
			Start:      timestamppb.New(time.UnixMicro(js.StartTime)),
			DurationUs: js.Duration,
			Attributes: make(map[string]string, len(js.Tags)),
		}
		for _, r := range js.References {
			if r.RefType == "CHILD_OF" || sp.ParentSpanId == "" {
				sp.ParentSpanId = r.SpanID
			}
		}
		for _, tag := range js.Tags {
			v := tagString(tag.Value)
			sp.Attributes[tag.Key] = v
			if tag.Key == "error" && v == "true" || tag.Key == "otel.status_code" && v == "ERROR" {
				sp.Error = true
			}
		}
		out = append(out, sp)
	}
	return out
}

// tagString renders a tag value the way Jaeger's UI shows it.
func tagString(v any) string {
	switch v := v.(type) {
	case string:
		return v
	case bool:
		return strconv.FormatBool(v)
	case float64:
		return strconv.FormatFloat(v, 'f', -1, 64)
	case nil:
		return ""
	}
	b, _ := json.Marshal(v)
	return string(b)
}
