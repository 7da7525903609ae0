"""The serving loops: the connection loop that reads each request off the master's link and
answers it (the hot path: every name it uses per request is a local or this module's), the
accept loop around it, in the main thread or in one thread per slot (--threads), and SIGTERM.
The packets and the connection modes: docs/protocol.md.
"""

import errno
import io
import re
import socket
import threading

from .process import EXIT_FATAL, EXIT_OK, _hard_exit, _log, _log_exc
from .request import (READ_BUFFER, SMALL_BODY, _EMPTY_INPUT, Input, _BodyRaw, make_environ,
                      make_environ_nul)
from .response import _run_app

_threads = 1
_busy = [0]            # per serving slot: 1 while a request is in flight
_stopping = False      # SIGTERM received
_serving = False       # the app is imported; SIGTERM now waits for requests in flight
_done = threading.Event()   # threaded mode: the main thread exits when set
_exit_code = EXIT_OK

# Connection modes (modifier2).
_PLAIN, _KEEPALIVE, _KEEPALIVE_NUL = 0, 1, 2
# What a plain-mode answer's status line may start with: SERVER_PROTOCOL, when it is one.
_PROTOCOL = re.compile(r'HTTP/[0-9](?:\.[0-9])?\Z').match
_BAD_REQUEST = (b'HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain\r\n'
                b'Content-Length: 12\r\nConnection: close\r\n\r\nBad Request\n')


def begin(threads):
    """The app is imported: from now on a SIGTERM waits for the requests in flight."""
    global _threads, _busy, _serving
    _threads = threads
    _busy = [0] * threads
    _serving = True


def loop(lsock, app, template):
    """Serve on the listening socket until the process is to end; returns its exit code."""
    if _stopping:
        raise SystemExit(EXIT_OK)
    if _threads == 1:
        try:
            _accept_loop(lsock, app, template, 0)
        except OSError as e:
            _log('listening socket failed: %s' % e)
            _hard_exit(EXIT_FATAL)
        return EXIT_OK
    for slot in range(_threads):
        threading.Thread(target=_thread_main, args=(lsock, app, template, slot),
                         name='herd-slot-%d' % slot, daemon=True).start()
    _done.wait()
    return _exit_code


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
