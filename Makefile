# herd's build, run and test entry points. `make run` and `make test` work on a fresh
# Debian machine: `make test` installs the Debian packages the tests need when they are
# missing (it must run as root for that, as CI does), and builds the venv of today's peers
# from PyPI (make venv) when it is missing or its pins changed.

GO      ?= go
PYTHON  ?= python3
BIN     := bin/herd
# The venv of today's peers and frameworks from PyPI (gunicorn 27, Granian, uvicorn, uWSGI,
# Django 6.1, Flask 3.1, FastAPI, gevent), as pinned in PEERS; VENV_PYTHON is the interpreter
# that builds it (empty: scripts/venv.sh picks a Python >= 3.12, which Django 6 needs).
# The tests find it through HERD_TEST_VENV.
VENV        ?= .venv
VENV_PYTHON ?=
PEERS       := requirements/peers.txt
VENV_STAMP  := $(VENV)/.herd-stamp
PYTHONS := $(PYTHON) /usr/bin/python3 $(wildcard /root/.pyenv/versions/3.8.*/bin/python3) $(VENV)/bin/python

.PHONY: all build run test deps venv pins lint test-python test-go bench bench-quick bench-where bench-static bench-reload bench-tls chaos soak fuzz fuzz-short fuzz-python hostile clean

all: build

# The version herd reports (herd --version, herd top, /stats): the git description of the
# checkout, so that a build from source never calls itself a release or "dev".
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null)

build:
	$(GO) build -ldflags "-X main.version=$(VERSION)" -o $(BIN) ./cmd/herd

# Serves the bundled example app (scripts/example/app.py) on http://127.0.0.1:8000.
run: build
	./$(BIN) serve app:app --chdir scripts/example --http 127.0.0.1:8000

test: deps venv lint test-python test-go fuzz-short

deps:
	./scripts/install-deps.sh

# Rebuilt (afresh, about 10 s here) only when the pins or the script change: the stamp is
# written last, so a failed build is tried again.
venv: $(VENV_STAMP)

$(VENV_STAMP): $(PEERS) scripts/venv.sh
	VENV_PYTHON=$(VENV_PYTHON) ./scripts/venv.sh $(VENV) $(PEERS)

# Re-resolves requirements/peers.in into $(PEERS): versions and hashes of everything the
# peers pull in (docs/development.md). PINS_FLAGS=--upgrade takes the newest releases that
# peers.in allows; --upgrade-package NAME one of them. pip-tools runs from a venv of its own.
PINS_FLAGS ?=
pins:
	@py=$$(VENV_PYTHON=$(VENV_PYTHON) ./scripts/venv.sh --which) && \
	$$py -m venv --clear bin/pins-venv && \
	bin/pins-venv/bin/python -m pip install --quiet --disable-pip-version-check pip-tools==7.7.0 && \
	CUSTOM_COMPILE_COMMAND="make pins" bin/pins-venv/bin/pip-compile --quiet --generate-hashes \
		--strip-extras --allow-unsafe --no-emit-index-url --no-emit-find-links $(PINS_FLAGS) \
		--output-file $(PEERS) requirements/peers.in

lint:
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...

# The worker's own tests, under every Python here that should run it (>= 3.8); under
# Debian's and the venv's they also serve the Flask and Django fixture apps.
test-python:
	@for py in $(PYTHONS); do \
		if command -v $$py >/dev/null 2>&1; then \
			echo "== worker tests under $$py ($$($$py --version 2>&1))"; \
			$$py -m unittest discover -s scripts -p 'test_*.py' || exit 1; \
		fi; \
	done

# One race-enabled herd binary serves every package's end-to-end tests.
test-go:
	$(GO) build -race -o bin/herd-race ./cmd/herd
	HERD_TEST_VENV=$(abspath $(VENV)) HERD_TEST_BINARY=$(CURDIR)/bin/herd-race $(GO) test -race -count=1 -timeout 15m ./...

