"""The worker's start-up, from the command line to the serving loop: the arguments, the
control channel, the listening socket, sys.path and the app's import, the ready message; and
how the process leaves; a fork server's start (forkserver.py) and its workers' (serve_forked). run() is what a start-up
file calls. The command line, the messages and the exit codes: docs/protocol.md.
"""

import argparse
import atexit
import faulthandler
import importlib
import os
import re
import signal
import socket
import stat
import sys
import traceback

from . import process, serve
from .process import (EXIT_BOOT_ERROR, EXIT_FATAL, EXIT_OK,
                      _boot_fail, _hard_exit, _inherited_socket, _log, _send_control)
from .interface import interface_of
from .request import environ_template


class _ArgumentParser(argparse.ArgumentParser):
    def error(self, message):
        self.print_usage(sys.stderr)
        sys.stderr.write('%s: error: %s\n' % (self.prog, message))
        sys.exit(EXIT_BOOT_ERROR)


_APP_SPEC = re.compile(r'[A-Za-z_][\w.]*(?::[A-Za-z_][\w.]*)?\Z')


def _parse_args(argv, listening=True):
    """The worker's command line. listening=False: a fork server's, which has no socket."""
    p = _ArgumentParser(prog='herd-worker', description='herd WSGI worker')
    p.add_argument('--app', required=True, help='MODULE[:CALLABLE]')
    p.add_argument('--listen-fd', type=int)
    p.add_argument('--bind')
    p.add_argument('--control-fd', type=int)
    p.add_argument('--threads', type=int, default=1)
    p.add_argument('--worker-id', type=int, default=0)
    p.add_argument('--chdir')
    p.add_argument('--pythonpath', action='append', default=[])
    p.add_argument('--interface', choices=('auto', 'wsgi', 'asgi'), default='auto')
    p.add_argument('--worker-connections', type=int, default=1000)
    args = p.parse_args(argv)
    if listening and (args.listen_fd is None) == (args.bind is None):
        p.error('exactly one of --listen-fd and --bind is required')
    if args.threads < 1:
        p.error('--threads must be >= 1')
    if args.worker_connections < 1:
        p.error('--worker-connections must be >= 1')
    if not _APP_SPEC.match(args.app):
        p.error('--app must look like MODULE:CALLABLE, not %r' % args.app)
    return args


def _listening_socket(args):
    if args.listen_fd is not None:
        sock = _inherited_socket(args.listen_fd, '--listen-fd')
        try:
            listening = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN)
        except OSError as e:
            _boot_fail('--listen-fd %d unusable: %s' % (args.listen_fd, e))
        if not listening:
            _boot_fail('--listen-fd %d is not a listening socket' % args.listen_fd)
        return sock
    bind = args.bind
    try:
        if bind.startswith('unix:'):
            path = bind[5:]
            try:
                if stat.S_ISSOCK(os.stat(path).st_mode):
                    os.unlink(path)
            except FileNotFoundError:
                pass
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.bind(path)
        else:
            host, _, port = bind.rpartition(':')
            host = host.strip('[]') or '0.0.0.0'
            family = socket.AF_INET6 if ':' in host else socket.AF_INET
            sock = socket.socket(family, socket.SOCK_STREAM)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((host, int(port)))
        sock.listen(1024)
        return sock
    except (OSError, ValueError) as e:
        _boot_fail('cannot listen on %r: %s' % (bind, e))


def _setup_path(args):
    if args.chdir:
        try:
            os.chdir(args.chdir)
        except OSError as e:
            _boot_fail('--chdir: %s' % e)
    cwd = os.getcwd()
    # The start-up file took its own directory off sys.path: no app module comes from there.
    for d in [cwd] + args.pythonpath[::-1]:
        sys.path.insert(0, os.path.abspath(d))


def load_app(spec):
    """Import MODULE[:CALLABLE] and return the callable. Raises on any failure."""
    module, _, name = spec.partition(':')
    name = name or 'application'
    obj = importlib.import_module(module)
    for attr in name.split('.'):
        try:
            obj = getattr(obj, attr)
        except AttributeError:
            raise AttributeError('failed to find attribute %r in %r' % (name, module))
    if not callable(obj):
        raise TypeError('%s:%s is not callable (it is a %s)'
                        % (module, name, type(obj).__name__))
    return obj


def _import_app(spec):
    try:
        return load_app(spec)
    except BaseException as e:
        error = '%s: %s' % (type(e).__name__, e)
        process.app_boot_failed('app_import', error, traceback.format_exc(),
                                'cannot load app %r: %s' % (spec, error))


def _interface(app, args):
    try:
        return interface_of(app, args.interface)
    except TypeError as e:
        process.app_boot_failed('app_import', str(e), 'TypeError: %s\n' % e,
                                'cannot serve app %r: %s' % (args.app, e))


def _line_buffered():
    for f in (sys.stdout, sys.stderr):
        try:
            f.reconfigure(line_buffering=True)
        except Exception:
            pass


def main(argv=None):
    _line_buffered()
    try:
        faulthandler.enable(all_threads=True)
    except Exception:
        pass    # no usable stderr
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, serve._on_sigterm)
    argv = sys.argv[1:] if argv is None else argv
    if '--fork-server-fd' in argv:
        from . import forkserver
        return forkserver.main(argv)
    args = _parse_args(argv)
    process.worker_id = args.worker_id

    if args.control_fd is not None:
        process.start_control(args.control_fd)
    lsock = _listening_socket(args)
    _setup_path(args)
    app = _import_app(args.app)
    return serve_app(args, lsock, app)


def serve_forked(argv, app, after_fork):
    """A worker forked from a fork server, where the app is imported already: argv is its
    whole command line (the descriptors it was handed included); after_fork(worker_id) runs
    the fork hooks. Serves until the process is to end, as main does."""
    args = _parse_args(argv)
    process.worker_id = args.worker_id
    process.start_control(args.control_fd)
    lsock = _listening_socket(args)
    after_fork(args.worker_id)
    return serve_app(args, lsock, app)


def serve_app(args, lsock, app):
    """Say ready on the control channel and serve app on lsock: a WSGI app by the serving
    loops, an ASGI app by the asyncio worker on the framed link (docs/protocol.md), which
    says ready itself once lifespan's startup is done."""
    kind = _interface(app, args)
    if kind != 'wsgi':
        from . import asgi_serve
        serve.begin(1)
        return asgi_serve.run(lsock, app, kind, args.worker_connections)
    template = environ_template(args.threads > 1)
    serve.begin(args.threads)
    _send_control({'event': 'ready', 'pid': os.getpid(),
                   'python': '%d.%d.%d' % sys.version_info[:3]})
    return serve.loop(lsock, app, template)


def _exit(code):
    """Leave like sys.exit, atexit handlers included (an app's last flush), but without
    waiting for non-daemon threads an app may have started: the exit must be prompt."""
    if code is None:
        code = EXIT_OK
    elif not isinstance(code, int):
        _log(str(code))
        code = EXIT_FATAL
    try:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)   # leaving already
        atexit._run_exitfuncs()
    except BaseException:
        pass
    _hard_exit(code)


def run():
    """Run the worker and leave the process: what a start-up file calls after importing
    this module (herd's, or __main__.py in a source checkout)."""
    try:
        _exit(main())
    except SystemExit as e:
        _exit(e.code)
