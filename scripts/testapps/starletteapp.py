"""A Starlette app (FastAPI brings Starlette into the venv): routes, a form upload read as
a stream, a background task, a WebSocket, and a mount (root_path)."""

from starlette.applications import Starlette
from starlette.background import BackgroundTask
from starlette.responses import JSONResponse, PlainTextResponse
from starlette.routing import Mount, Route, WebSocketRoute

done = []


async def home(request):
    return PlainTextResponse('Hello from Starlette\n')


async def upload(request):
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
    return JSONResponse({'size': size, 'type': request.headers.get('content-type')})


async def later(request):
    return PlainTextResponse('queued\n', background=BackgroundTask(done.append, 1))


async def count(request):
    return JSONResponse({'background_done': len(done)})


async def sub(request):
    return JSONResponse({'path': request.url.path, 'root_path': request.scope.get('root_path')})


async def ws(websocket):
    await websocket.accept()
    async for msg in websocket.iter_bytes():
        await websocket.send_bytes(msg[::-1])


app = Starlette(routes=[
    Route('/', home),
    Route('/upload', upload, methods=['POST']),
    Route('/later', later),
    Route('/count', count),
    Mount('/sub', routes=[Route('/page', sub)]),
    WebSocketRoute('/ws', ws),
])
