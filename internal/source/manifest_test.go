package source

import (
	"bytes"
	"context"
	"errors"
	"net"
	"sync"
	"testing"
	"time"

	trackerv1 "github.com/p2pd/p2pd/gen/tracker/v1"
	"github.com/p2pd/p2pd/internal/manifest"
	"github.com/p2pd/p2pd/internal/spp"
	"github.com/p2pd/p2pd/internal/spp/spptest"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
)

// dialer is a real pool of gRPC connections.
func dialer(t *testing.T) *spp.Pool {
	p := spp.NewPool(grpc.WithTransportCredentials(insecure.NewCredentials()))
	t.Cleanup(p.Close)
	return p
}

// mute is a TCP listener that accepts connections and never reads or
// writes: a process stopped with SIGSTOP, whose kernel still completes
// handshakes.
func mute(t *testing.T) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var conns []net.Conn
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		l.Close()
		mu.Lock()
		defer mu.Unlock()
		for _, c := range conns {
			c.Close()
		}
	})
	return l.Addr().String()
}

func TestFetchManifest(t *testing.T) {
	f := spptest.NewFile(t, "a.bin", bytes.Repeat([]byte("p2pd"), 3*manifest.MinChunkSize/4+7), manifest.MinChunkSize)
	cache := func(n *spptest.Node) Source {
		return Source{ID: "cache-" + n.Addr, Addr: n.Addr, Role: trackerv1.Role_ROLE_CACHENODE, Held: true}
	}
	origin := func(n *spptest.Node) Source {
		return Source{ID: "origin", Addr: n.Addr, Role: trackerv1.Role_ROLE_ORIGIN}
	}
	for _, tc := range []struct {
		name string
		// srcs builds the sources, in the order the tracker ranked them,
		// and returns the node that must answer (nil: none may).
		srcs       func(t *testing.T) ([]Source, *spptest.Node)
		wantFailed int    // sources reported to Failed with an error
		wantSilent string // the source that must be reported ErrSilent
	}{{
		name: "first holder answers",
		srcs: func(t *testing.T) ([]Source, *spptest.Node) {
			a, b := spptest.Start(t, spptest.Honest, f), spptest.Start(t, spptest.Honest, f)
			return []Source{cache(a), cache(b)}, a
		},
	}, {
		// The tracker may rank an origin first (no peer measured yet); a
		// peer still spares it.
		name: "origin asked last",
		srcs: func(t *testing.T) ([]Source, *spptest.Node) {
			o, a := spptest.Start(t, spptest.Honest, f), spptest.Start(t, spptest.Honest, f)
			return []Source{origin(o), cache(a)}, a
		},
	}, {
		// A gRPC server that takes the call and never answers it: the
		// next source is asked while it keeps silent.
		name: "silent holder, origin answers",
		srcs: func(t *testing.T) ([]Source, *spptest.Node) {
			s, o := spptest.Start(t, spptest.Silent, f), spptest.Start(t, spptest.Honest, f)
			silent := cache(s)
			silent.ID = "cache-silent"
			return []Source{silent, origin(o)}, o
		},
		wantSilent: "cache-silent",
	}, {
		name: "stopped process, next holder answers",
		srcs: func(t *testing.T) ([]Source, *spptest.Node) {
			b := spptest.Start(t, spptest.Honest, f)
			return []Source{{ID: "stopped", Addr: mute(t), Held: true}, cache(b)}, b
		},
		wantSilent: "stopped",
	}, {
		// NOT_FOUND is an honest answer: not held against the node.
		name: "holder without the file, then a wrong manifest, then the origin",
		srcs: func(t *testing.T) ([]Source, *spptest.Node) {
			empty, wrong, o := spptest.Start(t, spptest.Honest), spptest.Start(t, spptest.WrongManifest, f), spptest.Start(t, spptest.Honest, f)
			return []Source{cache(empty), cache(wrong), origin(o)}, o
		},
		wantFailed: 1,
	}, {
		name: "nobody answers",
		srcs: func(t *testing.T) ([]Source, *spptest.Node) {
			return []Source{cache(spptest.Start(t, spptest.WrongManifest, f)), cache(spptest.Start(t, spptest.Honest))}, nil
		},
		wantFailed: 1,
	}} {
		t.Run(tc.name, func(t *testing.T) {
			srcs, want := tc.srcs(t)
			var mu sync.Mutex
			var failed []string
			silent := map[string]bool{}
			// The budget only bounds a broken test: a silent source must
			// be passed by the hedge, never by the budget running out.
			m, err := FetchManifest(t.Context(), dialer(t), f.M.Root, srcs, ManifestOptions{
				Budget: time.Minute,
				Failed: func(s Source, err error) {
					mu.Lock()
					defer mu.Unlock()
					if errors.Is(err, ErrSilent) {
						silent[s.ID] = true
					} else {
						failed = append(failed, s.ID)
					}
				},
			})
			if want == nil {
				if err == nil {
					t.Fatalf("got manifest %s, want an error", m.Root)
				}
			} else {
				if err != nil {
					t.Fatal(err)
				}
				if m.Root != f.M.Root || want.ManifestCalls() != 1 {
					t.Fatalf("root %s, %d calls on the source that should answer", m.Root, want.ManifestCalls())
				}
			}
			mu.Lock()
			defer mu.Unlock()
			if len(failed) != tc.wantFailed {
				t.Errorf("failed sources %v, want %d", failed, tc.wantFailed)
			}
			// A slow machine may hedge past an honest source too; the
			// stopped one must be reported, the one that answered never.
			if tc.wantSilent != "" && !silent[tc.wantSilent] {
				t.Errorf("silent sources %v, want %s among them", silent, tc.wantSilent)
			}
			for _, s := range srcs {
				if want != nil && s.Addr == want.Addr && silent[s.ID] {
					t.Errorf("the source that answered, %s, was reported silent", s.ID)
				}
			}
		})
	}
}

