"""The app behind the uwsgi front end's fuzz target and tests (proxy/uwsgi_test.go). Stdlib
only; never slow, whatever the request: every route answers at once.
  /stream   three parts, no Content-Length (the worker sends it chunked)
  /env      the environ's str values, one KEY=VALUE a line
  else      "METHOD PATH_INFO BODYLENGTH"
"""


def app(environ, start_response):
    path = environ.get("PATH_INFO", "")
    body = environ["wsgi.input"].read()
    if path == "/stream":
        start_response("200 OK", [("Content-Type", "text/plain")])
        return (b"part %d\n" % i for i in range(3))
    if path == "/env":
        text = "".join("%s=%s\n" % (k, v) for k, v in sorted(environ.items()) if isinstance(v, str))
        data = text.encode("latin-1", "replace")
    else:
        data = ("%s %s %d" % (environ.get("REQUEST_METHOD"), path, len(body))).encode("latin-1", "replace")
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(data)))])
    return [data]