# The hostile-client suite's long form (make test runs the short one): 1500 slowloris
# connections, 200 slow readers, a flood of 3 x 1800 connections, 2000 samples per p99, and
# how long a new client waits in the flood. Prints the table of docs/RELIABILITY.md. Then
# issue 21's attacks, as make test runs them: non-readers against --send-timeout, a
# descriptor flood under ulimit -n 600, a full tmpfs (as root), a misbehaving HTTP/2 client,
# bad absolute-form hosts, --body-memory under 128 echoes at once.
HOSTILE_TESTS := TestHostileClients|TestSendTimeoutFreesWorkers|TestDescriptorBudgetUnderFlood|TestFullTempDir|TestHTTP2Bounds|TestAbsoluteFormHost|TestBodyMemoryBoundsTheHeap
hostile: build
	HERD_HOSTILE_LONG=1 HERD_TEST_BINARY=$(CURDIR)/$(BIN) $(GO) test ./server -run '^($(HOSTILE_TESTS))$$' -count=1 -v -timeout 20m

# Fuzzing (docs/RELIABILITY.md). Each target's seed corpus (testdata/fuzz/<Target>/) runs in
# every `go test`; these run the fuzzer itself. fuzz-short is part of `make test`: a fixed
# number of inputs on each of issue 9's targets (the uwsgi decoder, the HTTP->uwsgi
# translation, the parser of what a worker answers) and on the framed link's decoder (issue
# 20, about 3 s), about 6 s each here, ~35 s with the builds. Counts, not durations: with a duration, Go 1.26's fuzz coordinator can report its
# own stop at the deadline as a failure ("context deadline exceeded", no input written;
# go.dev/issue/75804, fixed in Go 1.27) when a worker is mid-input on a busy machine; and
# each new input is minimized for 1 s at most (not counted as executions, a minimization
# stalled the count for 18 s).
# `make fuzz` runs every target for FUZZTIME, fuzz-python the worker's fuzz loop for
# FUZZ_PY_SECONDS under each Python (test-python runs it for 2 s).
FUZZ_SHORT_DECODE   ?= 500000x
FUZZ_SHORT_VARS     ?= 60000x
FUZZ_SHORT_RESPONSE ?= 30000x
FUZZ_SHORT_FRAME    ?= 100000x
FUZZTIME        ?= 60s
FUZZ_PY_SECONDS ?= 60
fuzz-short:
	$(GO) test ./protocol -run '^$$' -fuzz '^FuzzDecodeVars$$' -fuzztime $(FUZZ_SHORT_DECODE) -fuzzminimizetime 1s
	$(GO) test ./proxy -run '^$$' -fuzz '^FuzzRequestVars$$' -fuzztime $(FUZZ_SHORT_VARS) -fuzzminimizetime 1s
	$(GO) test ./proxy -run '^$$' -fuzz '^FuzzWorkerResponse$$' -fuzztime $(FUZZ_SHORT_RESPONSE) -fuzzminimizetime 1s
	$(GO) test ./protocol -run '^$$' -fuzz '^FuzzDecodeFrame$$' -fuzztime $(FUZZ_SHORT_FRAME) -fuzzminimizetime 1s

fuzz:
	$(GO) test ./protocol -run '^$$' -fuzz '^FuzzDecodeVars$$' -fuzztime $(FUZZTIME)
	$(GO) test ./protocol -run '^$$' -fuzz '^FuzzRoundTrip$$' -fuzztime $(FUZZTIME)
	$(GO) test ./protocol -run '^$$' -fuzz '^FuzzDecodeVarsNUL$$' -fuzztime $(FUZZTIME)
	$(GO) test ./protocol -run '^$$' -fuzz '^FuzzRoundTripNUL$$' -fuzztime $(FUZZTIME)
	$(GO) test ./protocol -run '^$$' -fuzz '^FuzzDecodeFrame$$' -fuzztime $(FUZZTIME)
	$(GO) test ./protocol -run '^$$' -fuzz '^FuzzResponseStart$$' -fuzztime $(FUZZTIME)
	$(GO) test ./proxy -run '^$$' -fuzz '^FuzzRequestVars$$' -fuzztime $(FUZZTIME)
	$(GO) test ./proxy -run '^$$' -fuzz '^FuzzWorkerResponse$$' -fuzztime $(FUZZTIME)
	$(GO) test ./internal/listener -run '^$$' -fuzz '^FuzzReadHeader$$' -fuzztime $(FUZZTIME)
	# One fuzzing process: each starts its own Python worker behind the front end.
	$(GO) test ./proxy -run '^$$' -fuzz '^FuzzUwsgiFrontEnd$$' -fuzztime $(FUZZTIME) -parallel 1

fuzz-python:
	@for py in $(PYTHONS); do \
		if command -v $$py >/dev/null 2>&1; then \
			$$py scripts/fuzz_worker.py --seconds $(FUZZ_PY_SECONDS) || exit 1; \
		fi; \
	done

