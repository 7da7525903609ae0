"""The worker's start-up: command line, listening socket, the app's import, then the
serving loop; and for now the environ, wsgi.input and the response.

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

# Request bodies up to this size are read at once into a BytesIO (C-fast for the app, no
# drain needed); larger ones are streamed through a bounded reader.
SMALL_BODY = 65536
# Larger response pieces are sent with their own sendall instead of being joined (copied).
JOIN_LIMIT = 65536
READ_BUFFER = 65536

_threads = 1
_busy = [0]            # per serving slot: 1 while a request is in flight
_stopping = False      # SIGTERM received
_serving = False       # the app is imported; SIGTERM now waits for requests in flight
_done = threading.Event()   # threaded mode: the main thread exits when set
_exit_code = EXIT_OK


# ---------------------------------------------------------------------------------------
# wsgi.input and wsgi.file_wrapper

class _EmptyInput(object):
    """wsgi.input for requests without a body: stateless, shared by all requests."""
    __slots__ = ()

    def read(self, size=-1):
        return b''

    def readline(self, size=-1):
        return b''

    def readlines(self, hint=-1):
        return []

    def __iter__(self):
        return iter(())

    def close(self):
        pass


_EMPTY_INPUT = _EmptyInput()


class _BodyRaw(io.RawIOBase):
    """A large request body as a raw stream for io.BufferedReader: first the part already
    received with the request, then the socket, and never a byte past the body's end, so
    that the buffered reader cannot take the start of the next request."""

    def __init__(self, received, recv_into, left):
        self._received = memoryview(received)   # body bytes received with the request
        self._recv_into = recv_into
        self._left = left       # body bytes still in the socket

    def readable(self):
        return True

    def readinto(self, b):
        received = self._received
        if received:
            n = min(len(b), len(received))
            b[:n] = received[:n]
            self._received = received[n:]
            return n
        n = min(len(b), self._left)
        if n <= 0:
            return 0
        n = self._recv_into(b, n)
        self._left = self._left - n if n else 0     # 0: the peer closed
        return n


class Input(object):
    """wsgi.input for a large body: reads through a buffered reader of the body
    (_BodyRaw) and never past CONTENT_LENGTH, so the keep-alive framing survives an app
    that reads too much."""
    __slots__ = ('_read', '_readline', 'left')

    def __init__(self, rfile, length):
        self._read = rfile.read
        self._readline = rfile.readline
        self.left = length

    def read(self, size=-1):
        left = self.left
        if left <= 0:
            return b''
        if size is None or size < 0 or size > left:
            size = left
        data = self._read(size)
        # A short read means EOF: the peer went away, nothing more will come.
        self.left = left - len(data) if len(data) == size else 0
        return data

    def readline(self, size=-1):
        left = self.left
        if left <= 0:
            return b''
        if size is None or size < 0 or size > left:
            size = left
        data = self._readline(size)
        if data:
            self.left = left - len(data)
        else:
            self.left = 0
        return data

    def readlines(self, hint=-1):
        lines = []
        total = 0
        while True:
            line = self.readline()
            if not line:
                return lines
            lines.append(line)
            total += len(line)
            if hint is not None and 0 < hint <= total:
                return lines

    def __iter__(self):
        return self

    def __next__(self):
        line = self.readline()
        if not line:
            raise StopIteration
        return line

    def close(self):
        pass

    def drain(self):
        """Discard the unread rest of the body. False when the peer closed first."""
        read = self._read
        left = self.left
        while left > 0:
            n = len(read(left if left < READ_BUFFER else READ_BUFFER))
            if not n:
                self.left = 0
                return False
            left -= n
        self.left = 0
        return True


class FileWrapper(object):
    """wsgi.file_wrapper. Returned by the app, a regular file is sent with os.sendfile."""

    def __init__(self, filelike, blksize=8192):
        self.filelike = filelike
        self.blksize = blksize

    def __iter__(self):
        return self

    def __next__(self):
        data = self.filelike.read(self.blksize)
        if data:
            return data
        raise StopIteration

    def close(self):
        close = getattr(self.filelike, 'close', None)
        if close is not None:
            close()


def _file_span(filelike):
    """(fd, offset, bytes left) when filelike is a regular file usable with sendfile."""
    try:
        fd = filelike.fileno()
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            return None
        tell = getattr(filelike, 'tell', None)
        pos = tell() if tell is not None else os.lseek(fd, 0, os.SEEK_CUR)
    except (AttributeError, OSError, ValueError, TypeError):
        return None
    if type(fd) is not int or type(pos) is not int:
        return None
    return fd, pos, max(0, st.st_size - pos)


def _sendfile(out_fd, in_fd, offset, count):
    """Send up to count bytes of in_fd from offset; returns how many went (fewer at EOF)."""
    done = 0
    sendfile = os.sendfile
    while done < count:
        n = sendfile(out_fd, in_fd, offset + done, min(count - done, 1 << 30))
        if not n:
            break
        done += n
    return done


# ---------------------------------------------------------------------------------------
# environ

def environ_template(multithread):
    """The environ every request starts from: CGI defaults for vars a front end may omit,
    and the per-process wsgi.* entries (wsgi.input is added per request)."""
    return {
        'REQUEST_METHOD': 'GET',
        'SCRIPT_NAME': '',
        'PATH_INFO': '',
        'QUERY_STRING': '',
        'SERVER_NAME': 'localhost',
        'SERVER_PORT': '80',
        'SERVER_PROTOCOL': 'HTTP/1.1',
        'wsgi.version': (1, 0),
        'wsgi.url_scheme': 'http',
        'wsgi.errors': sys.stderr,
        'wsgi.multithread': bool(multithread),
        'wsgi.multiprocess': True,
        'wsgi.run_once': False,
        'wsgi.input_terminated': True,
        'wsgi.file_wrapper': FileWrapper,
    }


def make_environ(block, template):
    """Decode a uwsgi vars block into a new environ (a copy of template); no I/O.

    Returns (environ, content_length). Keys and values are decoded as latin-1 (PEP 3333).
    UWSGI_* vars are dropped (UWSGI_SCHEME sets wsgi.url_scheme), empty CONTENT_TYPE and
    CONTENT_LENGTH are removed. Raises ValueError for a malformed block or CONTENT_LENGTH.
    wsgi.input is not set.
    """
    # Copying a template that holds the wsgi.* keys already saves an update and a resize.
    env = template.copy()
    # One latin-1 decode of the whole block; lengths come from the bytes, keys and values
    # are slices of the str at the same offsets (latin-1 maps byte i to char i).
    s = block.decode('latin-1')
    n = len(block)
    i = 0
    try:
        while i < n:
            j = i + 2 + (block[i] | block[i + 1] << 8)
            k = s[i + 2:j]
            i = j + 2 + (block[j] | block[j + 1] << 8)
            if i > n:
                raise ValueError('uwsgi var value runs past the vars block')
            env[k] = s[j + 2:i]
    except IndexError:
        raise ValueError('uwsgi var length runs past the vars block')
    return _finish_environ(env, s, template)


def make_environ_nul(block, template):
    """make_environ for a modifier2 = 2 block: every key and value joined by one NUL, none
    after the last (KEY\\0VALUE\\0KEY\\0VALUE), empty for no vars. Same result, same
    errors, and an odd number of fields is malformed."""
    env = template.copy()
    s = block.decode('latin-1')
    if s:
        # All in C: one decode, one split, one update; that is the point of this encoding.
        # The master's 17 typical vars: 1.8 us in all (Python 3.11; 2.7 on 3.8) where
        # make_environ takes 3.9 (7.2).
        fields = s.split('\0')
        if len(fields) & 1:
            raise ValueError('odd number of fields in a NUL-joined vars block')
        it = iter(fields)
        env.update(zip(it, it))
    return _finish_environ(env, s, template)


def _finish_environ(env, s, template):
    """What both decoders do once the vars are in env; s is the whole block as a str, so
    that one scan of it tells whether a rarer rule can apply at all."""
    if 'wsgi.' in s:    # a var must not pose as one of the server's keys
        for k in [k for k in env if k[:5] == 'wsgi.']:
            if k in template:
                env[k] = template[k]
            else:       # wsgi.input, or a key the server does not set
                del env[k]
    scheme = None
    i = s.find('UWSGI_')
    if i >= 0:
        # The master sends UWSGI_SCHEME on every request: pop it, and scan every key only
        # when the block holds another 'UWSGI_' (another such var, or a value with it).
        # Two finds read the block once; 'in' then count() read it up to twice.
        scheme = env.pop('UWSGI_SCHEME', None)
        if scheme is None or s.find('UWSGI_', i + 6) >= 0:
            for k in [k for k in env if k[:6] == 'UWSGI_']:
                del env[k]
    if scheme:
        env['wsgi.url_scheme'] = scheme
    else:
        https = env.get('HTTPS')
        if https and https.lower() in ('on', '1', 'true'):
            env['wsgi.url_scheme'] = 'https'
    if env.get('CONTENT_TYPE', None) == '':
        del env['CONTENT_TYPE']
    cl = env.get('CONTENT_LENGTH')
    if cl is None:
        return env, 0
    if cl.isdigit() and cl.isascii():
        return env, int(cl)
    if cl == '':
        del env['CONTENT_LENGTH']
        return env, 0
    raise ValueError('bad CONTENT_LENGTH %r' % cl)


# ---------------------------------------------------------------------------------------
# response

_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+\Z").match
# Control bytes other than HTAB are refused, CR, LF and NUL first among them: the master's
# parser refuses a head with any (a 502), and this way the app's log says which header.
_BAD_VALUE = re.compile(r'[\x00-\x08\x0a-\x1f\x7f]').search
_STATUS = re.compile(r'[1-5][0-9]{2} [^\x00-\x08\x0a-\x1f\x7f]*\Z').match
_PROTOCOL = re.compile(r'HTTP/[0-9](?:\.[0-9])?\Z').match
_HOP_BY_HOP = frozenset((
    'connection', 'keep-alive', 'proxy-authenticate', 'proxy-authorization', 'te',
    'trailer', 'trailers', 'transfer-encoding', 'upgrade'))
_SPECIAL = _HOP_BY_HOP | {'content-length'}

# Connection modes (modifier2) and body framings.
_PLAIN, _KEEPALIVE, _KEEPALIVE_NUL = 0, 1, 2
_NOBODY, _RAW, _COUNT, _CHUNKED = 0, 1, 2, 3
# What iter() gives for a list or a tuple: next() on them runs no app code.
_SEQUENCE_ITERATORS = (type(iter([])), type(iter(())))

_ERROR_BODY = b'Internal Server Error\n'
_BAD_REQUEST = (b'HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain\r\n'
                b'Content-Length: 12\r\nConnection: close\r\n\r\nBad Request\n')


# Validated heads, status lines and header lines, by the app's own str/tuple objects: most
# responses repeat a few of them, and a hit skips the regexes and the encoding. Bounded:
# cleared when full (values such as Location or Set-Cookie may be unique per response).
_heads = {}
_status_lines = {}
_header_lines = {}
_CACHE_MAX = 1024


def _status_line(status):
    if not isinstance(status, str):
        raise TypeError('status must be str, not %s' % type(status).__name__)
    if not _STATUS(status):
        raise ValueError('invalid status %r: want "NNN Reason"' % (status,))
    line = ((status + '\r\n').encode('latin-1'),
            status[0] == '1' or status[:3] in ('204', '304'))
    if len(_status_lines) >= _CACHE_MAX:
        _status_lines.clear()
    _status_lines[status] = line
    return line


def build_head(prefix, status, headers, keepalive):
    """Validate start_response's arguments; no I/O.

    prefix is the protocol and a space, as bytes. Returns (head, content_length, bodyless):
    head is the encoded status line and header lines without the final blank line;
    content_length is the app's (int) or None; bodyless is True for 1xx, 204 and 304.
    Hop-by-hop headers are dropped when keepalive. Raises TypeError/ValueError when invalid.
    """
    # A response with the same status and headers as an earlier one costs one lookup (0.1
    # us where the lines' loop takes 0.3 and a Content-Length 0.6 more). Keyed by value:
    # the app builds a new list each time. Only a list or tuple: tuple() of an iterator
    # would consume it. A list pair is unhashable and goes the long way.
    kind = type(headers)
    if kind is list or kind is tuple:
        try:
            key = (prefix, status, keepalive, tuple(headers))
            built = _heads.get(key)
        except TypeError:
            key = built = None
        if built is not None:
            return built
        built = _build_head(prefix, status, headers, keepalive)
        if key is not None:
            if len(_heads) >= _CACHE_MAX:
                _heads.clear()
            _heads[key] = built
        return built
    return _build_head(prefix, status, headers, keepalive)


def _build_head(prefix, status, headers, keepalive):
    line = _status_lines.get(status) or _status_line(status)
    parts = [prefix, line[0]]
    append = parts.append
    cached = _header_lines.get
    cl = None
    if not isinstance(headers, (list, tuple)):
        raise TypeError('headers must be a list, not %s' % type(headers).__name__)
    for header in headers:
        try:
            h = cached(header)
        except TypeError:   # not hashable: a list pair, or garbage
            h = None
        if h is not None:
            append(h)
            continue
        name, value = header
        if not _TOKEN(name) or _BAD_VALUE(value):
            raise ValueError('invalid header %r: %r' % (name, value))
        lname = name.lower()
        if lname in _SPECIAL:
            if lname == 'content-length':
                v = value.strip()
                if not (v.isdigit() and v.isascii()):
                    raise ValueError('invalid Content-Length %r' % (value,))
                v = int(v)
                if cl is not None:
                    if cl != v:
                        raise ValueError('conflicting Content-Length headers')
                    continue
                cl = v
            elif keepalive:
                continue    # the master owns the client connection
            append((name + ': ' + value + '\r\n').encode('latin-1'))
            continue
        h = (name + ': ' + value + '\r\n').encode('latin-1')
        if type(header) is tuple:
            if len(_header_lines) >= _CACHE_MAX:
                _header_lines.clear()
            _header_lines[header] = h
        append(h)
    return b''.join(parts), cl, line[1]


def error_response(prefix, head_only):
    """The 500 answer to an app that failed before sending its headers."""
    head = prefix + (b'500 Internal Server Error\r\nContent-Type: text/plain\r\n'
                     b'Content-Length: %d\r\n\r\n' % len(_ERROR_BODY))
    return head if head_only else head + _ERROR_BODY


def _framing(head, app_cl, bodyless, keepalive, length):
    """How a response's body goes out, decided when its head does: (bytes to send before
    the body, mode, body bytes owed in _COUNT mode). length is the whole body's size when
    it is known now, else None."""
    if head is None:
        raise AssertionError('start_response() was not called')
    if bodyless:
        return head + b'\r\n', _NOBODY, 0
    if not keepalive:
        return head + b'\r\n', _RAW, 0
    if app_cl is not None:
        return head + b'\r\n', _COUNT, app_cl
    if length is not None:
        return head + b'Content-Length: %d\r\n\r\n' % length, _COUNT, length
    return head + b'Transfer-Encoding: chunked\r\n\r\n', _CHUNKED, 0


def _run_app(app, env, conn, sendall, keepalive, prefix, head_only):
    """Call the app for one request and send its response.

    Returns True when the response went out complete and the connection is intact."""
    # Two closures (start_response and write) share these with the body below: closures
    # and their cells are created per request, so every helper that can be a plain
    # function is one (_framing), and sendall errors are caught where they happen.
    head = None         # from start_response: status line + header lines
    app_cl = None       # the app's Content-Length
    bodyless = head_only
    sent = False        # headers sent
    mode = _NOBODY
    left = 0            # _COUNT: body bytes still owed
    dead = False        # the connection failed under us: an OSError of our sendall
    truncated = False

    def start_response(status, headers, exc_info=None):
        nonlocal head, app_cl, bodyless
        if exc_info:
            try:
                if sent:
                    raise exc_info[1].with_traceback(exc_info[2])
            finally:
                exc_info = None
        elif head is not None:
            raise AssertionError('start_response() called again without exc_info')
        head, app_cl, nobody = build_head(prefix, status, headers, keepalive)
        bodyless = head_only or nobody
        return write

    def write(data):
        nonlocal sent, mode, left, truncated, dead
        if type(data) is not bytes:
            if not isinstance(data, (bytes, bytearray, memoryview)):
                raise TypeError('response body must be bytes, not %s' % type(data).__name__)
            data = bytes(data)
        if not data:
            return      # PEP 3333: headers wait for the first non-empty chunk
        if sent:
            out = b''
        else:
            out, mode, left = _framing(head, app_cl, bodyless, keepalive, None)
            sent = True
        if mode == _COUNT:
            if len(data) > left:
                if not truncated:
                    truncated = True
                    _log('%s %s: response body longer than its Content-Length, truncated'
                         % (env.get('REQUEST_METHOD'), env.get('PATH_INFO')))
                data = data[:left]
            left -= len(data)
        elif mode == _NOBODY:
            data = b''
        try:
            if mode == _CHUNKED:
                n = len(data)
                if n > JOIN_LIMIT:
                    sendall(out + b'%x\r\n' % n)
                    sendall(data)
                    sendall(b'\r\n')
                else:
                    sendall(out + b'%x\r\n' % n + data + b'\r\n')
            elif len(data) > JOIN_LIMIT:
                if out:
                    sendall(out)
                sendall(data)
            elif out or data:
                sendall(out + data)
        except OSError:
            dead = True
            raise

    ok = True
    try:
        result = app(env, start_response)
        try:
            rtype = type(result)
            span = None
            if rtype is list or rtype is tuple:
                blocks = result
                whole = True
            elif rtype is FileWrapper and not sent and head is not None:
                span = _file_span(result.filelike)
                blocks = iter(result) if span is None else None
                whole = False
            else:
                blocks = iter(result)
                # An iterator over a list (Django's HttpResponse) runs no app code to make
                # its next block: taking them all now delays none (PEP 3333), and the body
                # goes out whole, one sendall instead of a chunk and the last chunk.
                whole = type(blocks) in _SEQUENCE_ITERATORS
            if whole and not sent:
                # The whole body is here: one sendall with the head, Content-Length known.
                body = b''.join(blocks)
                out, mode, left = _framing(head, app_cl, bodyless, keepalive, len(body))
                sent = True
                if mode == _COUNT:
                    if len(body) > left:
                        _log('%s %s: response body longer than its Content-Length, '
                             'truncated' % (env.get('REQUEST_METHOD'), env.get('PATH_INFO')))
                        body = body[:left]
                    left -= len(body)
                elif mode == _NOBODY:
                    body = b''
                try:
                    if len(body) > JOIN_LIMIT:
                        sendall(out)
                        sendall(body)
                    else:
                        sendall(out + body)
                except OSError:
                    dead = True
                    raise
            elif span is not None:
                fd, offset, size = span
                out, mode, left = _framing(head, app_cl, bodyless, keepalive,
                                           size if app_cl is None else None)
                sent = True
                try:
                    sendall(out)
                    if mode != _NOBODY:
                        count = left if mode == _COUNT else (
                            size if app_cl is None else min(size, app_cl))
                        n = _sendfile(conn.fileno(), fd, offset, count)
                        if mode == _COUNT:
                            left -= n
                except OSError:
                    dead = True
                    raise
            else:
                for data in blocks:
                    write(data)
                try:
                    if not sent:
                        out, mode, left = _framing(head, app_cl, bodyless, keepalive, 0)
                        sent = True
                        sendall(out)
                    elif mode == _CHUNKED:
                        sendall(b'0\r\n\r\n')
                except OSError:
                    dead = True
                    raise
            if mode == _COUNT and left:
                _log('%s %s: response body shorter than its Content-Length by %d bytes, '
                     'closing the connection'
                     % (env.get('REQUEST_METHOD'), env.get('PATH_INFO'), left))
                ok = False
        finally:
            if rtype is not list and rtype is not tuple:
                close = getattr(result, 'close', None)
                if close is not None:
                    close()
    except Exception:
        if dead:
            return False    # the peer went away: nothing to tell anyone
        _log_exc('error in app for %s %s' % (env.get('REQUEST_METHOD'), env.get('PATH_INFO')))
        if sent:
            return False    # broken framing tells the master the response failed
        try:
            sendall(error_response(prefix, head_only))
        except OSError:
            return False
        return True
    return ok


# ---------------------------------------------------------------------------------------
# serving

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
