package flagenv

import (
	"flag"
	"strings"
)

// expand rewrites POSIX-style clusters of single-letter flags into the
// separate flags Go's flag package reads: -nN is -n -N, -inP8080 is -i -n
// -P=8080, and -P 8080 stays as it is. An argument that names a defined
// flag (-listen, -P) is left alone, so every existing spelling keeps its
// meaning; so is everything after the first non-flag argument or "--".
func expand(fs *flag.FlagSet, args []string) []string {
	out := make([]string, 0, len(args))
	for i := 0; i < len(args); i++ {
		a := args[i]
		if a == "--" || len(a) < 2 || a[0] != '-' {
			return append(out, args[i:]...)
		}
		name, _, hasValue := strings.Cut(strings.TrimLeft(a, "-"), "=")
		if f := fs.Lookup(name); f != nil || strings.HasPrefix(a, "--") || hasValue {
			out = append(out, a)
			if f != nil && !hasValue && !isBool(f) && i+1 < len(args) {
				i++
				out = append(out, args[i])
			}
			continue
		}
		cluster, ok := split(fs, name)
		if !ok {
			out = append(out, a) // the flag package names the unknown flag
			continue
		}
		out = append(out, cluster...)
		if last := fs.Lookup(strings.TrimPrefix(cluster[len(cluster)-1], "-")); last != nil && !isBool(last) && i+1 < len(args) {
			i++ // -nP 8080: the last letter takes the next argument
			out = append(out, args[i])
		}
	}
	return out
}

// split reads name as a cluster of single-letter flags: every letter a
// boolean flag, except perhaps one that takes a value, which is the rest
// of the cluster (-P8080) or, if nothing follows it, the next argument.
func split(fs *flag.FlagSet, name string) ([]string, bool) {
	var out []string
	for i, r := range name {
		f := fs.Lookup(string(r))
		if f == nil {
			return nil, false
		}
		if !isBool(f) {
			if rest := name[i+len(string(r)):]; rest != "" {
				return append(out, "-"+string(r)+"="+rest), true
			}
			return append(out, "-"+string(r)), true
		}
		out = append(out, "-"+string(r))
	}
	return out, true
}

// isBool reports whether f is a boolean flag (takes no value).
func isBool(f *flag.Flag) bool {
	b, ok := f.Value.(interface{ IsBoolFlag() bool })
	return ok && b.IsBoolFlag()
}

// wantsVersion reports whether the expanded args ask for --version before
// the first non-flag argument.
func wantsVersion(fs *flag.FlagSet, args []string) bool {
	for i := 0; i < len(args); i++ {
		a := args[i]
		if a == "--" || len(a) < 2 || a[0] != '-' {
			return false
		}
		if a == "--version" || a == "-version" {
			return true
		}
		if f := fs.Lookup(strings.TrimLeft(a, "-")); f != nil && !isBool(f) {
			i++ // its value
		}
	}
	return false
}
