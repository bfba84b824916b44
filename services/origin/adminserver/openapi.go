package adminserver

import (
	"encoding/json"
	"fmt"
	"net/http"
)

// openAPISpec returns the generated spec with what protoc-gen-openapiv2
// cannot express: the upload's body is the raw file, not base64 JSON, and
// it answers 201, not 200.
func openAPISpec(generated []byte) ([]byte, error) {
	var spec map[string]any
	if err := json.Unmarshal(generated, &spec); err != nil {
		return nil, fmt.Errorf("openapi spec: %w", err)
	}
	paths, _ := spec["paths"].(map[string]any)
	item, _ := paths["/v1/files/{name}"].(map[string]any)
	put, _ := item["put"].(map[string]any)
	if put == nil {
		return nil, fmt.Errorf("openapi spec: no PUT /v1/files/{name}")
	}
	params, _ := put["parameters"].([]any)
	put["parameters"] = append(params, map[string]any{
		"name":        "Repr-Digest",
		"in":          "header",
		"required":    false,
		"type":        "string",
		"description": "sha-256=:BASE64: of the whole file (RFC 9530); the upload is refused with digest_mismatch when the bytes received differ.",
	})
	for _, p := range params {
		if p, _ := p.(map[string]any); p != nil && p["in"] == "body" {
			p["name"] = "file"
			p["description"] = "The file's raw bytes."
			p["schema"] = map[string]any{"type": "string", "format": "binary"}
		}
	}
	if resp, _ := put["responses"].(map[string]any); resp != nil {
		delete(resp, "200")
	}
	return json.MarshalIndent(spec, "", "  ")
}

func (s *Server) serveOpenAPI(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-cache")
	w.Write(s.openapi)
}
