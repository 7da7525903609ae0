"""The smallest WSGI app: the benchmark's hello world (kept here, not shared with the tests,
so that the figures stay comparable from one run to the next)."""


def app(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "13")])
    return [b"Hello, World!"]


application = app
