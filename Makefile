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

.PHONY: quickstart
quickstart: $(BIN)/grpcurl build ## Install only what the quick start needs into ./bin: corsd, corsctl, grpcurl (about a minute)

.PHONY: run
run: quickstart ## Build corsd, corsctl and grpcurl into ./bin, then run corsd on loopback with ./corsd.db
	$(BIN)/corsd --listen $(ADDR) --http-listen $(HTTP) --db $(DB)

.PHONY: lint
lint: $(TOOLS) ## go vet, golangci-lint, buf lint and format check
	go vet ./...
	golangci-lint run --allow-parallel-runners ./...
	buf lint
	buf format --diff --exit-code

.PHONY: check-generated
check-generated: $(BIN)/buf $(BIN)/protoc-gen-go $(BIN)/protoc-gen-go-grpc ## Fail when generated code is stale
	@tmp=$$(mktemp -d); trap 'rm -rf $$tmp' EXIT; \
	buf generate -o $$tmp; \
	diff -r -x '*.proto' $$tmp/proto proto || { echo "generated code is stale: run 'make proto' and commit"; exit 1; }

# buf breaking compares the API with main: the local branch, else the
# remote-tracking one, else main fetched from origin (a CI checkout of a
# pull request holds neither), through the common git directory (a
# worktree's .git is a file). BREAKING_AGAINST overrides,
# e.g. BREAKING_AGAINST='.git#tag=v1.0.0'.
BREAKING_AGAINST ?=

.PHONY: check-breaking
check-breaking: $(BIN)/buf ## Fail when the API breaks compatibility with the last release tag (v*), else main
	@against='$(BREAKING_AGAINST)'; \
	if [ -z "$$against" ]; then \
	  gitdir=$$(git rev-parse --path-format=absolute --git-common-dir); \
	  tag=$$(git tag --list 'v*' --sort=-v:refname | head -n 1); \
	  if [ -n "$$tag" ]; then against="$$gitdir#tag=$$tag"; fi; \
	fi; \
	if [ -z "$$against" ]; then \
	  gitdir=$$(git rev-parse --path-format=absolute --git-common-dir); \
	  for ref in refs/heads/main refs/remotes/origin/main; do \
	    if git rev-parse -q --verify "$$ref^{commit}" >/dev/null; then against="$$gitdir#ref=$$ref"; break; fi; \
	  done; \
	fi; \
	if [ -z "$$against" ] && git remote get-url origin >/dev/null 2>&1 && \
	   git fetch -q --depth=50 origin +refs/heads/main:refs/remotes/origin/main; then \
	  against="$$(git rev-parse --path-format=absolute --git-common-dir)#ref=refs/remotes/origin/main"; \
	fi; \
	if [ -z "$$against" ]; then \
	  echo "check-breaking: no main branch to compare the API with: git fetch origin main, or set BREAKING_AGAINST"; exit 1; \
	fi; \
	echo "buf breaking --against $$against"; \
	buf breaking --against "$$against"

.PHONY: check-tidy
check-tidy: ## Fail when go.mod/go.sum are not tidy
	go mod tidy -diff

.PHONY: unit
unit: $(BIN)/grpcurl chromium ## go test -race -shuffle=on ./...
	go test -race -shuffle=on -timeout 20m ./...

# Allocation tests: the race detector allocates, so they skip under -race
# and run here, without it. Their names contain "Alloc".
.PHONY: alloc
alloc: ## Allocation tests without -race (the 0-allocation promises)
	go test -count=1 -run 'Alloc' ./policy/... ./server/... ./client/...

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
test: lint check-generated check-breaking check-tidy unit alloc fuzz ## What CI runs: lint, freshness, API compatibility, tidy, race tests, allocation tests, short fuzz pass

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
loadtest: ## corsd's ext_authz answers against two floors, same run (LOADTEST_FLAGS=-quick for a smoke run)
	go run ./internal/loadtest $(LOADTEST_FLAGS)

# Release builds: static (CGO_ENABLED=0), -trimpath, no build ID, VCS
# stamping on, so that a commit always gives the same bytes with the same Go
# toolchain. The version and revision come from the build info.
PLATFORMS     ?= linux/amd64 linux/arm64 darwin/amd64 darwin/arm64
DIST          ?= $(CURDIR)/dist
RELEASE_FLAGS := -trimpath -buildvcs=true -ldflags=-buildid=

.PHONY: release-build
release-build:
	@test -n "$(OUT)" || { echo "release-build needs OUT=DIR"; exit 1; }
	@mkdir -p $(OUT)
	@for p in $(PLATFORMS); do \
	  os=$${p%/*}; arch=$${p#*/}; \
	  for cmd in corsd corsctl; do \
	    echo "build $$cmd $$os/$$arch"; \
	    CGO_ENABLED=0 GOOS=$$os GOARCH=$$arch GOFLAGS= go build $(RELEASE_FLAGS) -o $(OUT)/$$cmd-$$os-$$arch ./cmd/$$cmd; \
	  done; \
	done
	@cd $(OUT) && sha256sum corsd-* corsctl-* > SHA256SUMS

.PHONY: release
release: ## Reproducible builds of corsd and corsctl for PLATFORMS into dist/ with SHA256SUMS, built twice (second with an empty build cache) and compared
	@if [ -n "$$(git status --porcelain 2>/dev/null)" ]; then \
	  echo "release: warning: the work tree has uncommitted changes; the binaries say +dirty and no commit reproduces them"; \
	fi
	rm -rf $(DIST)
	$(MAKE) release-build OUT=$(DIST)
	@tmp=$$(mktemp -d); trap 'chmod -R u+w $$tmp; rm -rf $$tmp' EXIT; \
	echo "second build, empty build cache, to check that the bytes are reproducible"; \
	GOCACHE=$$tmp/cache $(MAKE) release-build OUT=$$tmp/out; \
	diff $(DIST)/SHA256SUMS $$tmp/out/SHA256SUMS || { echo "release: the two builds differ: not reproducible"; exit 1; }; \
	echo "release: two builds, identical bytes:"; cat $(DIST)/SHA256SUMS

# Duration of make soak: SOAK=2m for a shorter run.
SOAK ?= 10m

.PHONY: soak
soak: ## Soak corsd (not in CI): SOAK (10m) of ext_authz at half its max rate with churning watchers; RSS, heap, goroutines flat within 5%, 0 errors
	go run ./internal/soak -duration $(SOAK)

.PHONY: clean
clean: ## Remove ./bin, ./dist and test caches
	rm -rf $(BIN) $(DIST)
	go clean -testcache
