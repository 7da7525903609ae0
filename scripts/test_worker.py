"""Tests for the worker (herd_worker): real worker subprocesses, hand-built uwsgi packets, stdlib only.

Run from the repository root:
    python3 -m unittest discover -s scripts -p 'test_*.py' -v
Micro-benchmark (the decoders and _run_app in process; one worker, keep-alive modes 1 and 2,
hello app):
    python3 scripts/test_worker.py --bench [SECONDS]
"""

import hashlib
import io
import json
import os
import random
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
WORKER = os.path.join(HERE, 'herd_worker')   # run as a directory: its __main__.py
APPS = os.path.join(HERE, 'testapps')

sys.dont_write_bytecode = True
sys.path.insert(0, HERE)
from herd_worker import process, request, response, serve  # noqa: E402  (in-process tests)

WAIT = 10.0     # upper bound for any condition; tests poll, they do not sleep


# ---------------------------------------------------------------------------------------
# the uwsgi side of a client

def encode_vars(pairs):
    """pairs: list of (key, value) str (latin-1) or bytes."""
    out = []
    for k, v in pairs:
        if isinstance(k, str):
            k = k.encode('latin-1')
        if isinstance(v, str):
            v = v.encode('latin-1')
        out.append(struct.pack('<H', len(k)) + k + struct.pack('<H', len(v)) + v)
    return b''.join(out)


def encode_vars_nul(pairs):
    """The modifier2 = 2 vars block: KEY\\0VALUE\\0KEY\\0VALUE, no NUL after the last."""
    return b'\0'.join(x.encode('latin-1') if isinstance(x, str) else x
                       for pair in pairs for x in pair)


def packet(pairs, body=b'', keepalive=True, modifier1=0, mode=None):
    """mode is modifier2: by default 1 (keep-alive), or 0 when not keepalive; mode 2 joins
    the vars with NULs."""
    if mode is None:
        mode = 1 if keepalive else 0
    block = encode_vars_nul(pairs) if mode == 2 else encode_vars(pairs)
    return struct.pack('<BHB', modifier1, len(block), mode) + block + body


def request_vars(path='/', method='GET', body=b'', extra=(), protocol='HTTP/1.1'):
    """What nginx's uwsgi_params send, empty CONTENT_* included."""
    path, _, query = path.partition('?')
    return [
        ('QUERY_STRING', query),
        ('REQUEST_METHOD', method),
        ('CONTENT_TYPE', 'application/octet-stream' if body else ''),
        ('CONTENT_LENGTH', str(len(body)) if body else ''),
        ('REQUEST_URI', path + ('?' + query if query else '')),
        ('PATH_INFO', path),
        ('DOCUMENT_ROOT', '/srv'),
        ('SERVER_PROTOCOL', protocol),
        ('REQUEST_SCHEME', 'http'),
        ('REMOTE_ADDR', '127.0.0.1'),
        ('REMOTE_PORT', '54321'),
        ('SERVER_PORT', '8080'),
        ('SERVER_NAME', 'example.test'),
        ('HTTP_HOST', 'example.test:8080'),
    ] + list(extra)


class Broken(Exception):
    """The response ended before its framing said it would."""


class Response(object):
    def __init__(self, status_line, headers, body):
        self.status_line = status_line
        self.status = int(status_line.split()[1])
        self.headers = headers
        self.body = body

    def header(self, name, default=None):
        for k, v in self.headers:
            if k.lower() == name.lower():
                return v
        return default

    def __repr__(self):
        return '<Response %r %r %r>' % (self.status_line, self.headers, self.body[:80])


def parse_head(f):
    line = f.readline()
    if not line:
        raise EOFError('connection closed before a response')
    if not line.endswith(b'\r\n'):
        raise Broken('truncated status line %r' % line)
    headers = []
    while True:
        h = f.readline()
        if h == b'\r\n':
            break
        if not h.endswith(b'\r\n'):
            raise Broken('truncated headers')
        name, _, value = h[:-2].decode('latin-1').partition(':')
        headers.append((name, value.strip()))
    return line[:-2].decode('latin-1'), headers


def read_response(f, head_request=False):
    """One keep-alive (modifier2 = 1) response: framed by Content-Length or chunked."""
    status_line, headers = parse_head(f)
    r = Response(status_line, headers, b'')
    if head_request or r.status in (204, 304) or r.status < 200:
        return r
    te = r.header('Transfer-Encoding')
    cl = r.header('Content-Length')
    if te is not None:
        if te != 'chunked' or cl is not None:
            raise AssertionError('bad framing in %r' % (headers,))
        parts = []
        while True:
            size_line = f.readline()
            if not size_line.endswith(b'\r\n'):
                raise Broken('chunked body cut at a chunk size')
            size = int(size_line, 16)
            if size == 0:
                if f.readline() != b'\r\n':
                    raise Broken('chunked body cut at the end')
                break
            data = f.read(size + 2)
            if len(data) != size + 2:
                raise Broken('chunked body cut in a chunk')
            assert data.endswith(b'\r\n'), data[-10:]
            parts.append(data[:-2])
        r.body = b''.join(parts)
        r.chunked = True
        return r
    if cl is None:
        raise AssertionError('keep-alive response without framing: %r' % (headers,))
    r.body = f.read(int(cl))
    if len(r.body) != int(cl):
        raise Broken('body cut: %d of %s bytes' % (len(r.body), cl))
    r.chunked = False
    return r


def parse_plain(data):
    """A plain-mode (modifier2 = 0) response: everything up to EOF."""
    head, sep, body = data.partition(b'\r\n\r\n')
    if not sep:
        raise Broken('no end of headers in %r' % data[:200])
    lines = head.decode('latin-1').split('\r\n')
    headers = [tuple(x.strip() for x in l.split(':', 1)) for l in lines[1:]]
    return Response(lines[0], headers, body)


class Conn(object):
    def __init__(self, path, timeout=WAIT, mode=1):
        self.mode = mode        # modifier2 of request()
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        self.sock.connect(path)
        self.f = self.sock.makefile('rb')
        self.senders = []

    def close(self):
        for t in self.senders:
            t.join(WAIT)
        self.f.close()
        self.sock.close()

    def send(self, data):
        while self.senders:     # keep the byte stream in order
            self.senders.pop().join(WAIT)
        if len(data) < 1000000:
            self.sock.sendall(data)
            return
        # A big body goes from a thread: an app that echoes while it reads would deadlock
        # a client that sends everything before reading.
        t = threading.Thread(target=self.sock.sendall, args=(data,), daemon=True)
        t.start()
        self.senders.append(t)

    def request(self, path='/', method='GET', body=b'', extra=()):
        """A keep-alive request and its response."""
        self.send(packet(request_vars(path, method, body, extra), body, mode=self.mode))
        return read_response(self.f, head_request=(method == 'HEAD'))

    def read_to_eof(self):
        chunks = []
        while True:
            try:
                data = self.sock.recv(65536)
            except ConnectionResetError:
                break
            if not data:
                break
            chunks.append(data)
        return b''.join(chunks)

    def at_eof(self):
        """True when the worker closed its end (after any buffered bytes)."""
        try:
            return self.f.read(1) == b''
        except ConnectionResetError:
            return True


def plain_request(path_sock, path='/', method='GET', body=b'', extra=(), protocol='HTTP/1.1'):
    c = Conn(path_sock)
    try:
        c.send(packet(request_vars(path, method, body, extra, protocol), body, keepalive=False))
        return parse_plain(c.read_to_eof())
    finally:
        c.close()


# ---------------------------------------------------------------------------------------
# worker processes

def poll(cond, timeout=WAIT, interval=0.005):
    deadline = time.monotonic() + timeout
    while True:
        v = cond()
        if v:
            return v
        if time.monotonic() > deadline:
            return v
        time.sleep(interval)


