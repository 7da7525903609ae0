#!/usr/bin/env bash
# How long a graceful reload (SIGHUP) takes, and whether any request fails during it, for the
# example app and for a Django app, with wrk sending requests throughout.
#
#   make build && ./bench/reload.sh [RELOADS] [WORKERS]
#
# For each app it prints the "took" of every reload (from SIGHUP to the new generation
# serving, as herd logs it) and what wrk saw: requests, non-2xx answers, socket errors.
set -euo pipefail
cd "$(dirname "$0")/.."
reloads=${1:-5}
workers=${2:-2}
herd=./bin/herd
[ -x "$herd" ] || { echo "run make build first" >&2; exit 1; }
command -v wrk >/dev/null || { echo "wrk missing: apt-get install wrk" >&2; exit 1; }

run() { # name app dir python path
	local name=$1 app=$2 dir=$3 python=$4 path=$5
	local port log pid
	port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
	log=$(mktemp)
	"$herd" serve "$app" --chdir "$dir" --python "$python" --workers "$workers" --http "127.0.0.1:$port" \
		--log-format json --access-log off 2>"$log" &
	pid=$!
	until grep -q '"message":"serving"' "$log"; do
		kill -0 "$pid" 2>/dev/null || { cat "$log" >&2; return 1; }
		sleep 0.1
	done
	wrk -t1 -c8 -d$((reloads * 8 + 2))s "http://127.0.0.1:$port$path" >"$log.wrk" &
	local wrkpid=$!
	sleep 1
	for i in $(seq "$reloads"); do
		local before
		before=$(grep -c '"message":"reload done"' "$log" || true)
		kill -HUP "$pid"
		until [ "$(grep -c '"message":"reload done"' "$log" || true)" -gt "$before" ]; do
			grep -q '"message":"reload failed' "$log" && { echo "reload failed" >&2; break; }
			sleep 0.05
		done
		sleep 1
	done
	wait "$wrkpid"
	kill -TERM "$pid"
	wait "$pid" || true
	echo "== $name ($workers workers, $reloads reloads under wrk -c8)"
	grep '"message":"reload done"' "$log" | sed 's/.*"took":\([0-9.]*\).*/\1/' |
		awk '{ printf "reload took %.0f ms\n", $1 }'
	grep -E "requests in|Non-2xx|Socket errors" "$log.wrk" || echo "no socket errors, no non-2xx"
	rm -f "$log" "$log.wrk"
}

run "example app (hello)" app:app "$PWD/scripts/example" python3 /
if /usr/bin/python3 -c 'import django' 2>/dev/null; then
	run "Django (Debian's python3-django)" djangoapp:application "$PWD/scripts/testapps" /usr/bin/python3 /hello
else
	echo "== Django: skipped, install python3-django"
fi
