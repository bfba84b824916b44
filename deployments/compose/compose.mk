# Compose deployment targets, included by the top-level Makefile
# (`-include deployments/compose/compose.mk`); also usable alone:
#   make -f deployments/compose/compose.mk up
#
#   images       static binaries (ours, etcd, Jaeger) and FROM scratch images; no registry
#   up           images, then the whole CDN with docker compose; prints what to open
#   down         stops it and removes its containers, network and volumes
#   e2e-compose  the compose e2e suite (go test -run TestCompose ./e2e/)
#   compose-ps, compose-logs
#   up-regions   two regions (regions.yml, project p2pd-regions): a shield,
#                two cachenodes and an edge per site, one origin
#   down-regions stops it and removes its containers, networks and volumes
#
# Variables: P2PD_TAG (image tag, dev), COMPOSE_PROJECT (p2pd), COMPOSE (the
# compose command: `docker compose` when the plugin exists, else
# `docker-compose`), and those the compose file reads (P2PD_MEDIA_DIR,
# P2PD_EDGE_PORTS, ...: see docker-compose.yml).

COMPOSE_ROOT    := $(abspath $(dir $(lastword $(MAKEFILE_LIST)))../..)
COMPOSE_DIR     := $(COMPOSE_ROOT)/deployments/compose
COMPOSE_BIN     := $(COMPOSE_ROOT)/bin/compose
COMPOSE         ?= $(shell docker compose version >/dev/null 2>&1 && echo "docker compose" || echo docker-compose)
COMPOSE_PROJECT ?= p2pd
GO              ?= go
P2PD_TAG        ?= dev
export P2PD_TAG

# Our binaries in images, the third-party servers (each built from its own
# module under tools/), and every image name.
COMPOSE_OURS   := tracker origin cachenode edge
COMPOSE_CMDS   := healthcheck cdnprobe
COMPOSE_THIRD  := etcd jaeger
COMPOSE_IMAGES := $(COMPOSE_OURS) cdnprobe $(COMPOSE_THIRD)
COMPOSE_GOBUILD = CGO_ENABLED=0 $(GO) build -trimpath -ldflags='-s -w'
COMPOSE_RUN     = $(COMPOSE) -p $(COMPOSE_PROJECT) -f $(COMPOSE_DIR)/docker-compose.yml

.PHONY: images compose-binaries up down e2e-compose compose-ps compose-logs up-regions down-regions

# `go build` relinks only what changed, so this is quick once built.
compose-binaries:
	@mkdir -p $(COMPOSE_BIN)
	cd $(COMPOSE_ROOT) && $(COMPOSE_GOBUILD) -o $(COMPOSE_BIN)/ \
		$(addprefix ./services/,$(COMPOSE_OURS)) $(addprefix ./cmd/,$(COMPOSE_CMDS))
	$(if $(filter etcd,$(COMPOSE_THIRD)),cd $(COMPOSE_DIR)/tools/etcd && $(COMPOSE_GOBUILD) -o $(COMPOSE_BIN)/etcd go.etcd.io/etcd/server/v3)
	$(if $(filter jaeger,$(COMPOSE_THIRD)),cd $(COMPOSE_DIR)/tools/jaeger && $(COMPOSE_GOBUILD) -o $(COMPOSE_BIN)/jaeger github.com/jaegertracing/jaeger/cmd/jaeger)

# Each image gets a context of its own holding only its files (hard links),
# so the classic builder sends no more than it needs. FROM scratch pulls
# nothing.
images: compose-binaries
	@set -e; for b in $(COMPOSE_IMAGES); do \
		ctx=$(COMPOSE_BIN)/image/$$b; rm -rf $$ctx; mkdir -p $$ctx/data; \
		ln -f $(COMPOSE_BIN)/$$b $(COMPOSE_BIN)/healthcheck $$ctx/ 2>/dev/null || \
			cp $(COMPOSE_BIN)/$$b $(COMPOSE_BIN)/healthcheck $$ctx/; \
		echo "docker build p2pd/$$b:$(P2PD_TAG)"; \
		out=$$(docker build -q --build-arg BIN=$$b -t p2pd/$$b:$(P2PD_TAG) \
			-f $(COMPOSE_DIR)/Dockerfile $$ctx 2>&1) || { echo "$$out" >&2; exit 1; }; \
	done
	@docker images --filter reference='p2pd/*:$(P2PD_TAG)' --format '{{.Repository}}:{{.Tag}}  {{.Size}}'

up: images
	$(COMPOSE_RUN) up -d --remove-orphans
	@echo
	@echo "p2pd is up (project $(COMPOSE_PROJECT)). Open in a browser:"
	@for i in $$(seq 1 $$($(COMPOSE_RUN) ps -q edge | wc -l)); do \
		a=$$($(COMPOSE_RUN) port --index=$$i edge 8080 2>/dev/null); \
		[ -n "$$a" ] && echo "  edge $$i:      http://$$a/<file>   (files of $${P2PD_MEDIA_DIR:-./mediafiles})"; \
	done; true
	@a=$$($(COMPOSE_RUN) port origin 9090 2>/dev/null) && echo "  origin ops:  http://$$a/metrics  /readyz"; true
	@a=$$($(COMPOSE_RUN) port jaeger 16686 2>/dev/null) && echo "  traces:      http://$$a/"; true
	@echo "  status:      $(COMPOSE_RUN) ps"
	@echo "  stop:        make down$(if $(filter-out p2pd,$(COMPOSE_PROJECT)), COMPOSE_PROJECT=$(COMPOSE_PROJECT))"

down:
	$(COMPOSE_RUN) down -v --remove-orphans

compose-ps:
	$(COMPOSE_RUN) ps

compose-logs:
	$(COMPOSE_RUN) logs --tail=100

# The suite builds the images itself (make images) and runs its own
# project; it skips when no Docker engine or compose command answers.
e2e-compose:
	cd $(COMPOSE_ROOT) && CGO_ENABLED=1 $(GO) test -race -count=1 -timeout 40m -run TestCompose -v ./e2e/

# Two regions: our four images only (the tracker embeds its etcd; no
# Jaeger), a project of its own beside `make up`'s.
COMPOSE_REGIONS = $(COMPOSE) -p $(COMPOSE_PROJECT)-regions -f $(COMPOSE_DIR)/regions.yml

up-regions:
	$(MAKE) -f $(COMPOSE_DIR)/compose.mk images COMPOSE_THIRD= COMPOSE_IMAGES="$(COMPOSE_OURS)"
	$(COMPOSE_REGIONS) up -d --remove-orphans
	@echo
	@echo "p2pd in two regions is up (project $(COMPOSE_PROJECT)-regions). Open in a browser:"
	@a=$$($(COMPOSE_REGIONS) port edge-a 8080 2>/dev/null) && echo "  region a:    http://$$a/<file>"; true
	@b=$$($(COMPOSE_REGIONS) port edge-b 8080 2>/dev/null) && echo "  region b:    http://$$b/<file>"; true
	@a=$$($(COMPOSE_REGIONS) port origin 9090 2>/dev/null) && echo "  origin ops:  http://$$a/metrics  (p2pd_origin_egress_region_bytes_total)"; true
	@echo "  stop:        make down-regions"

down-regions:
	$(COMPOSE_REGIONS) down -v --remove-orphans
