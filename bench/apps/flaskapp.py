"""The benchmark's Flask app: a JSON view (the shape of most Flask endpoints), and a slow view
for the mixed run (fast requests to /hello while one client asks /slow in a loop).

Runs under the venv's Python (Flask 3.1, `make venv`) and under Debian's /usr/bin/python3
(Flask 2.2) for the -debian rows."""

import time

from flask import Flask

app = Flask(__name__)


@app.route('/hello')
def hello():
    # A dict becomes a JSON answer (application/json) through Flask's JSON provider.
    return {'message': 'Hello from Flask'}


@app.route('/slow')
def slow():
    # A report, an export, a call to a slow service: the worker is held 1.5 s without
    # using the CPU. The mixed run measures what this does to the other requests.
    time.sleep(1.5)
    return {'message': 'slow'}


application = app
