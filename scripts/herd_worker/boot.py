"""The worker's start-up: command line, listening socket, the app's import; and for now the
serving loop.

What it speaks with the master: docs/protocol.md.
"""

import argparse
import atexit
import errno
import faulthandler
import importlib
import io
import os
import re
import signal
import socket
import stat
import sys
import threading
import traceback

from . import process
from .handover import _await_handover
from .process import (EXIT_APP_IMPORT_ERROR, EXIT_BOOT_ERROR, EXIT_FATAL, EXIT_OK,
                      _boot_fail, _hard_exit, _inherited_socket, _log, _log_exc, _send_control)
from .request import (READ_BUFFER, SMALL_BODY, _EMPTY_INPUT, Input, _BodyRaw, environ_template,
                      make_environ, make_environ_nul)
from .response import _run_app

_threads = 1
_busy = [0]            # per serving slot: 1 while a request is in flight
_stopping = False      # SIGTERM received
_serving = False       # the app is imported; SIGTERM now waits for requests in flight
_done = threading.Event()   # threaded mode: the main thread exits when set
_exit_code = EXIT_OK


# ---------------------------------------------------------------------------------------
# serving

# Connection modes (modifier2).
_PLAIN, _KEEPALIVE, _KEEPALIVE_NUL = 0, 1, 2
# What a plain-mode answer's status line may start with: SERVER_PROTOCOL, when it is one.
_PROTOCOL = re.compile(r'HTTP/[0-9](?:\.[0-9])?\Z').match
_BAD_REQUEST = (b'HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain\r\n'
                b'Content-Length: 12\r\nConnection: close\r\n\r\nBad Request\n')


def _bad_request(sendall):
    try:
        sendall(_BAD_REQUEST)
    except OSError:
        pass


def _fill(recv, data, n):
    """data, then what the socket gives, until at least n bytes or the peer closes."""
    parts = [data]
    have = len(data)
    while have < n:
        more = recv(READ_BUFFER)
        if not more:
            break
        parts.append(more)
        have += len(more)
    return b''.join(parts)


def _serve_connection(conn, app, template, slot):
    """Serve requests on one connection until it closes or a request asks to close it."""
    # recv() straight into bytes, and the request's parts are slices of them: the master
    # sends one request at a time, so one recv usually brings all of it. conn.makefile()
    # read(4) then read(size) went through socket.SocketIO.readinto, Python code, for
    # every request: 1.1 us more (Python 3.11).
    recv = conn.recv
    sendall = conn.sendall
    busy = _busy
    environ = make_environ
    environ_nul = make_environ_nul
    run = _run_app
    BytesIO = io.BytesIO
    empty = _EMPTY_INPUT
    buf = b''   # received and not yet used; the next request starts at pos
    pos = 0
    try:
        while True:
            if pos == len(buf):
                buf = recv(READ_BUFFER)
                pos = 0
                if not buf:
                    return      # closed (or died) between requests
            if len(buf) - pos < 4:
                buf = _fill(recv, buf[pos:], 4)
                pos = 0
                if len(buf) < 4:
                    return      # closed (or died) in a header
            size = buf[pos + 1] | buf[pos + 2] << 8
            keepalive = buf[pos + 3]
            if buf[pos] or keepalive > _KEEPALIVE_NUL:
                _bad_request(sendall)
                return
            end = pos + 4 + size
            if len(buf) < end:
                buf = _fill(recv, buf[pos:], 4 + size)
                pos = 0
                end = 4 + size
                if len(buf) < end:
                    _bad_request(sendall)
                    return
            try:
                if keepalive == _KEEPALIVE_NUL:
                    env, cl = environ_nul(buf[pos + 4:end], template)
                else:
                    env, cl = environ(buf[pos + 4:end], template)
            except ValueError:
                _bad_request(sendall)
                return
            busy[slot] = 1
            inp = None
            pos = end + cl
            if not cl:
                env['wsgi.input'] = empty
            elif cl <= SMALL_BODY:
                if len(buf) < pos:
                    buf = _fill(recv, buf[end:], cl)
                    end, pos = 0, cl
                    if len(buf) < pos:
                        return
                env['wsgi.input'] = BytesIO(buf[end:pos])
            else:
                received = buf[end:pos]
                buf, pos = buf[pos:], 0     # b'' unless the whole body came already
                rfile = io.BufferedReader(
                    _BodyRaw(received, conn.recv_into, cl - len(received)), READ_BUFFER)
                env['wsgi.input'] = inp = Input(rfile, cl)
            if keepalive:
                prefix = b'HTTP/1.1 '
            else:
                prefix = env['SERVER_PROTOCOL']
                prefix = (prefix + ' ').encode('latin-1') if _PROTOCOL(prefix) else b'HTTP/1.1 '
            ok = run(app, env, conn, sendall, keepalive, prefix,
                     env['REQUEST_METHOD'] == 'HEAD')
            if ok and inp is not None and inp.left:
                ok = inp.drain()
            busy[slot] = 0
            if _stopping:
                _stop_after_request()
                return
            if not (ok and keepalive):
                return
    finally:
        busy[slot] = 0


