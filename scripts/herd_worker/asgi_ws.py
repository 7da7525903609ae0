"""WebSocket streams of the ASGI worker: websocket.connect / accept / receive / send /
close, and websocket.http.response denials. The master terminates the WebSocket itself
(handshake, masking, fragmentation, ping/pong, the close handshake); the worker sees only
whole messages, as frames of the link (docs/protocol.md).
"""

from . import frames
from .asgi import Stream
from .frames import FLAG_END, FLAG_MORE
from .process import _log_exc

_frame = frames.frame

# Largest message the worker assembles from the master (uvicorn's ws_max_size); the master
# refuses larger ones from clients before they get here.
MAX_MESSAGE = 16 << 20

_CONNECTING, _OPEN, _DENYING, _CLOSED = range(4)


class WSStream(Stream):
    kind = 'websocket'

    def __init__(self, link, sid, env):
        Stream.__init__(self, link, sid, env)
        self.state = _CONNECTING
        self.told_connect = False
        self.inbox = []         # messages for the app, in order
        self.partial = []       # a message being assembled from FLAG_MORE frames
        self.close_code = None  # the client's close, once it came
        self.close_reason = ''

    def on_frame(self, ftype, flags, payload):
        if ftype == frames.WS_TEXT or ftype == frames.WS_BINARY:
            self.partial.append(payload)
            if flags & FLAG_MORE:
                # A message larger than the window must be able to arrive whole: its parts
                # are credited back as they are assembled (the master bounds a message at
                # 16 MiB), its last part when the app takes it.
                self.consumed(len(payload))
                return
            data = b''.join(self.partial)
            last = len(payload)
            self.partial = []
            self.inbox.append((ftype, data, last))
            self.wake()
        elif ftype == frames.WINDOW:
            self.on_window(payload)
        elif ftype == frames.WS_CLOSE:
            self.close_code, self.close_reason = frames.decode_close(payload)
            self.wake()
        elif ftype == frames.DISCONNECT:
            self.on_disconnect(payload[0])

    async def receive(self):
        if not self.told_connect:
            self.told_connect = True
            return {'type': 'websocket.connect'}
        while not self.inbox and self.close_code is None and not self.gone \
                and self.state != _CLOSED:
            await self.wait()
        if self.inbox:
            ftype, data, last = self.inbox.pop(0)
            self.consumed(last)
            if ftype == frames.WS_TEXT:
                return {'type': 'websocket.receive', 'text': data.decode('utf-8')}
            return {'type': 'websocket.receive', 'bytes': data}
        code = self.close_code if self.close_code is not None else 1006
        self.state = _CLOSED
        return {'type': 'websocket.disconnect', 'code': code, 'reason': self.close_reason}

    async def send(self, message):
        kind = message['type']
        if self.gone or self.state == _CLOSED and kind != 'websocket.close':
            if kind in ('websocket.send', 'websocket.accept'):
                raise ClientDisconnected('the WebSocket is closed')
            return
        if kind == 'websocket.send':
            if self.state != _OPEN:
                raise RuntimeError('websocket.send before websocket.accept')
            text = message.get('text')
            if text is not None:
                ok = await self.send_data(frames.WS_TEXT, text.encode('utf-8'), 0, FLAG_MORE)
            else:
                ok = await self.send_data(frames.WS_BINARY, message.get('bytes') or b'', 0,
                                          FLAG_MORE)
            if not ok:
                raise ClientDisconnected('the WebSocket is closed')
        elif kind == 'websocket.accept':
            if self.state != _CONNECTING:
                raise RuntimeError('websocket.accept out of place')
            self.state = _OPEN
            headers = list(message.get('headers') or ())
            self.link.write(_frame(frames.WS_ACCEPT, 0, self.sid,
                                   frames.accept(message.get('subprotocol'), headers)))
        elif kind == 'websocket.close':
            if self.state == _CLOSED or self.state == _DENYING:
                return
            code = message.get('code') or 1000
            reason = message.get('reason') or ''
            self.state = _CLOSED
            self.link.write(_frame(frames.WS_CLOSE, 0, self.sid, frames.close(code, reason)))
            self.wake()
        elif kind == 'websocket.http.response.start':
            if self.state != _CONNECTING:
                raise RuntimeError('websocket.http.response.start after the handshake')
            self.state = _DENYING
            self.link.write(_frame(frames.RESPONSE_START, 0, self.sid, frames.response_start(
                message['status'], message.get('headers') or ())))
        elif kind == 'websocket.http.response.body':
            if self.state != _DENYING or self.over:
                raise RuntimeError('websocket.http.response.body out of place')
            more = message.get('more_body', False)
            body = message.get('body', b'')
            if await self.send_data(frames.RESPONSE_BODY, body, 0 if more else FLAG_END):
                if not more:
                    self.over = True
                    self.link.end(self)
        else:
            raise RuntimeError('unexpected ASGI message %r on a WebSocket' % kind)

    def returned(self, scope):
        return True

    def raised(self, exc):
        if isinstance(exc, ClientDisconnected):
            return True
        _log_exc('error in app for WebSocket %s' % self.env.get('PATH_INFO'))
        return False


class ClientDisconnected(OSError):
    """websocket.send on a socket the client closed (ASGI: an OSError subclass)."""
