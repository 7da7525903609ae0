"""The smallest WSGI app: the benchmark fixture."""


def app(environ, start_response):
    start_response('200 OK', [('Content-Type', 'text/plain')])
    return [b'Hello, World!']
