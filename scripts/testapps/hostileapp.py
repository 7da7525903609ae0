"""The app behind the hostile-client suite (cmd/herd/hostile_test.go).

Every request whose path starts with /smuggled appends one line to the file named by
HERD_HOSTILE_COUNT: the test reads it to prove that no request hidden behind a refused
one ever reached the app, whichever worker would have served it.
"""

import os


def _count(path):
    with open(os.environ['HERD_HOSTILE_COUNT'], 'a') as f:
        f.write(path + '\n')


def app(environ, start_response):
    path = environ.get('PATH_INFO', '')
    if path.startswith('/smuggled'):
        _count(path)
        body = b'smuggled'
    elif path == '/big':
        n = int(environ.get('QUERY_STRING', '').partition('n=')[2] or 65536)
        body = b'x' * n
    elif path == '/stream':
        # No Content-Length: the master streams it to the client as the worker writes it,
        # holding the worker until the client has taken it (or is given up).
        mib = int(environ.get('QUERY_STRING', '').partition('mib=')[2] or 256)
        start_response('200 OK', [('Content-Type', 'application/octet-stream')])
        return (b'x' * 65536 for _ in range(16 * mib))
    elif path == '/echo':
        length = int(environ.get('CONTENT_LENGTH') or 0)
        body = environ['wsgi.input'].read(length)
    else:
        body = b'Hello, World!'
    start_response('200 OK', [('Content-Type', 'text/plain'),
                              ('Content-Length', str(len(body)))])
    return [body]
