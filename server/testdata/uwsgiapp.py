"""The app of the uwsgi front end tests (cmd/herd/uwsgi_nginx_test.go). Stdlib only. Routes,
by PATH_INFO (so under a --mount prefix they answer below it):
  /env          the environ's str values as JSON
  /sha          "LENGTH SHA256HEX" of the request body
  /stream       yields "first\n", waits (up to 20 s) for the file named by ?gate= to exist,
                then yields "second\n" ("gate never opened\n" on timeout): the client
                sees "first" before it creates the gate only if every hop streams
  anything else "hello\n"
"""

import hashlib
import json
import os
import time


def app(environ, start_response):
    path = environ.get("PATH_INFO", "")
    if path == "/env":
        env = {k: v for k, v in environ.items() if isinstance(v, str)}
        return text(start_response, json.dumps(env, sort_keys=True))
    if path == "/sha":
        h = hashlib.sha256()
        n = 0
        while True:
            data = environ["wsgi.input"].read(65536)
            if not data:
                break
            h.update(data)
            n += len(data)
        return text(start_response, "%d %s" % (n, h.hexdigest()))
    if path == "/stream":
        gate = environ.get("QUERY_STRING", "").partition("gate=")[2]
        start_response("200 OK", [("Content-Type", "text/plain")])
        return stream(gate)
    return text(start_response, "hello\n")


def stream(gate):
    yield b"first\n"
    deadline = time.monotonic() + 20
    while not os.path.exists(gate):
        if time.monotonic() > deadline:
            yield b"gate never opened\n"
            return
        time.sleep(0.01)
    yield b"second\n"


def text(start_response, s):
    body = s.encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]
