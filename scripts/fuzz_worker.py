"""Fuzz loop for the worker (herd_worker): its uwsgi parser and response writer. Stdlib only.

    python3 scripts/fuzz_worker.py [--seconds 60] [--seed N]

The time is shared by three loops; each checks a property and stops at the first failure,
printing the seed and the input so that the run can be repeated:
  environ  make_environ() on random and mutated vars blocks returns an environ that holds
           exactly what the block says (less what it must drop), or raises ValueError;
           make_environ_nul() on random and mutated NUL-joined blocks (modifier2 = 2) gives
           what make_environ() gives for the same vars, or raises ValueError as it does.
  head     build_head() with random statuses and headers raises TypeError or ValueError,
           or returns a head the master's strict parser takes (no CR, LF, NUL or control
           byte where it could split a line).
  frames   the framed link's Decoder (frames.py) on random and mutated frame streams fed in
           random pieces: it returns the frames the stream holds, the same however it is
           cut, or raises FrameError; never another exception.
  socket   a real worker process (this file is its app) gets random, mutated and pipelined
           packets over its Unix socket: it never dies, never hangs (every connection ends
           within 10 s of the client's half-close), answers only with well-formed heads, and
           still serves a good request after each bad one. The app reflects statuses and
           headers taken from the request, so the socket loop also drives build_head.
make test-python runs 2 seconds of it (FuzzLoopTest in test_worker.py); make
fuzz-python runs it longer under each interpreter.
"""

import argparse
import os
import random
import re
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.dont_write_bytecode = True
sys.path.insert(0, HERE)
from herd_worker import frames, request, response  # noqa: E402

HANG = 10.0     # a connection the worker keeps open this long after the half-close hangs


# ---------------------------------------------------------------------------------------
# the app the socket loop's worker serves: the response is shaped by the request

def app(environ, start_response):
    """X-Status, X-Name and X-Value (HTTP_ vars, any latin-1) go to start_response as they
    are; X-Body is the body and X-Length an added Content-Length."""
    status = environ.get('HTTP_X_STATUS', '200 OK')
    headers = [('Content-Type', 'text/plain')]
    if 'HTTP_X_NAME' in environ:
        headers.append((environ['HTTP_X_NAME'], environ.get('HTTP_X_VALUE', '')))
    if 'HTTP_X_LENGTH' in environ:
        headers.append(('Content-Length', environ['HTTP_X_LENGTH']))
    body = environ.get('HTTP_X_BODY', 'ok').encode('latin-1')
    environ['wsgi.input'].read()
    start_response(status, headers)
    if environ.get('PATH_INFO') == '/gen':
        return iter([body[:1], body[1:]])
    return [body]


# ---------------------------------------------------------------------------------------
# inputs

INTERESTING_KEYS = [
    'REQUEST_METHOD', 'PATH_INFO', 'QUERY_STRING', 'SERVER_PROTOCOL', 'CONTENT_LENGTH',
    'CONTENT_TYPE', 'UWSGI_SCHEME', 'UWSGI_FILE', 'HTTPS', 'wsgi.input', 'wsgi.url_scheme',
    'HTTP_X_STATUS', 'HTTP_X_NAME', 'HTTP_X_VALUE', 'HTTP_X_BODY', 'HTTP_X_LENGTH', '',
    'HTTP_HOST', 'SCRIPT_NAME']
INTERESTING_VALUES = [
    '', '0', '1', '5', '-1', ' 5', '5 ', '1e3', '0x10', '\xb3', '99999999999999999999',
    '200 OK', '099 Low', '1000 High', '204 No Content', '304 Not Modified', '100 Continue',
    '200', '200 OK\r\nInjected: yes', 'X-A', 'X A', 'X-A:', 'a\r\nInjected: yes', 'a\nb',
    'a\rb', 'a\x00b', 'a\x01b', 'a\x7fb', 'caf\xe9', 'Connection', 'Transfer-Encoding',
    'Content-Length', 'chunked', 'https', 'on', 'HTTP/1.0', 'HTTP/9', 'GET', 'POST', '/gen']


