package flagenv

import (
	"bytes"
	"errors"
	"flag"
	"strings"
	"testing"
)

// testSet is a command line like p2pd's: short and long booleans, a short
// flag with a value, a long flag with a value.
type testSet struct {
	fs                *flag.FlagSet
	i, n, N           bool
	port              int
	publish, cacheDir string
	help              bytes.Buffer
}

func newTestSet() *testSet {
	s := &testSet{fs: flag.NewFlagSet("p2pd", flag.ContinueOnError)}
	s.fs.BoolVar(&s.i, "i", false, "")
	s.fs.BoolVar(&s.n, "n", false, "")
	s.fs.BoolVar(&s.N, "N", false, "")
	s.fs.IntVar(&s.port, "P", 8080, "")
	s.fs.StringVar(&s.publish, "p", "", "")
	s.fs.StringVar(&s.cacheDir, "cache-dir", "", "")
	s.fs.SetOutput(&s.help)
	s.fs.Usage = func() { s.help.WriteString("MANUAL") }
	return s
}

func TestParse(t *testing.T) {
	tests := []struct {
		args     []string
		i, n, N  bool
		port     int
		publish  string
		cacheDir string
		rest     []string
	}{
		{args: []string{"-nN"}, n: true, N: true, port: 8080},
		{args: []string{"-in", "-p", "/m"}, i: true, n: true, port: 8080, publish: "/m"},
		{args: []string{"-inP", "9000"}, i: true, n: true, port: 9000},
		{args: []string{"-nP9000"}, n: true, port: 9000},
		{args: []string{"-P", "9000", "-N"}, N: true, port: 9000},
		{args: []string{"-P=9000"}, port: 9000},
		{args: []string{"--cache-dir", "/c", "-n"}, n: true, port: 8080, cacheDir: "/c"},
		{args: []string{"-cache-dir=/c"}, port: 8080, cacheDir: "/c"},
		// A value that looks like a cluster is a value.
		{args: []string{"-p", "-nN"}, port: 8080, publish: "-nN"},
		// Nothing after the first argument or -- is a flag.
		{args: []string{"-n", "file", "-N"}, n: true, port: 8080, rest: []string{"file", "-N"}},
		{args: []string{"--", "-nN"}, port: 8080, rest: []string{"-nN"}},
	}
	for _, tc := range tests {
		s := newTestSet()
		if err := Parse(s.fs, tc.args); err != nil {
			t.Errorf("%q: %v", tc.args, err)
			continue
		}
		if s.i != tc.i || s.n != tc.n || s.N != tc.N || s.port != tc.port || s.publish != tc.publish || s.cacheDir != tc.cacheDir {
			t.Errorf("%q: i=%v n=%v N=%v P=%d p=%q cache-dir=%q", tc.args, s.i, s.n, s.N, s.port, s.publish, s.cacheDir)
		}
		if got := s.fs.Args(); strings.Join(got, " ") != strings.Join(tc.rest, " ") {
			t.Errorf("%q: arguments %q, want %q", tc.args, got, tc.rest)
		}
	}
}

func TestParseErrors(t *testing.T) {
	tests := []struct {
		args []string
		want error
		msg  string // in the error
	}{
		{[]string{"-nX"}, &UsageError{}, "-nX"},
		{[]string{"--bogus"}, &UsageError{}, "bogus"},
		{[]string{"-P", "eighty"}, &UsageError{}, "eighty"},
		{[]string{"-n", "-P"}, &UsageError{}, "-P"},
		{[]string{"--help"}, flag.ErrHelp, ""},
		{[]string{"-h"}, flag.ErrHelp, ""},
		{[]string{"--version"}, ErrVersion, ""},
		{[]string{"-P", "1", "-version"}, ErrVersion, ""},
	}
	for _, tc := range tests {
		s := newTestSet()
		err := Parse(s.fs, tc.args)
		var usage *UsageError
		switch want := tc.want.(type) {
		case *UsageError:
			if !errors.As(err, &usage) || !strings.Contains(err.Error(), tc.msg) {
				t.Errorf("%q: %v, want a usage error naming %q", tc.args, err, tc.msg)
			}
			if s.help.Len() != 0 {
				t.Errorf("%q: printed %q on a usage error", tc.args, s.help.String())
			}
		default:
			if !errors.Is(err, want) {
				t.Errorf("%q: %v, want %v", tc.args, err, want)
			}
		}
		if errors.Is(tc.want, flag.ErrHelp) && s.help.String() != "MANUAL" {
			t.Errorf("%q: printed %q, want the manual", tc.args, s.help.String())
		}
	}
}

func TestParseEnv(t *testing.T) {
	t.Setenv("P2PD_CACHE_DIR", "/from-env")
	t.Setenv("P2PD_N", "true") // single letters have no variable
	s := newTestSet()
	if err := Parse(s.fs, nil); err != nil || s.cacheDir != "/from-env" || s.n || s.N {
		t.Fatalf("env: %v, cache-dir %q, n %v N %v", err, s.cacheDir, s.n, s.N)
	}
	s = newTestSet()
	if err := Parse(s.fs, []string{"--cache-dir", "/flag"}); err != nil || s.cacheDir != "/flag" {
		t.Fatalf("flag over env: %v, %q", err, s.cacheDir)
	}
	t.Setenv("P2PD_CACHE_DIR", "")
	fs := flag.NewFlagSet("x", flag.ContinueOnError)
	fs.Int("max", 1, "")
	t.Setenv("P2PD_MAX", "many")
	var usage *UsageError
	if err := Parse(fs, nil); !errors.As(err, &usage) || !strings.Contains(err.Error(), "P2PD_MAX") {
		t.Fatalf("bad env value: %v", err)
	}
}

func TestReport(t *testing.T) {
	tests := []struct {
		err            error
		code           int
		stdout, stderr string
	}{
		{nil, 0, "", ""},
		{flag.ErrHelp, 0, "", ""},
		{ErrVersion, 0, "edge (devel) (revision ", ""},
		{Usagef("--tracker is required"), 2, "", "edge: --tracker is required (see edge --help)\n"},
		{errors.New("listen :80: permission denied"), 1, "", "edge: listen :80: permission denied\n"},
	}
	for _, tc := range tests {
		var stdout, stderr bytes.Buffer
		code := Report(&stdout, &stderr, "edge", tc.err)
		if code != tc.code || !strings.HasPrefix(stdout.String(), tc.stdout) || stderr.String() != tc.stderr ||
			(tc.stdout == "" && stdout.Len() > 0) {
			t.Errorf("%v: exit %d, stdout %q, stderr %q; want %d, %q, %q", tc.err, code, stdout.String(), stderr.String(), tc.code, tc.stdout, tc.stderr)
		}
		if strings.Count(stderr.String(), "\n") > 1 {
			t.Errorf("%v: more than one line on stderr", tc.err)
		}
	}
}

func TestUsageDashes(t *testing.T) {
	s := newTestSet()
	var out bytes.Buffer
	s.fs.SetOutput(&out)
	Usage(s.fs, "summary\n")()
	for _, want := range []string{"  --cache-dir string", "  -n \n", "[$P2PD_CACHE_DIR]", "--version", "--help"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("usage lacks %q:\n%s", want, out.String())
		}
	}
	if strings.Contains(out.String(), " -cache-dir") {
		t.Errorf("a long flag with one dash:\n%s", out.String())
	}
}
