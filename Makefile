# Mutuo: developer and CI entry points. Only `go` is needed on top of the
# system packages; scripts/services.sh starts (or installs) Postgres and Redis.
#
#   make run              services, database "mutuo", then the server (migrates + demo data)
#   make test             services, go vet, every test with -race
#   make services         just make sure Postgres and Redis are reachable
#   make build | migrate | bench-query | fmt | vet
#   make pix-pay TXID=…   pay a Pix charge in the sandbox
#
# DATABASE_URL / REDIS_URL (run, migrate, …) and TEST_DATABASE_URL /
# TEST_REDIS_URL (test) select other servers; non-local ones are only probed.

SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := build

# `go` from PATH, else the toolchain at /usr/local/go.
GO ?= go
ifeq ($(shell command -v $(GO) 2>/dev/null),)
  ifneq ($(wildcard /usr/local/go/bin/go),)
    GO := /usr/local/go/bin/go
  endif
endif

SERVICES := bash scripts/services.sh

.PHONY: build run test services db migrate bench-query pix-pay fmt vet

build:
	$(GO) build -o bin/mutuo .

# Postgres + Redis the server uses (DATABASE_URL / REDIS_URL, else localhost).
services:
	@$(SERVICES)

# The app database (DATABASE_URL's database, else "mutuo"), created if missing.
db: services
	@$(SERVICES) createdb

run: db
	$(GO) run . serve

migrate: db
	$(GO) run . migrate

# Tests use TEST_DATABASE_URL / TEST_REDIS_URL (else localhost), so check those.
test:
	@DATABASE_URL="$${TEST_DATABASE_URL:-}" REDIS_URL="$${TEST_REDIS_URL:-}" \
	  SERVICES_PG_VAR=TEST_DATABASE_URL SERVICES_REDIS_VAR=TEST_REDIS_URL $(SERVICES)
	@bash scripts/ensure-chromium.sh
	$(GO) vet ./...
	$(GO) test -race -count=1 -timeout 30m ./...

bench-query: db
	$(GO) run ./bench query

ifneq ($(filter pix-pay,$(MAKECMDGOALS)),)
  ifeq ($(strip $(TXID)),)
    $(error TXID is required: make pix-pay TXID=<txid>)
  endif
endif
pix-pay: services
	$(GO) run . sandbox pay '$(TXID)'

fmt:
	$(GO) fmt ./...

vet:
	$(GO) vet ./...