# The side-by-side benchmark (bench/, docs/BENCHMARKS.md), issue 18's set: herd beside today's
# peers from the venv, all on the venv's Python (herd's workers by --venv): Granian (WSGI),
# gunicorn 27 sync and gthread, uWSGI (pyuwsgi) by --http-socket and behind nginx, and the Go
# net/http limit; on hello, Flask (JSON) and Django, at 16 and 256 connections, 3 alternating
# rounds; the mixed run (fast requests while a 1.5 s view is asked in a loop); the in-process
# limit; where the time goes, herd beside Granian (/proc, perf stat, strace -c). About 25
# minutes. It rewrites docs/BENCHMARKS.md; say what else ran on the machine in BENCH_NOTE (the
# report adds what /proc saw). More knobs: BENCH_FLAGS (go run ./bench -h), e.g. -debian for
# Debian 12's older uWSGI and gunicorn on /usr/bin/python3, or -servers to name the extra rows
# (nginx -> herd, uWSGI's router).
BENCH_NOTE  ?=
BENCH_FLAGS ?=
bench: build venv
	$(GO) run ./bench -report docs/BENCHMARKS.md -note "$(BENCH_NOTE)" $(BENCH_FLAGS)

# A minute: herd, Granian, uwsgi --http-socket, gunicorn sync and Go on hello, 16 connections, 1 round.
bench-quick: build venv
	$(GO) run ./bench -quick $(BENCH_FLAGS)

# Where the time goes alone (a few minutes, printed, no report written): herd beside Granian on
# each app, CPU per request by process group, system calls per request (perf stat, strace -c),
# and the in-process floor.
bench-where: build venv
	$(GO) run ./bench -rounds 0 -mixed 0 -gobench 0 $(BENCH_FLAGS)

# Static files (--static): herd's master against nginx serving the same 1 KiB and 64 KiB
# files, 16 connections, 3 rounds: about 3 minutes. Writes docs/BENCHMARKS-static.md.
bench-static: build venv
	$(GO) run ./bench -servers herd,nginx-static -apps static1k,static64k -conns 16 -mixed 0 -inproc 0 -gobench 0 -where 0 \
		-report docs/BENCHMARKS-static.md -note "$(BENCH_NOTE)" $(BENCH_FLAGS)

# Save to new response, herd dev against gunicorn --reload: median of 20 saves each.
bench-reload: venv
	HERD_TEST_VENV=$(abspath $(VENV)) $(GO) test ./server -run '^$$' -bench SaveToNewResponse -benchtime 1x

# --preload on the Django project fixture: herd and gunicorn, each with and without it, 4
# workers: start to first 200 and total PSS after traffic, 3 runs each (docs/lifecycle.md).
.PHONY: bench-preload
bench-preload: venv
	HERD_TEST_VENV=$(abspath $(VENV)) $(GO) test ./server -run '^$$' -bench PreloadDjango -benchtime 3x

# HTTPS/1.1, HTTP/2 and h2c beside plain HTTP/1.1: req/s and CPU per request (docs/tls.md).
bench-tls: build
	./bench/tls.sh

# The chaos suite (server/chaos/, docs/RELIABILITY.md): under steady load, 30 s of each fault
# (SIGKILL, SIGSTOP past --timeout, SIGHUP, --reload-on-rss, os._exit mid-response); prints
# every failed request with its worker and rewrites the chaos section of the report. Say what
# else ran on the machine in CHAOS_NOTE. `make test` runs a short form (chaos.TestChaos).
CHAOS_TIME ?= 30s
CHAOS_NOTE ?=
chaos:
	$(GO) test ./server/chaos -run '^TestChaos$$' -count=1 -v -timeout 30m -args -chaos.time $(CHAOS_TIME) -chaos.report docs/RELIABILITY.md -chaos.note "$(CHAOS_NOTE)"

# The soak: SOAK (30m) of mixed load with reloads and kills; the master's RSS, fds and
# goroutines every 10 s must stay flat. Rewrites the soak section of docs/RELIABILITY.md.
SOAK      ?= 30m
SOAK_NOTE ?=
soak:
	$(GO) test ./server/chaos -run '^$$' -bench '^BenchmarkSoak$$' -benchtime 1x -count=1 -timeout 0 -args -soak.duration $(SOAK) -soak.report docs/RELIABILITY.md -soak.note "$(SOAK_NOTE)"

clean:
	rm -rf bin
