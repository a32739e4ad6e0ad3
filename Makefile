# The two commands of the README: `go run ./cmd/warmproxy` and `make test`.
GO ?= go
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo devel)
# The commit is stamped too: -trimpath builds outside a git checkout (a
# tarball, a container) have no VCS information of their own.
COMMIT ?= $(shell git rev-parse HEAD 2>/dev/null)
LDFLAGS := -s -w -X main.version=$(VERSION) -X main.commit=$(COMMIT)

.PHONY: build test deps vet lint bench fuzz clean

build:
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o bin/warmproxy ./cmd/warmproxy

deps:
	bash scripts/install-test-deps.sh

vet:
	$(GO) vet ./...

lint: vet
	$(GO) run honnef.co/go/tools/cmd/staticcheck@2025.1.1 ./...

# test installs what the tests drive, then vets and runs every test (fuzz
# seed corpora included) under the race detector; scripts/test.sh says in
# which order, and why.
test: deps
	GO='$(GO)' bash scripts/test.sh

bench:
	bash bench/run.sh

# fuzz runs each fuzz target for FUZZTIME (default 1m).
FUZZTIME ?= 1m
fuzz:
	@for pkg in $$($(GO) list ./...); do \
	  for f in $$($(GO) test -list '^Fuzz' $$pkg | grep '^Fuzz'); do \
	    echo "== $$pkg $$f"; $(GO) test -run '^$$' -fuzz "^$$f$$" -fuzztime $(FUZZTIME) $$pkg || exit 1; \
	  done; \
	done

clean:
	rm -rf bin
