# latch — make help lists the targets.
GO ?= go
BIN := bin/latch
VERSION ?= 0.1.0-dev
COMMIT ?= $(shell git rev-parse --short HEAD 2>/dev/null || echo unknown)
# go install puts tools here; lint and release-snapshot look for them here too.
TOOLBIN = $(or $(shell $(GO) env GOBIN),$(shell $(GO) env GOPATH)/bin)
GORELEASER_VERSION := v2.15.1

.PHONY: help run build static test lint bench generate fuzz screenshots release-snapshot nats-server-patch

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-16s %s\n", $$1, $$2}'

ARGS ?=
run: build ## run the server on ./latch-data (initialised on first run); flags in ARGS="--nats 127.0.0.1:4333 …"
	$(BIN) serve $(ARGS)

build: ## build bin/latch
	$(GO) build -ldflags "-X main.version=$(VERSION) -X main.commit=$(COMMIT)" -o $(BIN) ./cmd/latch

# The container image's build (Dockerfile) runs this target; a test keeps
# the two together.
STATIC ?= bin/latch-static
static: ## build $(STATIC): static (CGO_ENABLED=0), -trimpath, stripped, version stamped; the Dockerfile's build
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags "-s -w -X main.version=$(VERSION) -X main.commit=$(COMMIT)" -o $(STATIC) ./cmd/latch

test: ## run every test, with the race detector, and the tests of latch's patches to nats-server
	$(GO) test -race -count=1 ./...
	cd third_party/nats-server && $(GO) test -race -count=1 -run '^(TestAccountBuildWithoutExportsDoesNotWalkLoadedAccounts|TestAccountExportChangeStillChecksImports|TestJetStreamAdmissionRunningTotals)$$' ./server/

nats-server-patch: ## re-create third_party/nats-server: go.mod's nats-server from the module cache, with third_party/patches applied
	./scripts/nats-server-patch

lint: ## gofmt, go vet and actionlint (.github/workflows)
	@test -z "$$(gofmt -l .)" || (echo "gofmt would change:"; gofmt -l .; exit 1)
	$(GO) vet ./...
	@PATH="$(TOOLBIN):$$PATH"; command -v actionlint >/dev/null 2>&1 || { echo "lint: actionlint is missing; install it with: go install github.com/rhysd/actionlint/cmd/actionlint@v1.7.12"; exit 1; }
	PATH="$(TOOLBIN):$$PATH" actionlint

generate: ## regenerate the templ views (views/*_templ.go are committed)
	$(GO) tool templ generate -path views

FUZZTIME ?= 10s
fuzz: ## run each fuzz target for FUZZTIME (default 10s); seed corpora are in */testdata/fuzz
	$(GO) test -run '^$$' -fuzz '^FuzzNames$$' -fuzztime $(FUZZTIME) ./accounts
	$(GO) test -run '^$$' -fuzz '^FuzzAdminDecode$$' -fuzztime $(FUZZTIME) ./accounts
	$(GO) test -run '^$$' -fuzz '^FuzzParseCreds$$' -fuzztime $(FUZZTIME) ./keys
	$(GO) test -run '^$$' -fuzz '^FuzzEnrollStartRequest$$' -fuzztime $(FUZZTIME) ./web
	$(GO) test -run '^$$' -fuzz '^FuzzRenewRequest$$' -fuzztime $(FUZZTIME) ./web

screenshots: ## refresh docs/screenshots from the browser test (needs Chromium)
	LATCH_SCREENSHOTS=$(CURDIR)/docs/screenshots $(GO) test -count=1 -run '^TestBrowser$$' ./web

release-snapshot: ## build every release archive into dist/ with goreleaser, as a tag would; publishes nothing
	@PATH="$(TOOLBIN):$$PATH"; command -v goreleaser >/dev/null 2>&1 || { echo "installing goreleaser $(GORELEASER_VERSION) into $(TOOLBIN)"; $(GO) install github.com/goreleaser/goreleaser/v2@$(GORELEASER_VERSION); }
	@PATH="$(TOOLBIN):$$PATH"; skip=; command -v syft >/dev/null 2>&1 || { echo "release-snapshot: no syft on PATH, so no SBOMs (release.yml installs it)"; skip=--skip=sbom; }; \
		set -x; goreleaser release --snapshot --clean $$skip

bench: ## run the benchmarks (figures go in docs/benchmarks.md)
	$(GO) test -run '^$$' -bench . -benchtime 3s ./...
