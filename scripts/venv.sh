#!/usr/bin/env bash
# Builds the venv of today's peers (make venv): gunicorn 27, Granian, uvicorn, uWSGI
# (pyuwsgi), Django 6.1, Flask 3.1, FastAPI and gevent from PyPI, exactly as pinned, with
# hashes, in requirements/peers.txt. Never into the system Python: a venv of its own.
#
#   scripts/venv.sh DIR REQUIREMENTS
#   scripts/venv.sh --which      prints the interpreter it would build with (make pins)
#
# The interpreter: $VENV_PYTHON when set, else the newest pyenv 3.13, then 3.12 (Django 6
# needs Python >= 3.12: neither the pyenv 3.11 first on PATH nor Debian 12's /usr/bin/python3
# can import it), then python3.13 or python3.12 on PATH. The venv is built afresh each time
# (make runs this only when the pins change), so it holds the pins and nothing left over from
# older ones. Wheels only (--only-binary): every pin has a manylinux wheel, so no compiler or
# headers are needed, and a pin without one fails here rather than compiling for minutes.
# Without a suitable Python it says so and leaves no venv (the tests that need it skip,
# naming `make venv`), unless HERD_REQUIRE_ALL=1 (CI), where that is a failure.
set -euo pipefail

# usable PY: PY runs and is Python 3.12 or newer. (A pyenv shim for a version that is not
# selected exists on PATH but fails when run, hence running it.)
usable() {
	"$1" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 12) else 1)' >/dev/null 2>&1
}

pick() {
	if [ -n "${VENV_PYTHON:-}" ]; then
		usable "$VENV_PYTHON" && { echo "$VENV_PYTHON"; return; }
		echo "venv: VENV_PYTHON=$VENV_PYTHON does not run, or is older than Python 3.12" >&2
		return 1
	fi
	local root=${PYENV_ROOT:-$HOME/.pyenv} v py
	for v in 3.13 3.12; do
		# The newest patch release first.
		for py in $(ls -d "$root"/versions/"$v".*/bin/python"$v" 2>/dev/null | sort -rV); do
			usable "$py" && { echo "$py"; return; }
		done
	done
	for v in 3.13 3.12; do
		py=$(command -v python"$v" 2>/dev/null) && usable "$py" && { echo "$py"; return; }
	done
	return 1
}

if [ "${1:-}" = --which ]; then
	pick || { echo "venv: no Python 3.12 or newer found: install one (pyenv install 3.13) or set VENV_PYTHON" >&2; exit 1; }
	exit 0
fi
dir=${1:?usage: venv.sh DIR REQUIREMENTS}
req=${2:?usage: venv.sh DIR REQUIREMENTS}
stamp=$dir/.herd-stamp

if ! python=$(pick); then
	msg="venv: no Python 3.12 or newer found (Django 6 needs one): install one (pyenv install 3.13) or set VENV_PYTHON"
	if [ "${HERD_REQUIRE_ALL:-}" = 1 ]; then
		echo "$msg [HERD_REQUIRE_ALL=1: skips are failures]" >&2
		exit 1
	fi
	echo "$msg; the tests that need the venv will skip" >&2
	exit 0
fi

echo "venv: building $dir with $python ($("$python" --version 2>&1)) from $req"
start=$(date +%s)
"$python" -m venv --clear "$dir"
# The venv's own pip (the interpreter's bundled one) installs; upgrading it first would be one
# more unpinned download.
"$dir/bin/python" -m pip install --quiet --no-input --disable-pip-version-check \
	--require-hashes --only-binary :all: -r "$req"
"$dir/bin/python" -m pip check --disable-pip-version-check
# The stamp says what built it; make compares its time with the pins'.
{
	echo "python: $python"
	echo "requirements: $req $(sha256sum <"$req" | cut -d' ' -f1)"
} >"$stamp"
peers=$("$dir/bin/python" -m pip list --disable-pip-version-check --format freeze |
	grep -iE '^(django|flask|fastapi|gunicorn|granian|uvicorn|gevent|pyuwsgi)==' | paste -sd' ')
echo "venv: $dir ready in $(($(date +%s) - start)) s: $peers"
