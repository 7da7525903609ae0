"""Tests for the ASGI worker (herd_worker.asgi*): a real worker subprocess spoken to over
the framed link (docs/protocol.md) by a client written here from the spec. Stdlib only.

    python3 -m unittest discover -s scripts -p 'test_asgi*.py' -v
"""

import os
import socket
import struct
import sys
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.dont_write_bytecode = True
sys.path.insert(0, HERE)
from herd_worker import frames  # noqa: E402
from test_worker import Worker, WAIT, encode_vars  # noqa: E402

H = struct.Struct('<BBII')


def head(path='/', method='GET', extra=()):
    path, _, query = path.partition('?')
    pairs = [('REQUEST_METHOD', method), ('REQUEST_URI', path + ('?' + query if query else '')),
             ('PATH_INFO', path), ('QUERY_STRING', query), ('SCRIPT_NAME', ''),
             ('SERVER_PROTOCOL', 'HTTP/1.1'), ('SERVER_NAME', 'example.com'), ('SERVER_PORT', '80'),
             ('REMOTE_ADDR', '10.0.0.1'), ('REMOTE_PORT', '5555'), ('UWSGI_SCHEME', 'http'),
             ('HTTP_HOST', 'example.com')] + list(extra)
    block = encode_vars(pairs)
    return struct.pack('<BHB', 0, len(block), 1) + block


class Link(object):
    def __init__(self, path):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(WAIT)
        self.sock.connect(path)
        self.buf = b''

    def send(self, ftype, flags, sid, payload=b''):
        self.sock.sendall(frames.frame(ftype, flags, sid, payload))

    def recv(self):
        while True:
            if len(self.buf) >= 10:
                t, f, s, n = H.unpack_from(self.buf)
                if len(self.buf) >= 10 + n:
                    p = self.buf[10:10 + n]
                    self.buf = self.buf[10 + n:]
                    return t, f, s, p
            more = self.sock.recv(65536)
            if not more:
                raise EOFError('link closed')
            self.buf += more

    def response(self, sid, others=None):
        """(status, headers, body, end) of stream sid; frames of other streams go to others."""
        status, headers, body = None, [], b''
        while True:
            t, f, s, p = self.recv()
            if s != sid:
                if others is not None:
                    others.append((t, f, s, p))
                continue
            if t == frames.RESPONSE_START:
                status = struct.unpack_from('<H', p)[0]
                headers = decode_headers(p[2:])
                if f & frames.FLAG_END:
                    return status, headers, body, 'end'
            elif t == frames.RESPONSE_BODY:
                body += p
                if f & frames.FLAG_END:
                    return status, headers, body, 'end'
                self.send(frames.WINDOW, 0, sid, frames.window(len(p))) if p else None
            elif t == frames.SENDFILE:
                return status, headers, p, 'sendfile'
            elif t == frames.END:
                return status, headers, body, 'failed' if p == b'\x01' else 'ok'

    def close(self):
        self.sock.close()


def decode_headers(b):
    out = []
    while b:
        n = struct.unpack_from('<H', b)[0]
        k, b = b[2:2 + n], b[2 + n:]
        n = struct.unpack_from('<H', b)[0]
        v, b = b[2:2 + n], b[2 + n:]
        out.append((k, v))
    return out


class ASGIWorkerTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.worker = Worker(app='asgiapp:app')

    @classmethod
    def tearDownClass(cls):
        cls.worker.cleanup()

    def link(self):
        link = Link(self.worker.path)
        self.addCleanup(link.close)
        return link

    def test_hello(self):
        link = self.link()
        link.send(frames.REQUEST, frames.FLAG_END, 1, head('/'))
        self.assertEqual(link.recv()[:3], (frames.STARTED, 0, 1))
        status, headers, body, end = link.response(1)
        self.assertEqual((status, body, end), (200, b'Hello, ASGI!\n', 'end'))

    def test_scope(self):
        import json
        link = self.link()
        link.send(frames.REQUEST, frames.FLAG_END, 5, head('/scope?a=%20b', extra=[
            ('HTTP_X_MY_HEADER', 'v'), ('HTTP_COOKIE', 'a=1; b=2')]))
        status, _, body, _ = link.response(5)
        scope = json.loads(body)
        self.assertEqual(scope['method'], 'GET')
        self.assertEqual(scope['path'], '/scope')
        self.assertEqual(scope['query_string'], 'a=%20b')
        self.assertEqual(scope['client'], ['10.0.0.1', 5555])
        self.assertEqual(scope['server'], ['example.com', 80])
        self.assertEqual(scope['http_version'], '1.1')
        self.assertIn(['x-my-header', 'v'], scope['headers'])
        self.assertIn(['host', 'example.com'], scope['headers'])
        self.assertEqual(scope['state'], {'started': 'yes'})
        self.assertEqual(scope['extensions'], ['http.response.pathsend'])

    def test_echo_with_flow_control(self):
        """A body larger than the window goes in as the worker grants credit."""
        link = self.link()
        body = os.urandom(300000)
        link.send(frames.REQUEST, 0, 3, head('/echo', 'POST', [('CONTENT_LENGTH', str(len(body)))]))
        credit, sent = frames.INITIAL_WINDOW, 0
        status = None
        got = b''
        while True:
            while sent < len(body) and credit > 0:
                n = min(credit, len(body) - sent, 50000)
                last = sent + n == len(body)
                link.send(frames.BODY, frames.FLAG_END if last else 0, 3, body[sent:sent + n])
                sent += n
                credit -= n
            t, f, s, p = link.recv()
            if t == frames.WINDOW:
                credit += frames.decode_window(p)
            elif t == frames.RESPONSE_START:
                status = struct.unpack_from('<H', p)[0]
            elif t == frames.RESPONSE_BODY:
                got += p
                if f & frames.FLAG_END:
                    break
                link.send(frames.WINDOW, 0, 3, frames.window(len(p)))
        self.assertEqual(status, 200)
        self.assertEqual(got, body)

    def test_response_waits_for_credit(self):
        link = self.link()
        link.send(frames.REQUEST, frames.FLAG_END, 9, head('/big?n=300000'))
        got = 0
        deadline = time.monotonic() + WAIT
        while got < frames.INITIAL_WINDOW and time.monotonic() < deadline:
            t, f, s, p = link.recv()
            if t == frames.RESPONSE_BODY:
                got += len(p)
        self.assertEqual(got, frames.INITIAL_WINDOW)   # and no more without credit
        link.sock.settimeout(0.3)   # time is the subject: nothing more may come
        with self.assertRaises(socket.timeout):
            link.recv()
        link.sock.settimeout(WAIT)
        link.send(frames.WINDOW, 0, 9, frames.window(1 << 20))
        _, _, body, end = link.response(9)
        self.assertEqual((got + len(body), end), (300000, 'end'))

    def test_many_at_once(self):
        link = self.link()
        start = time.monotonic()
        for sid in range(1, 51):
            link.send(frames.REQUEST, frames.FLAG_END, sid, head('/slow?s=0.5'))
        done = set()
        while len(done) < 50:
            t, f, s, p = link.recv()
            if t == frames.RESPONSE_BODY and f & frames.FLAG_END:
                done.add(s)
        self.assertLess(time.monotonic() - start, 3)

    def test_disconnect_reaches_the_app(self):
        link = self.link()
        link.send(frames.REQUEST, frames.FLAG_END, 2, head('/wait-disconnect'))
        self.assertEqual(link.recv()[0], frames.STARTED)
        link.send(frames.DISCONNECT, 0, 2, bytes([frames.REASON_CLIENT_GONE]))
        self.assertEqual(link.response(2)[3], 'ok')
        link.send(frames.REQUEST, frames.FLAG_END, 4, head('/disconnects'))
        self.assertNotEqual(link.response(4)[2], b'0')

    def test_errors(self):
        link = self.link()
        link.send(frames.REQUEST, frames.FLAG_END, 1, head('/error'))
        self.assertEqual(link.response(1)[0], 500)
        link.send(frames.REQUEST, frames.FLAG_END, 2, head('/error-after'))
        status, _, body, end = link.response(2)
        self.assertEqual((status, body, end), (200, b'partial', 'failed'))
        link.send(frames.REQUEST, frames.FLAG_END, 3, head('/noresponse'))
        self.assertEqual(link.response(3)[0], 500)

    def test_pathsend(self):
        link = self.link()
        link.send(frames.REQUEST, frames.FLAG_END, 1, head('/pathsend'))
        status, _, path, end = link.response(1)
        self.assertEqual((status, end), (200, 'sendfile'))
        self.assertTrue(path.endswith(b'asgiapp.py'))

    def test_websocket(self):
        link = self.link()
        link.send(frames.WS_CONNECT, 0, 7, head('/ws', extra=[('HTTP_SEC_WEBSOCKET_PROTOCOL', 'chat, x')]))
        self.assertEqual(link.recv()[0], frames.STARTED)
        t, f, s, p = link.recv()
        self.assertEqual(t, frames.WS_ACCEPT)
        self.assertEqual(p[2:6], b'chat')
        link.send(frames.WS_TEXT, frames.FLAG_MORE, 7, 'héllo '.encode())
        link.send(frames.WS_TEXT, 0, 7, b'world')
        self.assertEqual(link.recv()[:4], (frames.WS_TEXT, 0, 7, 'héllo world'.encode()))
        link.send(frames.WS_BINARY, 0, 7, b'\x00\x01')
        self.assertEqual(link.recv()[3], b'\x00\x01')
        link.send(frames.WS_TEXT, 0, 7, b'state')
        self.assertEqual(link.recv()[3], b'{"started": "yes"}')
        link.send(frames.WS_CLOSE, 0, 7, frames.close(1000, 'bye'))
        self.assertEqual(link.recv()[:4], (frames.END, 0, 7, b'\x00'))

    def test_websocket_denied(self):
        link = self.link()
        link.send(frames.WS_CONNECT, 0, 1, head('/ws-deny'))
        status, _, body, _ = link.response(1)
        self.assertEqual((status, body), (403, b'denied\n'))
        link.send(frames.WS_CONNECT, 0, 2, head('/ws-close'))
        link.recv()
        self.assertEqual(link.recv()[:3], (frames.WS_CLOSE, 0, 2))

    def test_bad_frame_breaks_the_link_only(self):
        link = self.link()
        link.sock.sendall(b'\x63' + b'\x00' * 9)
        with self.assertRaises((EOFError, ConnectionResetError)):
            link.recv()
        other = self.link()
        other.send(frames.REQUEST, frames.FLAG_END, 1, head('/'))
        self.assertEqual(other.response(1)[0], 200)


