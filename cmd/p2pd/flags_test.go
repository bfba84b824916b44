package main

import (
	"errors"
	"strings"
	"testing"

	"github.com/p2pd/p2pd/internal/flagenv"
)

func TestParseFlags(t *testing.T) {
	tests := []struct {
		args []string
		env  map[string]string
		// check returns what is wrong with c, or "".
		check func(c *config) string
	}{
		{[]string{"-c", "/c", "-nN", "-P", "8081", "-S", "srv"}, nil, func(c *config) string {
			if !c.fetch || !c.public || c.port != 8081 || c.server != "srv:8080" || c.common.Ops != "127.0.0.1:9091" {
				return "want -n -N -P 8081, server srv:8080, ops 127.0.0.1:9091"
			}
			return ""
		}},
		{[]string{"-ip", "/m"}, nil, func(c *config) string {
			if !c.loadSharing || c.publish != "/m" || c.common.Ops != "127.0.0.1:9090" {
				return "want -i -p /m, ops 127.0.0.1:9090"
			}
			return ""
		}},
		{[]string{"-p", "/m", "-B", "127.0.0.11", "-P", "8080"}, nil, func(c *config) string {
			if c.common.Ops != "127.0.0.11:9090" {
				return "a loopback -B keeps its own ops listener: want 127.0.0.11:9090"
			}
			return ""
		}},
		{[]string{"--publish=/m", "--bind", "10.0.0.5"}, nil, func(c *config) string {
			if c.common.Ops != "127.0.0.1:9090" {
				return "ops must stay on loopback when -B is not: want 127.0.0.1:9090"
			}
			return ""
		}},
		{[]string{"-p", "/m", "-P", "65000"}, nil, func(c *config) string {
			if c.common.Ops != "127.0.0.1:63990" {
				return "want ops port 65000-1010"
			}
			return ""
		}},
		{[]string{"-p", "/m", "--ops", "0.0.0.0:9999"}, nil, func(c *config) string {
			if c.common.Ops != "0.0.0.0:9999" {
				return "an explicit --ops is kept"
			}
			return ""
		}},
		{[]string{"-p", "/m", "-ops="}, nil, func(c *config) string {
			if c.common.Ops != "" {
				return "an empty --ops disables the listener"
			}
			return ""
		}},
		{[]string{"-p", "/m"}, map[string]string{"P2PD_OPS": "127.0.0.1:7777", "P2PD_CORS_ORIGINS": "https://a.example"}, func(c *config) string {
			if c.common.Ops != "127.0.0.1:7777" || c.cors.Origins != "https://a.example" {
				return "P2PD_OPS and P2PD_CORS_ORIGINS count as given"
			}
			return ""
		}},
	}
	for _, tc := range tests { // the one with env comes last: t.Setenv lasts to the test's end
		for k, v := range tc.env {
			t.Setenv(k, v)
		}
		c, err := parseFlags(tc.args)
		if err != nil {
			t.Errorf("%q: %v", tc.args, err)
		} else if msg := tc.check(c); msg != "" {
			t.Errorf("%q: %s; got %+v", tc.args, msg, c)
		}
	}
}

func TestParseFlagsUsageErrors(t *testing.T) {
	for _, args := range [][]string{
		nil,
		{"-p", "/m", "-nX"},
		{"-p", "/m", "-c", "/c"},
		{"-c", "/c"},
		{"-p", "/m", "-P", "0"},
		{"-p", "/m", "extra"},
		{"-p", "/m", "--cors-origins", "example.com"},
		{"-p", "/m", "--access-log-format", "apache"},
	} {
		_, err := parseFlags(args)
		var usage *flagenv.UsageError
		if !errors.As(err, &usage) {
			t.Errorf("%q: %v, want a usage error", args, err)
		} else if strings.Contains(err.Error(), "\n") {
			t.Errorf("%q: %q is more than one line", args, err)
		}
	}
}
