package manifest

import (
	"errors"
	"fmt"
	"path"
	"strings"
	"unicode/utf8"
)

// MaxNameLen bounds a published name.
const MaxNameLen = 1024

// ErrBadName reports a name that can never be published: it is how a URL
// that tries to leave the published set is told apart from an unknown file.
var ErrBadName = errors.New("invalid file name")

// CheckName reports whether name is a valid published name: a relative,
// slash-separated path of non-empty segments, none of them "." or "..",
// valid UTF-8 without control characters or backslashes. Names are looked
// up in the published set, never joined onto a directory from a URL; this
// check is a second wall, not the first.
func CheckName(name string) error {
	bad := func(why string) error { return fmt.Errorf("%w %q: %s", ErrBadName, name, why) }
	switch {
	case name == "":
		return bad("empty")
	case len(name) > MaxNameLen:
		return bad("too long")
	case !utf8.ValidString(name):
		return bad("not UTF-8")
	case strings.HasPrefix(name, "/"):
		return bad("absolute")
	}
	for _, r := range name {
		if r < 0x20 || r == 0x7f || r == '\\' {
			return bad("control character or backslash")
		}
	}
	for _, seg := range strings.Split(name, "/") {
		if seg == "" || seg == "." || seg == ".." {
			return bad("empty, . or .. segment")
		}
	}
	if path.Clean(name) != name {
		return bad("not clean")
	}
	return nil
}
