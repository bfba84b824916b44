package flagenv

import (
	"fmt"
	"strconv"
	"strings"
)

// Bytes is a flag value of bytes: plain, or with a K, M, G or T suffix
// (powers of 1024, optionally followed by "i" and/or "B": 512M, 10GiB).
type Bytes int64

// String prints the size with the largest suffix that divides it.
func (b *Bytes) String() string {
	v := int64(*b)
	for _, u := range []struct {
		suffix string
		shift  uint
	}{{"T", 40}, {"G", 30}, {"M", 20}, {"K", 10}} {
		if v != 0 && v%(1<<u.shift) == 0 {
			return strconv.FormatInt(v>>u.shift, 10) + u.suffix
		}
	}
	return strconv.FormatInt(v, 10)
}

// Set parses a size as ParseBytes does.
func (b *Bytes) Set(s string) error {
	v, err := ParseBytes(s)
	if err != nil {
		return err
	}
	*b = Bytes(v)
	return nil
}

// ParseBytes parses a positive size in bytes, optionally with a K, M, G or
// T suffix (powers of 1024).
func ParseBytes(s string) (int64, error) {
	t := strings.ToUpper(strings.TrimSpace(s))
	t = strings.TrimSuffix(t, "B")
	t = strings.TrimSuffix(t, "I")
	shift := 0
	if n := len(t); n > 0 {
		switch t[n-1] {
		case 'K':
			shift = 10
		case 'M':
			shift = 20
		case 'G':
			shift = 30
		case 'T':
			shift = 40
		}
		if shift > 0 {
			t = t[:n-1]
		}
	}
	v, err := strconv.ParseInt(t, 10, 64)
	if err != nil || v <= 0 {
		return 0, fmt.Errorf("size %q: want a positive number of bytes, optionally with a K, M, G or T suffix", s)
	}
	if v > (1<<62)>>shift {
		return 0, fmt.Errorf("size %q: too large", s)
	}
	return v << shift, nil
}

// CacheBytes is a flag value for the size of an optional cache: a size as
// Bytes takes, or 0 for no cache, which it stores as -1 (the services'
// configs read 0 as "the default" and a negative size as "none").
type CacheBytes int64

// String prints the size, or 0 for none.
func (b *CacheBytes) String() string {
	if *b < 0 {
		return "0"
	}
	v := Bytes(*b)
	return v.String()
}

// Set parses a size as ParseCacheBytes does.
func (b *CacheBytes) Set(s string) error {
	v, err := ParseCacheBytes(s)
	if err != nil {
		return err
	}
	*b = CacheBytes(v)
	return nil
}

// ParseCacheBytes parses a cache size as ParseBytes does, and "0" as -1:
// no cache.
func ParseCacheBytes(s string) (int64, error) {
	if strings.TrimSpace(s) == "0" {
		return -1, nil
	}
	return ParseBytes(s)
}

// HumanBytes renders a size for people, in the units ParseBytes reads:
// 512 B, 1.5 KiB, 10.0 GiB.
func HumanBytes(n uint64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := uint64(unit), 0
	for m := n / unit; m >= unit && exp < 5; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}
