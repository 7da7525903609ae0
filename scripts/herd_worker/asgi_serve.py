"""The ASGI worker's process: which interface an app speaks (--interface auto|wsgi|asgi),
the event loop (uvloop when the interpreter has it), lifespan startup before the ready
message and shutdown before the exit, the link connections from the master, and how the
process stops (the control channel's EOF, SIGTERM).
"""

import asyncio
import os
import signal
import sys
import traceback

from . import process
from .asgi import Link
from .lifespan import Lifespan, LifespanFailed
from .process import EXIT_OK, _send_control

# How long lifespan shutdown may take when the worker stops; the master's SIGKILL after
# --graceful-timeout bounds it too.
SHUTDOWN_TIMEOUT = 30.0


def asgi2(app):
    """An ASGI 2 (two-step) app as an ASGI 3 one."""
    async def app3(scope, receive, send):
        instance = app(scope)
        return await instance(receive, send)
    return app3


def new_loop():
    try:
        import uvloop
    except ImportError:
        return asyncio.new_event_loop(), 'asyncio'
    return uvloop.new_event_loop(), 'uvloop'


class Server(object):
    """The worker's serving state: the app, the loop, the links."""

    def __init__(self, app, loop, connections):
        self.app = app
        self.loop = loop
        self.connections = connections
        self.links = set()
        self.state = None
        self.stopped = None     # a future set when the worker is to stop
        self.listener = None


def run(lsock, app, kind, connections):
    """Serve app on the framed link until the worker is told to stop; returns its exit code."""
    loop, loop_name = new_loop()
    asyncio.set_event_loop(loop)
    if kind == 'asgi2':
        app = asgi2(app)
    server = Server(app, loop, connections)
    try:
        return loop.run_until_complete(_main(server, lsock, loop_name))
    finally:
        try:
            loop.close()
        except Exception:
            pass


async def _main(server, lsock, loop_name):
    loop = server.loop
    server.stopped = loop.create_future()
    lifespan = Lifespan(server.app, loop)
    try:
        await lifespan.startup()
    except (Exception, LifespanFailed) as e:
        _boot_fail_lifespan(e)
    server.state = lifespan.state if lifespan.supported else None
    lsock.setblocking(False)
    server.listener = await loop.create_server(lambda: Link(server), sock=lsock,
                                               backlog=1024)
    process.on_master_gone = lambda: loop.call_soon_threadsafe(_stop, server)
    process.on_dump_stacks = lambda: loop.call_soon_threadsafe(dump_tasks, loop)
    try:
        loop.add_signal_handler(signal.SIGTERM, _stop, server)
    except (NotImplementedError, RuntimeError):
        pass
    _send_control({'event': 'ready', 'pid': os.getpid(),
                   'python': '%d.%d.%d' % sys.version_info[:3],
                   'link': 'framed', 'slots': server.connections, 'loop': loop_name})
    await server.stopped
    server.listener.close()
    tasks = [s.task for link in list(server.links) for s in list(link.streams.values())
             if s.task is not None and not s.task.done()]
    for t in tasks:
        t.cancel()
    if tasks:
        await asyncio.wait(tasks, timeout=5)
    await lifespan.shutdown(SHUTDOWN_TIMEOUT)
    return EXIT_OK


def _stop(server):
    if not server.stopped.done():
        server.stopped.set_result(None)


def _boot_fail_lifespan(e):
    process.app_boot_failed('app_lifespan', 'lifespan startup failed: %s: %s' % (type(e).__name__, e),
                            traceback.format_exc())


def dump_tasks(loop):
    """Every task's stack to stderr (the master's dump_stacks)."""
    for task in asyncio.all_tasks(loop):
        try:
            task.print_stack(file=sys.stderr)
        except Exception:
            pass
    sys.stderr.flush()