def rand_bytes(rnd, n):
    return bytes(rnd.getrandbits(8) for _ in range(n))


def rand_str(rnd):
    r = rnd.random()
    if r < 0.6:
        return rnd.choice(INTERESTING_VALUES)
    if r < 0.8:
        return rand_bytes(rnd, rnd.randrange(0, 12)).decode('latin-1')
    return ''.join(rnd.choice('aZ09 :-_\r\n\t\x00\x7f\xff') for _ in range(rnd.randrange(0, 12)))


def encode_vars(pairs):
    out = []
    for k, v in pairs:
        k, v = k.encode('latin-1'), v.encode('latin-1')
        out.append(struct.pack('<H', len(k)) + k + struct.pack('<H', len(v)) + v)
    return b''.join(out)


def encode_vars_nul(pairs):
    return '\0'.join(x for pair in pairs for x in pair).encode('latin-1')


def rand_pairs(rnd):
    pairs = [('REQUEST_METHOD', rnd.choice(['GET', 'POST', 'PUT'])),
             ('PATH_INFO', rnd.choice(['/', '/gen', '/x'])), ('SERVER_PROTOCOL', 'HTTP/1.1')]
    for _ in range(rnd.randrange(0, 6)):
        key = rnd.choice(INTERESTING_KEYS) if rnd.random() < 0.8 else rand_str(rnd)
        pairs.append((key, rand_str(rnd)))
    rnd.shuffle(pairs)
    return pairs


def rand_packet(rnd):
    """A packet that is well-formed more often than not, with the body CONTENT_LENGTH says."""
    pairs = rand_pairs(rnd)
    mod2 = rnd.choice([0, 1, 1, 2, 2]) if rnd.random() < 0.95 else rnd.randrange(256)
    block = encode_vars_nul(pairs) if mod2 == 2 else encode_vars(pairs)
    cl = dict(pairs).get('CONTENT_LENGTH', '')
    n = int(cl) if cl.isdigit() and cl.isascii() and int(cl) < 4096 else 0
    body = b'b' * n
    if rnd.random() < 0.1:
        body = body[:rnd.randrange(0, n + 1)]
    size = len(block) if rnd.random() < 0.9 else rnd.randrange(0, 0x10000)
    mod1 = 0 if rnd.random() < 0.95 else rnd.randrange(256)
    return struct.pack('<BHB', mod1, size, mod2) + block + body


def mutate(rnd, data):
    data = bytearray(data)
    for _ in range(rnd.randrange(1, 4)):
        op = rnd.randrange(5)
        if op == 0 and data:
            data[rnd.randrange(len(data))] ^= 1 << rnd.randrange(8)
        elif op == 1:
            del data[rnd.randrange(len(data) + 1):]
        elif op == 2:
            i = rnd.randrange(len(data) + 1)
            data[i:i] = rand_bytes(rnd, rnd.randrange(1, 8))
        elif op == 3 and data:
            i = rnd.randrange(len(data))
            del data[i:i + rnd.randrange(1, 8)]
        elif op == 4 and data:
            data[rnd.randrange(len(data))] = rnd.choice([0, 0xff, 0x0d, 0x0a, 0x7f])
    return bytes(data)


# ---------------------------------------------------------------------------------------
# properties

# The master's keep-alive mode always gets HTTP/1.1; plain mode (nginx) echoes the request's
# SERVER_PROTOCOL when it looks like one.
_STATUS_LINE = re.compile(rb'HTTP/[0-9](\.[0-9])? [1-5][0-9]{2}( [\t\x20-\x7e\x80-\xff]*)?\Z')
_FIELD_LINE = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+:[\t\x20-\x7e\x80-\xff]*\Z")


def check_head(head):
    """head: status line and header lines, CRLF-separated, without the blank line."""
    lines = head.split(b'\r\n')
    if not _STATUS_LINE.match(lines[0]):
        raise AssertionError('bad status line %r' % lines[0])
    for line in lines[1:]:
        if not _FIELD_LINE.match(line):
            raise AssertionError('bad header line %r' % line)
    return lines