def _stop_after_request():
    # SIGTERM came while busy: exit once every slot is idle.
    if _threads == 1:
        raise SystemExit(EXIT_OK)
    if not any(_busy):
        _done.set()


def _accept_loop(lsock, app, template, slot):
    accept = lsock.accept
    tcp = lsock.family != socket.AF_UNIX
    while not _stopping:
        try:
            conn, _ = accept()
        except OSError as e:
            if e.errno in (errno.EINTR, errno.ECONNABORTED, errno.EAGAIN, errno.EPROTO):
                continue
            if e.errno in (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM):
                _log('accept: %s; retrying' % e)
                _done.wait(0.1)
                continue
            raise
        try:
            if tcp:
                conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            _serve_connection(conn, app, template, slot)
        except Exception:
            _log_exc('error serving a connection')
        finally:
            conn.close()


def _thread_main(lsock, app, template, slot):
    global _exit_code
    try:
        _accept_loop(lsock, app, template, slot)
    except SystemExit as e:     # the app called sys.exit(): the process goes
        _exit_code = EXIT_OK if e.code is None else (
            e.code if isinstance(e.code, int) else EXIT_FATAL)
        _done.set()
    except BaseException:
        _log_exc('serving thread %d failed' % slot)
        _exit_code = EXIT_FATAL
        _done.set()


def _on_sigterm(signum, frame):
    global _stopping
    _stopping = True
    if not _serving:
        _hard_exit(EXIT_OK)
    if not any(_busy):
        raise SystemExit(EXIT_OK)
    # else: the slot finishing the last request in flight ends the process


# ---------------------------------------------------------------------------------------
# boot

class _ArgumentParser(argparse.ArgumentParser):
    def error(self, message):
        self.print_usage(sys.stderr)
        sys.stderr.write('%s: error: %s\n' % (self.prog, message))
        sys.exit(EXIT_BOOT_ERROR)


_APP_SPEC = re.compile(r'[A-Za-z_][\w.]*(?::[A-Za-z_][\w.]*)?\Z')


def _parse_args(argv):
    p = _ArgumentParser(prog='herd-worker', description='herd WSGI worker')
    p.add_argument('--app', required=True, help='MODULE[:CALLABLE]')
    p.add_argument('--listen-fd', type=int)
    p.add_argument('--bind')
    p.add_argument('--control-fd', type=int)
    p.add_argument('--threads', type=int, default=1)
    p.add_argument('--worker-id', type=int, default=0)
    p.add_argument('--chdir')
    p.add_argument('--pythonpath', action='append', default=[])
    args = p.parse_args(argv)
    if (args.listen_fd is None) == (args.bind is None):
        p.error('exactly one of --listen-fd and --bind is required')
    if args.threads < 1:
        p.error('--threads must be >= 1')
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
        tb = traceback.format_exc()
        error = ('%s: %s' % (type(e).__name__, e)).replace('\r', ' ').replace('\n', ' ')
        _log('cannot load app %r: %s' % (spec, error))
        if process.control is None:
            sys.stderr.write(tb)
        _send_control({'event': 'boot_error', 'kind': 'app_import', 'error': error,
                       'traceback': tb})
        _hard_exit(EXIT_APP_IMPORT_ERROR)


def _line_buffered():
    for f in (sys.stdout, sys.stderr):
        try:
            f.reconfigure(line_buffering=True)
        except Exception:
            pass


def main(argv=None):
    global _threads, _busy, _serving
    _line_buffered()
    try:
        faulthandler.enable(all_threads=True)
    except Exception:
        pass    # no usable stderr
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, _on_sigterm)
    argv = _await_handover(sys.argv[1:] if argv is None else argv)
    args = _parse_args(argv)
    process.worker_id = args.worker_id
    _threads = args.threads
    _busy = [0] * args.threads

    if args.control_fd is not None:
        process.start_control(args.control_fd)
    lsock = _listening_socket(args)
    _setup_path(args)
    app = _import_app(args.app)

    template = environ_template(args.threads > 1)
    _serving = True
    _send_control({'event': 'ready', 'pid': os.getpid(),
                   'python': '%d.%d.%d' % sys.version_info[:3]})
    if _stopping:
        raise SystemExit(EXIT_OK)
    if args.threads == 1:
        try:
            _accept_loop(lsock, app, template, 0)
        except OSError as e:
            _log('listening socket failed: %s' % e)
            _hard_exit(EXIT_FATAL)
        return EXIT_OK
    for slot in range(args.threads):
        threading.Thread(target=_thread_main, args=(lsock, app, template, slot),
                         name='herd-slot-%d' % slot, daemon=True).start()
    _done.wait()
    return _exit_code


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
