"""A fixture that starts a non-daemon thread at import and flushes something at exit."""

import atexit
import os
import threading
import time

MARK = os.environ.get('HERD_TEST_ATEXIT_MARK')


def _flush():
    if MARK:
        with open(MARK, 'w') as f:
            f.write('flushed')


atexit.register(_flush)
threading.Thread(target=time.sleep, args=(3600,), name='app-background').start()


def app(environ, start_response):
    start_response('200 OK', [('Content-Type', 'text/plain')])
    return [b'ok']
