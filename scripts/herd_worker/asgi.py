"""The ASGI worker's link and its HTTP streams: one asyncio protocol per link connection
from the master (the framed link, docs/protocol.md), demultiplexing frames into streams,
each served by one task running the app; the scope made from the request's uwsgi vars; the
receive and send callables with their flow control. WebSocket streams: asgi_ws.py; the
event loop, lifespan and start-up: asgi_serve.py.
"""

import asyncio
import sys

from . import frames
from .frames import FLAG_END, HEADER_SIZE, INITIAL_WINDOW
from .process import _log, _log_exc
from .request import make_environ, make_environ_nul

_ASGI = {'version': '3.0', 'spec_version': '2.4'}
_EXTENSIONS = {'http.response.pathsend': {}}
_frame = frames.frame
_WINDOW_EVERY = INITIAL_WINDOW // 2   # credit is given back in batches of at least this


def environ_of(head):
    """The CGI vars of a FrameRequest/FrameWSConnect payload (a uwsgi packet head)."""
    if head[0] != 0 or head[3] not in (1, 2):
        raise frames.FrameError('request head is no uwsgi packet head')
    size = head[1] | head[2] << 8
    if size != len(head) - 4:
        raise frames.FrameError('request head size %d, frame holds %d' % (size, len(head) - 4))
    decode = make_environ_nul if head[3] == 2 else make_environ
    return decode(head[4:], {})[0]


def scope_of(env, kind, state):
    """The ASGI scope for the CGI vars the master sends (proxy.RequestVars): headers come
    back from HTTP_* (the master drops names with '_', so '_' -> '-' is exact)."""
    headers = []
    append = headers.append
    for k, v in env.items():
        if k[:5] == 'HTTP_':
            append((k[5:].replace('_', '-').lower().encode('latin-1'), v.encode('latin-1')))
    if 'CONTENT_TYPE' in env:
        append((b'content-type', env['CONTENT_TYPE'].encode('latin-1')))
    if 'CONTENT_LENGTH' in env:
        append((b'content-length', env['CONTENT_LENGTH'].encode('latin-1')))
    root = env.get('SCRIPT_NAME', '')
    path = (root + env.get('PATH_INFO', '')).encode('latin-1').decode('utf-8', 'replace')
    uri = env.get('REQUEST_URI') or '/'
    proto = env.get('SERVER_PROTOCOL', 'HTTP/1.1')[5:]
    scheme = env.get('wsgi.url_scheme', 'http')
    addr, port = env.get('REMOTE_ADDR'), env.get('REMOTE_PORT', '')
    sname, sport = env.get('SERVER_NAME'), env.get('SERVER_PORT', '')
    scope = {
        'type': kind,
        'asgi': _ASGI,
        'http_version': '2' if proto[:1] == '2' else proto or '1.1',
        'scheme': scheme if kind == 'http' else ('wss' if scheme == 'https' else 'ws'),
        'path': path,
        'raw_path': uri.partition('?')[0].encode('latin-1'),
        'query_string': env.get('QUERY_STRING', '').encode('latin-1'),
        'root_path': root.encode('latin-1').decode('utf-8', 'replace'),
        'headers': headers,
        'client': (addr, int(port) if port.isdigit() else 0) if addr else None,
        'server': (sname, int(sport) if sport.isdigit() else None) if sname else None,
        'extensions': _EXTENSIONS,
    }
    if kind == 'http':
        scope['method'] = env.get('REQUEST_METHOD', 'GET')
    else:
        protocols = env.get('HTTP_SEC_WEBSOCKET_PROTOCOL', '')
        scope['subprotocols'] = [p.strip() for p in protocols.split(',') if p.strip()]
    if state is not None:
        scope['state'] = state.copy()
    return scope


