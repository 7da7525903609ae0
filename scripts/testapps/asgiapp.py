"""A plain ASGI 3 app (no framework) for the ASGI worker's tests and herd's end-to-end ones.

    /              hello
    /echo          the request body back, read as http.request chunks
    /scope         the scope as JSON (headers, path, state, ...)
    /stream?n=N    N chunks of 'chunk i\\n', streamed
    /big?n=N       N bytes, in 64 KiB sends
    /slow?s=S      sleeps S seconds (concurrency, --timeout)
    /block?s=S     blocks the event loop S seconds (time.sleep: a stuck worker)
    /pid           the worker's pid
    /wait-disconnect  answers only once it hears http.disconnect, and counts it
    /disconnects   how many http.disconnect /wait-disconnect heard
    /pathsend      this file, by http.response.pathsend
    /error         raises before the start
    /error-after   raises after the start
    /noresponse    returns without a response
    /ws            WebSocket echo (text and bytes); "close:CODE" closes with CODE
    /ws-deny       a websocket.http.response denial (403 with a body)
    /ws-close      closes before accept (403)
Lifespan: startup puts 'started' in state; HERD_TEST_LIFESPAN_FAIL=1 fails it.
"""

import asyncio
import json
import os
import time

disconnects = [0]


async def app(scope, receive, send):
    kind = scope['type']
    if kind == 'lifespan':
        return await lifespan(scope, receive, send)
    if kind == 'websocket':
        return await websocket(scope, receive, send)
    path = scope['path']
    query = scope['query_string'].decode()
    arg = query.partition('=')[2]
    if path == '/':
        return await respond(send, b'Hello, ASGI!\n')
    if path == '/echo':
        body, chunks = b'', 0
        while True:
            msg = await receive()
            body += msg.get('body', b'')
            chunks += 1
            if not msg.get('more_body'):
                break
        return await respond(send, body, [(b'x-chunks', str(chunks).encode())])
    if path == '/scope' or path.startswith('/scope/'):
        out = {k: v for k, v in scope.items() if k not in ('asgi', 'extensions', 'state')}
        out['headers'] = [[k.decode('latin-1'), v.decode('latin-1')] for k, v in scope['headers']]
        out['raw_path'] = scope['raw_path'].decode('latin-1')
        out['query_string'] = scope['query_string'].decode('latin-1')
        out['state'] = dict(scope.get('state') or {})
        out['extensions'] = sorted(scope.get('extensions') or {})
        return await respond(send, json.dumps(out).encode(), [(b'content-type', b'application/json')])
    if path == '/stream':
        await send({'type': 'http.response.start', 'status': 200,
                    'headers': [(b'content-type', b'text/plain')]})
        for i in range(int(arg or 3)):
            await send({'type': 'http.response.body', 'body': b'chunk %d\n' % i, 'more_body': True})
            await asyncio.sleep(0.01)
        return await send({'type': 'http.response.body'})
    if path == '/big':
        n = int(arg or 1 << 20)
        await send({'type': 'http.response.start', 'status': 200,
                    'headers': [(b'content-length', str(n).encode())]})
        block = b'x' * 65536
        while n > 0:
            part = block[:min(n, len(block))]
            n -= len(part)
            await send({'type': 'http.response.body', 'body': part, 'more_body': n > 0})
        return
    if path == '/slow':
        await asyncio.sleep(float(arg or 1))
        return await respond(send, b'slept\n')
    if path == '/block':
        time.sleep(float(arg or 1))
        return await respond(send, b'blocked\n')
    if path == '/pid':
        return await respond(send, str(os.getpid()).encode())
    if path == '/wait-disconnect':
        while (await receive())['type'] != 'http.disconnect':
            pass
        disconnects[0] += 1
        return
    if path == '/disconnects':
        return await respond(send, str(disconnects[0]).encode())
    if path == '/pathsend':
        await send({'type': 'http.response.start', 'status': 200,
                    'headers': [(b'content-type', b'text/x-python')]})
        return await send({'type': 'http.response.pathsend', 'path': os.path.abspath(__file__)})
    if path == '/error':
        raise RuntimeError('boom before the start')
    if path == '/error-after':
        await send({'type': 'http.response.start', 'status': 200, 'headers': []})
        await send({'type': 'http.response.body', 'body': b'partial', 'more_body': True})
        raise RuntimeError('boom after the start')
    if path == '/noresponse':
        return
    return await respond(send, b'not found\n', status=404)


async def respond(send, body, headers=(), status=200):
    await send({'type': 'http.response.start', 'status': status,
                'headers': [(b'content-length', str(len(body)).encode())] + list(headers)})
    await send({'type': 'http.response.body', 'body': body})


async def websocket(scope, receive, send):
    msg = await receive()
    assert msg['type'] == 'websocket.connect', msg
    if scope['path'] == '/ws-deny':
        await send({'type': 'websocket.http.response.start', 'status': 403,
                    'headers': [(b'content-type', b'text/plain')]})
        return await send({'type': 'websocket.http.response.body', 'body': b'denied\n'})
    if scope['path'] == '/ws-close':
        return await send({'type': 'websocket.close', 'code': 1008})
    sub = scope['subprotocols'][0] if scope['subprotocols'] else None
    await send({'type': 'websocket.accept', 'subprotocol': sub})
    while True:
        msg = await receive()
        if msg['type'] == 'websocket.disconnect':
            return
        text = msg.get('text')
        if text is not None and text.startswith('close:'):
            return await send({'type': 'websocket.close', 'code': int(text[6:]), 'reason': 'asked'})
        if text == 'state':
            text = json.dumps(dict(scope.get('state') or {}))
        if text is not None:
            await send({'type': 'websocket.send', 'text': text})
        else:
            await send({'type': 'websocket.send', 'bytes': msg['bytes']})


async def lifespan(scope, receive, send):
    while True:
        msg = await receive()
        if msg['type'] == 'lifespan.startup':
            if os.environ.get('HERD_TEST_LIFESPAN_FAIL'):
                await send({'type': 'lifespan.startup.failed', 'message': 'the database is down'})
                return
            scope['state']['started'] = 'yes'
            await send({'type': 'lifespan.startup.complete'})
        elif msg['type'] == 'lifespan.shutdown':
            marker = os.environ.get('HERD_TEST_SHUTDOWN_FILE')
            if marker:
                with open(marker, 'a') as f:
                    f.write('shutdown %d\n' % os.getpid())
            await send({'type': 'lifespan.shutdown.complete'})
            return
