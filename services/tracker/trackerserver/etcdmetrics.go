package trackerserver

import (
	"context"
	"strings"
	"time"

	"github.com/p2pd/p2pd/internal/metric"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
)

// etcdMetrics times the tracker's requests to etcd by operation (the etcd
// gRPC method: Range, Put, Txn, LeaseGrant, LeaseKeepAlive, ...). They are
// gRPC interceptors on the etcd client, so no call site can forget them;
// the client's own retry interceptor runs outside them, so each attempt is
// timed on its own.
type etcdMetrics struct {
	seconds *prometheus.HistogramVec
	errors  *prometheus.CounterVec
}

func newEtcdMetrics() *etcdMetrics {
	m := &etcdMetrics{
		seconds: metric.HistogramVec("p2pd_tracker_etcd_request_duration_seconds", "Time of the tracker's etcd requests, by operation (for LeaseKeepAlive: to the keep-alive answer).", prometheus.ExponentialBuckets(0.0005, 2, 14), "op"), // 0.5 ms .. 4 s
		errors:  metric.CounterVec("p2pd_tracker_etcd_request_errors_total", "The tracker's etcd requests that failed, by operation.", "op"),
	}
	// Every operation the tracker makes starts at zero errors: an alert on
	// rate(...errors...) needs the series before the first error, or it
	// cannot fire on that error.
	for _, op := range []string{"Range", "Put", "Txn", "DeleteRange", "LeaseGrant", "LeaseRevoke", "LeaseKeepAlive"} {
		m.errors.WithLabelValues(op)
	}
	return m
}

func (m *etcdMetrics) collectors() []prometheus.Collector {
	return []prometheus.Collector{m.seconds, m.errors}
}

func (m *etcdMetrics) dialOptions() []grpc.DialOption {
	return []grpc.DialOption{
		grpc.WithChainUnaryInterceptor(m.unary),
		grpc.WithChainStreamInterceptor(m.stream),
	}
}

// etcdOp is the operation name of an etcd gRPC method.
func etcdOp(method string) string { return method[strings.LastIndexByte(method, '/')+1:] }

func (m *etcdMetrics) observe(op string, start time.Time, err error) {
	m.seconds.WithLabelValues(op).Observe(time.Since(start).Seconds())
	if err != nil {
		m.errors.WithLabelValues(op).Inc()
	}
}

func (m *etcdMetrics) unary(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
	start := time.Now()
	err := invoker(ctx, method, req, reply, cc, opts...)
	m.observe(etcdOp(method), start, err)
	return err
}

// stream times a lease keep-alive (the tracker sends one per heartbeat)
// to its first answer. Other streams (watches) live as long as the
// tracker: there is no latency to measure.
func (m *etcdMetrics) stream(ctx context.Context, desc *grpc.StreamDesc, cc *grpc.ClientConn, method string, streamer grpc.Streamer, opts ...grpc.CallOption) (grpc.ClientStream, error) {
	op := etcdOp(method)
	if op != "LeaseKeepAlive" {
		return streamer(ctx, desc, cc, method, opts...)
	}
	start := time.Now()
	s, err := streamer(ctx, desc, cc, method, opts...)
	if err != nil {
		m.observe(op, start, err)
		return nil, err
	}
	return &timedStream{ClientStream: s, m: m, op: op, start: start}, nil
}

// timedStream observes the time to its first received message.
type timedStream struct {
	grpc.ClientStream
	m     *etcdMetrics
	op    string
	start time.Time
	done  bool
}

func (s *timedStream) RecvMsg(msg any) error {
	err := s.ClientStream.RecvMsg(msg)
	if !s.done {
		s.done = true
		s.m.observe(s.op, s.start, err)
	}
	return err
}