def check_environ(block):
    try:
        env, cl = request.make_environ(block, TEMPLATE)
    except ValueError:
        return
    pairs = decode_vars(block)
    if pairs is None:
        raise AssertionError('make_environ took a block that does not decode')
    expected = dict(pairs)
    for k, v in expected.items():
        if k[:5] == 'wsgi.' or k[:6] == 'UWSGI_' or v == '' and k in ('CONTENT_TYPE', 'CONTENT_LENGTH'):
            continue
        if env.get(k) != v:
            raise AssertionError('%r: environ has %r, the block %r' % (k, env.get(k), v))
    for k in env:
        if k[:6] == 'UWSGI_':
            raise AssertionError('%s reached the environ' % k)
        if k[:5] == 'wsgi.' and (k not in TEMPLATE or k != 'wsgi.url_scheme' and env[k] is not TEMPLATE[k]):
            raise AssertionError('the block set %s' % k)
    if env['wsgi.url_scheme'] not in ('http', 'https', expected.get('UWSGI_SCHEME')):
        raise AssertionError('wsgi.url_scheme %r' % env['wsgi.url_scheme'])
    if cl != int(env.get('CONTENT_LENGTH') or 0):
        raise AssertionError('content length %r for CONTENT_LENGTH %r' % (cl, env.get('CONTENT_LENGTH')))


def check_environ_nul(block):
    """make_environ_nul(block) is make_environ() of the same vars, the ValueErrors included."""
    pairs = decode_vars_nul(block)
    try:
        got = request.make_environ_nul(block, TEMPLATE)
    except ValueError as e:
        got = e
    if pairs is None:
        if not isinstance(got, ValueError):
            raise AssertionError('make_environ_nul took a block with an odd number of fields')
        return
    try:
        want = request.make_environ(encode_vars(pairs), TEMPLATE)
    except ValueError as e:
        want = e
    if isinstance(want, ValueError) or isinstance(got, ValueError):
        if type(want) is not type(got):
            raise AssertionError('make_environ gives %r, make_environ_nul %r' % (want, got))
    elif got != want:
        raise AssertionError('make_environ gives %r, make_environ_nul %r' % (want, got))


def decode_vars_nul(block):
    """An independent decoder of a NUL-joined block: the pairs, or None when malformed."""
    fields, i = [], 0
    while block:
        j = block.find(b'\0', i)
        if j < 0:
            fields.append(block[i:])
            break
        fields.append(block[i:j])
        i = j + 1
    if len(fields) % 2:
        return None
    fields = [f.decode('latin-1') for f in fields]
    return list(zip(fields[0::2], fields[1::2]))


def decode_vars(block):
    """An independent decoder: the pairs, or None when malformed."""
    pairs, i = [], 0
    while i < len(block):
        if i + 2 > len(block):
            return None
        kl = struct.unpack_from('<H', block, i)[0]
        i += 2
        k = block[i:i + kl]
        i += kl
        if len(k) != kl or i + 2 > len(block):
            return None
        vl = struct.unpack_from('<H', block, i)[0]
        i += 2
        v = block[i:i + vl]
        i += vl
        if len(v) != vl:
            return None
        pairs.append((k.decode('latin-1'), v.decode('latin-1')))
    return pairs


def check_build_head(rnd):
    status = rand_str(rnd) if rnd.random() < 0.7 else rnd.choice([None, 200, b'200 OK'])
    headers = [(rand_str(rnd), rand_str(rnd)) for _ in range(rnd.randrange(0, 4))]
    if rnd.random() < 0.1:
        headers = rnd.choice([None, 'X: y', [('X',)], [(b'X', b'y')], [('X', 1)]])
    keepalive = rnd.random() < 0.5
    try:
        head, cl, _ = response.build_head(b'HTTP/1.1 ', status, headers, keepalive)
    except (TypeError, ValueError):
        return (status, headers), None
    lines = check_head(head[:-2] if head.endswith(b'\r\n') else head)
    return (status, headers), lines


