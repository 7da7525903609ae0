"""The app of TestRequestsRunOnceUnderKills (server/pipeline_test.go). Stdlib only.

POST /do with an X-Id header appends the id to the file named by PIPE_LOG (one line each,
O_APPEND: whole lines even from several processes) and answers "ID PID". Fast on purpose:
many requests are in flight and queued at each kill.
"""

import os

_log = os.open(os.environ["PIPE_LOG"], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)


def app(environ, start_response):
    rid = environ.get("HTTP_X_ID", "")
    environ["wsgi.input"].read()
    os.write(_log, (rid + "\n").encode())
    body = ("%s %d" % (rid, os.getpid())).encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]
