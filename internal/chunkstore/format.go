package chunkstore

import (
	"bytes"
	"encoding/binary"
	"hash/crc32"

	"github.com/p2pd/p2pd/internal/manifest"
)

// A chunk file holds the chunk's bytes followed by a trailer of
// TrailerSize bytes:
//
//	digest  32 bytes  the SHA-256 the bytes were verified against when stored
//	crc      4 bytes  CRC32C (Castagnoli) of the bytes, big-endian
//	magic    4 bytes  "p2c1"
//
// The SHA-256 proves a chunk once, when it arrives; on disk the CRC32C
// (hardware-assisted, more than ten times cheaper) detects what happens to
// the bytes afterwards, and the digest ties the file to the chunk it was
// stored as. A file without a valid trailer (a store written before the
// trailer existed, or a damaged trailer) is verified with SHA-256 and
// rewritten with one when it passes.
const TrailerSize = manifest.DigestSize + 4 + 4

const trailerMagic = "p2c1" // 4 bytes

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// trailer returns the trailer of data, verified against digest.
func trailer(data []byte, digest manifest.Digest) [TrailerSize]byte {
	var t [TrailerSize]byte
	copy(t[:], digest[:])
	binary.BigEndian.PutUint32(t[manifest.DigestSize:], crc32.Checksum(data, castagnoli))
	copy(t[manifest.DigestSize+4:], trailerMagic)
	return t
}

// hasMagic reports whether tail ends like a trailer.
func hasMagic(tail []byte) bool {
	return len(tail) == TrailerSize && bytes.Equal(tail[manifest.DigestSize+4:], []byte(trailerMagic))
}

// intact reports whether tail is a trailer recording want as the digest
// of data, and data still has the CRC32C it was stored with.
func intact(data, tail []byte, want manifest.Digest) bool {
	return hasMagic(tail) &&
		bytes.Equal(tail[:manifest.DigestSize], want[:]) &&
		binary.BigEndian.Uint32(tail[manifest.DigestSize:]) == crc32.Checksum(data, castagnoli)
}
