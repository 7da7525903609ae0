"""An ASGI 2 (two-step) app: app(scope) makes an instance, awaited with (receive, send)."""


class App:
    def __init__(self, scope):
        self.scope = scope

    async def __call__(self, receive, send):
        if self.scope['type'] != 'http':
            return
        body = b'ASGI 2 says hello\n'
        await send({'type': 'http.response.start', 'status': 200,
                    'headers': [(b'content-length', b'%d' % len(body))]})
        await send({'type': 'http.response.body', 'body': body})


app = App
