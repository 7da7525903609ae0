"""A Flask app as its wsgi module gives it."""
import os

from flask import Flask, jsonify

app = Flask(__name__)


@app.route('/')
def index():
    return 'Flask under herd'


@app.route('/seen')
def seen():
    from flask import request
    return jsonify(remote_addr=request.remote_addr, pid=os.getpid())
