"""The app of TestMalformedWorkerResponses (cmd/herd/malformed_test.go). Stdlib only.

A WSGI app cannot make worker.py send a malformed response (it validates what the app passes
to start_response), so this one goes around it, as an app that tampers with its socket
would:
  /raw   writes the request body, as it is, on the worker's connection to the master as the
         whole response, then shuts the connection down (the worker's own answer fails)
  else   200 "ok"
"""

import socket
import sys


def app(environ, start_response):
    if environ.get("PATH_INFO") == "/raw":
        raw = environ["wsgi.input"].read()
        conn = _worker_socket()
        conn.sendall(raw)
        conn.shutdown(socket.SHUT_RDWR)
        start_response("200 OK", [])    # goes nowhere: the worker sees a dead connection
        return []
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "2")])
    return [b"ok"]


def _worker_socket():
    """The connection worker.py serves this request on: _run_app's `conn` argument."""
    f = sys._getframe(1)
    while f is not None:
        if f.f_code.co_name == "_run_app" and isinstance(f.f_locals.get("conn"), socket.socket):
            return f.f_locals["conn"]
        f = f.f_back
    raise RuntimeError("no _run_app frame with a conn socket: worker.py changed, fix rawapp.py")
