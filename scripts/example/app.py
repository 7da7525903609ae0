"""The example app that `make run` serves and the end-to-end tests use.

Stdlib only, so it runs under any python3. Routes:
  GET  /            hello
  POST /echo        the request body back, same bytes
  GET  /stream      a generator response in parts (no Content-Length: streamed)
  GET  /boom        raises: the client gets a 500 and the worker keeps serving
  GET  /sleep?s=N   sleeps N seconds (float) before answering
  GET  /pid         the worker's process id
  POST /count       reads the body in 64 KiB parts: its length and sha256, not the body
  anything else     404
"""

import hashlib
import os
import time


def app(environ, start_response):
    path = environ.get("PATH_INFO", "")
    method = environ["REQUEST_METHOD"]
    if path == "/":
        body = b"Hello from herd!\n"
        start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
        return [body]
    if path == "/echo" and method == "POST":
        data = environ["wsgi.input"].read()
        start_response("200 OK", [("Content-Type", "application/octet-stream"),
                                  ("Content-Length", str(len(data)))])
        return [data]
    if path == "/stream":
        start_response("200 OK", [("Content-Type", "text/plain")])
        return stream_parts(int(query(environ).get("n", "5")), float(query(environ).get("gap", "0.05")))
    if path == "/count" and method in ("POST", "PUT"):
        digest, length, stream = hashlib.sha256(), 0, environ["wsgi.input"]
        while True:
            part = stream.read(65536)
            if not part:
                break
            digest.update(part)
            length += len(part)
        body = ("%d %s\n" % (length, digest.hexdigest())).encode()
        start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
        return [body]
    if path == "/boom":
        raise RuntimeError("boom: the example app fails on purpose")
    if path == "/sleep":
        time.sleep(float(query(environ).get("s", "1")))
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"slept\n"]
    if path == "/pid":
        body = str(os.getpid()).encode()
        start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
        return [body]
    body = b"Not Found\n"
    start_response("404 Not Found", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]


def stream_parts(n, gap):
    for i in range(n):
        yield ("part %d\n" % i).encode()
        time.sleep(gap)


def query(environ):
    out = {}
    for pair in environ.get("QUERY_STRING", "").split("&"):
        if "=" in pair:
            k, v = pair.split("=", 1)
            out[k] = v
    return out


application = app
