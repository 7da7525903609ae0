"""A Flask app that says what it runs with: the interpreter (sys.prefix is the venv's
directory under a venv), and the versions and places of the frameworks it imported. Needs
Flask and Django: the venv of today's peers (make venv) has both."""

import importlib.metadata
import sys

import django
import flask
from flask import Flask, jsonify

app = Flask(__name__)


@app.route('/versions')
def versions():
    return jsonify(
        executable=sys.executable,
        prefix=sys.prefix,
        base_prefix=sys.base_prefix,
        python='%d.%d.%d' % sys.version_info[:3],
        # importlib.metadata: flask.__version__ is deprecated since Flask 3.1.
        flask=importlib.metadata.version('flask'),
        flask_file=flask.__file__,
        django=django.__version__,
        django_file=django.__file__,
    )