class Worker(object):
    """A worker subprocess bound to a unix socket in a private temp dir."""

    def __init__(self, app='fixture:app', args=(), control=False, bind=True, pass_fds=(),
                 wait=True, chdir=APPS, env=None):
        self.tmp = tempfile.mkdtemp(prefix='herd-w-')
        self.path = os.path.join(self.tmp, 'w.sock')
        self.stderr_path = os.path.join(self.tmp, 'stderr')
        cmd = [sys.executable, WORKER, '--app', app]
        if chdir:
            cmd += ['--chdir', chdir]
        if bind:
            cmd += ['--bind', 'unix:' + self.path]
        fds = list(pass_fds)
        self.control = None
        if control:
            self.control, theirs = socket.socketpair()
            self.control.settimeout(WAIT)
            fds.append(theirs.fileno())
            cmd += ['--control-fd', str(theirs.fileno())]
        cmd += list(args)
        env = dict(os.environ, PYTHONDONTWRITEBYTECODE='1', **(env or {}))
        self.stderr = open(self.stderr_path, 'wb')
        self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=self.stderr,
                                     stderr=self.stderr, pass_fds=fds, env=env)
        if control:
            theirs.close()
        self.control_file = self.control.makefile('rb') if control else None
        if wait and bind:
            self.wait_listening()

    def wait_listening(self):
        def up():
            if self.proc.poll() is not None:
                raise AssertionError('worker exited with %s:\n%s'
                                     % (self.proc.returncode, self.log()))
            try:
                s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                try:
                    s.connect(self.path)
                finally:
                    s.close()
                return True
            except OSError:
                return False
        if not poll(up):
            raise AssertionError('worker did not listen:\n' + self.log())

    def conn(self, mode=1):
        return Conn(self.path, mode=mode)

    def message(self):
        line = self.control_file.readline()
        return json.loads(line.decode('utf-8')) if line else None

    def log(self):
        with open(self.stderr_path, 'rb') as f:
            return f.read().decode('utf-8', 'replace')

    def wait_exit(self, timeout=WAIT):
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            return None

    def cleanup(self):
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        self.stderr.close()
        if self.control_file is not None:
            self.control_file.close()
            self.control.close()
        shutil.rmtree(self.tmp, ignore_errors=True)


def start_worker(case, **kw):
    w = Worker(**kw)
    case.addCleanup(w.cleanup)
    return w


class SharedWorkerCase(unittest.TestCase):
    """One worker for the whole class (tests must not depend on each other's state)."""
    worker_kw = {}
    mode = 1    # modifier2 of the keep-alive requests conn(), get() and packet() make

    @classmethod
    def setUpClass(cls):
        cls.w = Worker(**cls.worker_kw)
        cls.addClassCleanup(cls.w.cleanup)

    def setUp(self):
        if self.w.proc.poll() is not None:
            self.fail('shared worker died: %s\n%s' % (self.w.proc.returncode, self.w.log()))

    def conn(self):
        c = self.w.conn(self.mode)
        self.addCleanup(c.close)
        return c

    def packet(self, pairs, body=b''):
        return packet(pairs, body, mode=self.mode)

    def get(self, path='/', method='GET', body=b'', extra=()):
        # A single-threaded worker serves one connection at a time: do not hold this one.
        c = self.w.conn(self.mode)
        try:
            return c.request(path, method, body, extra)
        finally:
            c.close()


