"""herd's worker: serves one WSGI app over the uwsgi protocol, or an ASGI app over the framed
link, for the herd master.

The master embeds this package and starts each worker through a start-up file that imports
boot and calls boot.run() (supervisor/spawn/workercode.go), never through a shell. From a
source checkout, `python3 scripts/herd_worker [options]` runs it the same way (__main__.py).

    boot.py        start-up: arguments, control channel, listening socket, the app's import
    forkserver.py  the fork server (--fork-server-fd: --preload, development mode)
    hooks.py       gunicorn's fork hooks, which a fork server runs
    watch.py       what a development fork server's imports depend on (is it stale?)
    serve.py       the serving loops, sync and threaded: the hot path
    interface.py   whether the app is WSGI, ASGI 3 or ASGI 2 (--interface)
    asgi_serve.py  the asyncio worker: event loop (uvloop), lifespan, stop
    asgi.py        the framed link and its HTTP streams: scope, receive, send, credit
    asgi_ws.py     WebSocket streams
    lifespan.py    ASGI lifespan: startup before ready, shutdown before exit, state
    frames.py      the framed link's codec (docs/protocol.md)
    request.py     the environ from the uwsgi vars, and wsgi.input
    response.py    start_response, the checks of status and headers, the answer's framing
    process.py     exit codes, log lines, the control channel, inherited descriptors

Stdlib only, CPython >= 3.8. What it speaks with the master (command line, fork server,
control channel, exit codes, signals, uwsgi packets and herd's keep-alive extension) is a
contract with the Go side, described once in docs/protocol.md: change both sides and that
page together.
"""

import sys

if sys.version_info < (3, 8):
    sys.stderr.write('herd-worker: Python >= 3.8 required, this is %s\n'
                     % sys.version.split()[0])
    sys.exit(3)
