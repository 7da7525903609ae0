"""A WSGI app for --preload's tests (test_forkserver.py, server/preload_test.go): what a
preloaded app does at import, and routes that show each worker still has it.

At import it allocates $PRELOAD_MB megabytes (default 0) of Python objects (tuples, strs
and lists, as a real app's modules and caches are), opens a file and a socketpair, and
starts a thread that logs without pause (so that a fork may happen while it holds the
logging module's locks). Routes:

    /pid      the worker's pid
    /random   a number from the random module (each worker must draw its own)
    /file     the first line of the file opened at import, read again from the top
    /socket   a round trip through the socketpair opened at import
    /log      logs a line through the logging module (it must not hang) and answers ok
    /gc       gc.collect(), then the pid
    /hooks    what the gunicorn hooks of preload.conf.py recorded in this process
    /sleep    sleeps 10 s (for --timeout)
    /version  $PRELOAD_VERSION, or what version.txt next to this file said at import
"""

import gc
import logging
import os
import random
import socket
import sys
import threading
import time

_MB = int(os.environ.get('PRELOAD_MB', '0'))
# About 175 bytes of objects per item (a 2-tuple, an int, a str, a list slot): 6000 items a
# MiB (PRELOAD_MB=150 grows a process by 150 MiB).
DATA = [(i, 'item-%08d' % i) for i in range(_MB * 6000)]

_FILE = open(__file__, 'rb')
_PAIR = socket.socketpair()

log = logging.getLogger('preloadapp')
logging.basicConfig(stream=sys.stderr, level=logging.INFO, format='%(message)s')


def _chatter():
    quiet = logging.getLogger('preloadapp.chatter')
    quiet.addHandler(logging.NullHandler())
    quiet.propagate = False
    while True:
        quiet.info('tick')      # takes and releases the handler's lock all the time
        time.sleep(0.0001)


threading.Thread(target=_chatter, daemon=True).start()

try:
    with open(os.path.join(os.path.dirname(os.path.abspath(__file__)), 'version.txt')) as f:
        VERSION = f.read().strip()
except OSError:
    VERSION = os.environ.get('PRELOAD_VERSION', 'v0')

# Set by the hooks of preload.conf.py in the process they run in.
HOOKS = []


def _text(start_response, body):
    body = body.encode('utf-8') if isinstance(body, str) else body
    start_response('200 OK', [('Content-Type', 'text/plain'), ('Content-Length', str(len(body)))])
    return [body]


def app(environ, start_response):
    path = environ.get('PATH_INFO', '/')
    if path == '/random':
        return _text(start_response, repr(random.random()))
    if path == '/file':
        _FILE.seek(0)
        return _text(start_response, _FILE.readline())
    if path == '/socket':
        _PAIR[0].sendall(b'ping %d' % os.getpid())
        return _text(start_response, _PAIR[1].recv(100))
    if path == '/log':
        log.info('logged by %d', os.getpid())
        return _text(start_response, 'ok')
    if path == '/gc':
        gc.collect()
    elif path == '/hooks':
        return _text(start_response, ','.join(HOOKS))
    elif path == '/sleep':
        time.sleep(10)
    elif path == '/version':
        return _text(start_response, VERSION)
    return _text(start_response, str(os.getpid()))
