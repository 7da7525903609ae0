"""ASGI lifespan: startup before the worker says ready, shutdown before it exits, and the
state dict the app fills at startup, copied into each request's scope.

An app that does not take lifespan scopes (it raises on one before sending anything, as
Django's ASGIHandler does) runs without it, as under uvicorn's default `--lifespan auto`.
"""

import asyncio

from .process import _log

_ASGI = {'version': '3.0', 'spec_version': '2.0'}


class LifespanFailed(Exception):
    """The app reported lifespan.startup.failed, or raised during its startup."""


class Lifespan(object):

    def __init__(self, app, loop):
        self.app = app
        self.loop = loop
        self.state = {}
        self.supported = True
        self.inbox = asyncio.Queue()
        self.outbox = asyncio.Queue()
        self.task = None
        self.error = None

    async def _run(self):
        scope = {'type': 'lifespan', 'asgi': _ASGI, 'state': self.state}
        try:
            await self.app(scope, self.inbox.get, self.outbox.put)
        except BaseException as e:
            self.error = e
        finally:
            # Whatever waits for the app's next message learns that none will come.
            self.outbox.put_nowait(None)

    async def startup(self):
        """Run the app's startup; raise LifespanFailed when it fails. An app without
        lifespan support is noted and passes."""
        self.task = self.loop.create_task(self._run())
        await self.inbox.put({'type': 'lifespan.startup'})
        msg = await self.outbox.get()
        if msg is None:
            if self.error is not None and not isinstance(self.error, Exception):
                raise self.error
            # It raised (or returned) at once: it takes no lifespan.
            self.supported = False
            if self.error is not None:
                _log('the app does not take ASGI lifespan (%s: %s): running without it'
                     % (type(self.error).__name__, self.error))
            return
        kind = msg.get('type')
        if kind == 'lifespan.startup.complete':
            return
        if kind == 'lifespan.startup.failed':
            raise LifespanFailed(msg.get('message') or 'lifespan.startup.failed')
        raise LifespanFailed('unexpected lifespan message %r at startup' % kind)

    async def shutdown(self, timeout):
        """Run the app's shutdown, for at most timeout seconds."""
        if not self.supported or self.task is None or self.task.done():
            return
        await self.inbox.put({'type': 'lifespan.shutdown'})
        try:
            msg = await asyncio.wait_for(self.outbox.get(), timeout)
        except asyncio.TimeoutError:
            _log('lifespan shutdown did not finish within %.0f s' % timeout)
            self.task.cancel()
            return
        if msg is None and self.error is not None:
            _log('lifespan shutdown failed: %s: %s' % (type(self.error).__name__, self.error))
        elif msg is not None and msg.get('type') == 'lifespan.shutdown.failed':
            _log('lifespan shutdown failed: %s' % msg.get('message', ''))
