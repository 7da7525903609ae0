"""The benchmark's Django app: one view through Django's URL resolver and request/response
objects, no middleware and no database, so the figures measure the server around a real
Django request (Debian's python3-django, so /usr/bin/python3 only)."""

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
