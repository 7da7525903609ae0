"""Tests of the fork server (herd_worker/forkserver.py): a real fork server, driven as the
master drives it (docs/protocol.md, "fork server"), forking real workers.

Run from the repository root:
    python3 -m unittest discover -s scripts -p 'test_forkserver.py' -v
"""

import array
import json
import os
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.dont_write_bytecode = True
sys.path.insert(0, HERE)
from test_worker import APPS, WAIT, WORKER, Conn, poll  # noqa: E402

_INT = array.array('i').itemsize


class ForkServer(object):
    """A fork server subprocess and the master's end of its channel."""

    def __init__(self, app='preloadapp:app', args=(), env=None, template=False):
        self.tmp = tempfile.mkdtemp(prefix='herd-fs-')
        self.chan, theirs = socket.socketpair()
        self.chan.settimeout(WAIT)
        cmd = [sys.executable, WORKER, '--app', app, '--chdir', APPS,
               '--fork-server-fd', str(theirs.fileno())] + list(args)
        if template:
            cmd += ['--template', '--watch']
        self.log_path = os.path.join(self.tmp, 'log')
        self.log_file = open(self.log_path, 'wb')
        self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=self.log_file,
                                     stderr=self.log_file, pass_fds=[theirs.fileno()],
                                     env=dict(os.environ, PYTHONDONTWRITEBYTECODE='1',
                                              **(env or {})))
        theirs.close()
        self.buf = b''
        self.fds = []
        self.workers = []

    def message(self):
        while b'\n' not in self.buf:
            data, anc, _, _ = self.chan.recvmsg(65536, socket.CMSG_SPACE(4 * _INT))
            for level, kind, payload in anc:
                if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                    got = array.array('i')
                    got.frombytes(payload[:len(payload) - len(payload) % _INT])
                    self.fds.extend(got)
            if not data:
                return None
            self.buf += data
        line, self.buf = self.buf.split(b'\n', 1)
        return json.loads(line.decode('utf-8'))

    def expect(self, event):
        msg = self.message()
        if msg is None or msg.get('event') != event:
            raise AssertionError('wanted %s, got %r\n%s' % (event, msg, self.log()))
        return msg

    def fork(self, worker_id, fresh=False):
        """Ask for a worker; returns (answer, its uwsgi socket path, control socket,
        pidfd or None)."""
        path = os.path.join(self.tmp, 'w%d.sock' % worker_id)
        lsock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        lsock.bind(path)
        lsock.listen(16)
        control, theirs = socket.socketpair()
        control.settimeout(WAIT)
        msg = {'cmd': 'fork', 'id': worker_id, 'argv': ['--worker-id', str(worker_id)]}
        if fresh:
            msg['fresh'] = True
        fds = [lsock.fileno(), theirs.fileno(), self.log_file.fileno(), self.log_file.fileno()]
        self.chan.sendmsg([(json.dumps(msg) + '\n').encode()],
                          [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array('i', fds))])
        lsock.close()
        theirs.close()
        answer = self.message()
        pidfd = None
        if answer.get('pidfd'):
            pidfd = self.fds.pop(0)
        self.workers.append((control, pidfd))
        return answer, path, control, pidfd

    def log(self):
        with open(self.log_path, 'rb') as f:
            return f.read().decode('utf-8', 'replace')

    def cleanup(self):
        for control, pidfd in self.workers:
            control.close()
            if pidfd is not None:
                os.close(pidfd)
        self.chan.close()
        try:
            self.proc.wait(WAIT)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log_file.close()
        shutil.rmtree(self.tmp, ignore_errors=True)


def control_message(control):
    line = b''
    while not line.endswith(b'\n'):
        more = control.recv(65536)
        if not more:
            return None
        line += more
    return json.loads(line.decode('utf-8'))


def get(path, uri):
    c = Conn(path)
    try:
        return c.request(uri).body.decode('utf-8')
    finally:
        c.close()


