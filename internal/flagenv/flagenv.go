// Package flagenv lets every flag also be set from the environment:
// P2PD_ followed by the flag name in upper case, dashes as underscores
// (--cache-dir is P2PD_CACHE_DIR). A flag given on the command line wins.
package flagenv

import (
	"flag"
	"fmt"
	"os"
	"strings"
)

// Prefix starts every environment variable name.
const Prefix = "P2PD_"

// EnvName returns the environment variable that sets flag name.
func EnvName(name string) string {
	return Prefix + strings.ToUpper(strings.ReplaceAll(name, "-", "_"))
}

// Parse parses args into fs, then sets each flag not given in args from its
// environment variable. Single-letter flags have no variable: they are the
// classic short forms of a long flag that has one.
func Parse(fs *flag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
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
				err = fmt.Errorf("%s=%q: %w", EnvName(f.Name), v, e)
			}
		}
	})
	return err
}

// Usage returns a usage function that prints summary, then every flag with
// its default and environment variable.
func Usage(fs *flag.FlagSet, summary string) func() {
	return func() {
		w := fs.Output()
		fmt.Fprint(w, summary)
		fmt.Fprintln(w, "\nFlags (each also read from the environment variable shown):")
		fs.VisitAll(func(f *flag.Flag) {
			name, usage := flag.UnquoteUsage(f)
			fmt.Fprintf(w, "  -%s %s\n    \t%s", f.Name, name, strings.ReplaceAll(usage, "\n", "\n    \t"))
			if f.DefValue != "" && f.DefValue != "false" && f.DefValue != "0" {
				fmt.Fprintf(w, " (default %s)", f.DefValue)
			}
			if len(f.Name) > 1 {
				fmt.Fprintf(w, " [$%s]", EnvName(f.Name))
			}
			fmt.Fprintln(w)
		})
	}
}
