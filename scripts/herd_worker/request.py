"""The request as the app sees it: the environ, decoded from the uwsgi vars block the master
sends (both forms, modifier2 1 and 2), and wsgi.input, which never reads past the body. The
vars and what the worker makes of them: docs/protocol.md.
"""

import io
import sys

from .response import FileWrapper

# Request bodies up to this size are read at once into a BytesIO (C-fast for the app, no
# drain needed); larger ones are streamed through a bounded reader.
SMALL_BODY = 65536
READ_BUFFER = 65536


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
# wsgi.input

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
