"""gunicorn's fork hooks under --preload: a gunicorn.conf.py's pre_fork, post_fork and
post_worker_init, run by the fork server (--hooks LOCATION) where gunicorn's arbiter and
workers would run them. herd's master runs no Python: without a fork server they are only
named in its start-up warning.

The hooks get stand-ins for gunicorn's Arbiter and Worker with the attributes hooks use:
server.pid, server.log, server.app (the app's spec); worker.pid, worker.ppid, worker.age
(herd's worker id, as gunicorn's age counts workers), worker.id, worker.alive,
worker.booted, worker.log. The log methods (debug, info, warning, error, critical,
exception) write to the process's stderr, hence to herd's log. docs/protocol.md.
"""

import importlib
import os
import runpy
import traceback

from .process import _log

# The hooks herd runs, and where: pre_fork in the fork server before each fork, post_fork
# and post_worker_init in the worker after it (the app is imported already).
HOOKS = ('pre_fork', 'post_fork', 'post_worker_init')


class HookError(Exception):
    """A hook raised: args[0] names it, args[1] is the traceback."""


class _Log(object):
    """gunicorn's logger as hooks call it."""

    def _write(self, level, msg, *args):
        try:
            text = msg % args if args else str(msg)
        except Exception:
            text = '%s %r' % (msg, args)
        _log('%s: %s' % (level, text))

    def debug(self, msg, *args, **kw):
        self._write('debug', msg, *args)

    def info(self, msg, *args, **kw):
        self._write('info', msg, *args)

    def warning(self, msg, *args, **kw):
        self._write('warning', msg, *args)

    warn = warning

    def error(self, msg, *args, **kw):
        self._write('error', msg, *args)

    def critical(self, msg, *args, **kw):
        self._write('critical', msg, *args)

    def exception(self, msg, *args, **kw):
        self._write('error', msg, *args)
        _log(traceback.format_exc().rstrip('\n'))


class Server(object):
    """The stand-in for gunicorn's Arbiter: the fork server."""

    def __init__(self, app):
        self.pid = os.getpid()
        self.app = app
        self.log = _Log()


class Worker(object):
    """The stand-in for gunicorn's Worker. pid is None in pre_fork (not forked yet)."""

    def __init__(self, worker_id, pid=None, ppid=None):
        self.id = self.age = worker_id
        self.pid = pid
        self.ppid = ppid
        self.alive = True
        self.booted = False
        self.log = _Log()


def load(location):
    """The hook functions a gunicorn config file defines: LOCATION is PATH, file:PATH or
    python:MODULE, as gunicorn's -c takes it. The file runs as the module __config__, as
    gunicorn (and herd's config reader) run it. Raises whatever the file raises."""
    if location.startswith('python:'):
        names = vars(importlib.import_module(location[len('python:'):]))
    else:
        path = location[len('file:'):] if location.startswith('file:') else location
        names = runpy.run_path(path, run_name='__config__')
    return {name: names[name] for name in HOOKS if callable(names.get(name))}


class Hooks(object):
    """The loaded hooks of one fork server; each call raises HookError when the hook does."""

    def __init__(self, funcs, app):
        self.funcs = funcs
        self.server = Server(app)

    def _call(self, name, *args):
        f = self.funcs.get(name)
        if f is None:
            return
        try:
            f(*args)
        except BaseException as e:
            raise HookError('%s hook failed: %s: %s' % (name, type(e).__name__, e),
                            traceback.format_exc())

    def pre_fork(self, worker_id):
        """In the fork server, before the worker's fork."""
        self._call('pre_fork', self.server, Worker(worker_id))

    def after_fork(self, worker_id):
        """In the worker, once forked: post_fork, then post_worker_init."""
        worker = Worker(worker_id, os.getpid(), os.getppid())
        self._call('post_fork', self.server, worker)
        worker.booted = True
        self._call('post_worker_init', worker)
