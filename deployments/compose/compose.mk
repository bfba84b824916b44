# Compose deployment targets, included by the top-level Makefile
# (`-include deployments/compose/compose.mk`); also usable alone:
#   make -f deployments/compose/compose.mk up
#
#   images       static binaries (ours, etcd, Jaeger, the test tools cdnprobe
#                and rogue) and FROM scratch images; no registry
#   up           images, an admin token (made once), then the whole CDN with
#                docker compose; prints what to open
#   down         stops it and removes its containers, network and volumes
#   edges        lists each edge's host address (Docker picks which edge gets
#                which port of P2PD_EDGE_PORTS)
#   admin-token  makes the admin token file if missing (up does it)
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
# rogue is the hostile node of issue 12 (cmd/rogue): only the compose e2e
# suite runs it, in a container on the deployment's network.
COMPOSE_CMDS   := healthcheck cdnprobe rogue
COMPOSE_THIRD  := etcd jaeger
COMPOSE_IMAGES := $(COMPOSE_OURS) cdnprobe rogue $(COMPOSE_THIRD)
COMPOSE_GOBUILD = CGO_ENABLED=0 $(GO) build -trimpath -ldflags='-s -w $(P2PD_LDFLAGS)'
COMPOSE_RUN     = $(COMPOSE_ENV) $(COMPOSE) -p $(COMPOSE_PROJECT) -f $(COMPOSE_DIR)/docker-compose.yml
# The admin API's token: made once by `make up`, kept until deleted, read
# by the origin through a bind mount. The file is world-readable because
# the origin runs as an unprivileged user that does not own it; its
# directory is the host user's alone (0700), so no other host user can
# reach it.
P2PD_ADMIN_TOKEN_FILE ?= $(COMPOSE_ROOT)/.run/compose/admin-token

.PHONY: images compose-binaries up down edges admin-token e2e-compose compose-ps compose-logs up-regions down-regions

# The origin credential (docs/security.md): made once, kept beside the
# binaries, and set for every compose command below, so the trackers and
# the origin agree on it and a stranger on the network cannot publish.
COMPOSE_ORIGIN_TOKEN := $(COMPOSE_BIN)/origin-token
ifeq ($(origin P2PD_ORIGIN_TOKEN),undefined)
P2PD_ORIGIN_TOKEN = $$(cat $(COMPOSE_ORIGIN_TOKEN) 2>/dev/null)
endif
# The tokens reach the compose commands alone, never exported to every
# recipe: the binaries read P2PD_* variables as flags, so an exported
# P2PD_ADMIN_TOKEN_FILE would reach `make test`'s processes too.
COMPOSE_ENV = P2PD_ADMIN_TOKEN_FILE="$(P2PD_ADMIN_TOKEN_FILE)" P2PD_ORIGIN_TOKEN="$(P2PD_ORIGIN_TOKEN)"

$(COMPOSE_ORIGIN_TOKEN):
	@mkdir -p $(COMPOSE_BIN)
	@umask 077; head -c 24 /dev/urandom | base64 | tr '+/' '-_' > $@

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

# A new token is printed in full once, when it is made; later runs say
# where it is.
admin-token:
	@f="$(P2PD_ADMIN_TOKEN_FILE)"; d=$$(dirname "$$f"); \
	if [ ! -s "$$f" ]; then \
		mkdir -p "$$d" && chmod 700 "$$d"; \
		[ -d "$$f" ] && rmdir "$$f"; \
		head -c 18 /dev/urandom | base64 | tr '+/' '-_' > "$$f" && chmod 644 "$$f"; \
		echo "admin token (new, shown once; kept in $$f):"; echo "  $$(cat "$$f")"; \
	fi

up: images admin-token $(COMPOSE_ORIGIN_TOKEN)
	$(COMPOSE_RUN) up -d --remove-orphans
	@echo
	@echo "p2pd is up (project $(COMPOSE_PROJECT)). Open in a browser:"
	@$(MAKE) --no-print-directory -f $(COMPOSE_DIR)/compose.mk edges
	@a=$$($(COMPOSE_RUN) port origin 9090 2>/dev/null) && \
		echo "  dashboard:   http://$$a/ui/   (admin token: the file $(P2PD_ADMIN_TOKEN_FILE))" && \
		echo "  admin CLI:   P2PD_ADMIN_SERVER=http://$$a P2PD_ADMIN_TOKEN=\$$(cat $(P2PD_ADMIN_TOKEN_FILE)) bin/p2pd admin nodes" && \
		echo "  origin ops:  http://$$a/metrics  /readyz"; true
	@a=$$($(COMPOSE_RUN) port jaeger 16686 2>/dev/null) && echo "  traces:      http://$$a/api/traces/TRACE_ID (or the dashboard's trace view)"; true
	@echo "  status:      $(COMPOSE_RUN) ps"
	@echo "  stop:        make down$(if $(filter-out p2pd,$(COMPOSE_PROJECT)), COMPOSE_PROJECT=$(COMPOSE_PROJECT))"

# One line per running edge: its host address. Docker assigns the ports of
# P2PD_EDGE_PORTS in no fixed order, so this is where to look.
edges:
	@for i in $$(seq 1 $$($(COMPOSE_RUN) ps -q edge | wc -l)); do \
		a=$$($(COMPOSE_RUN) port --index=$$i edge 8080 2>/dev/null); \
		[ -n "$$a" ] && echo "  edge $$i:      http://$$a/   (files of $${P2PD_MEDIA_DIR:-./mediafiles})"; \
	done; true

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
COMPOSE_REGIONS = $(COMPOSE_ENV) $(COMPOSE) -p $(COMPOSE_PROJECT)-regions -f $(COMPOSE_DIR)/regions.yml

up-regions: $(COMPOSE_ORIGIN_TOKEN)
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
