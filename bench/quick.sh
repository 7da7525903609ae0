#!/usr/bin/env bash
# A first side-by-side benchmark: hello world, 2 workers each, wrk on loopback.
# herd vs `uwsgi --http-socket` vs gunicorn (sync), alternating servers within one run, and
# the ratios herd / peer. Usage: bench/quick.sh [seconds per run] [rounds]
# Needs Debian's wrk, uwsgi, uwsgi-plugin-python3 and gunicorn (make deps installs them).
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION=${1:-10}
ROUNDS=${2:-1}
CONNS=${CONNS:-16}
APPDIR=$PWD/scripts/example
HERD=$PWD/bin/herd
[ -x "$HERD" ] || go build -o "$HERD" ./cmd/herd
for tool in wrk uwsgi gunicorn; do
	command -v $tool >/dev/null || { echo "bench: $tool missing (apt-get install wrk uwsgi uwsgi-plugin-python3 gunicorn)" >&2; exit 1; }
done

port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

start_server() { # name port -> sets PID
	local name=$1 p=$2
	case $name in
	herd)
		"$HERD" serve hello:app --chdir "$APPDIR" --workers 2 --http 127.0.0.1:$p --access-log off --log-level warn &
		;;
	uwsgi-http-socket)
		uwsgi --plugin python3 --master --processes 2 --http-socket 127.0.0.1:$p --chdir "$APPDIR" \
			--module hello:app --disable-logging --need-app --die-on-term --buffer-size 32768 >/dev/null 2>&1 &
		;;
	gunicorn-sync)
		/usr/bin/python3 -m gunicorn -w 2 -b 127.0.0.1:$p --chdir "$APPDIR" hello:app >/dev/null 2>&1 &
		;;
	esac
	PID=$!
	for _ in $(seq 100); do
		curl -fs -o /dev/null http://127.0.0.1:$p/ && return 0
		sleep 0.1
	done
	echo "bench: $name did not start" >&2
	kill $PID; return 1
}

stop_server() {
	kill -TERM "$1" 2>/dev/null || true
	wait "$1" 2>/dev/null || true
}

servers=(herd uwsgi-http-socket gunicorn-sync)
declare -A rps p99s
for round in $(seq "$ROUNDS"); do
	for s in "${servers[@]}"; do
		p=$(port)
		start_server "$s" "$p"
		wrk -t1 -c"$CONNS" -d1s http://127.0.0.1:$p/ >/dev/null # warm-up
		out=$(wrk -t1 -c"$CONNS" -d"${DURATION}s" --latency http://127.0.0.1:$p/)
		stop_server "$PID"
		r=$(awk '/Requests\/sec/ {print $2}' <<<"$out")
		l=$(awk '$1=="99%" {print $2}' <<<"$out")
		errs=$(awk '/Non-2xx|Socket errors/ {print}' <<<"$out" | tr '\n' ' ')
		rps[$s]+="$r "
		p99s[$s]+="$l "
		printf '%-20s round %d: %10s req/s  p99 %8s  %s\n' "$s" "$round" "$r" "$l" "$errs"
	done
done

median() { tr ' ' '\n' | grep -v '^$' | sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
echo
echo "hello world, 2 workers, wrk -t1 -c$CONNS -d${DURATION}s, median of $ROUNDS round(s), $(nproc) cores shared by wrk and the server"
printf '| %-20s | %10s | %8s | %12s |\n' server "req/s" p99 "herd / peer"
printf '|%s|%s|%s|%s|\n' "----------------------" "------------" "----------" "--------------"
herd_rps=$(median <<<"${rps[herd]}")
for s in "${servers[@]}"; do
	m=$(median <<<"${rps[$s]}")
	l=$(tr ' ' '\n' <<<"${p99s[$s]}" | grep -v '^$' | head -1)
	ratio=$(awk -v a="$herd_rps" -v b="$m" 'BEGIN {printf "%.2f", a/b}')
	printf '| %-20s | %10s | %8s | %12s |\n' "$s" "$m" "$l" "$ratio"
done
