// Package flagenv is the command line every p2pd binary shares. Flags are
// parsed as people type them: long flags with one or two dashes
// (--cache-dir, -cache-dir), single-letter flags combined POSIX-style
// (-nN is -n -N; -P8080 is -P 8080), --help prints the manual and
// --version the build. Every long flag can also be set from the
// environment: P2PD_ followed by the flag name in upper case, dashes as
// underscores (--cache-dir is P2PD_CACHE_DIR). A flag given on the command
// line wins.
package flagenv

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/p2pd/p2pd/internal/buildinfo"
)

// Prefix starts every environment variable name.
const Prefix = "P2PD_"

// ErrVersion is returned by Parse when the command line asks for the
// version (--version), unless the flag set defines a flag of that name.
var ErrVersion = errors.New("version requested")

// UsageError is a command line that cannot be run as given: an unknown
// flag, a bad value, a missing required flag.
type UsageError struct{ Err error }

func (e *UsageError) Error() string { return e.Err.Error() }
func (e *UsageError) Unwrap() error { return e.Err }

// Usagef returns a UsageError with a formatted message, for the checks a
// command makes after Parse.
func Usagef(format string, args ...any) error {
	return &UsageError{Err: fmt.Errorf(format, args...)}
}

// EnvName returns the environment variable that sets flag name.
func EnvName(name string) string {
	return Prefix + strings.ToUpper(strings.ReplaceAll(name, "-", "_"))
}

// NewFlagSet returns a flag set for command name that returns its errors
// (for Parse and Report to handle) and prints --help on standard output.
func NewFlagSet(name string) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(os.Stdout)
	return fs
}

// Parse parses args into fs, then sets each flag not given in args from its
// environment variable. Single-letter flags have no variable: they are the
// classic short forms of a long flag that has one.
//
// It returns flag.ErrHelp after printing fs.Usage for -h or --help,
// ErrVersion for --version, and a *UsageError for anything else wrong;
// unlike flag.FlagSet.Parse it prints nothing on an error, so the command
// can say it in one line (Report).
func Parse(fs *flag.FlagSet, args []string) error {
	if err := ParseArgs(fs, args); err != nil {
		return err
	}
	given := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { given[f.Name] = true })
	var err error
	fs.VisitAll(func(f *flag.Flag) {
		if err != nil || given[f.Name] || len(f.Name) == 1 {
			return
		}
		if v, ok := os.LookupEnv(EnvName(f.Name)); ok {
			if e := fs.Set(f.Name, v); e != nil {
				err = &UsageError{Err: fmt.Errorf("%s=%q: %w", EnvName(f.Name), v, e)}
			}
		}
	})
	return err
}

// ParseArgs parses args as Parse does, without reading the environment:
// for tools whose flags are not p2pd's settings (a probe's -host must not
// come from a node's P2PD_HOST).
func ParseArgs(fs *flag.FlagSet, args []string) error {
	args = expand(fs, args)
	if fs.Lookup("version") == nil && wantsVersion(fs, args) {
		return ErrVersion
	}
	out, usage := fs.Output(), fs.Usage
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	err := fs.Parse(args)
	fs.SetOutput(out)
	fs.Usage = usage
	switch {
	case errors.Is(err, flag.ErrHelp):
		if usage != nil {
			usage()
		} else {
			fs.PrintDefaults()
		}
		return err
	case err != nil:
		return &UsageError{Err: err}
	}
	return nil
}

// Report tells the user what err from a command means and returns the
// command's exit status: 0 for none, for --help (printed already) and for
// --version (printed here on stdout); 2 for a usage error, said in one line
// on stderr with a pointer to --help; 1 for any other error.
func Report(stdout, stderr io.Writer, name string, err error) int {
	var usage *UsageError
	switch {
	case err == nil, errors.Is(err, flag.ErrHelp):
		return 0
	case errors.Is(err, ErrVersion):
		fmt.Fprintln(stdout, name, buildinfo.Read())
		return 0
	case errors.As(err, &usage):
		fmt.Fprintf(stderr, "%s: %v (see %s --help)\n", name, err, name)
		return 2
	}
	fmt.Fprintf(stderr, "%s: %v\n", name, err)
	return 1
}

// Usage returns a usage function that prints summary, then every flag with
// its default and environment variable, long flags with two dashes.
func Usage(fs *flag.FlagSet, summary string) func() {
	return usage(fs, summary, true)
}

// ToolUsage is Usage for a tool whose flags have no environment variables
// (ParseArgs).
func ToolUsage(fs *flag.FlagSet, summary string) func() {
	return usage(fs, summary, false)
}

func usage(fs *flag.FlagSet, summary string, env bool) func() {
	return func() {
		w := fs.Output()
		fmt.Fprint(w, summary)
		if env {
			fmt.Fprintln(w, "\nFlags (each long flag also read from the environment variable shown):")
		} else {
			fmt.Fprintln(w, "\nFlags:")
		}
		fs.VisitAll(func(f *flag.Flag) {
			name, usage := flag.UnquoteUsage(f)
			fmt.Fprintf(w, "  %s %s\n    \t%s", dashed(f.Name), name, strings.ReplaceAll(usage, "\n", "\n    \t"))
			if f.DefValue != "" && f.DefValue != "false" && f.DefValue != "0" {
				fmt.Fprintf(w, " (default %s)", f.DefValue)
			}
			if env && len(f.Name) > 1 {
				fmt.Fprintf(w, " [$%s]", EnvName(f.Name))
			}
			fmt.Fprintln(w)
		})
		fmt.Fprintln(w, "  --version\n    \tprint the version and exit")
		fmt.Fprintln(w, "  -h, --help\n    \tprint this help and exit")
	}
}

// dashed writes a flag name as it is typed: -n, --cache-dir.
func dashed(name string) string {
	if len(name) == 1 {
		return "-" + name
	}
	return "--" + name
}