TEMPLATE = request.environ_template(False)


# ---------------------------------------------------------------------------------------
# the socket loop

class Worker(object):
    def __init__(self, tmp):
        self.path = os.path.join(tmp, 'w.sock')
        self.log_path = os.path.join(tmp, 'stderr')
        self.log = open(self.log_path, 'wb')
        self.proc = subprocess.Popen(
            [sys.executable, os.path.join(HERE, 'herd_worker'), '--app', 'fuzz_worker:app',
             '--chdir', HERE, '--bind', 'unix:' + self.path],
            stdin=subprocess.DEVNULL, stdout=self.log, stderr=self.log,
            env=dict(os.environ, PYTHONDONTWRITEBYTECODE='1'))
        # The socket file appears at bind(), before listen(): wait for a connect to work.
        deadline = time.monotonic() + HANG
        while True:
            self.alive()
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                s.connect(self.path)
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise AssertionError('the worker did not listen')
                time.sleep(0.01)
            finally:
                s.close()

    def alive(self):
        if self.proc.poll() is not None:
            raise AssertionError('the worker exited with %s:\n%s' % (self.proc.returncode, self.stderr()))

    def stderr(self):
        with open(self.log_path, 'rb') as f:
            return f.read()[-4000:].decode('latin-1')

    def exchange(self, data):
        """Send data, half-close, and return all the worker answered before closing."""
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(HANG)
        try:
            try:
                s.connect(self.path)
            except OSError as e:
                self.alive()
                raise AssertionError('connect: %s' % e)
            try:
                s.sendall(data)
                s.shutdown(socket.SHUT_WR)
            except OSError:
                pass    # the worker refused the packet and closed before reading it all
            out = []
            while True:
                try:
                    b = s.recv(65536)
                except ConnectionResetError:
                    break
                except socket.timeout:
                    raise AssertionError('the worker kept the connection %.0fs after the half-close' % HANG)
                if not b:
                    break
                out.append(b)
            return b''.join(out)
        finally:
            s.close()

    def stop(self):
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        self.log.close()


def good_packet(keepalive=1):
    block = encode_vars([('REQUEST_METHOD', 'GET'), ('PATH_INFO', '/'), ('SERVER_PROTOCOL', 'HTTP/1.1')])
    return struct.pack('<BHB', 0, len(block), keepalive) + block


def check_answer(out):
    """The first response, if any, has a well-formed head; a 400 closes the connection."""
    if not out:
        return
    head, sep, _ = out.partition(b'\r\n\r\n')
    if not sep:
        raise AssertionError('an answer without the end of its head: %r' % out[:300])
    check_head(head)


def socket_round(rnd, w):
    r = rnd.random()
    if r < 0.5:
        data = b''.join(rand_packet(rnd) for _ in range(rnd.randrange(1, 4)))
    elif r < 0.85:
        data = mutate(rnd, rand_packet(rnd))
    elif r < 0.95:
        data = good_packet() + mutate(rnd, good_packet())
    else:
        data = rand_bytes(rnd, rnd.randrange(0, 64))
    out = w.exchange(data)
    w.alive()
    check_answer(out)
    if rnd.random() < 0.1:
        check_serves(w)
    return data


def check_serves(w):
    answer = w.exchange(good_packet(0))
    if not answer.startswith(b'HTTP/1.1 200 OK\r\n') or not answer.endswith(b'\r\n\r\nok'):
        raise AssertionError('a good request got %r' % answer[:300])


