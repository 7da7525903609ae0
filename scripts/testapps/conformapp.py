"""A conformance fixture: every route runs inside wsgiref.validate.validator, with its
warnings turned into errors, so any PEP 3333 slip of the server shows in the worker log as
an AssertionError or WSGIWarning. /env echoes the WSGI-visible environ (the differential test
against uWSGI compares it)."""

import hashlib
import io
import json
import sys
import warnings
from wsgiref.validate import WSGIWarning, validator

warnings.simplefilter('error', WSGIWarning)


def _read_all(environ):
    """The body, read in validator-approved read(n) calls."""
    inp = environ['wsgi.input']
    length = environ.get('CONTENT_LENGTH') or ''
    left = int(length) if length else None
    parts = []
    while left is None or left > 0:
        data = inp.read(65536 if left is None else min(65536, left))
        if not data:
            break
        parts.append(data)
        if left is not None:
            left -= len(data)
    return b''.join(parts)


def environ_view(environ):
    """What an app sees of the environ, as JSON-safe values."""
    out = {}
    for k, v in environ.items():
        if isinstance(v, str):
            out[k] = v
        elif k in ('wsgi.version', 'wsgi.multithread', 'wsgi.multiprocess', 'wsgi.run_once',
                   'wsgi.input_terminated'):
            out[k] = v
    return out


def app(environ, start_response):
    path = environ['PATH_INFO']
    method = environ['REQUEST_METHOD']
    text = [('Content-Type', 'text/plain; charset=utf-8')]

    if path == '/env' or path.startswith('/env/'):
        body = _read_all(environ)
        view = environ_view(environ)
        view['__body_sha256'] = hashlib.sha256(body).hexdigest()
        view['__body_length'] = len(body)
        out = json.dumps(view, sort_keys=True).encode('utf-8')
        start_response('200 OK', [('Content-Type', 'application/json'),
                                  ('Content-Length', str(len(out)))])
        return [out]

    if path.startswith('/status/'):
        code = int(path[len('/status/'):])
        reason = {204: 'No Content', 304: 'Not Modified'}[code]
        start_response('%d %s' % (code, reason), [('X-Status', str(code))])
        return []

    if path == '/cookies':
        start_response('200 OK', text + [('Set-Cookie', 'a=1; Path=/'), ('Set-Cookie', 'b=2; HttpOnly')])
        return [b'two cookies']

    if path == '/write':
        write = start_response('200 OK', text)
        write(b'written, ')
        return [b'then returned']

    if path == '/file':
        start_response('200 OK', [('Content-Type', 'application/octet-stream')])
        return environ['wsgi.file_wrapper'](io.BytesIO(b'0123456789' * 1000), 4096)

    if path == '/excinfo':
        start_response('200 OK', text)
        try:
            raise ValueError('replaced before the body')
        except ValueError:
            start_response('500 Internal Server Error', text, sys.exc_info())
        return [b'error page']

    body = _read_all(environ)
    if method == 'HEAD':
        start_response('200 OK', text + [('Content-Length', '7')])
        return []
    if method == 'OPTIONS':
        start_response('200 OK', text + [('Allow', 'GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS')])
        return [b'']
    out = ('%s %s %s %d %s' % (method, path, environ.get('QUERY_STRING', ''), len(body),
                               hashlib.sha256(body).hexdigest())).encode('utf-8')
    start_response('200 OK', text)
    return [out]


application = validator(app)