class ForkServerTest(unittest.TestCase):
    def start(self, **kw):
        fs = ForkServer(**kw)
        self.addCleanup(fs.cleanup)
        return fs

    def test_forks_serving_workers_and_reports_their_exits(self):
        fs = self.start(args=['--hooks', os.path.join(APPS, 'preload.conf.py')])
        ready = fs.expect('ready')
        self.assertEqual(ready['pid'], fs.proc.pid)
        workers = []
        for wid in (1, 2):
            answer, path, control, pidfd = fs.fork(wid)
            self.assertEqual(answer['event'], 'forked', fs.log())
            self.assertEqual(answer['id'], wid)
            self.assertGreater(answer['start'], 0)
            if hasattr(os, 'pidfd_open') or answer['pidfd']:
                self.assertIsNotNone(pidfd)
            msg = control_message(control)
            self.assertEqual(msg['event'], 'ready', fs.log())
            self.assertEqual(msg['pid'], answer['pid'])
            workers.append((answer['pid'], path, pidfd))
        (pid1, path1, pidfd1), (pid2, path2, _) = workers
        self.assertEqual(get(path1, '/pid'), str(pid1))
        self.assertEqual(get(path2, '/pid'), str(pid2))
        # What was opened at import works in every worker; random state is each its own;
        # logging does not hang though a thread of the fork server logged all the time.
        for path in (path1, path2):
            self.assertIn('preload', get(path, '/file'))
            self.assertTrue(get(path, '/socket').startswith('ping '))
            self.assertEqual(get(path, '/log'), 'ok')
        self.assertNotEqual(get(path1, '/random'), get(path2, '/random'))
        hooks = get(path2, '/hooks').split(',')
        self.assertIn('pre_fork:True:None', hooks)
        self.assertIn('post_fork:True:True', hooks)
        self.assertIn('post_worker_init:True', hooks)
        self.assertEqual(os.getpgid(pid1), pid1)    # its own process group
        os.kill(pid1, signal.SIGKILL)
        if pidfd1 is not None:
            self.assertTrue(select.select([pidfd1], [], [], WAIT)[0])
        exit_msg = fs.expect('exit')
        self.assertEqual((exit_msg['pid'], exit_msg['code'], exit_msg['signal']),
                         (pid1, -1, signal.SIGKILL))
        # Closing a worker's control channel ends it (exit 0), reported too.
        workers_controls = [c for c, _ in fs.workers]
        workers_controls[1].close()
        exit_msg = fs.expect('exit')
        self.assertEqual((exit_msg['pid'], exit_msg['code']), (pid2, 0))
        # EOF on the channel: the fork server exits 0.
        fs.chan.shutdown(socket.SHUT_WR)
        self.assertEqual(fs.proc.wait(WAIT), 0)

    def test_import_error_is_a_boot_error(self):
        fs = self.start(app='broken:app')
        msg = fs.expect('boot_error')
        self.assertEqual(msg['kind'], 'app_import')
        self.assertIn('Traceback', msg['traceback'])
        self.assertEqual(fs.proc.wait(WAIT), 4)

    def test_hook_error_fails_the_worker(self):
        conf = os.path.join(tempfile.mkdtemp(prefix='herd-conf-'), 'gunicorn.conf.py')
        self.addCleanup(shutil.rmtree, os.path.dirname(conf))
        with open(conf, 'w') as f:
            f.write('def post_fork(server, worker):\n    raise RuntimeError("no")\n')
        fs = self.start(args=['--hooks', conf])
        fs.expect('ready')
        answer, _, control, _ = fs.fork(1)
        self.assertEqual(answer['event'], 'forked')
        msg = control_message(control)
        self.assertEqual(msg['event'], 'boot_error')
        self.assertIn('post_fork hook failed: RuntimeError: no', msg['error'])
        exit_msg = fs.expect('exit')
        self.assertEqual(exit_msg['code'], 4)

    def test_without_pidfd(self):
        fs = self.start(env={'HERD_FORK_SERVER_PIDFD': '0'})
        fs.expect('ready')
        answer, path, control, pidfd = fs.fork(7)
        self.assertFalse(answer['pidfd'])
        self.assertIsNone(pidfd)
        self.assertEqual(control_message(control)['event'], 'ready')
        self.assertEqual(get(path, '/pid'), str(answer['pid']))


