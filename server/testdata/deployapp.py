"""The app of the deployment tests (cmd/herd/deploy_test.go). Stdlib only. Routes:
  GET /          hello
  GET /remote    REMOTE_ADDR:REMOTE_PORT as the app sees them (PROXY protocol tests)
  GET /orphans   leaves N grandchildren behind (double fork), each alive for S seconds, and
                 answers their pids: as PID 1, herd inherits and must reap them
  GET /sleep     sleeps S seconds first
"""

import os
import time


def app(environ, start_response):
    path = environ.get("PATH_INFO", "")
    q = query(environ)
    if path == "/":
        return text(start_response, "hello\n")
    if path == "/remote":
        return text(start_response, "%s:%s" % (environ.get("REMOTE_ADDR"), environ.get("REMOTE_PORT")))
    if path == "/orphans":
        pids = [orphan(float(q.get("s", "1"))) for _ in range(int(q.get("n", "3")))]
        return text(start_response, " ".join(str(p) for p in pids))
    if path == "/sleep":
        time.sleep(float(q.get("s", "1")))
        return text(start_response, "slept\n")
    start_response("404 Not Found", [("Content-Type", "text/plain")])
    return [b"not found\n"]


def orphan(seconds):
    """Double fork: the middle process exits at once, so the grandchild is re-parented to
    PID 1 (no subreaper here), sleeps, and exits to become PID 1's zombie to reap."""
    r, w = os.pipe()
    middle = os.fork()
    if middle == 0:
        os.close(r)
        grandchild = os.fork()
        if grandchild == 0:
            # Let go of the worker's sockets: the orphan must not hold them open.
            os.closerange(3, 4096)
            time.sleep(seconds)
            os._exit(0)
        os.write(w, str(grandchild).encode())
        os._exit(0)
    os.close(w)
    pid = int(os.read(r, 32).decode())
    os.close(r)
    os.waitpid(middle, 0)
    return pid


def text(start_response, s):
    body = s.encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]


def query(environ):
    out = {}
    for pair in environ.get("QUERY_STRING", "").split("&"):
        if "=" in pair:
            k, v = pair.split("=", 1)
            out[k] = v
    return out
