"""A small Django project in one file (Debian's python3-django under /usr/bin/python3, or
the Django 6.1 of the venv of today's peers, make venv): the admin with its login page and
CSRF-protected POST, a multipart upload, a redirect, a 404 and static files, as a real site
has them. The sqlite database lives at $HERD_DJANGO_DB and is migrated at import when it
does not exist yet (run with one worker the first time)."""

import hashlib
import os

import django
from django.conf import settings

DB = os.environ.get('HERD_DJANGO_DB', '/tmp/herd-djangoproject.sqlite3')

settings.configure(
    DEBUG=False,
    SECRET_KEY='test-only-not-secret',
    ALLOWED_HOSTS=['*'],
    ROOT_URLCONF=__name__,
    INSTALLED_APPS=[
        'django.contrib.admin', 'django.contrib.auth', 'django.contrib.contenttypes',
        'django.contrib.sessions', 'django.contrib.messages', 'django.contrib.staticfiles',
    ],
    MIDDLEWARE=[
        'django.contrib.sessions.middleware.SessionMiddleware',
        'django.middleware.common.CommonMiddleware',
        'django.middleware.csrf.CsrfViewMiddleware',
        'django.contrib.auth.middleware.AuthenticationMiddleware',
        'django.contrib.messages.middleware.MessageMiddleware',
    ],
    TEMPLATES=[{
        'BACKEND': 'django.template.backends.django.DjangoTemplates',
        'APP_DIRS': True,
        'OPTIONS': {'context_processors': [
            'django.template.context_processors.request',
            'django.contrib.auth.context_processors.auth',
            'django.contrib.messages.context_processors.messages',
        ]},
    }],
    DATABASES={'default': {'ENGINE': 'django.db.backends.sqlite3', 'NAME': DB}},
    STATIC_URL='/static/',
    DEFAULT_AUTO_FIELD='django.db.models.AutoField',
    USE_TZ=True,
)
django.setup()

if not os.path.exists(DB):
    from django.core.management import call_command
    call_command('migrate', verbosity=0, interactive=False)

import django.contrib.admin  # noqa: E402
from django.contrib import admin  # noqa: E402
from django.http import HttpResponse  # noqa: E402
from django.shortcuts import redirect  # noqa: E402
from django.urls import path, re_path  # noqa: E402
from django.views.static import serve  # noqa: E402

STATIC_ROOT = os.path.join(os.path.dirname(django.contrib.admin.__file__), 'static')


def upload(request):
    """A multipart form with a file and a field, behind the CSRF check like any form."""
    if request.method != 'POST':
        return HttpResponse(status=405)
    f = request.FILES['file']
    data = f.read()
    return HttpResponse('%s %s %d %s' % (request.POST.get('title', ''), f.name, len(data),
                                          hashlib.sha256(data).hexdigest()),
                        content_type='text/plain')


def go(request):
    return redirect('/admin/')


urlpatterns = [
    path('admin/', admin.site.urls),
    path('upload', upload),
    path('go', go),
    re_path(r'^static/(?P<path>.*)$', serve, {'document_root': STATIC_ROOT}),
]

from django.core.wsgi import get_wsgi_application  # noqa: E402

application = get_wsgi_application()
