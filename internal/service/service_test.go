package service

import "testing"

func TestOpsAddr(t *testing.T) {
	for _, tc := range []struct{ ops, advertise, want string }{
		{":9092", "cachenode-1:7200", "cachenode-1:9092"},
		{"0.0.0.0:9092", "10.0.0.5:7200", "10.0.0.5:9092"},
		{"[::]:9092", "[fd00::5]:7200", "[fd00::5]:9092"},
		{"127.0.0.1:9093", "127.0.0.1:8080", "127.0.0.1:9093"},
		{"127.0.0.1:9093", "", "127.0.0.1:9093"},
		{"127.0.0.1:9093", "edge-host:8080", ""},
		{"localhost:9093", "10.0.0.5:8080", ""},
		{"10.0.0.5:9093", "edge-host:8080", "10.0.0.5:9093"},
		{"127.0.0.1:0", "edge-host:8080", ""},
		{"", "edge-host:8080", ""},
		{":9090", "", ""},
	} {
		if got := OpsAddr(tc.ops, tc.advertise); got != tc.want {
			t.Errorf("OpsAddr(%q, %q) = %q, want %q", tc.ops, tc.advertise, got, tc.want)
		}
	}
}
