package manifest

import (
	"fmt"
	"time"

	sppv1 "github.com/p2pd/p2pd/gen/spp/v1"
)

// ToProto encodes the manifest for SPP.
func (m *Manifest) ToProto() *sppv1.Manifest {
	var mod int64
	if !m.ModTime.IsZero() {
		mod = m.ModTime.UnixNano()
	}
	return &sppv1.Manifest{
		Name:            m.Name,
		Size:            uint64(m.Size),
		ChunkSize:       uint32(m.ChunkSize),
		ChunkDigests:    m.digestBytes(),
		Root:            m.Root[:],
		ModTimeUnixNano: mod,
		ContentType:     m.ContentType,
	}
}

// FromProto decodes and validates a manifest received from another node.
// Callers that asked for a particular root must also compare m.Root.
func FromProto(p *sppv1.Manifest) (*Manifest, error) {
	if p == nil {
		return nil, fmt.Errorf("manifest: missing")
	}
	if len(p.ChunkDigests)%DigestSize != 0 {
		return nil, fmt.Errorf("manifest %s: digest list of %d bytes is not a multiple of %d", p.Name, len(p.ChunkDigests), DigestSize)
	}
	if p.Size > 1<<50 {
		return nil, fmt.Errorf("manifest %s: size %d too large", p.Name, p.Size)
	}
	root, err := DigestFromBytes(p.Root)
	if err != nil {
		return nil, fmt.Errorf("manifest %s: root: %w", p.Name, err)
	}
	m := &Manifest{
		Name:        p.Name,
		Size:        int64(p.Size),
		ChunkSize:   int(p.ChunkSize),
		Digests:     make([]Digest, len(p.ChunkDigests)/DigestSize),
		Root:        root,
		ContentType: p.ContentType,
	}
	if p.ModTimeUnixNano != 0 {
		m.ModTime = time.Unix(0, p.ModTimeUnixNano)
	}
	for i := range m.Digests {
		copy(m.Digests[i][:], p.ChunkDigests[i*DigestSize:])
	}
	if err := m.Validate(); err != nil {
		return nil, err
	}
	return m, nil
}
