package trackerserver

import (
	"strings"
	"testing"

	trackerv1 "github.com/p2pd/p2pd/gen/tracker/v1"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/proto"
)

func file(name string, size uint64) *trackerv1.File {
	const cs = 1 << 20
	return &trackerv1.File{
		Name: name, Size: size, ChunkSize: cs, ChunkCount: uint32((size + cs - 1) / cs),
		Root: root(name), ContentType: "video/mp4",
	}
}

func TestFiles(t *testing.T) {
	f := newFixture(t)
	c, _ := f.tracker(Config{})
	ctx := testCtx(t)
	for _, fl := range []*trackerv1.File{file("b/movie.mp4", 5<<20+1), file("a.mp4", 0), file("c.webm", 1<<20)} {
		if _, err := c.PublishFile(ctx, &trackerv1.PublishFileRequest{File: fl}); err != nil {
			t.Fatalf("publish %s: %v", fl.Name, err)
		}
	}
	got, err := c.GetFile(ctx, &trackerv1.GetFileRequest{Name: "b/movie.mp4"})
	if err != nil {
		t.Fatal(err)
	}
	if got.File.PublishedUnixNano == 0 {
		t.Error("published time not set")
	}
	want := file("b/movie.mp4", 5<<20+1)
	want.PublishedUnixNano = got.File.PublishedUnixNano
	if !proto.Equal(got.File, want) {
		t.Errorf("GetFile = %v, want %v", got.File, want)
	}

	list := func() []string {
		resp, err := c.ListFiles(ctx, &trackerv1.ListFilesRequest{})
		if err != nil {
			t.Fatal(err)
		}
		var names []string
		for _, fl := range resp.Files {
			names = append(names, fl.Name)
		}
		return names
	}
	if got := strings.Join(list(), ","); got != "a.mp4,b/movie.mp4,c.webm" {
		t.Errorf("ListFiles = %s", got)
	}

	// Publishing again replaces the version.
	v2 := file("c.webm", 3<<20)
	v2.Root = root("c.webm v2")
	if _, err := c.PublishFile(ctx, &trackerv1.PublishFileRequest{File: v2}); err != nil {
		t.Fatal(err)
	}
	if got, err := c.GetFile(ctx, &trackerv1.GetFileRequest{Name: "c.webm"}); err != nil || got.File.ChunkCount != 3 {
		t.Errorf("after republish: %v, %v", got, err)
	}

	if _, err := c.UnpublishFile(ctx, &trackerv1.UnpublishFileRequest{Name: "b/movie.mp4"}); err != nil {
		t.Fatal(err)
	}
	_, err = c.GetFile(ctx, &trackerv1.GetFileRequest{Name: "b/movie.mp4"})
	wantCode(t, err, codes.NotFound)
	_, err = c.UnpublishFile(ctx, &trackerv1.UnpublishFileRequest{Name: "b/movie.mp4"})
	wantCode(t, err, codes.NotFound)
	if got := strings.Join(list(), ","); got != "a.mp4,c.webm" {
		t.Errorf("ListFiles after unpublish = %s", got)
	}
}

func TestFilesInvalid(t *testing.T) {
	f := newFixture(t)
	c, _ := f.tracker(Config{})
	mod := func(m func(*trackerv1.File)) *trackerv1.File {
		fl := file("ok.mp4", 3<<20)
		m(fl)
		return fl
	}
	tests := []struct {
		name string
		file *trackerv1.File
		want string
	}{
		{"missing", nil, "missing"},
		{"traversal", mod(func(f *trackerv1.File) { f.Name = "../etc/passwd" }), "invalid file name"},
		{"absolute", mod(func(f *trackerv1.File) { f.Name = "/x" }), "absolute"},
		{"short root", mod(func(f *trackerv1.File) { f.Root = f.Root[:8] }), "root"},
		{"tiny chunks", mod(func(f *trackerv1.File) { f.ChunkSize = 1 }), "chunk_size"},
		{"wrong count", mod(func(f *trackerv1.File) { f.ChunkCount = 2 }), "chunk_count 2, want 3"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := c.PublishFile(testCtx(t), &trackerv1.PublishFileRequest{File: tt.file})
			wantCode(t, err, codes.InvalidArgument)
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %q does not mention %q", err, tt.want)
			}
		})
	}
	_, err := c.GetFile(testCtx(t), &trackerv1.GetFileRequest{Name: "a/../b"})
	wantCode(t, err, codes.InvalidArgument)
	_, err = c.UnpublishFile(testCtx(t), &trackerv1.UnpublishFileRequest{Name: ""})
	wantCode(t, err, codes.InvalidArgument)
}
