"""The app of TestWorkerDeathWithForkedChild (server/forkchild_test.go). Stdlib only.

  /fork  forks a child that lives on (an app's background process, a daemonised helper):
         it inherits every descriptor of the worker, its link to the master, its listening
         socket, its control channel and its output pipes, and holds them until killed.
         Answers the child's pid.
  else   200 "ok <worker pid>"
"""

import os
import time


def app(environ, start_response):
    if environ.get("PATH_INFO") == "/fork":
        pid = os.fork()
        if pid == 0:
            # The child: no exec, no close; it just sits on what it inherited.
            while True:
                time.sleep(3600)
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [str(pid).encode()]
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [("ok %d" % os.getpid()).encode()]
