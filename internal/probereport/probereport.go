// Package probereport is the JSON report cdnprobe prints at the end of a
// run: what the probe saw, per address and in all. The probe writes it;
// the end-to-end tests that run the probe read it.
package probereport

import "fmt"

// Report is the JSON cdnprobe prints at the end.
type Report struct {
	OK        bool    `json:"ok"`
	Downloads int     `json:"downloads"`
	Completed int     `json:"completed"`
	Failed    int     `json:"failed"`
	Retries   int     `json:"retries"`
	Bytes     int64   `json:"bytes"`
	Seconds   float64 `json:"seconds"`
	// MaxStall is the longest a read waited for bytes in any request, in
	// seconds: what a player would have seen as a freeze.
	MaxStall  float64               `json:"max_stall_seconds"`
	Addresses []string              `json:"addresses"` // every address DNS returned during the run
	PerAddr   map[string]*AddrStats `json:"per_address"`
	Statuses  map[string]int        `json:"statuses"` // final HTTP status of each download ("error" if none)
	Digests   map[string]string     `json:"digests"`  // path -> SHA-256 of its completed downloads
	Errors    []string              `json:"errors,omitempty"`
}

// AddrStats counts what one address did.
type AddrStats struct {
	Requests  int   `json:"requests"`
	Completed int   `json:"completed"` // responses read to their end
	Errors    int   `json:"errors"`
	Bytes     int64 `json:"bytes"`
}

// String shows the counts, so a map of them prints readably.
func (s *AddrStats) String() string {
	return fmt.Sprintf("{requests %d completed %d errors %d bytes %d}", s.Requests, s.Completed, s.Errors, s.Bytes)
}
