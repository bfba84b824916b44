package adminclient

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"

	adminv1 "github.com/p2pd/p2pd/gen/admin/v1"
)

// Prewarm asks cachenodes to fetch name in full: every live one when all
// is set, else those in nodeIDs, else those of regions. It returns once
// the command is recorded; GetFile's holders show the progress.
func (c *Client) Prewarm(ctx context.Context, name string, all bool, nodeIDs, regions []string) (*adminv1.PrewarmFileResponse, []byte, error) {
	in, err := json.Marshal(map[string]any{"name": name, "all": all, "nodeIds": nodeIDs, "regions": regions})
	if err != nil {
		return nil, nil, fmt.Errorf("prewarm %s: %w", name, err)
	}
	var out adminv1.PrewarmFileResponse
	raw, err := c.call(ctx, http.MethodPost, "/v1/prewarm", bytes.NewReader(in), &out)
	return &out, raw, err
}

// Purge drops name from every cachenode and edge, disk and memory. It
// returns once the command is recorded; GetFile's holders show the
// progress.
func (c *Client) Purge(ctx context.Context, name string) (*adminv1.PurgeFileResponse, []byte, error) {
	in, err := json.Marshal(map[string]any{"name": name})
	if err != nil {
		return nil, nil, fmt.Errorf("purge %s: %w", name, err)
	}
	var out adminv1.PurgeFileResponse
	raw, err := c.call(ctx, http.MethodPost, "/v1/purge", bytes.NewReader(in), &out)
	return &out, raw, err
}