class TemplateTest(unittest.TestCase):
    """Development mode: a template forks an app server, which tells which third-party
    modules it imported and says stale once a file it imported changed."""

    def project(self, module, head):
        """A project directory with module.py: head, then an app answering 200."""
        proj = tempfile.mkdtemp(prefix='herd-proj-')
        self.addCleanup(shutil.rmtree, proj)
        with open(os.path.join(proj, module + '.py'), 'w') as f:
            f.write(head + 'def app(environ, start_response):\n'
                    '    start_response("200 OK", [("Content-Length", "2")])\n'
                    '    return [b"v1"]\n')
        return proj

    def test_fork_server_from_template_and_staleness(self):
        proj = self.project('devapp', 'import json, email.utils\n')
        tmpl = ForkServer(app='devapp:app', template=True)
        self.addCleanup(tmpl.cleanup)
        # The template imports no app: its --chdir is APPS, the app is in proj, told below.
        tmpl.expect('ready')
        chan, theirs = socket.socketpair()
        chan.settimeout(WAIT)
        self.addCleanup(chan.close)
        msg = {'cmd': 'fork_server', 'id': 1, 'argv': ['--chdir', proj], 'fresh': True}
        fds = [theirs.fileno(), tmpl.log_file.fileno(), tmpl.log_file.fileno()]
        tmpl.chan.sendmsg([(json.dumps(msg) + '\n').encode()],
                          [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array('i', fds))])
        theirs.close()
        answer = tmpl.message()
        self.assertEqual(answer['event'], 'forked', tmpl.log())
        if answer['pidfd']:
            os.close(tmpl.fds.pop(0))
        app_server = ForkServer.__new__(ForkServer)
        app_server.chan, app_server.buf, app_server.fds = chan, b'', []
        app_server.log_path = tmpl.log_path
        ready = app_server.expect('ready')
        self.assertIn('email.utils', ready['modules'])
        self.assertNotIn('devapp', ready['modules'])
        tmpl.chan.sendall((json.dumps({'cmd': 'preload', 'modules': ready['modules']}) + '\n')
                          .encode())
        # The project's module changes: the app server says stale instead of forking.
        time.sleep(0.01)    # a later modification time than the import's (time is the subject)
        with open(os.path.join(proj, 'devapp.py'), 'a') as f:
            f.write('# changed\n')
        chan.sendmsg([(json.dumps({'cmd': 'fork', 'id': 5, 'argv': [], 'fresh': True}) + '\n')
                      .encode()],
                     [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array(
                         'i', [tmpl.log_file.fileno()] * 4))])
        stale = app_server.message()
        self.assertEqual(stale['event'], 'stale')
        self.assertTrue(stale['changed'].endswith('devapp.py'), stale)
        # The template itself is still fresh: it imported no project file.
        self.assertTrue(poll(lambda: tmpl.proc.poll() is None))

    def test_missing_module_found_later_is_stale(self):
        """An import that failed when the app server imported the app (a settings_local
        that did not exist) makes it stale once the module exists."""
        proj = self.project('optapp', 'try:\n    import optapp_local\nexcept ImportError:\n    pass\n')
        fs = ForkServer(app='optapp:app', args=['--chdir', proj, '--watch'])
        self.addCleanup(fs.cleanup)
        fs.expect('ready')
        answer, _, control, _ = fs.fork(1, fresh=True)
        self.assertEqual(answer['event'], 'forked', fs.log())
        with open(os.path.join(proj, 'optapp_local.py'), 'w') as f:
            f.write('X = 1\n')
        answer, _, _, _ = fs.fork(2, fresh=True)
        self.assertEqual((answer['event'], answer['changed']), ('stale', 'optapp_local'))


if __name__ == '__main__':
    unittest.main()
