package etcdembed

import (
	"context"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
)

func TestStartPutGet(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	dir := t.TempDir()
	tests := []struct {
		name string
		put  bool // write the key first; otherwise expect it from the run before
	}{
		{"fresh dir", true},
		{"restart keeps data", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e, err := Start(ctx, dir, "127.0.0.1:0", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			defer e.Close()
			cli, err := clientv3.New(clientv3.Config{Endpoints: e.Endpoints(), DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
			if err != nil {
				t.Fatal(err)
			}
			defer cli.Close()
			if tt.put {
				if _, err := cli.Put(ctx, "k", "v"); err != nil {
					t.Fatalf("put: %v", err)
				}
			}
			resp, err := cli.Get(ctx, "k")
			if err != nil {
				t.Fatalf("get: %v", err)
			}
			if len(resp.Kvs) != 1 || string(resp.Kvs[0].Value) != "v" {
				t.Fatalf("get k = %v, want v", resp.Kvs)
			}
		})
	}
}

func TestStartBadAddr(t *testing.T) {
	tests := []struct{ client, peer string }{
		{"nonsense", "127.0.0.1:0"},
		{"127.0.0.1:0", ":0"},
	}
	for _, tt := range tests {
		if e, err := Start(context.Background(), t.TempDir(), tt.client, tt.peer); err == nil {
			e.Close()
			t.Errorf("Start(%q, %q) succeeded, want error", tt.client, tt.peer)
		}
	}
}
