package trackerclient

import (
	"testing"

	trackerv1 "github.com/p2pd/p2pd/gen/tracker/v1"
)

func TestChosen(t *testing.T) {
	for _, tc := range []struct {
		name       string
		sel        *trackerv1.NodeSelector
		id, region string
		want       bool
	}{
		{"no selector", nil, "c1", "eu", false},
		{"all", &trackerv1.NodeSelector{All: true}, "c1", "eu", true},
		{"listed", &trackerv1.NodeSelector{NodeIds: []string{"c0", "c1"}}, "c1", "eu", true},
		{"not listed", &trackerv1.NodeSelector{NodeIds: []string{"c0"}}, "c1", "eu", false},
		{"its region", &trackerv1.NodeSelector{Regions: []string{"us", "eu"}}, "c1", "eu", true},
		{"another region", &trackerv1.NodeSelector{Regions: []string{"us"}}, "c1", "eu", false},
		{"the default region", &trackerv1.NodeSelector{Regions: []string{""}}, "c1", "", true},
		{"the default region, a node of eu", &trackerv1.NodeSelector{Regions: []string{""}}, "c1", "eu", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := Chosen(tc.sel, tc.id, tc.region); got != tc.want {
				t.Errorf("Chosen = %v, want %v", got, tc.want)
			}
		})
	}
}
