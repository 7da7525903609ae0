"""A small Django site as a project's wsgi.py/settings.py would give it, in one module: a page,
a JSON view that reports what the app saw (REMOTE_ADDR, a setting from the environment), and
a view whose bug raises, for the traceback in the log."""

import json
import os

import django
from django.conf import settings

settings.configure(
    DEBUG=False,
    SECRET_KEY='migration-test-only',
    ALLOWED_HOSTS=['*'],
    ROOT_URLCONF=__name__,
    INSTALLED_APPS=['django.contrib.contenttypes', 'django.contrib.staticfiles'],
    STATIC_URL='/static/',
    LOGGING_CONFIG=None,
)
django.setup()

from django.core.wsgi import get_wsgi_application  # noqa: E402
from django.http import HttpResponse  # noqa: E402
from django.urls import path  # noqa: E402


def index(request):
    return HttpResponse('<h1>Django under herd</h1>')


def seen(request):
    return HttpResponse(json.dumps({'remote_addr': request.META.get('REMOTE_ADDR'),
                                    'site_mode': os.environ.get('SITE_MODE', ''),
                                    'pid': os.getpid()}), content_type='application/json')


def boom(request):
    return 1 // int(request.GET.get('d', '0'))


urlpatterns = [path('', index), path('seen', seen), path('boom', boom)]
application = get_wsgi_application()
