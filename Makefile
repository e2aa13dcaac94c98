# latch — make help lists the targets.
GO ?= go
BIN := bin/latch
VERSION ?= 0.1.0-dev

.PHONY: help run build test lint bench generate fuzz screenshots

help: ## list the targets
	@grep -E '^[a-z]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-8s %s\n", $$1, $$2}'

ARGS ?=
run: build ## run the server on ./latch-data (initialised on first run); flags in ARGS="--nats 127.0.0.1:4333 …"
	$(BIN) serve $(ARGS)

build: ## build bin/latch
	$(GO) build -ldflags "-X main.version=$(VERSION)" -o $(BIN) ./cmd/latch

test: ## run every test, with the race detector
	$(GO) test -race -count=1 ./...

lint: ## gofmt and go vet
	@test -z "$$(gofmt -l .)" || (echo "gofmt would change:"; gofmt -l .; exit 1)
	$(GO) vet ./...

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

bench: ## run the benchmarks (figures go in docs/benchmarks.md)
	$(GO) test -run '^$$' -bench . -benchtime 3s ./...
