"""The benchmark's payload app, stdlib only: GET /64k answers 64 KiB (where a router's small
buffers show), POST /echo answers the request body back (1 MiB in the benchmark)."""

BIG = b"x" * 65536


def app(environ, start_response):
    if environ.get("REQUEST_METHOD") == "POST":
        length = int(environ.get("CONTENT_LENGTH") or 0)
        body = environ["wsgi.input"].read(length)
        start_response("200 OK", [("Content-Type", "application/octet-stream"),
                                  ("Content-Length", str(len(body)))])
        return [body]
    start_response("200 OK", [("Content-Type", "application/octet-stream"),
                              ("Content-Length", str(len(BIG)))])
    return [BIG]


application = app
