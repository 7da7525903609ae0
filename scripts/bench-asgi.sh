#!/usr/bin/env bash
# ASGI speed beside uvicorn (issue 20): hello ASGI (scripts/testapps/asgiapp.py) and a
# FastAPI JSON route (scripts/testapps/fastapiapp.py /json), herd and uvicorn with the same
# number of workers, wrk at 16 and 256 connections, alternating the servers each round.
# WebSockets (10,000 idle with the master's RSS, echo p99 at 1,000 active) are
# BenchmarkASGIWebSockets in server/asgi_bench_test.go. make bench (bench/) is another
# harness; this one is the short form issue 20 asked for.
#
#   scripts/bench-asgi.sh [WORKERS=2] [SECONDS=10] [ROUNDS=2]
set -euo pipefail
cd "$(dirname "$0")/.."
WORKERS=${1:-2}
SECONDS_=${2:-10}
ROUNDS=${3:-2}
VENV=${VENV:-.venv}
command -v wrk >/dev/null || { echo "bench-asgi: needs wrk (apt-get install wrk)" >&2; exit 1; }
[ -x "$VENV/bin/python" ] || { echo "bench-asgi: needs the venv (make venv)" >&2; exit 1; }
go build -o bin/herd ./cmd/herd
APPS=scripts/testapps
PIDS=()
cleanup() { for p in "${PIDS[@]:-}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT

wait_up() { for _ in $(seq 100); do curl -fs "$1" >/dev/null 2>&1 && return 0; sleep 0.1; done; echo "not up: $1" >&2; return 1; }

start() { # start SERVER APP PORT: runs it in the background, prints its pid
	local server=$1 app=$2 port=$3
	case $server in
	herd) ./bin/herd serve "$app" --chdir "$APPS" --venv "$VENV" --http 127.0.0.1:"$port" -w "$WORKERS" \
		--access-log off --log-level warn >/dev/null 2>&1 & ;;
	uvicorn) (cd "$APPS" && exec "../../$VENV/bin/python" -m uvicorn "$app" --port "$port" --workers "$WORKERS" \
		--no-access-log --log-level warning >/dev/null 2>&1) & ;;
	esac
	echo $!
}

run() { # run URL CONNS: prints req/s and p99 (ms)
	wrk -t2 -c"$2" -d"${SECONDS_}s" --latency "$1" 2>/dev/null | awk '
		/Requests\/sec/ {rps=$2}
		/ 99%/ {v=$2; if (v ~ /us$/) {sub(/us/,"",v); v=v/1000} else if (v ~ /ms$/) {sub(/ms/,"",v)} else if (v ~ /s$/) {sub(/s/,"",v); v=v*1000}; p99=v}
		/Non-2xx/ {bad=$4}
		END {printf "%.0f %.1f %s\n", rps, p99, (bad == "" ? 0 : bad)}'
}

printf "%-8s %-14s %6s %10s %10s %6s\n" server route conns "req/s" "p99 ms" non2xx
for round in $(seq "$ROUNDS"); do
	for spec in "asgiapp:app /" "fastapiapp:app /json"; do
		set -- $spec
		app=$1 route=$2
		for server in herd uvicorn; do
			port=$((18500 + RANDOM % 1000))
			pid=$(start "$server" "$app" "$port")
			PIDS+=("$pid")
			wait_up "http://127.0.0.1:$port$route"
			for conns in 16 256; do
				read -r rps p99 bad < <(run "http://127.0.0.1:$port$route" "$conns")
				printf "%-8s %-14s %6s %10s %10s %6s\n" "$server" "${app%%:*}$route" "$conns" "$rps" "$p99" "$bad"
			done
			kill "$pid"; wait "$pid" 2>/dev/null || true
		done
	done
done
