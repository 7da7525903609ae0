"""WSGI fixture app for test_worker.py: one route per behaviour, chosen by PATH_INFO."""

import hashlib
import io
import json
import os
import sys
import threading
import time

# Observed by the tests through /closed: how many response iterables were closed.
_closed = {'n': 0}
_lock = threading.Lock()


class Closing(object):
    """An iterable with close(); fail='iter' raises during iteration, slow=True yields
    many chunks slowly (the client goes away meanwhile)."""

    def __init__(self, chunks, fail=False, slow=False):
        self.chunks = chunks
        self.fail = fail
        self.slow = slow

    def __iter__(self):
        for c in self.chunks:
            if self.slow:
                time.sleep(0.002)
            yield c
        if self.fail:
            raise RuntimeError('boom while iterating')

    def close(self):
        with _lock:
            _closed['n'] += 1


class SequenceBody(object):
    """Iterates over its own list (or tuple), as Django's HttpResponse does, and counts
    its close() like Closing."""

    def __init__(self, parts):
        self.parts = parts

    def __iter__(self):
        return iter(self.parts)

    def close(self):
        with _lock:
            _closed['n'] += 1


class NoRead(io.FileIO):
    """A file only sendfile can serve: read() fails."""

    def read(self, size=-1):
        raise AssertionError('read() called: sendfile was not used')


def _text(start_response, body, status='200 OK', extra=()):
    if isinstance(body, str):
        body = body.encode('utf-8')
    start_response(status, [('Content-Type', 'text/plain')] + list(extra))
    return [body]


def _query(environ):
    q = {}
    for part in environ.get('QUERY_STRING', '').split('&'):
        if part:
            k, _, v = part.partition('=')
            q[k] = v
    return q


