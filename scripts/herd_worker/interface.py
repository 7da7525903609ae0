"""Which interface an app speaks (--interface auto|wsgi|asgi), told at import, without
importing asyncio: a WSGI worker does not pay for it.
"""

import functools
import inspect


def interface_of(app, wanted):
    """'asgi3', 'asgi2' or 'wsgi' for app, as --interface says; raises TypeError when app
    cannot be served as asked. auto: an ASGI 3 callable (a coroutine function, or an object
    whose __call__ is one) is ASGI, anything else WSGI."""
    if _is_coroutine_callable(app):
        if wanted == 'wsgi':
            raise TypeError('--interface wsgi, but the app is an ASGI callable (async)')
        return 'asgi3'
    if wanted != 'asgi':
        return 'wsgi'
    if inspect.isclass(app):
        return 'asgi2'  # ASGI 2: app(scope) makes an instance, awaited with (receive, send)
    try:
        params = [p for p in inspect.signature(app).parameters.values()
                  if p.default is p.empty and p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    except (TypeError, ValueError):
        return 'asgi2'
    if len(params) >= 2:
        raise TypeError('the app takes (environ, start_response): a WSGI app, not ASGI; '
                        'serve it with --interface wsgi (or auto), or give an ASGI app')
    return 'asgi2'


def _is_coroutine_callable(obj):
    while isinstance(obj, functools.partial):
        obj = obj.func
    if inspect.iscoroutinefunction(obj):
        return True
    call = getattr(obj, '__call__', None)
    return not inspect.isclass(obj) and inspect.iscoroutinefunction(call)
