# Docker Swarm targets, included by the top-level Makefile
# (`-include deployments/swarm/swarm.mk`):
#
#   swarm-tokens  the admin, join and origin tokens, made once in bin/swarm (mode 0600)
#   swarm-up      images, tokens, then docker stack deploy (run on a manager)
#   swarm-down    docker stack rm (volumes stay: etcd data, chunks)
#   swarm-ps      every task of the stack
#   e2e-swarm     the swarm e2e test (go test -run TestComposeSwarm ./e2e/)
#
# Variables: STACK (p2pd), P2PD_TAG (dev), and those the stack file reads
# (P2PD_MEDIA_DIR, P2PD_EDGE_PORT, ...: see p2pd-stack.yml).

SWARM_ROOT := $(abspath $(dir $(lastword $(MAKEFILE_LIST)))../..)
SWARM_BIN  := $(SWARM_ROOT)/bin/swarm
STACK      ?= p2pd
GO         ?= go

.PHONY: swarm-tokens swarm-up swarm-down swarm-ps e2e-swarm

swarm-tokens:
	@mkdir -p $(SWARM_BIN)
	@for f in admin-token join-token origin-token; do \
		[ -s $(SWARM_BIN)/$$f ] || { umask 077; od -An -N24 -tx1 /dev/urandom | tr -d ' \n' > $(SWARM_BIN)/$$f; echo "made $(SWARM_BIN)/$$f"; }; \
	done

swarm-up: images swarm-tokens
	cd $(SWARM_ROOT)/deployments/swarm && docker stack deploy --resolve-image never -c p2pd-stack.yml $(STACK)
	@echo
	@echo "p2pd stack $(STACK) deployed. Watch it: docker stack ps $(STACK)   (or make swarm-ps)"
	@echo "  viewers:    http://<any node>:$${P2PD_EDGE_PORT:-8080}/<file>"
	@echo "  admin API:  http://<any node>:$${P2PD_ORIGIN_OPS_PORT:-9090}/v1/files  (token: $(SWARM_BIN)/admin-token)"

swarm-down:
	docker stack rm $(STACK)

swarm-ps:
	docker stack ps $(STACK) --filter desired-state=running

e2e-swarm:
	cd $(SWARM_ROOT) && CGO_ENABLED=1 $(GO) test -race -count=1 -timeout 40m -run TestComposeSwarm -v ./e2e/
