"""The in-process limit: call a WSGI app in a loop, with the environ a server would build,
and print how many calls one core makes per second (CPU time, not wall time, so a busy
machine changes the figure less). Usage: inproc.py APPDIR module:callable PATH SECONDS"""

import io
import json
import sys
import time


def main():
    appdir, spec, path, seconds = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4])
    sys.path.insert(0, appdir)
    module, _, name = spec.partition(':')
    app = getattr(__import__(module, fromlist=['_']), name or 'application')
    base = {
        'REQUEST_METHOD': 'GET', 'SCRIPT_NAME': '', 'PATH_INFO': path, 'QUERY_STRING': '',
        'SERVER_NAME': '127.0.0.1', 'SERVER_PORT': '8000', 'SERVER_PROTOCOL': 'HTTP/1.1',
        'REMOTE_ADDR': '127.0.0.1', 'REMOTE_PORT': '40000', 'HTTP_HOST': '127.0.0.1:8000',
        'wsgi.version': (1, 0), 'wsgi.url_scheme': 'http', 'wsgi.errors': sys.stderr,
        'wsgi.multithread': False, 'wsgi.multiprocess': True, 'wsgi.run_once': False,
    }
    status = []

    def start_response(s, headers, exc_info=None):
        status.append(s)

    def call():
        env = dict(base)
        env['wsgi.input'] = io.BytesIO(b'')
        result = app(env, start_response)
        try:
            b''.join(result)
        finally:
            close = getattr(result, 'close', None)
            if close is not None:
                close()

    call()
    if not status or not status[0].startswith('200'):
        sys.exit('inproc: %s %s answered %r' % (spec, path, status[:1]))
    calls, start = 0, time.process_time()
    while time.process_time() - start < seconds:
        for _ in range(200):
            call()
        calls += 200
    cpu = time.process_time() - start
    json.dump({'calls': calls, 'cpu_seconds': cpu, 'calls_per_core_second': calls / cpu,
               'us_per_call': cpu / calls * 1e6}, sys.stdout)
    print()


if __name__ == '__main__':
    main()
