package manifest

import (
	"errors"
	"os"
	"syscall"
)

// seekData is Linux's SEEK_DATA: the offset of the first data at or after
// the one given, ENXIO when there is none.
const seekData = 3

// isHole reports whether [off, off+n) of f is a hole. File systems that do
// not track holes report data everywhere, and any doubt means data: the
// range is then read and hashed like any other.
func isHole(f *os.File, off, n int64) bool {
	data, err := f.Seek(off, seekData)
	if errors.Is(err, syscall.ENXIO) {
		return true // no data from off to the end
	}
	return err == nil && data >= off+n
}
