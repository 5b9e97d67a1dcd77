# scopegate: `make run` starts it, `make test` is everything CI runs.
GO        ?= go
VERSION   ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS   := -s -w -X github.com/scopegate/scopegate/internal/version.Version=$(VERSION)
BIN       := bin/scopegate
OPA       = $(COMPILE) $(GO) tool opa
POLICIES  := policies

.PHONY: all build test test-go test-policies lint run bench demo

all: build

# How bin/scopegate is built: static and without local paths, as released. The Go tests
# build their copy with BUILD_CGO and BUILD_FLAGS matching go test's own (-race), so it links
# the packages the tests already compiled instead of compiling the whole graph a second time.
BUILD_CGO   ?= 0
BUILD_FLAGS ?= -trimpath

# The go commands that compile most of the graph on a cold cache (build, vet, staticcheck, OPA's
# command) run with a larger heap goal: at the default GOGC the compiler spends about a quarter
# of its CPU collecting garbage. 400 cut a cold `go vet -race ./...` from 361 s to 273 s (684 to
# 524 s of CPU) and staticcheck on an empty cache from 523 to 440 s of CPU, for a larger peak
# heap (staticcheck's: 0.96 -> 1.36 GB). 800 used 0.5 GB more and made a cold make test no
# faster (10m41s against 10m26s). The tests' own processes keep the default.
BUILD_GOGC ?= 400
COMPILE    := GOGC=$(BUILD_GOGC)

build:
	$(COMPILE) CGO_ENABLED=$(BUILD_CGO) $(GO) build $(BUILD_FLAGS) -ldflags '$(LDFLAGS)' -o $(BIN) ./cmd/scopegate

## test: everything CI runs (lint, Go tests with the race detector, Rego checks and tests).
## First gofmt, tidy and go vet, which compiles every package with the race detector. Then,
## side by side, staticcheck (reading that compile's export data) and the Rego checks followed
## by the Go tests: their OPA command and the tests' bin/scopegate link from the same compile,
## and the tests, waiting on the servers they start, leave CPU for staticcheck. vet has run, so
## go test skips its own subset of it (make test-go on its own keeps it).
test:
	@$(MAKE) --no-print-directory vet
	@$(MAKE) --no-print-directory -j2 --output-sync=target staticcheck test-rego-then-go

# vet, staticcheck and the tests share one compile of every package: all of them build with
# the race detector (vet and staticcheck read only the compiled packages' export data), so a
# cold `make test` compiles the dependency graph once rather than twice.
RACE := -race

# -timeout: cmd/scopegate runs make run, the documented commands and signed-bundle builds
# against real processes; on a loaded 2-core machine that exceeds go test's default 10m.
test-go:
	$(GO) test $(RACE) $(TEST_VET) -count=1 -timeout 30m ./...

# Rego: the OPA version pinned in go.mod (`tool` directive), the same commands security teams
# run. make test runs them with OPA's command built with the race detector (OPA_BIN): it links
# from the packages vet compiled, where `go tool opa`, which takes no build flags, would compile
# OPA's 770 packages a second time without it.
test-policies:
	@unformatted="$$($(OPA) fmt --list $(POLICIES))"; \
	  if [ -n "$$unformatted" ]; then echo "Rego not formatted (run: go tool opa fmt -w $(POLICIES)):"; echo "$$unformatted"; exit 1; fi
	$(OPA) check --strict $(POLICIES)
	$(OPA) test $(POLICIES)

OPA_BIN := bin/opa

.PHONY: vet staticcheck test-rego-then-go
test-rego-then-go:
	$(COMPILE) $(GO) build $(RACE) -o $(OPA_BIN) github.com/open-policy-agent/opa
	@$(MAKE) --no-print-directory test-policies OPA="GORACE=atexit_sleep_ms=0 $(OPA_BIN)"
	@$(MAKE) --no-print-directory test-go TEST_VET=-vet=off

## lint: gofmt, go.mod tidy, go vet, and staticcheck (the version pinned in go.mod's tool directive).
lint: vet
	@$(MAKE) --no-print-directory staticcheck

vet:
	@unformatted="$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go'))"; \
	  if [ -n "$$unformatted" ]; then echo "gofmt needed:"; echo "$$unformatted"; exit 1; fi
	@$(GO) mod tidy -diff || { echo "go.mod/go.sum are not tidy: run go mod tidy"; exit 1; }
	$(COMPILE) $(GO) vet $(RACE) ./...

# staticcheck itself is built without -race (it runs faster); its go list gets -race.
staticcheck:
	$(COMPILE) $(GO) build -o bin/staticcheck honnef.co/go/tools/cmd/staticcheck
	$(COMPILE) GOFLAGS="$$($(GO) env GOFLAGS) $(RACE)" bin/staticcheck ./...

## run: the demo idp, demo API, authz and xds in one process on localhost (`scopegate dev`);
## Envoy too when an envoy binary is on PATH. The recipe execs the built binary: Ctrl-C reaches
## it, make forwards SIGTERM (kill PID) to it, and --stop-with-parent stops it if make dies
## (kill -9 PID). RUN_FLAGS adds flags: make run RUN_FLAGS=--no-envoy
run: build
	exec $(BIN) dev --stop-with-parent $(RUN_FLAGS)

## bench: in-process benchmarks (Check path, fleet push).
bench:
	$(GO) test -run '^$$' -bench . -benchmem ./extauthz/... ./controlplane/...

## demo: the whole OAuth 2.0 story in docker compose (Envoy on https://localhost:8443, idp on :9400).
demo:
	docker compose -f compose/compose.yaml up --build

## bench-load: the load benchmark (about 5–6 minutes, 2 cores): the no-op floor and `scopegate authz`
## as separate processes, alternating; writes bench/results/load.json, load.svg and the CPU profile.
## `go run ./bench/load/cmd/scopegate-loadbench -smoke` is the quick version (go test runs it).
.PHONY: bench-load
bench-load:
	LOADBENCH_COMMAND='make bench-load' $(GO) run ./bench/load/cmd/scopegate-loadbench run -out bench/results

## bench-xds: the control plane's fan-out benchmark (about 10 minutes): 250, 500 and 1,000
## simulated Envoys on their own connections, one route changed, `scopegate xds`'s CPU and RSS
## beside the floor (the same bytes over plain TCP); writes bench/results/xds.json. Compare
## another build with XDS_BASELINE=/path/to/scopegate (see docs/benchmarks.md).
.PHONY: bench-xds
bench-xds: build
	XDSBENCH_COMMAND='make bench-xds' $(GO) run ./bench/xds/cmd/scopegate-xdsbench run \
	  $(if $(XDS_BASELINE),-server base=$(XDS_BASELINE)) -server new=$(BIN) -out bench/results/xds.json
