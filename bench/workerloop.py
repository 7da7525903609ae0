"""herd's worker code around an app, in memory: CPU per request of the app alone (with the
environ the worker builds) and of the worker's own path (make_environ, then _run_app with
its start_response and framing), on one process, no socket. The difference is what
scripts/worker.py adds per request before any system call; compare with the CPU a real
worker spends per request (docs/BENCHMARKS.md, "Where the time goes").

Usage (from the repository's top directory, under the Python to measure):
    .venv/bin/python bench/workerloop.py flaskapp:app /hello
Prints, for 3 interleaved rounds of 1 s of CPU each, us per request of both."""

import importlib.util
import io
import sys
import time


def main():
    spec, path = sys.argv[1], sys.argv[2]
    sys.path.insert(0, 'bench/apps')
    loader = importlib.util.spec_from_file_location('herd_worker', 'scripts/worker.py')
    w = importlib.util.module_from_spec(loader)
    loader.loader.exec_module(w)
    module, _, name = spec.partition(':')
    app = getattr(__import__(module), name or 'application')
    # The vars herd's master sends for `GET path` from wrk (Host only), classic uwsgi form.
    pairs = {'REQUEST_METHOD': 'GET', 'REQUEST_URI': path, 'RAW_URI': path, 'PATH_INFO': path,
             'QUERY_STRING': '', 'SERVER_PROTOCOL': 'HTTP/1.1', 'REMOTE_ADDR': '127.0.0.1',
             'REMOTE_PORT': '48928', 'SERVER_NAME': '127.0.0.1', 'SERVER_PORT': '8000',
             'HTTP_HOST': '127.0.0.1:8000', 'UWSGI_SCHEME': 'http'}
    block = b''.join(len(k).to_bytes(2, 'little') + k.encode() + len(v).to_bytes(2, 'little') + v.encode()
                     for k, v in pairs.items())
    template = w.environ_template(False)

    def sendall(data):
        pass

    def app_alone():
        env, _ = w.make_environ(block, template)
        env['wsgi.input'] = io.BytesIO(b'')
        result = app(env, lambda status, headers, exc_info=None: None)
        b''.join(result)
        getattr(result, 'close', lambda: None)()

    def worker_path():
        env, _ = w.make_environ(block, template)
        env['wsgi.input'] = w._EMPTY_INPUT
        w._run_app(app, env, None, sendall, 1, b'HTTP/1.1 ', False)

    for rnd in range(3):
        for f in (app_alone, worker_path):
            for _ in range(300):
                f()
            n, start = 0, time.process_time()
            while time.process_time() - start < 1.0:
                for _ in range(200):
                    f()
                n += 200
            print('round %d %-12s %7.1f us per request' % (rnd + 1, f.__name__, (time.process_time() - start) / n * 1e6))


if __name__ == '__main__':
    main()
