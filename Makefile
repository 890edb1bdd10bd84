SHELL := bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help
MAKEFLAGS += --no-print-directory

# Pinned tool versions, installed into ./bin.
BUF_VERSION                := v1.75.0
PROTOC_GEN_GO_VERSION      := v1.36.12
PROTOC_GEN_GO_GRPC_VERSION := v1.6.2
GOLANGCI_LINT_VERSION      := v2.15.0
GRPCURL_VERSION            := v1.9.4
GHZ_VERSION                := v0.93.0

BIN     := $(CURDIR)/bin
export PATH := $(BIN):$(PATH)
export GOBIN := $(BIN)

# Executions per fuzz target. A count, not a duration: Go 1.26 can report a
# -fuzztime deadline itself as a failure (go.dev/issue/75804).
FUZZTIME ?= 20000x
ADDR     ?= 127.0.0.1:8443
HTTP     ?= 127.0.0.1:9090
DB       ?= corsd.db

TOOLS := $(BIN)/buf $(BIN)/protoc-gen-go $(BIN)/protoc-gen-go-grpc $(BIN)/golangci-lint $(BIN)/grpcurl

.PHONY: help
help: ## Show this help
	@grep -hE '^[a-z][a-z0-9-]*:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-16s %s\n", $$1, $$2}'

# Each tool is rebuilt when its pinned version changes (stamp file per version).
$(BIN)/.buf-$(BUF_VERSION):
	go install github.com/bufbuild/buf/cmd/buf@$(BUF_VERSION) && touch $@
$(BIN)/buf: $(BIN)/.buf-$(BUF_VERSION)
$(BIN)/.protoc-gen-go-$(PROTOC_GEN_GO_VERSION):
	go install google.golang.org/protobuf/cmd/protoc-gen-go@$(PROTOC_GEN_GO_VERSION) && touch $@
$(BIN)/protoc-gen-go: $(BIN)/.protoc-gen-go-$(PROTOC_GEN_GO_VERSION)
$(BIN)/.protoc-gen-go-grpc-$(PROTOC_GEN_GO_GRPC_VERSION):
	go install google.golang.org/grpc/cmd/protoc-gen-go-grpc@$(PROTOC_GEN_GO_GRPC_VERSION) && touch $@
$(BIN)/protoc-gen-go-grpc: $(BIN)/.protoc-gen-go-grpc-$(PROTOC_GEN_GO_GRPC_VERSION)
$(BIN)/.golangci-lint-$(GOLANGCI_LINT_VERSION):
	go install github.com/golangci/golangci-lint/v2/cmd/golangci-lint@$(GOLANGCI_LINT_VERSION) && touch $@
$(BIN)/golangci-lint: $(BIN)/.golangci-lint-$(GOLANGCI_LINT_VERSION)
$(BIN)/.grpcurl-$(GRPCURL_VERSION):
	go install github.com/fullstorydev/grpcurl/cmd/grpcurl@$(GRPCURL_VERSION) && touch $@
$(BIN)/grpcurl: $(BIN)/.grpcurl-$(GRPCURL_VERSION)
$(BIN)/.ghz-$(GHZ_VERSION):
	go install github.com/bojand/ghz/cmd/ghz@$(GHZ_VERSION) && touch $@
$(BIN)/ghz: $(BIN)/.ghz-$(GHZ_VERSION)

.PHONY: tools
tools: $(TOOLS) $(BIN)/ghz ## Install the pinned tools into ./bin

.PHONY: chromium
chromium: ## Install Debian's Chromium and ChromeDriver when missing
	@command -v chromium >/dev/null || { \
	  echo "installing chromium with apt-get"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq chromium chromium-driver >/dev/null; }

.PHONY: proto
proto: $(BIN)/buf $(BIN)/protoc-gen-go $(BIN)/protoc-gen-go-grpc ## Format and regenerate the Go code from proto/
	buf format -w
	buf generate

.PHONY: build
build: ## Build corsd and corsctl into ./bin
	go build -o $(BIN)/corsd ./cmd/corsd
	go build -o $(BIN)/corsctl ./cmd/corsctl

.PHONY: run
run: ## Run corsd on loopback with the embedded bbolt store (./corsd.db)
	go run ./cmd/corsd --listen $(ADDR) --http-listen $(HTTP) --db $(DB)

.PHONY: lint
lint: $(TOOLS) ## go vet, golangci-lint, buf lint and format check
	go vet ./...
	golangci-lint run ./...
	buf lint
	buf format --diff --exit-code

.PHONY: check-generated
check-generated: $(BIN)/buf $(BIN)/protoc-gen-go $(BIN)/protoc-gen-go-grpc ## Fail when generated code is stale
	@tmp=$$(mktemp -d); trap 'rm -rf $$tmp' EXIT; \
	buf generate -o $$tmp; \
	diff -r -x '*.proto' $$tmp/proto proto || { echo "generated code is stale: run 'make proto' and commit"; exit 1; }

.PHONY: check-tidy
check-tidy: ## Fail when go.mod/go.sum are not tidy
	go mod tidy -diff

.PHONY: unit
unit: $(BIN)/grpcurl chromium ## go test -race -shuffle=on ./...
	go test -race -shuffle=on -timeout 20m ./...

.PHONY: fuzz
fuzz: ## Run every fuzz target FUZZTIME (executions) each: make fuzz FUZZTIME=1000000x
	@log=$$(mktemp); trap 'rm -f $$log' EXIT; \
	for pkg in $$(go list ./...); do \
	  for f in $$(go test -list '^Fuzz' $$pkg | grep '^Fuzz' || true); do \
	    echo "fuzz $$pkg $$f"; \
	    go test -run '^$$' -fuzz "^$$f\$$" -fuzztime $(FUZZTIME) -fuzzminimizetime 2s $$pkg >$$log 2>&1 || \
	      { cat $$log; echo "fuzz $$pkg $$f failed"; exit 1; }; \
	  done; \
	done

.PHONY: test
test: lint check-generated check-tidy unit fuzz ## What CI runs: lint, freshness, tidy, race tests, short fuzz pass

.PHONY: e2e
e2e: $(BIN)/grpcurl chromium ## End-to-end tests against real binaries and headless Chromium
	go test -race -count=1 -timeout 15m ./e2e/...

# Kill rounds of the long HA proof.
HA_ROUNDS ?= 20

.PHONY: ha
ha: ## HA proof: 3 etcd members + 3 corsd replicas as processes, HA_ROUNDS kill -9 rounds (default 20), propagation A->B
	go test -race -count=1 -timeout 60m -run '^TestReplicas' -v ./e2e/ -args -ha-rounds $(HA_ROUNDS) -propagation-p99 100ms 2>&1 | tee ha.txt

.PHONY: bench
bench: ## Go benchmarks (engine, store, SDK, server decision paths)
	go test -run '^$$' -bench . -benchmem -count 5 -timeout 60m ./policy/... ./store/... ./client/... ./server/... | tee bench.txt

.PHONY: loadtest
loadtest: $(BIN)/ghz ## ghz against corsd and a no-op ext_authz server
	go run ./internal/loadtest

.PHONY: clean
clean: ## Remove ./bin and test caches
	rm -rf $(BIN)
	go clean -testcache