class Link(asyncio.Protocol):
    """One connection from the master: frames in, streams out."""

    def __init__(self, server):
        self.server = server
        self.transport = None
        self.decoder = frames.Decoder()
        self.streams = {}
        self.out = []
        self.flushing = False

    def connection_made(self, transport):
        self.transport = transport
        self.server.links.add(self)

    def connection_lost(self, exc):
        self.server.links.discard(self)
        for s in list(self.streams.values()):
            s.on_disconnect(frames.REASON_CLIENT_GONE)
        self.streams.clear()

    def write(self, data):
        """Queue bytes for the master: everything queued in one turn of the loop goes in
        one send."""
        self.out.append(data)
        if not self.flushing:
            self.flushing = True
            self.server.loop.call_soon(self.flush)

    def flush(self):
        self.flushing = False
        if self.out and self.transport is not None:
            data = b''.join(self.out) if len(self.out) > 1 else self.out[0]
            self.out = []
            if not self.transport.is_closing():
                self.transport.write(data)

    def data_received(self, data):
        try:
            got = self.decoder.feed(data)
        except frames.FrameError as e:
            _log('framed link broken: %s' % e)
            self.transport.abort()
            return
        started = []
        for ftype, flags, sid, payload in got:
            if ftype == frames.REQUEST or ftype == frames.WS_CONNECT:
                s = self.open(ftype, flags, sid, payload)
                if s is not None:
                    started.append(s)
                continue
            if ftype == frames.PING:
                self.write(_frame(frames.PONG, 0, 0, payload))
                continue
            s = self.streams.get(sid)
            if s is not None:   # else over already: a late frame
                s.on_frame(ftype, flags, payload)
        if started:
            # In the kernel before any app code runs: a link that breaks before the master
            # reads STARTED proves the request was never begun (docs/protocol.md).
            self.flush()
            self.transport.write(b''.join(_frame(frames.STARTED, 0, s.sid) for s in started))
            for s in started:
                s.task = self.server.loop.create_task(s.run())

    def open(self, ftype, flags, sid, payload):
        if sid in self.streams:
            _log('framed link broken: stream %d opened twice' % sid)
            self.transport.abort()
            return None
        try:
            env = environ_of(payload)
        except (ValueError, frames.FrameError) as e:
            _log('bad request head on stream %d: %s' % (sid, e))
            self.write(_frame(frames.RESPONSE_START, FLAG_END, sid, frames.response_start(400, [])))
            return None
        if ftype == frames.REQUEST:
            s = HTTPStream(self, sid, env, flags & FLAG_END)
        else:
            from .asgi_ws import WSStream
            s = WSStream(self, sid, env)
        self.streams[sid] = s
        return s

    def end(self, stream):
        self.streams.pop(stream.sid, None)


class Stream(object):
    """What HTTP and WebSocket streams share: the task, credit both ways, waking up."""

    def __init__(self, link, sid, env):
        self.link = link
        self.sid = sid
        self.env = env
        self.task = None
        self.credit = INITIAL_WINDOW    # bytes we may still send
        self.owed = 0                   # bytes received and consumed, not yet granted back
        self.gone = False               # the master sent DISCONNECT, or the link broke
        self.over = False               # we sent our last frame
        self.waiter = None

    def wake(self):
        w = self.waiter
        if w is not None and not w.done():
            w.set_result(None)

    async def wait(self):
        self.waiter = self.link.server.loop.create_future()
        try:
            await self.waiter
        finally:
            self.waiter = None

    def consumed(self, n):
        """The app took n data bytes: grant them back, in batches."""
        self.owed += n
        if self.owed >= _WINDOW_EVERY and not self.gone:
            self.link.write(_frame(frames.WINDOW, 0, self.sid, frames.window(self.owed)))
            self.owed = 0

    async def send_data(self, ftype, data, last_flags, more_flag=0):
        """Send data frames within the credit; last_flags go on the final one. False when
        the stream is gone (the data is dropped, as the client is)."""
        view = memoryview(data)
        while True:
            if self.gone:
                return False
            n = len(view)
            if n <= self.credit:
                self.credit -= n
                self.link.write(_frame(ftype, last_flags, self.sid, bytes(view)))
                return True
            if self.credit > 0:
                part, view = view[:self.credit], view[self.credit:]
                self.link.write(_frame(ftype, more_flag, self.sid, bytes(part)))
                self.credit = 0
            await self.wait()

    def on_window(self, payload):
        self.credit += frames.decode_window(payload)
        self.wake()

    def on_disconnect(self, reason):
        self.gone = True
        self.wake()
        if reason == frames.REASON_TIMEOUT and self.task is not None and not self.task.done():
            _log('%s %s overran --timeout: its task, then it is cancelled:'
                 % (self.env.get('REQUEST_METHOD'), self.env.get('PATH_INFO')))
            self.task.print_stack(file=sys.stderr)
            self.task.cancel()

    async def run(self):
        """The stream's task: the app, then the stream's end."""
        ok = True
        try:
            scope = scope_of(self.env, self.kind, self.link.server.state)
            await self.link.server.app(scope, self.receive, self.send)
            ok = self.returned(scope)
        except asyncio.CancelledError:
            ok = False
        except Exception as e:
            ok = self.raised(e)
        finally:
            self.finish(ok)

    def finish(self, ok):
        """The task ended: the stream ends with its last frame, if not sent yet."""
        self.link.end(self)
        if not self.over:
            self.over = True
            self.link.write(_frame(frames.END, 0, self.sid, b'\x00' if ok else b'\x01'))


