#!/usr/bin/env bash
# Installs the Debian packages herd's tests use, when they are missing. The tests run real
# peers: nginx in front, uWSGI and gunicorn to compare with, wrk for load, Flask and Django
# apps under Debian's /usr/bin/python3.
# systemd brings systemd-analyze (the unit files in docs/deploy are verified), util-linux
# brings unshare (herd as PID 1 of a new PID namespace).
set -euo pipefail

# chromium: the admin dashboard and the development error page are checked in a real
# headless browser; tmux: `herd top` is tested in a real terminal; git: a real checkout is the
# burst the reloader must fold into one reload; nghttp2-client: h2load drives HTTP/2 over TLS
# and h2c (curl, already there, is the other HTTP/2 client).
packages=(nginx wrk uwsgi uwsgi-plugin-python3 gunicorn python3-flask python3-django systemd util-linux chromium tmux git nghttp2-client curl)
packages+=(bash-completion) # herd completion bash is tested in a real bash with bash-completion loaded
# The venv of today's peers (make venv, scripts/venv.sh) is wheels only, built by the pyenv
# Python: no compiler or headers; pip needs only the CA certificates to reach PyPI.
packages+=(ca-certificates)

missing=()
for p in "${packages[@]}"; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0

if [ "$(id -u)" -ne 0 ]; then
	echo "install-deps: missing Debian packages: ${missing[*]}" >&2
	echo "install-deps: run as root, or: sudo apt-get install -y ${missing[*]}" >&2
	echo "install-deps: tests that need them will say so and skip" >&2
	exit 0
fi
echo "install-deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -q
apt-get install -y -q --no-install-recommends "${missing[@]}"
