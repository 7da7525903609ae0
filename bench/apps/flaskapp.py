"""The benchmark's Flask app: one route, a short text answer (Debian's python3-flask, so
/usr/bin/python3 only)."""

from flask import Flask

app = Flask(__name__)


@app.route('/hello')
def hello():
    return 'Hello from Flask'


application = app
