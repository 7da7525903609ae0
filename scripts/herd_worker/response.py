"""The response: start_response and its checks of the status and headers, the framing of
the body for the connection's mode, wsgi.file_wrapper and sendfile, and the 500 an app's
error gets. How each mode frames a response: docs/protocol.md.
"""

import os
import re
import stat

from .process import _log, _log_exc

# Larger response pieces are sent with their own sendall instead of being joined (copied).
JOIN_LIMIT = 65536

_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+\Z").match
# Control bytes other than HTAB are refused, CR, LF and NUL first among them: the master's
# parser refuses a head with any (a 502), and this way the app's log says which header.
_BAD_VALUE = re.compile(r'[\x00-\x08\x0a-\x1f\x7f]').search
_STATUS = re.compile(r'[1-5][0-9]{2} [^\x00-\x08\x0a-\x1f\x7f]*\Z').match
_HOP_BY_HOP = frozenset((
    'connection', 'keep-alive', 'proxy-authenticate', 'proxy-authorization', 'te',
    'trailer', 'trailers', 'transfer-encoding', 'upgrade'))
_SPECIAL = _HOP_BY_HOP | {'content-length'}

# Body framings.
_NOBODY, _RAW, _COUNT, _CHUNKED = 0, 1, 2, 3
# What iter() gives for a list or a tuple: next() on them runs no app code.
_SEQUENCE_ITERATORS = (type(iter([])), type(iter(())))

_ERROR_BODY = b'Internal Server Error\n'


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
# wsgi.file_wrapper

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
