"""The app of server/dispatch_test.go. Stdlib only.

  /fast          answers at once: "fast PID"
  /slow?s=SECS   sleeps, then answers: a report view among quick ones
  /exit          ends its worker with os._exit(1) mid-request, as a crashing C extension or an
                 app that calls sys.exit in a view would
"""

import os
import time
from urllib.parse import parse_qs


def app(environ, start_response):
    path = environ.get("PATH_INFO", "")
    if path == "/exit":
        os._exit(1)
    if path == "/slow":
        secs = float(parse_qs(environ.get("QUERY_STRING", "")).get("s", ["1"])[0])
        time.sleep(secs)
    body = ("%s %d" % (path.strip("/"), os.getpid())).encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]
