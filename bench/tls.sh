#!/usr/bin/env bash
# HTTPS and HTTP/2 beside plain HTTP/1.1: one herd serves the hello app on --http (with --h2c)
# and --https (a fresh ECDSA P-256 self-signed certificate); wrk and h2load load it in turn,
# 5 s each, for ROUNDS rounds. For each load: requests/s, failed requests, and the server's CPU
# per request (user + system time from /proc, the master and its workers apart).
#
#   make build && ./bench/tls.sh [ROUNDS] [WORKERS]
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-3}
workers=${2:-2}
herd=$PWD/bin/herd
[ -x "$herd" ] || { echo "run make build first" >&2; exit 1; }
for tool in wrk h2load openssl; do
	command -v $tool >/dev/null || { echo "$tool missing: apt-get install wrk nghttp2-client openssl" >&2; exit 1; }
done
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 -subj /CN=localhost \
	-keyout "$tmp/key.pem" -out "$tmp/cert.pem" 2>/dev/null
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
http=127.0.0.1:$(port)
https=127.0.0.1:$(port)
"$herd" serve hello:app --chdir bench/apps --python /usr/bin/python3 --workers "$workers" --http "$http" --h2c \
	--https "$https" --cert "$tmp/cert.pem" --key "$tmp/key.pem" --log-format json --access-log off 2>"$tmp/log" &
pid=$!
trap 'kill $pid 2>/dev/null; wait $pid 2>/dev/null; rm -rf "$tmp"' EXIT
until grep -q '"message":"serving"' "$tmp/log"; do
	kill -0 "$pid" 2>/dev/null || { cat "$tmp/log" >&2; exit 1; }
	sleep 0.1
done

ticks() { # CPU clock ticks of the master, then of its workers together
	local w=0 c
	for c in $(cat /proc/$pid/task/*/children); do w=$((w + $(awk '{print $14+$15}' /proc/$c/stat))); done
	echo "$(awk '{print $14+$15}' /proc/$pid/stat) $w"
}
measure() { # name command...
	local name=$1 out n rps fail m0 w0 m1 w1
	shift
	read -r m0 w0 < <(ticks)
	out=$("$@" 2>&1)
	read -r m1 w1 < <(ticks)
	if [[ $1 == wrk ]]; then
		n=$(awk '/requests in/{print $1}' <<<"$out")
		rps=$(awk '/Requests\/sec/{print $2}' <<<"$out")
		fail=$(awk '/Non-2xx/{s+=$NF} /Socket errors/{gsub(",",""); s+=$4+$6+$8+$10} END{print s+0}' <<<"$out")
	else
		n=$(awk '/^requests:/{print $8}' <<<"$out")
		rps=$(awk '/^finished/{print $4}' <<<"$out")
		fail=$(awk '/^requests:/{print $10+$12+$14}' <<<"$out")
	fi
	awk -v name="$name" -v n="$n" -v rps="$rps" -v dm=$((m1 - m0)) -v dw=$((w1 - w0)) -v f="$fail" -v hz="$(getconf CLK_TCK)" \
		'BEGIN{printf "%-22s %9s req/s  failed %-4s  master %6.1f us/req  workers %6.1f us/req\n", name, rps, f, dm*1e6/hz/n, dw*1e6/hz/n}'
}
for round in $(seq "$rounds"); do
	echo "round $round, load average $(cut -d' ' -f1-3 /proc/loadavg)"
	measure "HTTP/1.1 wrk -c16" wrk -t1 -c16 -d5s "http://$http/"
	measure "HTTPS/1.1 wrk -c16" wrk -t1 -c16 -d5s "https://$https/"
	measure "h2 h2load -c16 -m1" h2load -c16 -m1 -D5 "https://$https/"
	measure "h2 h2load -c4 -m16" h2load -c4 -m16 -D5 "https://$https/"
	measure "h2c h2load -c16 -m1" h2load -c16 -m1 -D5 "http://$http/"
done