def rand_frames(rnd):
    """A stream of frames the master could send, often mutated."""
    parts = []
    for _ in range(rnd.randrange(1, 5)):
        ftype = rnd.choice([frames.REQUEST, frames.BODY, frames.WINDOW, frames.DISCONNECT,
                            frames.WS_CONNECT, frames.WS_TEXT, frames.WS_CLOSE, frames.PING,
                            rnd.randrange(256)])
        payload = {frames.WINDOW: frames.window(rnd.randrange(1, 1 << 20)),
                   frames.DISCONNECT: b'\x00', frames.WS_CLOSE: frames.close(1000, 'x'),
                   frames.PING: b''}.get(ftype)
        if payload is None:
            payload = rand_bytes(rnd, rnd.randrange(4, 40))
        sid = 0 if ftype == frames.PING else rnd.randrange(1, 5)
        parts.append(frames.frame(ftype, rnd.choice([0, 0, 1, 2]), sid, payload))
    data = b''.join(parts)
    return mutate(rnd, data) if rnd.random() < 0.5 else data


def check_frames(rnd):
    data = rand_frames(rnd)
    try:
        whole = frames.Decoder().feed(data)
    except frames.FrameError:
        whole = None
    dec, pieces, pos = frames.Decoder(), [], 0
    try:
        while pos < len(data):
            n = rnd.randrange(1, 16)
            pieces.extend(dec.feed(data[pos:pos + n]))
            pos += n
    except frames.FrameError:
        if whole is not None:
            raise AssertionError('cut in pieces, %r failed to decode' % data)
        return data
    if whole is None:
        raise AssertionError('whole, %r failed to decode; cut in pieces it did' % data)
    if pieces != whole:
        raise AssertionError('frames differ when cut in pieces: %r' % data)
    for ftype, flags, sid, payload in whole:
        if (ftype == frames.PING) != (sid == 0) or len(payload) > frames.MAX_PAYLOAD:
            raise AssertionError('decoded a frame the rules refuse: %r' % ((ftype, flags, sid),))
    return data


# ---------------------------------------------------------------------------------------

def run(seconds, seed, out=sys.stdout):
    """Run the three loops for about `seconds` in all; raise AssertionError on a failure."""
    # One generator per loop: input N of a loop is the same whatever the others did in
    # their share of the time.
    rnds = [random.Random('%d-%d' % (seed, i)) for i in range(4)]
    counts = {}
    share = seconds / 4.0

    def loop(name, step):
        n, end = 0, time.monotonic() + share
        while time.monotonic() < end:
            for _ in range(20):
                try:
                    inp = step()
                except AssertionError as e:
                    raise AssertionError('%s loop, seed %d, input %d: %s' % (name, seed, n, e))
                n += 1
            del inp
        counts[name] = n

    def environ_step():
        rnd = rnds[0]
        nul = rnd.random() < 0.5
        pairs = rand_pairs(rnd)
        block = encode_vars_nul(pairs) if nul else encode_vars(pairs)
        if rnd.random() < 0.6:
            block = mutate(rnd, block)
        if nul:
            check_environ_nul(block)
        else:
            check_environ(block)
        return block

    loop('environ', environ_step)
    loop('head', lambda: check_build_head(rnds[1]))
    loop('frames', lambda: check_frames(rnds[3]))
    tmp = tempfile.mkdtemp(prefix='herd-fuzz-')
    w = Worker(tmp)
    last = [None]
    try:
        def socket_step():
            last[0] = socket_round(rnds[2], w)
            return last[0]
        try:
            loop('socket', socket_step)
        except AssertionError as e:
            raise AssertionError('%s\nlast packet %r\nworker log:\n%s' % (e, last[0], w.stderr()))
        check_serves(w)
    finally:
        w.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    out.write('fuzz_worker: seed %d, %.0fs, Python %s: %s\n' % (
        seed, seconds, sys.version.split()[0],
        ', '.join('%s %d (%.0f/s)' % (k, v, v / share) for k, v in counts.items())))
    return counts


def main():
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--seconds', type=float, default=60.0)
    p.add_argument('--seed', type=int, default=None)
    args = p.parse_args()
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(1 << 32)
    try:
        run(args.seconds, seed)
    except AssertionError as e:
        sys.stderr.write('fuzz_worker: FAILED: %s\n' % e)
        return 1
    return 0


if __name__ == '__main__':
    sys.exit(main())
