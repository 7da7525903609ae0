# A gunicorn config file with the fork hooks, for --preload's tests: each hook records that
# it ran, and where, in the app's HOOKS list (the app is imported before any fork).
import os
import sys

preload_app = True


def _record(what):
    app = sys.modules.get('preloadapp')
    if app is not None:
        app.HOOKS.append(what)


def pre_fork(server, worker):
    _record('pre_fork:%s:%s' % (server.pid == os.getpid(), worker.pid))


def post_fork(server, worker):
    server.log.info('post_fork of worker %s (pid %s)', worker.age, worker.pid)
    _record('post_fork:%s:%s' % (worker.pid == os.getpid(), worker.ppid == server.pid))


def post_worker_init(worker):
    _record('post_worker_init:%s' % (worker.pid == os.getpid()))
