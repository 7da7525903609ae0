"""A Django 6.1 project in one file served as ASGI (get_asgi_application): an async view,
a sync view (Django runs it in its thread pool, as under uvicorn), one that uses the ORM
from a sync view, and a streamed async response. Venv only (Django 6 needs Python 3.12)."""

import asyncio
import os
import tempfile
import threading

import django
from django.conf import settings

settings.configure(
    DEBUG=False,
    SECRET_KEY='test-only-not-secret',
    ALLOWED_HOSTS=['*'],
    ROOT_URLCONF=__name__,
    INSTALLED_APPS=['django.contrib.contenttypes', 'django.contrib.auth'],
    DATABASES={'default': {'ENGINE': 'django.db.backends.sqlite3', 'NAME': os.path.join(
        tempfile.gettempdir(), 'herd-djangoasgi-%d.sqlite3' % os.getpid())}},
    USE_TZ=True,
)
django.setup()

from django.core.management import call_command  # noqa: E402

call_command('migrate', verbosity=0, interactive=False)    # each worker's own db

from django.contrib.auth.models import Permission  # noqa: E402
from django.core.asgi import get_asgi_application  # noqa: E402
from django.http import HttpResponse, JsonResponse, StreamingHttpResponse  # noqa: E402
from django.urls import path  # noqa: E402


async def async_view(request):
    await asyncio.sleep(0)
    return JsonResponse({'kind': 'async', 'method': request.method, 'path': request.path,
                         'query': request.GET.get('q', '')})


def sync_view(request):
    return JsonResponse({'kind': 'sync', 'thread': threading.current_thread().name,
                         'main': threading.current_thread() is threading.main_thread()})


def orm_view(request):
    return HttpResponse(str(Permission.objects.count()))


async def slow_view(request):
    await asyncio.sleep(float(request.GET.get('s', '1')))
    return HttpResponse('slept')


async def stream_view(request):
    async def gen():
        for i in range(3):
            yield b'part %d\n' % i
    return StreamingHttpResponse(gen())


def post_view(request):
    return HttpResponse(b'%d %s' % (len(request.body), os.environ.get('X', '').encode()))


urlpatterns = [
    path('async', async_view),
    path('sync', sync_view),
    path('orm', orm_view),
    path('slow', slow_view),
    path('stream', stream_view),
    path('post', post_view),
]

application = get_asgi_application()
