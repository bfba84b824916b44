package rank

import (
	"slices"
	"testing"
)

func TestRelaysOrder(t *testing.T) {
	key := ChunkKey([]byte("root"), 3)
	others := []string{"n1", "n2", "n3", "n4", "n5"}
	all := Relays(key, nil, others, "", 10)
	tests := []struct {
		name      string
		preferred []string
		self      string
		max       int
		want      []string
	}{
		{"everyone by score", nil, "", 10, all},
		{"cut at the requester", nil, all[2], 10, all[:2]},
		{"the home asks nobody", nil, all[0], 10, nil},
		{"at most max", nil, "", 2, all[:2]},
		{"shields first", []string{all[4]}, "", 3, []string{all[4], all[0], all[1]}},
		{"a shield first in line fetches itself", []string{all[4]}, all[4], 3, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Relays(key, tt.preferred, others, tt.self, tt.max); !slices.Equal(got, tt.want) {
				t.Fatalf("Relays = %v, want %v", got, tt.want)
			}
		})
	}
}