class LifespanTest(unittest.TestCase):
    def test_startup_failure_is_a_boot_error(self):
        w = Worker(app='asgiapp:app', control=True, wait=False,
                   env={'HERD_TEST_LIFESPAN_FAIL': '1'})
        self.addCleanup(w.cleanup)
        msg = w.message()
        self.assertEqual(msg['event'], 'boot_error')
        self.assertEqual(msg['kind'], 'app_lifespan')
        self.assertIn('the database is down', msg['error'])
        self.assertEqual(w.wait_exit(), 4)

    def test_shutdown_runs_when_the_master_goes(self):
        marker = os.path.join(os.environ.get('TMPDIR', '/tmp'), 'herd-shutdown-%d' % os.getpid())
        self.addCleanup(lambda: os.path.exists(marker) and os.remove(marker))
        w = Worker(app='asgiapp:app', control=True, env={'HERD_TEST_SHUTDOWN_FILE': marker})
        self.addCleanup(w.cleanup)
        msg = w.message()
        self.assertEqual((msg['event'], msg['link']), ('ready', 'framed'))
        w.control.shutdown(socket.SHUT_RDWR)   # EOF, as when the master closes its end
        self.assertEqual(w.wait_exit(), 0)
        with open(marker) as f:
            self.assertIn('shutdown', f.read())

    def test_asgi2_served_with_interface_asgi(self):
        w = Worker(app='asgi2app:app', control=True, args=['--interface', 'asgi'])
        self.addCleanup(w.cleanup)
        self.assertEqual(w.message()['link'], 'framed')
        link = Link(w.path)
        self.addCleanup(link.close)
        link.send(frames.REQUEST, frames.FLAG_END, 1, head('/'))
        status, _, body, _ = link.response(1)
        self.assertEqual((status, body), (200, b'ASGI 2 says hello\n'))

    def test_wsgi_app_refused_as_asgi(self):
        w = Worker(app='hello:app', control=True, wait=False, args=['--interface', 'asgi'])
        self.addCleanup(w.cleanup)
        msg = w.message()
        self.assertEqual(msg['event'], 'boot_error')
        self.assertIn('WSGI', msg['error'])


if __name__ == '__main__':
    unittest.main()
