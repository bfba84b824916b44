package flagenv

import "testing"

func TestParseBytes(t *testing.T) {
	tests := []struct {
		in   string
		want int64
		ok   bool
	}{
		{"1000", 1000, true},
		{"512M", 512 << 20, true},
		{"10G", 10 << 30, true},
		{"10GiB", 10 << 30, true},
		{"10gb", 10 << 30, true},
		{"64k", 64 << 10, true},
		{"2T", 2 << 40, true},
		{"", 0, false},
		{"0", 0, false},
		{"-5M", 0, false},
		{"1.5G", 0, false},
		{"10X", 0, false},
		{"99999999999T", 0, false},
	}
	for _, tc := range tests {
		got, err := ParseBytes(tc.in)
		if (err == nil) != tc.ok || got != tc.want {
			t.Errorf("ParseBytes(%q) = %d, %v; want %d, ok=%v", tc.in, got, err, tc.want, tc.ok)
		}
	}
}

func TestByteSizeString(t *testing.T) {
	tests := []struct {
		in   int64
		want string
	}{
		{10 << 30, "10G"},
		{512 << 20, "512M"},
		{1536, "1536"},
		{3 << 40, "3T"},
		{1000, "1000"},
	}
	for _, tc := range tests {
		b := Bytes(tc.in)
		if got := b.String(); got != tc.want {
			t.Errorf("Bytes(%d) = %q, want %q", tc.in, got, tc.want)
		}
		if v, err := ParseBytes(b.String()); err != nil || v != tc.in {
			t.Errorf("round trip of %d: %d, %v", tc.in, v, err)
		}
	}
}

func TestCacheBytes(t *testing.T) {
	var b CacheBytes
	for _, tc := range []struct {
		in, str string
		want    int64
	}{{"256M", "256M", 256 << 20}, {"0", "0", -1}, {"1G", "1G", 1 << 30}} {
		if err := b.Set(tc.in); err != nil || int64(b) != tc.want || b.String() != tc.str {
			t.Errorf("Set(%q): %v, %d %q; want %d %q", tc.in, err, int64(b), b.String(), tc.want, tc.str)
		}
	}
	if err := b.Set("-1"); err == nil {
		t.Error("negative size accepted")
	}
}