def app(environ, start_response):
    path = environ.get('PATH_INFO', '')
    q = _query(environ)
    route = path.split('/')[1] if path.count('/') >= 1 else ''

    if route == 'hello':
        start_response('200 OK', [('Content-Type', 'text/plain')])
        return [b'Hello, World!']

    if route == 'env':
        out = {}
        for k, v in environ.items():
            if isinstance(v, str):
                out[k] = v
            else:
                out[k] = repr(v) if not isinstance(v, (bool, int, tuple)) else v
        out['__input_type'] = type(environ['wsgi.input']).__name__
        out['__errors_is_stderr'] = environ['wsgi.errors'] is sys.stderr
        return _text(start_response, json.dumps(out, sort_keys=True))

    if route == 'echo':      # whole body back, Content-Length added by the worker
        body = environ['wsgi.input'].read()
        start_response('200 OK', [('Content-Type', 'application/octet-stream')])
        return [body]

    if route == 'echo-stream':   # body back in pieces: chunked in keep-alive mode
        inp = environ['wsgi.input']
        size = int(q.get('size', '65536'))

        def gen():
            while True:
                data = inp.read(size)
                if not data:
                    return
                yield data
        start_response('200 OK', [('Content-Type', 'application/octet-stream')])
        return gen()

    if route == 'sha':
        h = hashlib.sha256()
        n = 0
        inp = environ['wsgi.input']
        while True:
            data = inp.read(100000)
            if not data:
                break
            h.update(data)
            n += len(data)
        return _text(start_response, '%d %s' % (n, h.hexdigest()))

    if route == 'readmore':   # asks for far more than the body
        inp = environ['wsgi.input']
        how = q.get('how', 'read')
        if how == 'read':
            data = inp.read(int(environ.get('CONTENT_LENGTH') or 0) + 100000)
            data += inp.read()
            data += inp.read(10)
        elif how == 'readline':
            data = b''.join(iter(lambda: inp.readline(1 << 20), b''))
            data += inp.readline()
        elif how == 'readlines':
            data = b''.join(inp.readlines())
        elif how == 'iter':
            data = b''.join(list(inp))
        elif how == 'none':
            data = inp.read(None) + inp.read(-1)
        else:
            data = b''
        return _text(start_response, data)

    if route == 'lines':
        inp = environ['wsgi.input']
        first = inp.readline()
        part = inp.readline(3)
        rest = inp.readlines()
        lines = [first, part] + rest
        return _text(start_response, json.dumps([x.decode('latin-1') for x in lines]))

    if route == 'ignore':
        return _text(start_response, 'ignored')

    if route == 'chunks':
        start_response('200 OK', [('Content-Type', 'text/plain')])

        def gen():
            yield b''
            yield b'one,'
            yield b''
            yield b'two,'
            yield bytearray(b'three')
        return gen()

    if route == 'seqiter':     # the worker sees every block is here: Content-Length
        start_response('200 OK', [('Content-Type', 'text/plain')])
        parts = [b'one,', b'', bytearray(b'two')]
        return SequenceBody(tuple(parts) if q.get('tuple') else parts)

    if route == 'big':     # n bytes in one piece: the worker adds Content-Length
        return _text(start_response, b'x' * int(q.get('n', '65536')))

    if route == 'bigpaced':  # n parts of size bytes a pause apart, all under one Content-Length;
        # die=K: the worker dies before part K
        n, size = int(q.get('n', '4')), int(q.get('size', str(1 << 20)))
        pause, die = float(q.get('pause', '0.3')), int(q.get('die', '-1'))
        start_response('200 OK', [('Content-Type', 'application/octet-stream'),
                                  ('Content-Length', str(n * size))])

        def bigpaced():
            for i in range(n):
                if i == die:
                    os._exit(9)
                if i:
                    time.sleep(pause)
                yield b'x' * size
        return bigpaced()

    if route == 'paced':   # parts a pause apart; mode=sse|cl|accel picks how it is framed
        n, pause, mode = int(q.get('n', '3')), float(q.get('pause', '0.5')), q.get('mode', 'sse')
        hdrs = [('Content-Type', 'text/event-stream' if mode == 'sse' else 'text/plain')]
        if mode in ('cl', 'accel'):
            hdrs.append(('Content-Length', str(n * len(b'data: part\n\n'))))
        if mode == 'accel':
            hdrs.append(('X-Accel-Buffering', 'no'))

        def paced():
            for i in range(n):
                if i:
                    time.sleep(pause)
                yield b'data: part\n\n'
        start_response('200 OK', hdrs)
        return paced()

    if route == 'cl':      # a generator with the app's own Content-Length
        start_response('200 OK', [('Content-Length', '11')])
        return iter([b'hello', b' ', b'world'])

    if route == 'short':   # promises 10, gives 5
        start_response('200 OK', [('Content-Length', '10')])
        return iter([b'12345'])

    if route == 'long':    # promises 5, gives 10
        start_response('200 OK', [('Content-Length', '5')])
        return iter([b'12345', b'67890'])

    if route == 'status':
        code = q.get('code', '200')
        reasons = {'204': 'No Content', '304': 'Not Modified', '200': 'OK', '404': 'Not Found'}
        start_response('%s %s' % (code, reasons.get(code, 'X')), [('X-Code', code)])
        return [b'should not be sent']

    if route == 'raise':
        raise RuntimeError('boom before headers')

    if route == 'raise-after':
        start_response('200 OK', [('Content-Type', 'text/plain')])

        def gen():
            yield b'partial'
            raise RuntimeError('boom after headers')
        return gen()

    if route == 'excinfo':   # replace the status before the headers go out
        start_response('200 OK', [('Content-Type', 'text/plain')])
        try:
            raise ValueError('oops')
        except ValueError:
            start_response('503 Service Unavailable', [('Content-Type', 'text/plain'),
                                                       ('X-Replaced', '1')], sys.exc_info())
        return [b'replaced']

    if route == 'excinfo-after':   # headers already sent: start_response re-raises
        write = start_response('200 OK', [('Content-Type', 'text/plain')])
        write(b'sent')
        try:
            raise ValueError('late oops')
        except ValueError:
            try:
                start_response('500 Error', [], sys.exc_info())
            except ValueError as e:
                with _lock:
                    _closed['reraised'] = str(e)
                raise
        return [b'not reached']

    if route == 'twice':
        start_response('200 OK', [])
        start_response('200 OK', [])
        return [b'not reached']

    if route == 'reraised':
        return _text(start_response, _closed.get('reraised', ''))

    if route == 'write':
        write = start_response('200 OK', [('Content-Type', 'text/plain')])
        write(b'written,')
        write(b'')
        write(b'more,')
        return [b'returned']

    if route == 'write-cl':
        write = start_response('200 OK', [('Content-Length', '9')])
        write(b'abc')
        return iter([b'def', b'ghi'])

    if route == 'close':
        start_response('200 OK', [('Content-Type', 'text/plain')])
        return Closing([b'a', b'b'])

    if route == 'close-fail':
        start_response('200 OK', [('Content-Type', 'text/plain')])
        return Closing([b'a', b'b'], fail=True)

    if route == 'close-fail-early':
        start_response('200 OK', [('Content-Type', 'text/plain')])
        return Closing([], fail=True)

    if route == 'close-slow':
        start_response('200 OK', [('Content-Type', 'text/plain')])
        return Closing([b'x' * 65536] * 2000, slow=True)

    if route == 'closed':
        with _lock:
            n = _closed['n']
        return _text(start_response, str(n))

    if route == 'file':
        name = q['name']
        f = NoRead(name) if 'noread' in q else open(name, 'rb')
        skip = int(q.get('skip', '0'))
        if skip:
            f.read(skip)
        hdrs = [('Content-Type', 'application/octet-stream')]
        if 'cl' in q:
            hdrs.append(('Content-Length', q['cl']))
        start_response('200 OK', hdrs)
        return environ['wsgi.file_wrapper'](f, 4096)

    if route == 'file-bytesio':
        start_response('200 OK', [('Content-Type', 'application/octet-stream')])
        return environ['wsgi.file_wrapper'](io.BytesIO(b'0123456789' * 1000), 1000)

    if route == 'slow':
        if 'mark' in q:     # tells the test the request reached the app
            open(q['mark'], 'w').close()
        time.sleep(float(q.get('t', '0.5')))
        return _text(start_response, threading.current_thread().name)

    if route == 'badheader':
        kind = q.get('kind', 'crlf')
        headers = {
            'crlf': [('X-Bad', 'a\r\nInjected: yes')],
            'nul': [('X-Bad', 'a\x00b')],
            'name': [('X Bad', 'a')],
            'colon': [('X-Bad: x', 'a')],
            'bytes': [(b'X-Bad', b'a')],
            'notuple': [('X-Bad',)],
            'nonlatin': [('X-Bad', '\u20ac')],
        }[kind]
        start_response('200 OK', headers)
        return [b'not reached']

    if route == 'badstatus':
        start_response(q.get('s', '200'), [])
        return [b'not reached']

    if route == 'str':
        start_response('200 OK', [])
        return ['a str body']

    if route == 'str-gen':
        start_response('200 OK', [])
        return iter(['a str body'])

    if route == 'none':
        start_response('200 OK', [])
        return None

    if route == 'nostart':
        return [b'no start_response']

    if route == 'hop':
        start_response('200 OK', [('Connection', 'close'), ('Keep-Alive', 'timeout=5'),
                                  ('X-Kept', 'yes')])
        return iter([b'hop'])

    if route == 'latin1':     # a header value and body from latin-1 environ values
        start_response('200 OK', [('X-Path', environ['PATH_INFO'])])
        return [environ['PATH_INFO'].encode('latin-1')]

    start_response('404 Not Found', [('Content-Type', 'text/plain')])
    return [b'not found: ' + path.encode('latin-1')]
