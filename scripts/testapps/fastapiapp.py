"""A FastAPI app (the venv of today's peers, make venv): JSON, a streamed response, a
WebSocket, a sync route (FastAPI runs it in its thread pool), lifespan with state."""

import asyncio
import contextlib
import os

from fastapi import FastAPI, WebSocket, WebSocketDisconnect
from fastapi.responses import StreamingResponse
from pydantic import BaseModel


@contextlib.asynccontextmanager
async def lifespan(app):
    yield {'db': 'connected'}
    marker = os.environ.get('HERD_TEST_SHUTDOWN_FILE')
    if marker:
        with open(marker, 'a') as f:
            f.write('fastapi shutdown\n')


app = FastAPI(lifespan=lifespan)


class Item(BaseModel):
    name: str
    price: float


@app.get('/json')
async def json_route():
    return {'message': 'Hello, World!'}


@app.post('/items')
async def create(item: Item):
    return {'name': item.name, 'price': item.price, 'total': round(item.price * 2, 2)}


@app.get('/sync')
def sync_route():
    import threading
    return {'thread': threading.current_thread().name}


@app.get('/state')
async def state(request: __import__('fastapi').Request):
    return {'db': request.state.db}


@app.get('/stream')
async def stream():
    async def gen():
        for i in range(5):
            yield 'event %d\n' % i
            await asyncio.sleep(0.01)
    return StreamingResponse(gen(), media_type='text/plain')


@app.websocket('/ws')
async def ws(websocket: WebSocket):
    await websocket.accept()
    try:
        while True:
            data = await websocket.receive_text()
            await websocket.send_json({'echo': data})
    except WebSocketDisconnect:
        pass