func TestFetchManifestWithoutSources(t *testing.T) {
	_, err := FetchManifest(t.Context(), dialer(t), manifest.RootOf(nil), nil, ManifestOptions{})
	if !errors.Is(err, ErrNoSources) {
		t.Fatalf("got %v, want ErrNoSources", err)
	}
}

func TestFetchManifestBudget(t *testing.T) {
	// Only silent sources: the fetch ends with the budget, not before the
	// last is asked.
	f := spptest.NewFile(t, "a.bin", []byte("x"), manifest.MinChunkSize)
	a, b := spptest.Start(t, spptest.Silent, f), spptest.Start(t, spptest.Silent, f)
	_, err := FetchManifest(context.Background(), dialer(t), f.M.Root,
		[]Source{{ID: "a", Addr: a.Addr}, {ID: "b", Addr: b.Addr}},
		ManifestOptions{Budget: 2 * time.Second, Hedge: 10 * time.Millisecond})
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("got %v, want the budget's deadline", err)
	}
	if a.ManifestCalls() != 1 || b.ManifestCalls() != 1 {
		t.Fatalf("calls a %d, b %d: want both asked once", a.ManifestCalls(), b.ManifestCalls())
	}
}

func TestRanked(t *testing.T) {
	resp := &trackerv1.LocateResponse{
		Nodes: []*trackerv1.Node{
			{Id: "self", GrpcAddr: "h:1", Role: trackerv1.Role_ROLE_CACHENODE},
			{Id: "peer", GrpcAddr: "h:2", Role: trackerv1.Role_ROLE_CACHENODE},
			{Id: "noaddr", Role: trackerv1.Role_ROLE_CACHENODE},
			{Id: "origin", GrpcAddr: "h:3", Role: trackerv1.Role_ROLE_ORIGIN},
		},
		Rates: []float64{0, 5e6},
		Chunks: []*trackerv1.ChunkSources{{
			NodeIndex: []uint32{3, 1, 0, 2, 9},
			Held:      []bool{false, true, true, true, true},
			Relay:     []bool{false, false},
		}},
	}
	got := Ranked(resp, 0, "self")
	want := []Source{
		{ID: "origin", Addr: "h:3", Role: trackerv1.Role_ROLE_ORIGIN},
		{ID: "peer", Addr: "h:2", Role: trackerv1.Role_ROLE_CACHENODE, Held: true, Rate: 5e6},
	}
	if len(got) != len(want) {
		t.Fatalf("got %+v, want %+v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("source %d: got %+v, want %+v", i, got[i], want[i])
		}
	}
	if Ranked(resp, 1, "") != nil {
		t.Error("a chunk past the answer has sources")
	}
}
