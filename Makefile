# Binaries go to bin/. Static Go (no cgo) so they run in any guest image.
GO        ?= go
BIN       := bin
GOFLAGS   := -trimpath -ldflags=-s\ -w
export CGO_ENABLED := 0

BINARIES := envd wrenn-init wrenn wrenn-bench host-agent control-plane code-interpreter

.PHONY: build web dist generate test lint bench bench-platform clean $(BINARIES)

build: web $(BINARIES)

$(BINARIES):
	$(GO) build $(GOFLAGS) -o $(BIN)/$@ ./cmd/$@

# Release artifacts in dist/: static binaries per architecture (tarballs),
# Debian packages (nfpm, as a library: cmd/wrenn-dist) and SHA256SUMS.
# Builds gVisor's runsc for each architecture that lacks scripts/setup's.
dist:
	$(GO) run ./cmd/wrenn-dist --out dist $(if $(VERSION),--version $(VERSION))
# The dashboard (web/, SvelteKit): npm ci when the lock file changed, then
# the Vite build into internal/webui/dist/app, which the control plane
# embeds. Binaries built before it serve a page saying it is not built.
WEB_SRC := $(shell find web/src web/static -type f 2>/dev/null) web/package.json web/svelte.config.js web/vite.config.ts web/tsconfig.json
WEB_OUT := internal/webui/dist/app/index.html

web: $(WEB_OUT)

$(WEB_OUT): web/node_modules/.package-lock.json $(WEB_SRC)
	cd web && npx vite build --logLevel warn

web/node_modules/.package-lock.json: web/package-lock.json
	cd web && npm ci --no-audit --no-fund --loglevel=error

control-plane wrenn: web

generate:
	scripts/generate

# The whole suite, as CI runs it (installs what it needs first).
test:
	scripts/test

lint:
	$(GO) vet ./...
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi

# Benchmarks (cmd/wrenn-bench, kept out of the shipped binaries) print
# tables with same-run baselines: envd over the wire and the E2B SDK's view
# of the same envd, in one table.
bench: build
	$(BIN)/wrenn-bench envd

# The platform's benchmarks (root): the control plane on a private
# PostgreSQL with a real agent; the E2B SDK against wrenn dev; the Go SDK
# beside the JS SDK on one wrenn dev.
bench-platform: build
	$(BIN)/wrenn-bench cp
	$(BIN)/wrenn-bench sdk
	$(BIN)/wrenn-bench sdks

clean:
	rm -rf $(BIN) dist internal/webui/dist/app web/.svelte-kit
