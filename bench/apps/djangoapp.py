"""The benchmark's Django app: one view through Django's URL resolver and request/response
objects, no middleware and no database, so the figures measure the server around a real
Django request. Runs under the venv's Python (Django 6.1, `make venv`) and under Debian's
/usr/bin/python3 (Django 3.2) for the -debian rows."""

from django.conf import settings

settings.configure(
    DEBUG=False,
    SECRET_KEY='benchmark-only',
    ALLOWED_HOSTS=['*'],
    ROOT_URLCONF=__name__,
    MIDDLEWARE=[],
    INSTALLED_APPS=[],
)

from django.core.wsgi import get_wsgi_application  # noqa: E402
from django.http import HttpResponse  # noqa: E402
from django.urls import path  # noqa: E402


def hello(request):
    return HttpResponse('Hello from Django')


urlpatterns = [path('hello', hello)]

application = get_wsgi_application()
