# p2pd — build, test and run targets. Every tool runs through `go tool`.
GO        ?= go
TOOLS     := $(GO) tool -modfile=$(CURDIR)/tools/go.mod
BIN       := $(CURDIR)/bin
SERVICES  := tracker origin cachenode edge
export CGO_ENABLED ?= 0
# What --version and p2pd_build_info report: the checkout's git describe
# and commit (set VERSION=... for a release build from a tarball).
VERSION   ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
REVISION  ?= $(shell git rev-parse HEAD 2>/dev/null)
P2PD_LDFLAGS := -X github.com/p2pd/p2pd/internal/buildinfo.version=$(VERSION) \
	-X github.com/p2pd/p2pd/internal/buildinfo.revision=$(REVISION)

.PHONY: all build test test-observability helm-test lint proto run clean fuzz bench

all: build

build:
	@mkdir -p $(BIN)
	$(GO) build -trimpath -ldflags '$(P2PD_LDFLAGS)' -o $(BIN)/ $(addprefix ./services/,$(SERVICES)) ./cmd/p2pd ./cmd/healthcheck ./cmd/cdnprobe

proto:
	cd proto && $(TOOLS) buf generate

# go.mod and go.sum must be tidy (go mod tidy would change nothing), in the
# main module and the tools module.
lint:
	@for m in . tools deployments/observability; do \
		(cd $$m && $(GO) mod tidy -diff) >/dev/null 2>&1 || { echo "$$m: go.mod/go.sum not tidy; run: (cd $$m && go mod tidy)"; (cd $$m && $(GO) mod tidy -diff); exit 1; }; \
	done
	@test -z "$$(gofmt -l $$(git ls-files '*.go' | grep -v '^gen/'))" || { gofmt -l $$(git ls-files '*.go' | grep -v '^gen/'); exit 1; }
	$(GO) vet ./...
	$(TOOLS) staticcheck ./...
	cd proto && $(TOOLS) buf lint
	$(MAKE) proto
	git diff --exit-code -- gen/

# Unit tests and e2e tests, all with the race detector (the e2e package —
# processes, compose, a browser — is the long one; the timeout bounds it),
# then every fuzz target for a few seconds beyond its seed corpus.
test: lint
	CGO_ENABLED=1 $(GO) test -race -count=1 -timeout 45m ./...
	$(MAKE) test-observability
	$(MAKE) helm-test
	$(MAKE) fuzz FUZZTIME=5s

# The Grafana dashboard, alert rules and scrape config against the code:
# parsed with Prometheus's PromQL parser (a module of its own, so the main
# one carries none of Prometheus) and checked against running binaries.
test-observability:
	cd deployments/observability && $(GO) test -count=1 -timeout 10m ./...

# The Helm chart (deployments/helm/p2pd), in a module of its own so the
# Kubernetes modules stay out of go.mod: linted, rendered with default and
# other values, every object decoded strictly into the Kubernetes API types.
# Helm itself runs as `go tool helm` of that module.
helm-test:
	cd deployments/helm && test -z "$$(gofmt -l .)" && $(GO) vet ./... && $(TOOLS) staticcheck ./...
	cd deployments/helm && CGO_ENABLED=1 $(GO) test -race -count=1 -timeout 20m ./...

# Fuzz targets, each fuzzed for FUZZTIME; go test alone runs only their
# seed corpora (testdata/fuzz and f.Add).
FUZZTIME ?= 10s
FUZZ := ./internal/manifest:FuzzFromProto ./internal/bitmap:FuzzDecode \
	./services/edge/edgeserver:FuzzNameOf ./services/edge/edgeserver:FuzzServeRange \
	./services/origin/originserver:FuzzFetch ./services/cachenode/cacheserver:FuzzFetch \
	./services/origin/adminserver:FuzzRequest

fuzz:
	@set -e; for t in $(FUZZ); do \
		echo "fuzz $${t%%:*} $${t##*:} for $(FUZZTIME)"; \
		$(GO) test -run '^$$' -fuzz "^$${t##*:}\$$" -fuzztime $(FUZZTIME) $${t%%:*}; \
	done

run: build
	./scripts/run.sh

# p2pd against nginx on this machine, in one run (nginx and wrk are
# installed from Debian when missing); rewrites the results section of
# docs/benchmarks.md. BENCH_ARGS="-scale 0.1 -duration 5s" for a quick run.
bench:
	$(GO) run ./cmd/p2pd-bench $(BENCH_ARGS)

clean:
	rm -rf $(BIN) .run

# Full CDN with Docker Compose: images, up, down, e2e-compose.
-include deployments/compose/compose.mk

# The same CDN on Docker Swarm: swarm-up, swarm-down, e2e-swarm.
-include deployments/swarm/swarm.mk
