package trackerserver

import (
	"context"
	"encoding/hex"

	trackerv1 "github.com/p2pd/p2pd/gen/tracker/v1"
	"github.com/p2pd/p2pd/internal/telemetry"
	"go.opentelemetry.io/otel/trace"
)

// maxChosen bounds the chosen node ids recorded on a Locate span.
const maxChosen = 16

// annotateLocate records on the Locate RPC's span (started by the gRPC
// stats handler) how many nodes were considered and which were ranked
// first: the distinct best node of each chunk, in chunk order.
func annotateLocate(ctx context.Context, req *trackerv1.LocateRequest, candidates int, resp *trackerv1.LocateResponse) {
	span := trace.SpanFromContext(ctx)
	if !span.IsRecording() {
		return
	}
	var chosen []string
	seen := map[uint32]bool{}
	for _, cs := range resp.Chunks {
		if len(cs.GetNodeIndex()) == 0 || len(chosen) == maxChosen {
			continue
		}
		k := cs.NodeIndex[0]
		if !seen[k] && int(k) < len(resp.Nodes) {
			seen[k] = true
			chosen = append(chosen, resp.Nodes[k].GetId())
		}
	}
	span.SetAttributes(
		telemetry.KeyRoot.String(hex.EncodeToString(req.Root)),
		telemetry.KeyRequester.String(req.Requester),
		telemetry.KeyFirstChunk.Int(int(req.FirstChunk)),
		telemetry.KeyChunks.Int(int(req.ChunkCount)),
		telemetry.KeyCandidates.Int(candidates),
		telemetry.KeyChosen.StringSlice(chosen),
	)
}
