"""A Flask fixture (Debian's python3-flask under /usr/bin/python3, or the Flask 3.1 of the
venv of today's peers, make venv)."""

from flask import Flask, Response, request, send_file

app = Flask(__name__)


@app.route('/hello')
def hello():
    return 'Hello from Flask'


@app.route('/echo', methods=['POST'])
def echo():
    return request.get_data()


@app.route('/form', methods=['POST'])
def form():
    return '%s|%s' % (request.form.get('a', ''), request.args.get('q', ''))


@app.route('/file')
def file():
    return send_file(__file__, mimetype='text/plain')


@app.route('/stream')
def stream():
    return Response((b'part%d,' % i for i in range(3)), mimetype='text/plain')


@app.route('/fail')
def fail():
    raise RuntimeError('flask view failed')


@app.route('/json', methods=['GET', 'POST'])
def json_route():
    from flask import jsonify
    return jsonify(args=request.args.to_dict(), body=request.get_json(silent=True), method=request.method)
