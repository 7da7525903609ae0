"""A one-file Django fixture (Debian's python3-django under /usr/bin/python3, or the Django
6.1 of the venv of today's peers, make venv)."""

from django.conf import settings

settings.configure(
    DEBUG=False,
    SECRET_KEY='test-only',
    ALLOWED_HOSTS=['*'],
    ROOT_URLCONF=__name__,
    MIDDLEWARE=[],
    INSTALLED_APPS=[],
)

from django.core.wsgi import get_wsgi_application  # noqa: E402
from django.http import (FileResponse, HttpResponse,  # noqa: E402
                         StreamingHttpResponse)
from django.urls import path  # noqa: E402


def hello(request):
    return HttpResponse('Hello from Django')


def echo(request):
    return HttpResponse(request.body, content_type='application/octet-stream')


def form(request):
    return HttpResponse('%s|%s' % (request.POST.get('a', ''), request.GET.get('q', '')))


def stream(request):
    return StreamingHttpResponse(b'part%d,' % i for i in range(3))


def file(request):
    return FileResponse(open(__file__, 'rb'))


urlpatterns = [
    path('hello', hello),
    path('echo', echo),
    path('form', form),
    path('stream', stream),
    path('file', file),
]

application = get_wsgi_application()
