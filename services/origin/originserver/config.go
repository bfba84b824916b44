package originserver

import (
	"time"

	"github.com/p2pd/p2pd/internal/manifest"
)

// Config configures an origin.
type Config struct {
	// MediaDir is the directory whose regular files are published, named
	// by their slash-separated path relative to it.
	MediaDir string
	// ChunkSize for newly published files.
	ChunkSize int
	// NodeID identifies the origin to the tracker.
	NodeID string
	// Advertise is the host:port other nodes dial for SPP.
	Advertise string
	// HTTPAddr is the viewers' HTTP address, if this process also serves it.
	HTTPAddr string
	// OpsAddr is where other processes reach the ops listener (/metrics),
	// registered with the tracker so the admin API can read the node's
	// counters; empty when there is none.
	OpsAddr string
	// Rescan is how often the media directory is scanned for new, changed
	// and removed files. 0 disables rescanning after the first scan.
	Rescan time.Duration
}

func (c *Config) applyDefaults() {
	if c.ChunkSize == 0 {
		c.ChunkSize = manifest.DefaultChunkSize // 1 MiB
	}
	if c.NodeID == "" {
		c.NodeID = "origin@" + c.Advertise
	}
}

// ID is the node id c gives the origin, its default filled in.
func (c Config) ID() string {
	c.applyDefaults()
	return c.NodeID
}
