package adminserver

import (
	"net/http"
	"net/http/httptest"
	"testing"
)

// jaegerAnswer is what Jaeger's query API answers for a trace of an edge
// request that reached a cachenode (trimmed to the fields GetTrace reads,
// plus some it must ignore).
const jaegerAnswer = `{"data":[{"traceID":"4bf92f3577b34da6a3ce929d0e0e4736","spans":[
 {"traceID":"4bf92f3577b34da6a3ce929d0e0e4736","spanID":"00f067aa0ba902b7","operationName":"spp.v1.ChunkService/Fetch",
  "references":[{"refType":"CHILD_OF","traceID":"4bf92f3577b34da6a3ce929d0e0e4736","spanID":"a1a1a1a1a1a1a1a1"}],
  "startTime":1700000000000500,"duration":1500,"processID":"p2",
  "tags":[{"key":"rpc.grpc.status_code","type":"int64","value":2},{"key":"error","type":"bool","value":true}],"logs":[]},
 {"traceID":"4bf92f3577b34da6a3ce929d0e0e4736","spanID":"a1a1a1a1a1a1a1a1","operationName":"GET /{name}",
  "references":[],"startTime":1700000000000000,"duration":4000,"processID":"p1",
  "tags":[{"key":"http.response.status_code","type":"int64","value":206},{"key":"url.path","type":"string","value":"/movie.mp4"}],"logs":[]}],
 "processes":{"p1":{"serviceName":"edge","tags":[]},"p2":{"serviceName":"cachenode","tags":[]}},"warnings":null}],
 "total":0,"limit":0,"offset":0,"errors":null}`

func TestGetTrace(t *testing.T) {
	const id = "4bf92f3577b34da6a3ce929d0e0e4736"
	jaeger := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/api/traces/" + id:
			w.Header().Set("Content-Type", "application/json")
			w.Write([]byte(jaegerAnswer))
		case "/api/traces/ffffffffffffffffffffffffffffffff":
			http.Error(w, `{"data":null,"errors":[{"code":404,"msg":"trace not found"}]}`, http.StatusNotFound)
		default:
			http.Error(w, "boom", http.StatusInternalServerError)
		}
	}))
	t.Cleanup(jaeger.Close)

	type span struct {
		SpanID       string            `json:"spanId"`
		ParentSpanID string            `json:"parentSpanId"`
		Service      string            `json:"service"`
		Name         string            `json:"name"`
		Start        string            `json:"start"`
		DurationUs   string            `json:"durationUs"`
		Attributes   map[string]string `json:"attributes"`
		Error        bool              `json:"error"`
	}
	var got struct {
		TraceID string `json:"traceId"`
		Spans   []span `json:"spans"`
	}
	e := newEnv(t)
	if code, ae := e.doJSON("GET", "/v1/traces/"+id, nil, nil); code != 503 || ae.Code != CodeTracesUnavailable {
		t.Fatalf("no trace store: %d %+v", code, ae)
	}
	e.admin.cfg.TraceQueryURL = jaeger.URL + "/"
	if code, ae := e.doJSON("GET", "/v1/traces/"+id, nil, &got); code != 200 {
		t.Fatalf("get trace: %d %+v", code, ae)
	}
	if got.TraceID != id || len(got.Spans) != 2 {
		t.Fatalf("trace %+v", got)
	}
	root, fetch := got.Spans[0], got.Spans[1]
	if root.Service != "edge" || root.Name != "GET /{name}" || root.ParentSpanID != "" || root.DurationUs != "4000" ||
		root.Start != "2023-11-14T22:13:20Z" || root.Attributes["http.response.status_code"] != "206" || root.Error {
		t.Errorf("root span %+v", root)
	}
	if fetch.Service != "cachenode" || fetch.ParentSpanID != root.SpanID || fetch.Start != "2023-11-14T22:13:20.000500Z" ||
		!fetch.Error || fetch.Attributes["rpc.grpc.status_code"] != "2" {
		t.Errorf("fetch span %+v", fetch)
	}

	for _, tc := range []struct {
		id     string
		status int
		code   string
	}{
		{"ffffffffffffffffffffffffffffffff", 404, CodeTraceNotFound},
		{"0123456789abcdef0123456789abcdef", 503, CodeTracesUnavailable},
		{"not-hex", 400, CodeInvalidArgument},
		{"0123", 400, CodeInvalidArgument},
	} {
		if code, ae := e.doJSON("GET", "/v1/traces/"+tc.id, nil, nil); code != tc.status || ae.Code != tc.code {
			t.Errorf("%s: %d %+v, want %d %s", tc.id, code, ae, tc.status, tc.code)
		}
	}
}