def blob(n, seed=1):
    r = random.Random(seed)
    return bytes(r.getrandbits(8) for _ in range(min(n, 4096))) * (n // 4096 + 1)


# ---------------------------------------------------------------------------------------
# in-process: the I/O-free parts

class MakeEnvironTest(unittest.TestCase):
    template = request.environ_template(False)

    def environ(self, pairs):
        """make_environ's answer, once make_environ_nul gave the same for the same vars."""
        try:
            want = request.make_environ(encode_vars(pairs), self.template)
        except ValueError:
            with self.assertRaises(ValueError):
                request.make_environ_nul(encode_vars_nul(pairs), self.template)
            raise
        self.assertEqual(request.make_environ_nul(encode_vars_nul(pairs), self.template), want)
        return want

    def test_table(self):
        cases = [
            # (vars, expected subset, absent keys, content length)
            ([], {'REQUEST_METHOD': 'GET', 'SCRIPT_NAME': '', 'PATH_INFO': '',
                  'QUERY_STRING': '', 'SERVER_NAME': 'localhost', 'SERVER_PORT': '80',
                  'SERVER_PROTOCOL': 'HTTP/1.1', 'wsgi.url_scheme': 'http'},
             ['CONTENT_TYPE', 'CONTENT_LENGTH'], 0),
            ([('CONTENT_TYPE', ''), ('CONTENT_LENGTH', '')], {}, ['CONTENT_TYPE',
                                                                 'CONTENT_LENGTH'], 0),
            ([('CONTENT_TYPE', 'text/plain'), ('CONTENT_LENGTH', '12')],
             {'CONTENT_TYPE': 'text/plain', 'CONTENT_LENGTH': '12'}, [], 12),
            ([('PATH_INFO', b'/caf\xc3\xa9/\xff')], {'PATH_INFO': '/caf\xc3\xa9/\xff'}, [], 0),
            ([(b'HTTP_X_\xe9', b'\x80')], {'HTTP_X_\xe9': '\x80'}, [], 0),
            ([('UWSGI_SCRIPT', 'x'), ('UWSGI_SCHEME', 'https'), ('HTTP_UWSGI_X', 'kept')],
             {'wsgi.url_scheme': 'https', 'HTTP_UWSGI_X': 'kept'},
             ['UWSGI_SCRIPT', 'UWSGI_SCHEME'], 0),
            ([('UWSGI_SCHEME', 'https'), ('QUERY_STRING', 'UWSGI_X')],
             {'wsgi.url_scheme': 'https', 'QUERY_STRING': 'UWSGI_X'}, ['UWSGI_SCHEME'], 0),
            ([('UWSGI_SCHEME', 'https'), ('UWSGI_X', '1')], {'wsgi.url_scheme': 'https'},
             ['UWSGI_SCHEME', 'UWSGI_X'], 0),
            ([('UWSGI_X', '1'), ('HTTPS', 'on')], {'wsgi.url_scheme': 'https'}, ['UWSGI_X'], 0),
            ([('UWSGI_SCHEME', '')], {'wsgi.url_scheme': 'http'}, ['UWSGI_SCHEME'], 0),
            ([('HTTPS', 'on')], {'wsgi.url_scheme': 'https', 'HTTPS': 'on'}, [], 0),
            ([('HTTPS', 'TRUE')], {'wsgi.url_scheme': 'https'}, [], 0),
            ([('HTTPS', '1')], {'wsgi.url_scheme': 'https'}, [], 0),
            ([('HTTPS', 'off')], {'wsgi.url_scheme': 'http'}, [], 0),
            ([('SERVER_NAME', 'a'), ('SERVER_PORT', '1'), ('SERVER_PROTOCOL', 'HTTP/1.0')],
             {'SERVER_NAME': 'a', 'SERVER_PORT': '1', 'SERVER_PROTOCOL': 'HTTP/1.0'}, [], 0),
            ([('wsgi.version', 'spoof'), ('wsgi.multiprocess', '')],
             {'wsgi.version': (1, 0), 'wsgi.multiprocess': True}, [], 0),
            ([('HTTP_TRANSFER_ENCODING', 'chunked'), ('CONTENT_LENGTH', '3')],
             {'HTTP_TRANSFER_ENCODING': 'chunked'}, [], 3),
            ([('K', ''), ('', 'v')], {'K': '', '': 'v'}, [], 0),
        ]
        for pairs, want, absent, cl in cases:
            with self.subTest(pairs=pairs):
                env, n = self.environ(pairs)
                for k, v in want.items():
                    self.assertEqual(env[k], v, k)
                for k in absent:
                    self.assertNotIn(k, env)
                self.assertEqual(n, cl)
                for k in ('wsgi.version', 'wsgi.errors', 'wsgi.multithread',
                          'wsgi.multiprocess', 'wsgi.run_once', 'wsgi.input_terminated',
                          'wsgi.file_wrapper'):
                    self.assertIn(k, env)
                self.assertNotIn('wsgi.input', env)
        self.assertEqual(self.template, request.environ_template(False))    # not mutated

    def test_malformed(self):
        good = encode_vars([('A', 'b'), ('CC', 'dd')])
        bad = [
            good[:-1],                      # value cut
            good[:1],                       # key length cut
            good + b'\x05',                 # stray byte
            good + b'\x05\x00ab',           # key past the end
            good + b'\x01\x00a\x05\x00',    # value past the end
            b'\xff\xff',
        ]
        for block in bad:
            with self.subTest(block=block):
                with self.assertRaises(ValueError):
                    request.make_environ(block, self.template)
        for cl in ('abc', '-1', '+1', ' 1', '1_0', '\xb2', '1.0'):
            with self.subTest(cl=cl):
                with self.assertRaises(ValueError):
                    self.environ([('CONTENT_LENGTH', cl)])

    def test_nul_joined(self):
        decode = request.make_environ_nul
        self.assertEqual(decode(b'', self.template), (self.template, 0))
        env, _ = decode(b'\0', self.template)                  # one var, both fields empty
        self.assertEqual(env[''], '')
        env, _ = decode(b'A\0\0B\0b', self.template)
        self.assertEqual((env['A'], env['B']), ('', 'b'))
        env, _ = decode(b'A\x001\x00A\x002', self.template)      # the last one wins, as in mode 1
        self.assertEqual(env['A'], '2')
        for block in (b'A', b'A\0b\0', b'A\0b\0C', b'\0\0', b'A\0b\0C\0d\0'):
            with self.subTest(block=block):
                with self.assertRaises(ValueError):
                    decode(block, self.template)
        self.assertEqual(self.template, request.environ_template(False))    # not mutated


class BuildHeadTest(unittest.TestCase):
    def test_ok(self):
        for _ in range(2):      # the second time from the caches
            head, cl, bodyless = response.build_head(
                b'HTTP/1.1 ', '200 OK', [('Content-Type', 'text/plain'), ('X-A', 'caf\xe9'),
                                         ['X-List', 'pair']], True)
            self.assertEqual(head, b'HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n'
                                   b'X-A: caf\xe9\r\nX-List: pair\r\n')
            self.assertIsNone(cl)
            self.assertFalse(bodyless)

    def test_content_length_and_hop_by_hop(self):
        hdrs = [('content-length', '5'), ('Connection', 'close'),
                ('Transfer-Encoding', 'chunked'), ('Content-Length', '5')]
        head, cl, _ = response.build_head(b'HTTP/1.1 ', '200 OK', hdrs, True)
        self.assertEqual(cl, 5)
        self.assertEqual(head, b'HTTP/1.1 200 OK\r\ncontent-length: 5\r\n')
        head, cl, _ = response.build_head(b'HTTP/1.0 ', '200 OK', hdrs, False)
        self.assertIn(b'Connection: close\r\n', head)
        with self.assertRaises(ValueError):
            response.build_head(b'', '200 OK', [('Content-Length', '5'),
                                             ('Content-Length', '6')], True)
        with self.assertRaises(ValueError):
            response.build_head(b'', '200 OK', [('Content-Length', 'x')], True)

    def test_head_cache(self):
        # A repeated response comes from the cache, but the prefix, the mode and every
        # header are its key; what is refused is refused every time.
        hop = [('Connection', 'close'), ('X-A', '1'), ('Content-Length', '3')]
        for _ in range(2):
            self.assertEqual(response.build_head(b'HTTP/1.1 ', '200 OK', hop, True),
                             (b'HTTP/1.1 200 OK\r\nX-A: 1\r\nContent-Length: 3\r\n', 3, False))
            self.assertEqual(response.build_head(b'HTTP/1.0 ', '200 OK', hop, False)[0],
                             b'HTTP/1.0 200 OK\r\nConnection: close\r\nX-A: 1\r\n'
                             b'Content-Length: 3\r\n')
            self.assertEqual(response.build_head(b'HTTP/1.1 ', '200 OK', hop[1:2], True)[0],
                             b'HTTP/1.1 200 OK\r\nX-A: 1\r\n')
            self.assertEqual(response.build_head(b'HTTP/1.1 ', '204 No Content', hop[1:2], True),
                             (b'HTTP/1.1 204 No Content\r\nX-A: 1\r\n', None, True))
            for bad in ([('X-A', '1'), ('X-B', 'a\nb')],
                        [('Content-Length', '1'), ('Content-Length', '2')]):
                with self.assertRaises(ValueError):
                    response.build_head(b'HTTP/1.1 ', '200 OK', bad, True)
        gen = iter([('X-A', '1')])
        with self.assertRaises(TypeError):
            response.build_head(b'HTTP/1.1 ', '200 OK', gen, True)
        self.assertEqual(list(gen), [('X-A', '1')])     # refused, not consumed
        for i in range(response._CACHE_MAX + 10):
            response.build_head(b'HTTP/1.1 ', '200 OK', [('X-N', str(i))], True)
        self.assertLessEqual(len(response._heads), response._CACHE_MAX)

    def test_bodyless(self):
        for status, want in (('204 No Content', True), ('304 Not Modified', True),
                             ('100 Continue', True), ('200 OK', False), ('404 X', False)):
            self.assertEqual(response.build_head(b'', status, [], True)[2], want, status)

    def test_invalid(self):
        bad = [
            ('200', []), ('OK', []), ('20 OK', []), ('200OK', []), (b'200 OK', []),
            ('200 OK\r\nX: y', []), ('\u0662\u0660\u0660 OK', []),
            ('200 OK', [('X', 'a\r\nB: c')]), ('200 OK', [('X', 'a\nb')]),
            ('200 OK', [('X', 'a\x00')]), ('200 OK', [('X Y', 'a')]),
            ('200 OK', [('X:Y', 'a')]), ('200 OK', [('', 'a')]),
            ('200 OK', [(b'X', b'a')]), ('200 OK', [('X', None)]), ('200 OK', [('X',)]),
            ('200 OK', [('X', '\u20ac')]), ('200 OK', 'X: y'), ('200 OK', None),
            ('200 OK', [('X', 'a\x01b')]), ('200 OK', [('X', 'a\x7f')]), ('200 O\x1bK', []),
            ('099 Low', []), ('600 High', []), ('999 X', []),
        ]
        for status, headers in bad:
            with self.subTest(status=status, headers=headers):
                with self.assertRaises((TypeError, ValueError)):
                    response.build_head(b'HTTP/1.1 ', status, headers, True)


class FramingTest(unittest.TestCase):
    def test_table(self):
        h = b'HTTP/1.1 200 OK\r\nX: y\r\n'
        cases = [
            # (app_cl, bodyless, keepalive, length) -> (out, mode, left)
            ((None, True, 1, 5), (h + b'\r\n', response._NOBODY, 0)),
            ((7, True, 1, None), (h + b'\r\n', response._NOBODY, 0)),
            ((None, False, 0, 5), (h + b'\r\n', response._RAW, 0)),
            ((7, False, 0, 5), (h + b'\r\n', response._RAW, 0)),
            ((7, False, 1, 5), (h + b'\r\n', response._COUNT, 7)),
            ((0, False, 2, None), (h + b'\r\n', response._COUNT, 0)),
            ((None, False, 1, 5), (h + b'Content-Length: 5\r\n\r\n', response._COUNT, 5)),
            ((None, False, 2, 0), (h + b'Content-Length: 0\r\n\r\n', response._COUNT, 0)),
            ((None, False, 1, None),
             (h + b'Transfer-Encoding: chunked\r\n\r\n', response._CHUNKED, 0)),
        ]
        for (app_cl, bodyless, keepalive, length), want in cases:
            with self.subTest(app_cl=app_cl, bodyless=bodyless, keepalive=keepalive,
                              length=length):
                self.assertEqual(response._framing(h, app_cl, bodyless, keepalive, length), want)
        with self.assertRaises(AssertionError):     # start_response() was not called
            response._framing(None, None, False, 1, 5)


class InputTest(unittest.TestCase):
    def make(self, data, length, tail=b'NEXT'):
        rfile = io.BufferedReader(io.BytesIO(data + tail), 7)
        return request.Input(rfile, length), rfile

    def test_bounded_reads(self):
        data = b'line one\nline two\nthree'
        for how in ('read', 'read-1', 'readNone', 'readn', 'readline', 'readlines', 'iter'):
            with self.subTest(how=how):
                inp, rfile = self.make(data, len(data))
                if how == 'read':
                    got = inp.read()
                elif how == 'read-1':
                    got = inp.read(-1)
                elif how == 'readNone':
                    got = inp.read(None)
                elif how == 'readn':
                    got = b''.join(iter(lambda: inp.read(5), b''))
                elif how == 'readline':
                    got = b''.join(iter(inp.readline, b''))
                elif how == 'readlines':
                    got = b''.join(inp.readlines())
                else:
                    got = b''.join(inp)
                self.assertEqual(got, data)
                self.assertEqual(inp.read(), b'')
                self.assertEqual(inp.readline(), b'')
                self.assertEqual(inp.readlines(), [])
                self.assertEqual(rfile.read(), b'NEXT')

    def test_readline_size_and_hint(self):
        inp, _ = self.make(b'abcdef\nxy\nz', 11)
        self.assertEqual(inp.readline(3), b'abc')
        self.assertEqual(inp.readline(100), b'def\n')
        self.assertEqual(inp.readlines(1), [b'xy\n'])
        self.assertEqual(inp.readlines(), [b'z'])

    def test_drain(self):
        inp, rfile = self.make(b'x' * 200000, 200000)
        inp.read(10)
        self.assertTrue(inp.drain())
        self.assertEqual(rfile.read(), b'NEXT')
        inp, rfile = self.make(b'x' * 10, 20, tail=b'')
        self.assertFalse(inp.drain())

    def test_short_body(self):
        inp, _ = self.make(b'abc', 10, tail=b'')
        self.assertEqual(inp.read(), b'abc')
        self.assertEqual(inp.read(), b'')


class ServeConnectionTest(unittest.TestCase):
    """_serve_connection in process, over a connection that hands out the bytes in pieces
    of every size: requests, bodies and the next request cut anywhere."""

    class Conn(object):
        def __init__(self, data, step):
            self.data, self.pos, self.step = data, 0, step
            self.out = []
            self.sendall = self.out.append

        def recv(self, n):
            data = self.data[self.pos:self.pos + min(n, self.step)]
            self.pos += len(data)
            return data

        def recv_into(self, b, n=0):
            data = self.recv(n or len(b))
            b[:len(data)] = data
            return len(data)

        def fileno(self):
            return -1

    @staticmethod
    def app(environ, start_response):
        inp = environ['wsgi.input']
        path = environ['PATH_INFO']
        if path == '/ignore':
            body = b'ignored'
        elif path == '/lines':
            body = b'|'.join(iter(inp.readline, b''))
        else:
            body = inp.read(5) + inp.read()
        start_response('200 OK', [('X-Method', environ['REQUEST_METHOD'])])
        return [body]

    def serve(self, data, step):
        conn = self.Conn(data, step)
        serve._serve_connection(conn, self.app, request.environ_template(False), 0)
        self.assertEqual(conn.pos, len(data))
        return b''.join(conn.out)

    def test_pieces(self):
        big = blob(request.SMALL_BODY + 3000, seed=11)
        reqs = [('/echo', b''), ('/echo', b'small body'), ('/ignore', big),
                ('/echo', big[:request.SMALL_BODY]), ('/echo', big[:request.SMALL_BODY + 1]),
                ('/lines', b'one\ntwo\n' * 5000), ('/echo', b'last')]
        data = b''.join(packet(request_vars(path, 'POST', body), body, mode=1 + i % 2)
                        for i, (path, body) in enumerate(reqs))
        want = self.serve(data, 1 << 20)
        f = io.BytesIO(want)
        for path, body in reqs:
            r = read_response(f)
            self.assertEqual(r.body, {'/ignore': b'ignored', '/lines': body.replace(
                b'\n', b'\n|')[:-1]}.get(path, body), path)
        self.assertEqual(f.read(), b'')
        for step in (7, 100, 4099, request.READ_BUFFER - 1):
            with self.subTest(step=step):
                self.assertEqual(self.serve(data, step), want)
        # Byte by byte, the requests without a large body (a large one would take seconds).
        small = b''.join(packet(request_vars(path, 'POST', body), body, mode=1 + i % 2)
                         for i, (path, body) in enumerate(reqs) if len(body) < 100)
        want = self.serve(small, 1 << 20)
        self.assertEqual(want.count(b'HTTP/1.1 200 OK'), 3)
        for step in (1, 2, 3):
            with self.subTest(step=step):
                self.assertEqual(self.serve(small, step), want)

    def test_cut_short(self):
        good = packet(request_vars('/echo', 'POST', b'0123456789'), b'0123456789')
        big = blob(request.SMALL_BODY * 2)
        large = packet(request_vars('/echo', 'POST', big), big)
        for step in (1, 3, 1000):
            with self.subTest(step=step):
                for cut in range(0, len(good)):     # no answer, except for a cut vars block
                    out = self.serve(good[:cut], step)
                    if 4 <= cut < len(good) - 10:
                        self.assertTrue(out.startswith(b'HTTP/1.1 400 '), (cut, out))
                    else:
                        self.assertEqual(out, b'', cut)
                # A large body cut short: the app gets what came; the connection ends.
                out = self.serve(large[:len(large) - 1000], step * 1000)
                self.assertTrue(out.startswith(b'HTTP/1.1 200 OK\r\n'), out[:100])
                self.assertEqual(len(out.partition(b'\r\n\r\n')[2]), len(big) - 1000)


# ---------------------------------------------------------------------------------------
# a real worker, keep-alive mode

class KeepAliveTest(SharedWorkerCase):
    def test_hello(self):
        r = self.get('/hello')
        self.assertEqual(r.status_line, 'HTTP/1.1 200 OK')
        self.assertEqual(r.body, b'Hello, World!')
        self.assertEqual(r.header('Content-Length'), '13')
        self.assertEqual(r.header('Content-Type'), 'text/plain')

    def test_sequence_on_one_connection(self):
        c = self.conn()
        r = random.Random(7)
        for i in range(60):
            kind = r.choice(['hello', 'chunks', 'cl', 'head', '204', '304', 'echo', 'write',
                             'stream', 'post-ignore', 'file-bytesio'])
            if kind == 'hello':
                resp = c.request('/hello')
                self.assertEqual(resp.body, b'Hello, World!')
            elif kind == 'chunks':
                resp = c.request('/chunks')
                self.assertTrue(resp.chunked)
                self.assertEqual(resp.body, b'one,two,three')
            elif kind == 'cl':
                resp = c.request('/cl')
                self.assertEqual((resp.header('Content-Length'), resp.body),
                                 ('11', b'hello world'))
            elif kind == 'head':
                resp = c.request('/cl', method='HEAD')
                self.assertEqual(resp.header('Content-Length'), '11')
                self.assertIsNone(resp.header('Transfer-Encoding'))
            elif kind in ('204', '304'):
                resp = c.request('/status?code=' + kind)
                self.assertEqual(resp.status, int(kind))
                self.assertIsNone(resp.header('Transfer-Encoding'))
                self.assertIsNone(resp.header('Content-Length'))
            elif kind == 'echo':
                body = blob(r.randrange(1, 200000), seed=i)
                resp = c.request('/echo', 'POST', body)
                self.assertEqual(resp.body, body)
            elif kind == 'stream':
                body = blob(r.randrange(1, 100000), seed=i)
                resp = c.request('/echo-stream?size=3000', 'POST', body)
                self.assertEqual(resp.body, body)
            elif kind == 'post-ignore':
                resp = c.request('/ignore', 'POST', blob(r.randrange(1, 300000), seed=i))
                self.assertEqual(resp.body, b'ignored')
            elif kind == 'write':
                resp = c.request('/write')
                self.assertEqual(resp.body, b'written,more,returned')
            else:
                resp = c.request('/file-bytesio')
                self.assertEqual(resp.body, b'0123456789' * 1000)
            self.assertLess(resp.status, 400, kind)

    def test_pipelined(self):
        c = self.conn()
        c.send(b''.join(self.packet(request_vars('/hello')) for _ in range(50)))
        for _ in range(50):
            self.assertEqual(read_response(c.f).body, b'Hello, World!')

    def test_head_and_bodyless_statuses(self):
        r = self.get('/hello', method='HEAD')
        self.assertEqual(r.status, 200)
        self.assertIsNone(r.header('Content-Length'))
        self.assertIsNone(r.header('Transfer-Encoding'))
        c = self.conn()
        c.send(self.packet(request_vars('/status?code=204')))
        c.send(self.packet(request_vars('/chunks', method='HEAD')))
        c.send(self.packet(request_vars('/hello')))
        self.assertEqual(read_response(c.f).status, 204)
        self.assertEqual(read_response(c.f, head_request=True).status, 200)
        # The bytes after both heads are exactly the third response.
        self.assertEqual(read_response(c.f).body, b'Hello, World!')

    def test_sequence_iterator_is_a_whole_body(self):
        # Django's HttpResponse iterates over a list: nothing can delay its next block, so
        # it goes out like a list, with a Content-Length, not chunked; close() still runs.
        c = self.conn()
        n0 = int(c.request('/closed').body)
        for path in ('/seqiter', '/seqiter?tuple=1'):
            r = c.request(path)
            self.assertFalse(r.chunked, path)
            self.assertEqual((r.header('Content-Length'), r.body), ('7', b'one,two'))
        r = c.request('/seqiter', method='HEAD')
        self.assertEqual((r.header('Content-Length'), r.body), (None, b''))
        self.assertEqual(int(c.request('/closed').body), n0 + 3)
        # A generator is not: its blocks go out as they come.
        self.assertTrue(c.request('/chunks').chunked)
        c.close()
        r = plain_request(self.w.path, '/seqiter')
        self.assertEqual((r.header('Content-Length'), r.body), (None, b'one,two'))

    def test_chunked_wire_format(self):
        c = self.conn()
        c.send(self.packet(request_vars('/chunks')))
        status, headers = parse_head(c.f)
        self.assertIn(('Transfer-Encoding', 'chunked'), headers)
        self.assertEqual(c.f.read(len(b'4\r\none,\r\n4\r\ntwo,\r\n5\r\nthree\r\n0\r\n\r\n')),
                         b'4\r\none,\r\n4\r\ntwo,\r\n5\r\nthree\r\n0\r\n\r\n')

    def test_echo_10mib(self):
        body = blob(10 * 1024 * 1024, seed=3)
        want = hashlib.sha256(body).hexdigest()
        c = self.conn()
        for path in ('/echo', '/echo-stream'):
            r = c.request(path, 'POST', body)
            self.assertEqual(hashlib.sha256(r.body).hexdigest(), want, path)
        r = c.request('/sha', 'POST', body)
        self.assertEqual(r.body.decode(), '%d %s' % (len(body), want))

    def test_environ(self):
        extra = [('UWSGI_SCRIPT', 'nope'), ('UWSGI_APPID', 'nope'),
                 ('HTTP_X_FORWARDED_FOR', '1.2.3.4'), ('HTTP_COOKIE', 'a=b')]
        c = self.conn()
        path = b'/env/caf\xc3\xa9/\xff%2F'
        c.send(self.packet(request_vars('/x', extra=extra)[:5] + [('PATH_INFO', path)]
                      + request_vars('/x', extra=extra)[6:]))
        env = json.loads(read_response(c.f).body)
        self.assertEqual(env['PATH_INFO'], path.decode('latin-1'))
        self.assertEqual(env['REQUEST_METHOD'], 'GET')
        self.assertEqual(env['SCRIPT_NAME'], '')
        self.assertEqual(env['QUERY_STRING'], '')
        self.assertEqual(env['SERVER_NAME'], 'example.test')
        self.assertEqual(env['SERVER_PORT'], '8080')
        self.assertEqual(env['SERVER_PROTOCOL'], 'HTTP/1.1')
        self.assertEqual(env['REMOTE_ADDR'], '127.0.0.1')
        self.assertEqual(env['HTTP_X_FORWARDED_FOR'], '1.2.3.4')
        self.assertEqual(env['wsgi.version'], [1, 0])
        self.assertEqual(env['wsgi.url_scheme'], 'http')
        self.assertIs(env['wsgi.multithread'], False)
        self.assertIs(env['wsgi.multiprocess'], True)
        self.assertIs(env['wsgi.run_once'], False)
        self.assertIs(env['wsgi.input_terminated'], True)
        self.assertIn('FileWrapper', env['wsgi.file_wrapper'])
        self.assertTrue(env['__errors_is_stderr'])
        self.assertNotIn('CONTENT_TYPE', env)
        self.assertNotIn('CONTENT_LENGTH', env)
        self.assertNotIn('UWSGI_SCRIPT', env)
        self.assertNotIn('UWSGI_APPID', env)
        # and with a body, UWSGI_SCHEME and a query string
        r = c.request('/env?a=1&b=%20', 'POST', b'xyz', extra=[('UWSGI_SCHEME', 'https')])
        env = json.loads(r.body)
        self.assertEqual(env['CONTENT_LENGTH'], '3')
        self.assertEqual(env['CONTENT_TYPE'], 'application/octet-stream')
        self.assertEqual(env['QUERY_STRING'], 'a=1&b=%20')
        self.assertEqual(env['wsgi.url_scheme'], 'https')
        self.assertNotIn('UWSGI_SCHEME', env)
        r = c.request('/env', extra=[('HTTPS', 'on')])
        self.assertEqual(json.loads(r.body)['wsgi.url_scheme'], 'https')

    def test_latin1_round_trip(self):
        c = self.conn()
        path = b'/latin1/\xe9\xff\x80'
        c.send(self.packet([('PATH_INFO', path)]))
        r = read_response(c.f)
        self.assertEqual(r.body, path)
        self.assertEqual(r.header('X-Path'), path.decode('latin-1'))

    def test_app_exception_then_next_request(self):
        c = self.conn()
        for path in ('/raise', '/twice', '/str', '/str-gen', '/none', '/nostart',
                     '/badheader?kind=crlf', '/badheader?kind=nul', '/badheader?kind=name',
                     '/badheader?kind=colon', '/badheader?kind=bytes',
                     '/badheader?kind=notuple', '/badheader?kind=nonlatin',
                     '/badstatus?s=200', '/badstatus?s=OK', '/close-fail-early'):
            r = c.request(path)
            self.assertEqual(r.status, 500, path)
            self.assertEqual(r.body, b'Internal Server Error\n')
            self.assertEqual(r.header('Content-Length'), '22')
            self.assertIsNone(r.header('Injected'))
            self.assertEqual(c.request('/hello').status, 200)
        r = c.request('/raise', method='HEAD')
        self.assertEqual((r.status, r.body), (500, b''))
        self.assertEqual(c.request('/hello').status, 200)
        self.assertIn('RuntimeError: boom before headers', self.w.log())

    def test_exception_after_headers_breaks_connection(self):
        c = self.conn()
        c.send(self.packet(request_vars('/raise-after')))
        with self.assertRaises(Broken):
            read_response(c.f)
        self.assertTrue(c.at_eof())
        self.assertEqual(self.get('/hello').status, 200)

    def test_exc_info(self):
        r = self.get('/excinfo')
        self.assertEqual(r.status_line, 'HTTP/1.1 503 Service Unavailable')
        self.assertEqual(r.header('X-Replaced'), '1')
        self.assertEqual(r.body, b'replaced')
        c = self.conn()
        c.send(self.packet(request_vars('/excinfo-after')))
        with self.assertRaises(Broken):
            read_response(c.f)
        self.assertEqual(self.get('/reraised').body, b'late oops')

    def test_write_callable(self):
        r = self.get('/write')
        self.assertTrue(r.chunked)
        self.assertEqual(r.body, b'written,more,returned')
        c = self.conn()
        r = c.request('/write-cl')
        self.assertEqual((r.header('Content-Length'), r.body), ('9', b'abcdefghi'))
        self.assertEqual(c.request('/hello').status, 200)

    def test_content_length_mismatch(self):
        c = self.conn()
        r = c.request('/long')
        self.assertEqual(r.body, b'12345')
        self.assertEqual(c.request('/hello').body, b'Hello, World!')
        c.send(self.packet(request_vars('/short')))
        with self.assertRaises(Broken):
            read_response(c.f)
        self.assertIn('truncated', self.w.log())

    def test_hop_by_hop_dropped(self):
        r = self.get('/hop')
        self.assertIsNone(r.header('Connection'))
        self.assertIsNone(r.header('Keep-Alive'))
        self.assertEqual(r.header('X-Kept'), 'yes')
        self.assertEqual(r.body, b'hop')

    def test_close_always_called(self):
        def closed():
            return int(self.get('/closed').body)
        n0 = closed()
        self.assertEqual(self.get('/close').body, b'ab')
        self.assertEqual(closed(), n0 + 1)
        c = self.conn()
        c.send(self.packet(request_vars('/close-fail')))
        with self.assertRaises(Broken):
            read_response(c.f)
        self.assertEqual(self.get('/close-fail-early').status, 500)
        # The client goes away in the middle of a big streamed body.
        c = self.w.conn()
        c.send(self.packet(request_vars('/close-slow')))
        parse_head(c.f)
        c.f.read(100000)
        c.close()
        self.assertEqual(poll(lambda: closed() == n0 + 4), True, self.w.log())

    def test_file_wrapper_sendfile(self):
        data = blob(300000, seed=5)
        fd, name = tempfile.mkstemp(dir=self.w.tmp)
        os.write(fd, data)
        os.close(fd)
        c = self.conn()
        r = c.request('/file?name=' + name)
        self.assertFalse(r.chunked)
        self.assertEqual(r.header('Content-Length'), str(len(data)))
        self.assertEqual(r.body, data)
        r = c.request('/file?name=%s&skip=1000' % name)
        self.assertEqual(r.body, data[1000:])
        r = c.request('/file?name=%s&cl=5000' % name)
        self.assertEqual(r.body, data[:5000])
        r = c.request('/file?name=%s' % name, method='HEAD')
        self.assertEqual(r.header('Content-Length'), None)
        self.assertEqual(c.request('/hello').status, 200)
        # The app promises more than the file holds: the connection closes.
        c.send(self.packet(request_vars('/file?name=%s&cl=%d' % (name, len(data) + 10))))
        with self.assertRaises(Broken):
            read_response(c.f)
        r = plain_request(self.w.path, '/file?name=' + name)
        self.assertEqual(r.body, data)
        self.assertIsNone(r.header('Content-Length'))

    def test_file_wrapper_uses_sendfile(self):
        # The fixture's file object refuses read(): only sendfile can serve it.
        data = b'via sendfile\n' * 1000
        fd, name = tempfile.mkstemp(dir=self.w.tmp)
        os.write(fd, data)
        os.close(fd)
        r = self.get('/file?name=%s&noread=1' % name)
        self.assertEqual(r.body, data)

    def test_input_bounded(self):
        c = self.conn()
        for size in (1000, 300000):
            body = b''.join(b'%05d line\n' % i for i in range(size // 11 + 1))[:size]
            for how in ('read', 'readline', 'readlines', 'iter', 'none'):
                with self.subTest(size=size, how=how):
                    r = c.request('/readmore?how=' + how, 'POST', body)
                    self.assertEqual(r.body, body)
                    self.assertEqual(c.request('/hello').body, b'Hello, World!')
        r = c.request('/lines', 'POST', b'first\nsecond\nthird\n')
        self.assertEqual(json.loads(r.body), ['first\n', 'sec', 'ond\n', 'third\n'])

    def test_ignored_1mib_body(self):
        c = self.conn()
        body = blob(1024 * 1024, seed=9)
        self.assertEqual(c.request('/ignore', 'POST', body).body, b'ignored')
        self.assertEqual(c.request('/hello').status, 200)
        self.assertEqual(c.request('/raise', 'POST', body).status, 500)
        self.assertEqual(c.request('/hello').status, 200)


class KeepAliveNulTest(KeepAliveTest):
    """Every keep-alive test again with modifier2 = 2, the NUL-joined vars."""
    mode = 2


# ---------------------------------------------------------------------------------------
# a real worker, plain uwsgi mode

class PlainModeTest(SharedWorkerCase):
    def test_hello(self):
        r = plain_request(self.w.path, '/hello', protocol='HTTP/1.0')
        self.assertEqual(r.status_line, 'HTTP/1.0 200 OK')
        self.assertEqual(r.headers, [('Content-Type', 'text/plain')])
        self.assertEqual(r.body, b'Hello, World!')

    def test_as_the_app_gave_it(self):
        r = plain_request(self.w.path, '/chunks')
        self.assertEqual(r.status_line, 'HTTP/1.1 200 OK')
        self.assertIsNone(r.header('Transfer-Encoding'))
        self.assertEqual(r.body, b'one,two,three')
        r = plain_request(self.w.path, '/hop')
        self.assertEqual(r.header('Connection'), 'close')
        r = plain_request(self.w.path, '/long')
        self.assertEqual(r.body, b'1234567890')
        r = plain_request(self.w.path, '/write')
        self.assertEqual(r.body, b'written,more,returned')
        r = plain_request(self.w.path, '/hello', protocol='HTTP/1.1\r\nX-Evil: 1')
        self.assertEqual(r.status_line, 'HTTP/1.1 200 OK')

    def test_head_and_errors(self):
        r = plain_request(self.w.path, '/hello', method='HEAD')
        self.assertEqual((r.status, r.body), (200, b''))
        r = plain_request(self.w.path, '/status?code=304')
        self.assertEqual((r.status, r.body), (304, b''))
        r = plain_request(self.w.path, '/raise', protocol='HTTP/1.0')
        self.assertEqual((r.status_line, r.body),
                         ('HTTP/1.0 500 Internal Server Error', b'Internal Server Error\n'))

    def test_post_10mib(self):
        body = blob(10 * 1024 * 1024, seed=4)
        r = plain_request(self.w.path, '/echo-stream', 'POST', body)
        self.assertEqual(hashlib.sha256(r.body).hexdigest(), hashlib.sha256(body).hexdigest())

    def test_one_request_per_connection(self):
        c = self.conn()
        c.send(packet(request_vars('/hello'), keepalive=False) * 2)
        r = parse_plain(c.read_to_eof())
        self.assertEqual(r.body, b'Hello, World!')


# ---------------------------------------------------------------------------------------
# protocol garbage

class ProtocolTest(SharedWorkerCase):
    def raw(self, data, shut=True):
        c = self.conn()
        c.send(data)
        if shut:
            c.sock.shutdown(socket.SHUT_WR)
        return c.read_to_eof()

    def assertBadRequest(self, out):
        self.assertTrue(out.startswith(b'HTTP/1.1 400 Bad Request\r\n'), out)
        self.assertIn(b'Connection: close', out)

    def test_bad_packets(self):
        good = packet(request_vars('/hello'))
        block = encode_vars(request_vars('/hello'))
        self.assertBadRequest(self.raw(b'\x05' + good[1:]))                 # modifier1
        self.assertBadRequest(self.raw(good[:3] + b'\x07' + good[4:]))      # modifier2
        self.assertBadRequest(self.raw(good[:3] + b'\x03' + good[4:]))
        for block in (b'PATH_INFO', b'PATH_INFO\0/hello\0', b'A\0b\0C'):   # odd fields
            self.assertBadRequest(self.raw(struct.pack('<BHB', 0, len(block), 2) + block))
        self.assertBadRequest(self.raw(good[:-3]))                          # vars cut
        self.assertBadRequest(self.raw(struct.pack('<BHB', 0, len(block) + 4, 1) + block
                                       + b'\x09\x00ab'))                   # key too long
        self.assertBadRequest(self.raw(packet(request_vars('/hello') + [
            ('CONTENT_LENGTH', 'x1')])))
        self.assertEqual(self.raw(good[:3]), b'')                           # header cut
        self.assertEqual(self.raw(b''), b'')
        # garbage after a good keep-alive request: one answer, then 400
        out = self.raw(good + b'\x01\x02\x03\x04garbage')
        self.assertTrue(out.startswith(b'HTTP/1.1 200 OK'), out)
        self.assertIn(b'HTTP/1.1 400 Bad Request', out)
        # a body shorter than CONTENT_LENGTH: closed without an answer
        self.assertEqual(self.raw(packet(request_vars('/echo', 'POST', b'x' * 10),
                                               b'x' * 10)[:-5]), b'')
        self.assertEqual(self.get('/hello').status, 200)

    def test_modes_on_one_connection(self):
        # The master picks the mode per request: 2 unless a var holds a NUL byte.
        c = self.conn()
        nul = request_vars('/echo', 'POST', b'x\0y', extra=[('HTTP_X', 'a\0b')])
        hello = request_vars('/hello')
        for mode, pairs, body, status, want in (
                (2, hello, b'', 200, b'Hello, World!'), (1, nul, b'x\0y', 200, b'x\0y'),
                (2, request_vars('/echo', 'POST', b'abc'), b'abc', 200, b'abc'),
                (2, [], b'', 404, None), (1, hello, b'', 200, b'Hello, World!')):
            with self.subTest(mode=mode, pairs=pairs):
                c.send(packet(pairs, body, mode=mode))
                r = read_response(c.f)
                self.assertEqual(r.status, status)
                self.assertTrue(r.status_line.startswith('HTTP/1.1 '), r.status_line)
                if want is not None:
                    self.assertEqual(r.body, want)
        r = c.request('/env', extra=[('UWSGI_SCHEME', 'https'), ('wsgi.input', 'x')])
        self.assertEqual(json.loads(r.body)['wsgi.url_scheme'], 'https')

    def test_fuzz(self):
        rnd = random.Random(1234)
        good = [packet(request_vars(p, m, b), b, mode=k)
                for p, m, b, k in (('/hello', 'GET', b'', 1), ('/echo', 'POST', b'abc', 1),
                                   ('/chunks', 'GET', b'', 0), ('/env', 'HEAD', b'', 1),
                                   ('/echo', 'POST', b'abc', 2), ('/hello', 'GET', b'', 2))]
        for i in range(500):
            kind = i % 4
            if kind == 0:       # random bytes
                data = bytes(rnd.getrandbits(8) for _ in range(rnd.randrange(0, 64)))
            elif kind == 1:     # truncated good packet
                g = rnd.choice(good)
                data = g[:rnd.randrange(0, len(g))]
            elif kind == 2:     # bit flips
                data = bytearray(rnd.choice(good))
                for _ in range(rnd.randrange(1, 4)):
                    data[rnd.randrange(len(data))] ^= 1 << rnd.randrange(8)
                data = bytes(data)
            else:               # plausible header, random vars block
                n = rnd.randrange(0, 300)
                data = struct.pack('<BHB', 0, n, rnd.randrange(3)) + bytes(
                    rnd.getrandbits(8) for _ in range(rnd.randrange(0, n + 10)))
            out = self.raw(data)
            self.assertTrue(out == b'' or out.startswith(b'HTTP/1.1 '), (i, data, out[:100]))
            self.assertIsNone(self.w.proc.poll(), self.w.log())
        self.assertEqual(self.get('/hello').body, b'Hello, World!')


class FuzzLoopTest(unittest.TestCase):
    """A short run of fuzz_worker.py's loops (make fuzz-python runs them longer). The seed
    is new each run unless HERD_FUZZ_SEED is set; a failure names it."""

    def test_short_run(self):
        import fuzz_worker
        seconds = float(os.environ.get('HERD_FUZZ_SECONDS', '2'))
        seed = int(os.environ.get('HERD_FUZZ_SEED', random.SystemRandom().randrange(1 << 32)))
        counts = fuzz_worker.run(seconds, seed, out=io.StringIO())
        self.assertTrue(all(counts.values()), counts)


# ---------------------------------------------------------------------------------------
# threads

class ThreadsTest(SharedWorkerCase):
    worker_kw = {'args': ['--threads', '4']}

    def test_concurrent_slow_requests(self):
        conns = [self.conn() for _ in range(4)]
        t0 = time.monotonic()
        for c in conns:
            c.send(packet(request_vars('/slow?t=0.5')))
        names = set()
        for c in conns:
            r = read_response(c.f)
            self.assertEqual(r.status, 200)
            names.add(r.body)
        elapsed = time.monotonic() - t0
        self.assertEqual(len(names), 4)
        self.assertLess(elapsed, 1.5)   # serially: 2 s
        for c in conns:
            self.assertEqual(c.request('/hello').status, 200)

    def test_multithread_flag(self):
        env = json.loads(self.get('/env').body)
        self.assertIs(env['wsgi.multithread'], True)


# ---------------------------------------------------------------------------------------
# boot, control channel, signals

class ControlTest(unittest.TestCase):
    def test_ready(self):
        w = start_worker(self, control=True)
        msg = w.message()
        self.assertEqual(msg, {'event': 'ready', 'pid': w.proc.pid,
                               'python': '%d.%d.%d' % sys.version_info[:3]})
        self.assertEqual(w.conn().request('/hello').status, 200)

    def test_dump_stacks_and_unknown(self):
        w = start_worker(self, control=True)
        w.message()
        w.control.sendall(b'{"cmd": "nope"}\n{"cmd": "nope"}\nnot json\n{"cmd": "dump_stacks"}\n')
        self.assertTrue(poll(lambda: 'most recent call first' in w.log()), w.log())
        self.assertEqual(w.log().count('ignoring unknown control message: {"cmd": "nope"}'), 1)
        self.assertIsNone(w.proc.poll())

    def test_control_eof_exits(self):
        w = start_worker(self, control=True)
        w.message()
        t0 = time.monotonic()
        w.control_file.close()
        w.control.close()
        w.control_file = None
        self.assertEqual(w.wait_exit(1.0), 0)
        self.assertLess(time.monotonic() - t0, 1.0)

    def test_control_eof_exits_while_busy(self):
        w = start_worker(self, control=True)
        w.message()
        c = w.conn()
        self.addCleanup(c.close)
        c.send(packet(request_vars('/slow?t=30')))
        w.control_file.close()
        w.control.close()
        w.control_file = None
        self.assertEqual(w.wait_exit(1.0), 0)

    def test_boot_error(self):
        w = start_worker(self, app='broken:app', control=True, bind=True, wait=False)
        msg = w.message()
        self.assertEqual(msg['event'], 'boot_error')
        self.assertEqual(msg['kind'], 'app_import')
        self.assertEqual(msg['error'], 'RuntimeError: broken on purpose at import')
        self.assertIn('Traceback (most recent call last)', msg['traceback'])
        self.assertIn('broken.py', msg['traceback'])
        self.assertEqual(w.wait_exit(), 4)
        self.assertNotIn('Traceback', w.log())    # the master prints it, once
        self.assertIn('broken on purpose', w.log())

    def test_import_errors_exit_4(self):
        workers = []
        for app, error in (('broken:app', 'RuntimeError: broken on purpose'),
                           ('no_such_module:app', 'ModuleNotFoundError'),
                           ('fixture:no_such_app', 'AttributeError'),
                           ('fixture', 'AttributeError'),
                           ('noncallable:app', 'TypeError')):
            workers.append((app, error, start_worker(self, app=app, wait=False)))
        for app, error, w in workers:    # started together: boots overlap
            with self.subTest(app=app):
                self.assertEqual(w.wait_exit(), 4)
                self.assertIn(error, w.log())
                self.assertIn('Traceback', w.log())   # no control channel: stderr has it

    def test_boot_errors_exit_3(self):
        lsock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)   # not listening
        self.addCleanup(lsock.close)
        bad = 'unix:/nonexistent-dir/w.sock'
        workers = []
        for args, pass_fds in (([], ()),
                               (['--listen-fd', '97'], ()),
                               (['--listen-fd', str(lsock.fileno())], (lsock.fileno(),)),
                               (['--listen-fd', '0'], ()),
                               (['--bind', bad], ()),
                               (['--bind', bad, '--listen-fd', '3'], ()),
                               (['--bind', bad, '--threads', '0'], ()),
                               (['--bind', bad, '--app', 'x:f()'], ()),
                               (['--bind', bad, '--bogus'], ()),
                               (['--bind', bad, '--control-fd', '98'], ())):
            workers.append((args, start_worker(self, args=args, bind=False,
                                               pass_fds=pass_fds, wait=False)))
        for args, w in workers:
            with self.subTest(args=args):
                self.assertEqual(w.wait_exit(), 3, w.log())

    def test_pythonpath_and_chdir(self):
        tmp = tempfile.mkdtemp(prefix='herd-p-')
        self.addCleanup(shutil.rmtree, tmp, True)
        with open(os.path.join(tmp, 'fixture.py'), 'w') as f:     # shadowed by --pythonpath
            f.write('raise ImportError("the --pythonpath entry should come first")\n')
        w = start_worker(self, chdir=tmp, args=['--pythonpath', APPS, '--pythonpath', '/'])
        c = w.conn()
        self.addCleanup(c.close)
        self.assertEqual(c.request('/hello').status, 200)
        w2 = start_worker(self, app='hello', chdir=APPS, wait=False)   # default: application
        self.assertEqual(w2.wait_exit(), 4)
        self.assertIn("failed to find attribute 'application' in 'hello'", w2.log())

    def test_listen_fd_nonblocking_handoff(self):
        tmp = tempfile.mkdtemp(prefix='herd-l-')
        self.addCleanup(shutil.rmtree, tmp, True)
        path = os.path.join(tmp, 'l.sock')
        lsock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.addCleanup(lsock.close)
        lsock.bind(path)
        lsock.listen(16)
        lsock.setblocking(False)    # as Go may hand it over
        w = start_worker(self, args=['--listen-fd', str(lsock.fileno()), '--worker-id', '7'],
                         bind=False, pass_fds=(lsock.fileno(),), control=True)
        self.assertEqual(w.message()['event'], 'ready')
        lsock.close()
        c = Conn(path)
        self.addCleanup(c.close)
        self.assertEqual(c.request('/hello').body, b'Hello, World!')
        self.assertEqual(c.request('/raise').status, 500)
        self.assertIn('herd-worker[7] error in app', w.log())


class SignalTest(unittest.TestCase):
    def test_sigterm_idle(self):
        w = start_worker(self)
        c = w.conn()        # an idle keep-alive connection does not hold the exit
        self.addCleanup(c.close)
        self.assertEqual(c.request('/hello').status, 200)
        w.proc.send_signal(signal.SIGTERM)
        self.assertEqual(w.wait_exit(1.0), 0)

    def test_sigterm_finishes_request_in_flight(self):
        for threads in ('1', '3'):
            with self.subTest(threads=threads):
                w = start_worker(self, args=['--threads', threads])
                c = w.conn()
                self.addCleanup(c.close)
                idle = w.conn()
                self.addCleanup(idle.close)
                mark = os.path.join(w.tmp, 'mark')
                c.send(packet(request_vars('/slow?t=0.3&mark=' + mark)))
                self.assertTrue(poll(lambda: os.path.exists(mark)))
                w.proc.send_signal(signal.SIGTERM)
                r = read_response(c.f)
                self.assertEqual(r.status, 200)
                self.assertEqual(w.wait_exit(2.0), 0)
                self.assertTrue(c.at_eof())

    def test_sigterm_runs_atexit_and_ignores_app_threads(self):
        mark = os.path.join(tempfile.gettempdir(), 'herd-atexit-%d' % os.getpid())
        self.addCleanup(lambda: os.path.exists(mark) and os.unlink(mark))
        w = start_worker(self, app='lingering:app', control=True,
                         env={'HERD_TEST_ATEXIT_MARK': mark})
        self.assertEqual(w.message()['event'], 'ready')
        w.proc.send_signal(signal.SIGTERM)
        self.assertEqual(w.wait_exit(2.0), 0)
        with open(mark) as f:
            self.assertEqual(f.read(), 'flushed')

    def test_sigint_ignored(self):
        w = start_worker(self)
        w.proc.send_signal(signal.SIGINT)
        c = w.conn()
        self.addCleanup(c.close)
        self.assertEqual(c.request('/hello').status, 200)
        self.assertIsNone(w.proc.poll())

    def test_sigabrt_dumps_stacks(self):
        w = start_worker(self, args=['--threads', '2'])
        c = w.conn()
        self.addCleanup(c.close)
        self.assertEqual(c.request('/hello').status, 200)
        w.proc.send_signal(signal.SIGABRT)
        self.assertEqual(w.wait_exit(), -signal.SIGABRT)
        self.assertIn('Fatal Python error: Aborted', w.log())
        self.assertIn('_accept_loop', w.log())


# ---------------------------------------------------------------------------------------
# real frameworks (Debian's flask and django: importable by /usr/bin/python3 only)

def importable(name):
    try:
        __import__(name)
        return True
    except Exception:
        return False


class FrameworkChecks(object):
    app = None
    name = None

    @classmethod
    def setUpClass(cls):
        cls.w = Worker(app=cls.app, control=True)
        cls.addClassCleanup(cls.w.cleanup)
        msg = cls.w.message()
        if msg['event'] != 'ready':
            raise AssertionError(msg)

    def request(self, path, method='GET', body=b'', extra=()):
        c = self.w.conn()
        try:
            return c.request(path, method, body, extra)
        finally:
            c.close()

    def test_hello(self):
        r = self.request('/hello')
        self.assertEqual((r.status, r.body), (200, ('Hello from %s' % self.name).encode()))

    def test_echo_big_body(self):
        body = blob(1024 * 1024, seed=11)
        r = self.request('/echo', 'POST', body)
        self.assertEqual(r.body, body)

    def test_form(self):
        body = b'a=caf%C3%A9&b=2'
        r = self.request('/form?q=x', 'POST', body, extra=[
            ('CONTENT_TYPE', 'application/x-www-form-urlencoded')])
        self.assertEqual(r.body.decode('utf-8'), 'caf\xe9|x')

    def test_stream_and_file(self):
        r = self.request('/stream')
        self.assertEqual(r.body, b'part0,part1,part2,')
        with open(os.path.join(APPS, self.name.lower() + 'app.py'), 'rb') as f:
            want = f.read()
        c = self.w.conn()
        try:
            r = c.request('/file')
            self.assertEqual(r.body, want)
            self.assertEqual(c.request('/file', 'HEAD').body, b'')
            self.assertEqual(c.request('/hello').status, 200)
        finally:
            c.close()


def framework_tests_apply(module, debian_package):
    """Real Flask and Django come from Debian's packages (Flask 2.2, Django 3.2), which only
    Debian's own Python (/usr/bin/python3) can import, and from the venv of today's peers
    (make venv: Flask 3.1, Django 6.1): under another interpreter these tests do not exist.
    Under those, a missing package skips naming what brings it, or fails where
    HERD_REQUIRE_ALL=1 (CI)."""
    if sys.prefix != sys.base_prefix:
        fix = 'make venv builds the venv from requirements/peers.txt'
    elif os.path.realpath(sys.executable).startswith('/usr/bin/'):
        fix = 'install Debian\'s %s package (make deps does)' % debian_package
    else:
        return False
    if not importable(module) and os.environ.get('HERD_REQUIRE_ALL') != '1':
        return unittest.skip('%s is missing: %s' % (module, fix))
    return True


def framework_test(module, debian_package):
    def wrap(cls):
        applies = framework_tests_apply(module, debian_package)
        if applies is True:
            return cls
        if applies is False:
            return None
        return applies(cls)
    return wrap


@framework_test('flask', 'python3-flask')
class FlaskTest(FrameworkChecks, unittest.TestCase):
    app = 'flaskapp:app'
    name = 'Flask'

    def test_view_error(self):
        self.assertEqual(self.request('/fail').status, 500)
        self.assertEqual(self.request('/hello').status, 200)


@framework_test('django', 'python3-django')
class DjangoTest(FrameworkChecks, unittest.TestCase):
    app = 'djangoapp:application'
    name = 'Django'


# ---------------------------------------------------------------------------------------
# micro-benchmark

def bench(seconds=3.0):
    """Requests/s and worker CPU per request: one worker, hello app, keep-alive with the
    classic vars (modifier2 = 1) and the NUL-joined ones (2); lockstep and pipelined."""
    # What the Go master sends for `curl http://127.0.0.1:8000/` (proxy/vars.go).
    pairs = [
        ('REQUEST_METHOD', 'GET'), ('REQUEST_URI', '/'), ('RAW_URI', '/'), ('PATH_INFO', '/'),
        ('QUERY_STRING', ''), ('SCRIPT_NAME', ''), ('SERVER_PROTOCOL', 'HTTP/1.1'),
        ('SERVER_NAME', '127.0.0.1'), ('SERVER_PORT', '8000'), ('REMOTE_ADDR', '127.0.0.1'),
        ('REMOTE_PORT', '51234'), ('UWSGI_SCHEME', 'http'), ('HTTP_HOST', '127.0.0.1:8000'),
        ('HTTP_USER_AGENT', 'curl/7.88.1'), ('HTTP_ACCEPT', '*/*')]
    reqs = [(mode, packet(pairs, mode=mode)) for mode in (1, 2)]
    version = sys.version.split()[0]
    # The Python cost alone: the worker's connection loop over an in-memory connection
    # (C-level recv and sendall, many requests per recv).
    sys.path.insert(0, APPS)
    from hello import app

    class MemoryConn(object):
        def __init__(self, data):
            self.recv = io.BytesIO(data).read
            self.sent = []
            self.sendall = self.sent.append

    template = request.environ_template(False)

    def best_of(fn, n=100000, rounds=7):
        best = None
        for _ in range(rounds):
            t0 = time.perf_counter()
            fn(n)
            t = (time.perf_counter() - t0) / n * 1e6
            best = t if best is None else min(best, t)
        return best

    block1, block2 = encode_vars(pairs), encode_vars_nul(pairs)
    env, _ = request.make_environ(block1, template)
    env['wsgi.input'] = request._EMPTY_INPUT
    sink = []

    def hello_cl(environ, start_response):   # bench/apps/hello.py: with a Content-Length
        start_response('200 OK', [('Content-Type', 'text/plain'), ('Content-Length', '13')])
        return [b'Hello, World!']

    def environ(n, decode=request.make_environ, block=block1):
        for _ in range(n):
            decode(block, template)

    def environ_nul(n):
        environ(n, request.make_environ_nul, block2)

    def run_app(n, run=response._run_app, sendall=sink.append):
        for _ in range(n):
            run(hello_cl, env, None, sendall, 1, b'HTTP/1.1 ', False)
        del sink[:]

    for name, fn in (('make_environ', environ), ('make_environ_nul', environ_nul),
                     ('_run_app, hello', run_app)):
        print('%-24s %8.2f us/call  (Python %s)' % (name, best_of(fn), version))

    n = 20000
    for mode, req in reqs:
        best = None
        for _ in range(5):
            conn = MemoryConn(req * n)
            t0 = time.process_time()
            serve._serve_connection(conn, app, template, 0)
            t = (time.process_time() - t0) / n * 1e6
            assert len(conn.sent) == n
            best = t if best is None else min(best, t)
        print('%-24s %8.1f us/request of Python CPU, no syscalls  (Python %s)'
              % ('in-process, mode %d' % mode, best, version))

    w = Worker(app='hello:app')
    try:
        clk = os.sysconf('SC_CLK_TCK')

        def cpu():
            with open('/proc/%d/stat' % w.proc.pid) as f:
                fields = f.read().rsplit(')', 1)[1].split()
            return int(fields[11]) / clk, int(fields[12]) / clk    # user, system

        want = b'Hello, World!'
        for mode, req in reqs:
            for how, batch in (('lockstep', 1), ('pipelined x32', 32)):
                c = w.conn()
                sock, f = c.sock, c.f
                data = req * batch
                n = 0
                c0 = cpu()
                t0 = time.monotonic()
                while time.monotonic() - t0 < seconds:
                    sock.sendall(data)
                    for _ in range(batch):
                        status = f.readline()
                        while f.readline() != b'\r\n':
                            pass
                        if f.read(13) != want or not status.startswith(b'HTTP/1.1 200'):
                            raise AssertionError('bad response')
                    n += batch
                t = time.monotonic() - t0
                c1 = cpu()
                c.close()
                print('%-24s %8.0f req/s   worker CPU/request: %5.1f us user + %5.1f us system'
                      '  (%d requests, Python %s)'
                      % ('%s, mode %d' % (how, mode), n / t, (c1[0] - c0[0]) / n * 1e6,
                         (c1[1] - c0[1]) / n * 1e6, n, version))
    finally:
        w.cleanup()


if __name__ == '__main__':
    if len(sys.argv) > 1 and sys.argv[1] == '--bench':
        bench(float(sys.argv[2]) if len(sys.argv) > 2 else 3.0)
    else:
        unittest.main()
