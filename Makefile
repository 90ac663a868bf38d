# Binaries go to bin/. Static Go (no cgo) so they run in any guest image.
GO        ?= go
BIN       := bin
GOFLAGS   := -trimpath -ldflags=-s\ -w
export CGO_ENABLED := 0

BINARIES := envd wrenn-init wrenn wrenn-bench host-agent control-plane

.PHONY: build generate test lint bench bench-platform clean $(BINARIES)

build: $(BINARIES)

$(BINARIES):
	$(GO) build $(GOFLAGS) -o $(BIN)/$@ ./cmd/$@

generate:
	scripts/generate

# The whole suite, as CI runs it (installs what it needs first).
test:
	scripts/test

lint:
	$(GO) vet ./...
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi

# Benchmarks (cmd/wrenn-bench, kept out of the shipped binaries) print
# tables with same-run baselines: envd over the wire, then the E2B SDK's
# view of the same envd.
bench: build
	$(BIN)/wrenn-bench envd
	cd tests/e2b && node bench.mjs ../../$(BIN)/envd

# The platform's benchmarks (root): the control plane on a private
# PostgreSQL with a real agent; the E2B SDK against wrenn dev; the Go SDK
# beside the JS SDK on one wrenn dev.
bench-platform: build
	$(BIN)/wrenn-bench cp
	$(BIN)/wrenn-bench sdk
	$(BIN)/wrenn-bench sdks

clean:
	rm -rf $(BIN)