class HTTPStream(Stream):
    kind = 'http'

    def __init__(self, link, sid, env, no_body):
        Stream.__init__(self, link, sid, env)
        self.chunks = []
        self.body_done = bool(no_body)
        self.started = False    # http.response.start seen
        self.head = None        # its frame, sent with the first body
        self.complete = False
        self.trailers = False

    def on_frame(self, ftype, flags, payload):
        if ftype == frames.BODY:
            if payload:
                self.chunks.append(payload)
            if flags & FLAG_END:
                self.body_done = True
            self.wake()
        elif ftype == frames.WINDOW:
            self.on_window(payload)
        elif ftype == frames.DISCONNECT:
            self.on_disconnect(payload[0])

    async def receive(self):
        while not self.chunks and not self.body_done and not self.gone:
            await self.wait()
        if self.chunks:
            body = self.chunks[0] if len(self.chunks) == 1 else b''.join(self.chunks)
            self.chunks = []
            self.consumed(len(body))
            if self.body_done:
                self.body_done = _TOLD
                return {'type': 'http.request', 'body': body, 'more_body': False}
            return {'type': 'http.request', 'body': body, 'more_body': True}
        if self.body_done and self.body_done is not _TOLD:
            self.body_done = _TOLD
            return {'type': 'http.request', 'body': b'', 'more_body': False}
        while not self.gone and not self.complete:
            await self.wait()   # the app listens for the client leaving
        return {'type': 'http.disconnect'}

    async def send(self, message):
        if self.gone:
            return      # the client left: what the app sends goes nowhere, as under uvicorn
        kind = message['type']
        if kind == 'http.response.body':
            if not self.started or self.complete:
                raise RuntimeError('http.response.body %s' % (
                    'before http.response.start' if not self.started else 'after the response ended'))
            body = message.get('body', b'')
            more = message.get('more_body', False)
            head = self.head
            if head is not None:
                self.head = None
                if not more and not body:
                    self.complete = True
                    self.link.write(head[:1] + bytes((FLAG_END,)) + head[2:])
                    self._over()
                    return
                self.link.write(head)
            if not more:
                self.complete = True
            if body or not more:
                sent = await self.send_data(frames.RESPONSE_BODY, body, 0 if more else FLAG_END)
                if sent and not more:
                    self._over()
        elif kind == 'http.response.start':
            if self.started:
                raise RuntimeError('http.response.start sent twice')
            status = message['status']
            payload = frames.response_start(status, message.get('headers', ()))
            self.started = True
            self.trailers = bool(message.get('trailers'))
            self.head = _frame(frames.RESPONSE_START, 0, self.sid, payload)
        elif kind == 'http.response.pathsend':
            if not self.started or self.complete:
                raise RuntimeError('http.response.pathsend out of place')
            self.complete = True
            path = message['path'].encode('utf-8', 'surrogateescape')
            self.link.write(self.head)
            self.head = None
            self.link.write(_frame(frames.SENDFILE, 0, self.sid, path))
            self._over()
        elif kind == 'http.response.trailers':
            pass    # not passed on: the master speaks no trailers
        else:
            raise RuntimeError('unexpected ASGI message %r on an HTTP stream' % kind)

    def _over(self):
        self.over = True
        self.wake()     # a receive() waiting for the disconnect returns now
        self.link.end(self)

    def returned(self, scope):
        if self.complete or self.gone:
            return True
        _log('%s %s: the app returned without %s' % (
            scope['method'], scope['path'],
            'completing its response' if self.started else 'a response'))
        return self._fail()

    def raised(self, exc):
        _log_exc('error in app for %s %s' % (self.env.get('REQUEST_METHOD'),
                                             self.env.get('PATH_INFO')))
        return self._fail()

    def _fail(self):
        """Before the start: a 500; after it: END with failure, and the client is cut."""
        if self.started or self.gone or self.over:
            return False
        self.started = self.complete = self.over = True
        body = b'Internal Server Error\n'
        self.link.write(_frame(frames.RESPONSE_START, 0, self.sid, frames.response_start(
            500, [(b'content-type', b'text/plain; charset=utf-8'),
                  (b'content-length', b'%d' % len(body))])))
        self.link.write(_frame(frames.RESPONSE_BODY, FLAG_END, self.sid, body))
        self.link.end(self)
        return True


_TOLD = object()   # body_done once the last http.request went to the app
del HEADER_SIZE
