package trackerserver

import (
	"errors"
	"fmt"
	"strings"
	"unicode/utf8"

	"github.com/p2pd/p2pd/internal/manifest"
)

// Key layout under the prefix (docs/architecture.md):
//
//	nodes/<id>              trackerv1.Node, node's lease
//	files/<name>            trackerv1.File
//	have/<root hex>/<id>    trackerv1.Have, node's lease
//	auth/<id>               the registration's secret digest, node's lease
//	commands/<id>           trackerv1.Command, its own lease (CommandTTL)
const (
	authDir     = "auth/"
	nodesDir    = "nodes/"
	filesDir    = "files/"
	haveDir     = "have/"
	commandsDir = "commands/"
)

// maxNodeIDLen bounds a node id: it is part of etcd keys and of every
// Locate answer.
const maxNodeIDLen = 256

// keys builds and parses the tracker's etcd keys under one prefix.
type keys struct{ prefix string }

func (k keys) node(id string) string    { return k.prefix + nodesDir + id }
func (k keys) file(name string) string  { return k.prefix + filesDir + name }
func (k keys) auth(id string) string    { return k.prefix + authDir + id }
func (k keys) command(id string) string { return k.prefix + commandsDir + id }
func (k keys) have(root manifest.Digest, id string) string {
	return k.prefix + haveDir + root.String() + "/" + id
}

// keyKind tells which record a key holds.
type keyKind int

const (
	kindUnknown keyKind = iota
	kindNode
	kindFile
	kindHave
)

// parsedKey is a key split into its parts.
type parsedKey struct {
	kind keyKind
	id   string // node id, for nodes and haves
	name string // file name
	root manifest.Digest
}

// parse splits a key; unknown or malformed keys (written by a newer
// tracker, or by hand) get kindUnknown and are ignored.
func (k keys) parse(key string) parsedKey {
	rest, ok := strings.CutPrefix(key, k.prefix)
	if !ok {
		return parsedKey{}
	}
	switch {
	case strings.HasPrefix(rest, nodesDir):
		id := rest[len(nodesDir):]
		if checkNodeID(id) != nil {
			return parsedKey{}
		}
		return parsedKey{kind: kindNode, id: id}
	case strings.HasPrefix(rest, filesDir):
		name := rest[len(filesDir):]
		if manifest.CheckName(name) != nil {
			return parsedKey{}
		}
		return parsedKey{kind: kindFile, name: name}
	case strings.HasPrefix(rest, haveDir):
		hexRoot, id, ok := strings.Cut(rest[len(haveDir):], "/")
		if !ok || checkNodeID(id) != nil {
			return parsedKey{}
		}
		root, err := manifest.ParseDigest(hexRoot)
		if err != nil {
			return parsedKey{}
		}
		return parsedKey{kind: kindHave, id: id, root: root}
	}
	return parsedKey{}
}

// checkNodeID reports whether id can name a node: it becomes an etcd key
// segment, so no slashes, and it is shown to operators, so printable UTF-8.
func checkNodeID(id string) error {
	switch {
	case id == "":
		return errors.New("node id is empty")
	case len(id) > maxNodeIDLen:
		return fmt.Errorf("node id is %d bytes, at most %d allowed", len(id), maxNodeIDLen)
	case !utf8.ValidString(id):
		return fmt.Errorf("node id %q is not UTF-8", id)
	}
	for _, r := range id {
		if r < 0x20 || r == 0x7f || r == '/' {
			return fmt.Errorf("node id %q contains a slash or control character", id)
		}
	}
	return nil
}
