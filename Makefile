# p2pd — build, test and run targets. Every tool runs through `go tool`.
GO        ?= go
TOOLS     := $(GO) tool -modfile=$(CURDIR)/tools/go.mod
BIN       := $(CURDIR)/bin
SERVICES  := tracker origin cachenode edge
export CGO_ENABLED ?= 0

.PHONY: all build test lint proto run clean fuzz bench helm-test

all: build

build:
	@mkdir -p $(BIN)
	$(GO) build -trimpath -o $(BIN)/ $(addprefix ./services/,$(SERVICES)) ./cmd/p2pd

proto:
	cd proto && $(TOOLS) buf generate

lint:
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
	$(MAKE) helm-test
	$(MAKE) fuzz FUZZTIME=5s

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
