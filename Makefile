# herd's build, run and test entry points. `make run` and `make test` work on a fresh
# Debian machine: `make test` installs the Debian packages the tests need when they are
# missing (it must run as root for that, as CI does).

GO      ?= go
PYTHON  ?= python3
BIN     := bin/herd
PYTHONS := $(PYTHON) /usr/bin/python3 $(wildcard /root/.pyenv/versions/3.8.*/bin/python3)

.PHONY: all build run test deps lint test-python test-go bench fuzz clean

all: build

build:
	$(GO) build -o $(BIN) ./cmd/herd

# Serves the bundled example app (scripts/example/app.py) on http://127.0.0.1:8000.
run: build
	./$(BIN) serve app:app --chdir scripts/example --http 127.0.0.1:8000

test: deps lint test-python test-go

deps:
	./scripts/install-deps.sh

lint:
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...

# The worker's own tests, under every Python here that should run it (>= 3.8).
test-python:
	@for py in $(PYTHONS); do \
		if command -v $$py >/dev/null 2>&1; then \
			echo "== worker tests under $$py ($$($$py --version 2>&1))"; \
			$$py -m unittest discover -s scripts -p 'test_*.py' || exit 1; \
		fi; \
	done

test-go:
	$(GO) test -race -count=1 -timeout 15m ./...

# A short fuzz run of each Go fuzz target.
fuzz:
	$(GO) test ./protocol -run '^$$' -fuzz FuzzDecodeVars -fuzztime 20s
	$(GO) test ./protocol -run '^$$' -fuzz FuzzRoundTrip -fuzztime 20s

# Hello-world requests/s and p99 of herd, uwsgi --http-socket and gunicorn, side by side.
bench: build
	./bench/quick.sh

clean:
	rm -rf bin
