"""The fork server (--fork-server-fd N): a Python process that forks the workers, so that
what it imported is imported once and shared, copy-on-write, by every worker it forks.

- An app server (--preload; and each generation of development mode) imports the app,
  then forks workers: each fork runs the gunicorn hooks (hooks.py), and the child serves
  as a worker started with the same options would (boot.serve_forked).
- A template (--template, development mode) imports no app: it imports the third-party
  modules it is told the app used (the "preload" command) and forks app servers for new
  generations, which import only the project's own modules.

It is single-threaded (a fork copies the forking thread alone), keeps the collector off
and freezes what it holds before each fork (gc.freeze: a worker's collections then never
write to the shared objects), reaps the children it forked and reports their exits: the
master, not their parent, cannot wait for them. Its messages and descriptors:
docs/protocol.md, "fork server".
"""

import array
import gc
import importlib
import json
import os
import selectors
import signal
import socket
import sys

from . import boot, hooks as hookmod, process, watch
from .process import (EXIT_FATAL, EXIT_OK, _hard_exit,
                      _inherited_socket, _log, _log_exc, _send_control)

_INT = array.array('i').itemsize
# The descriptors each command comes with, in order.
_FDS = {'fork': 4, 'fork_server': 3}


def _take(argv, name, value=True):
    """Remove option name (and its value) from argv; return the value, True, or None."""
    if name not in argv:
        return None
    i = argv.index(name)
    if not value:
        del argv[i]
        return True
    try:
        v = argv[i + 1]
    except IndexError:
        process._boot_fail('%s needs a value' % name)
    del argv[i:i + 2]
    return v


def main(argv):
    argv = list(argv)
    fd = _take(argv, '--fork-server-fd')
    location = _take(argv, '--hooks')
    template = bool(_take(argv, '--template', value=False))
    develop = bool(_take(argv, '--watch', value=False))
    process.name = 'herd-fork-server'
    try:
        fd = int(fd)
    except ValueError:
        process._boot_fail('--fork-server-fd needs a descriptor number')
    chan = _inherited_socket(fd, '--fork-server-fd')
    server = ForkServer(chan, argv, location, template, develop)
    server.boot()
    return server.run()


def _on_sigterm(signum, frame):
    raise SystemExit(EXIT_OK)   # it holds no request


def _pidfd_open(pid):
    """A pidfd of the child (close-on-exec), or None: os.pidfd_open (Python >= 3.9), the
    system call itself through ctypes on 3.8, nothing before Linux 5.3 or when
    HERD_FORK_SERVER_PIDFD=0 (the tests of the master's fallback)."""
    if os.environ.get('HERD_FORK_SERVER_PIDFD') == '0':
        return None
    try:
        if hasattr(os, 'pidfd_open'):
            return os.pidfd_open(pid)
        import ctypes
        libc = ctypes.CDLL(None, use_errno=True)
        fd = libc.syscall(434, pid, 0)      # SYS_pidfd_open, the same on every architecture
        return fd if fd >= 0 else None
    except Exception:
        return None


def _start_time(pid):
    """The child's start time in clock ticks after boot (/proc/PID/stat): with its pid it
    names the process even once the pid is reused."""
    try:
        with open('/proc/%d/stat' % pid, 'rb') as f:
            return int(f.read().rsplit(b')', 1)[1].split()[19])
    except (OSError, IndexError, ValueError):
        return 0


def _reseed():
    """Random state a forked worker must not share with its siblings. The random module's
    own instance is reseeded by os.register_at_fork already; seed() again costs nothing.
    numpy's global generator is not."""
    random = sys.modules.get('random')
    if random is not None:
        random.seed()
    np_random = sys.modules.get('numpy.random')
    if np_random is not None:
        try:
            np_random.seed()
        except Exception:
            pass


class ForkServer(object):
    def __init__(self, chan, argv, location, template, develop):
        self.chan = chan
        self.argv = argv            # the workers' options (--app, --threads, --chdir ...)
        self.args = boot._parse_args(argv, listening=False)
        self.location = location
        self.template = template
        self.develop = develop
        self.app = None
        self.hooks = None
        self.children = set()       # pids forked and not reaped yet
        self.buf = b''
        self.fds = []               # received, not yet taken by a command
        self.preload = []           # template: modules still to import
        self.wakeup = None
        self.selector = None

    # -- start-up -------------------------------------------------------------------------

    def boot(self):
        process.control = self.chan     # boot errors and ready go to the master
        signal.signal(signal.SIGTERM, _on_sigterm)
        # gc.freeze's recipe: no collection in the parent (it would leave holes that the
        # children's allocations fill, copying those pages), freeze before each fork.
        gc.disable()
        boot._setup_path(self.args)
        if self.develop:
            watch.start()
        if not self.template:
            if self.location:
                self._load_hooks()
            self.app = boot._import_app(self.args.app)
        ready = {'event': 'ready', 'pid': os.getpid(),
                 'python': '%d.%d.%d' % sys.version_info[:3]}
        if self.develop:
            watch.pause()
            if not self.template:
                ready['modules'] = watch.third_party()
        _send_control(ready)

    def _load_hooks(self):
        try:
            funcs = hookmod.load(self.location)
        except BaseException as e:
            _boot_error('the gunicorn config %s failed: %s: %s'
                        % (self.location, type(e).__name__, e), _format_exc())
        self.hooks = hookmod.Hooks(funcs, self.args.app)

    # -- the loop ---------------------------------------------------------------------------

    def run(self):
        r, w = os.pipe()
        os.set_blocking(r, False)
        os.set_blocking(w, False)
        self.wakeup = (r, w)
        signal.set_wakeup_fd(w)
        signal.signal(signal.SIGCHLD, lambda signum, frame: None)
        self.selector = sel = selectors.DefaultSelector()
        sel.register(self.chan, selectors.EVENT_READ, 'channel')
        sel.register(r, selectors.EVENT_READ, 'wakeup')
        self.reap()     # a child that died before the handler was set
        while True:
            events = sel.select(0 if self.preload else None)
            for key, _ in events:
                if key.data == 'wakeup':
                    try:
                        while os.read(r, 512):
                            pass
                    except (BlockingIOError, InterruptedError):
                        pass
                    self.reap()
                elif not self.receive():
                    return EXIT_OK      # the master let go of this fork server
            if not events and self.preload:
                self.preload_one()

    def receive(self):
        try:
            data, ancillary, flags, _ = self.chan.recvmsg(65536, socket.CMSG_SPACE(8 * _INT))
        except OSError as e:
            _log('fork server channel failed: %s' % e)
            return False
        for level, kind, payload in ancillary:
            if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                got = array.array('i')
                got.frombytes(payload[:len(payload) - len(payload) % _INT])
                self.fds.extend(got)
        if flags & socket.MSG_CTRUNC:
            _log('descriptors of a request were cut off')
        if not data:
            return False
        self.buf += data
        while b'\n' in self.buf:
            line, self.buf = self.buf.split(b'\n', 1)
            self.handle(line)
        return True

    def handle(self, line):
        try:
            msg = json.loads(line.decode('utf-8'))
            cmd = msg['cmd']
        except (ValueError, KeyError, TypeError):
            _log('ignoring a bad message: %r' % line[:200])
            return
        n = _FDS.get(cmd, 0)
        fds, self.fds = self.fds[:n], self.fds[n:]
        if cmd in ('fork', 'fork_server'):
            self.fork(msg, fds, cmd == 'fork')
        elif cmd == 'preload':
            names = msg.get('modules') or []
            self.preload.extend(n for n in names if isinstance(n, str) and n not in sys.modules)
        else:
            _log('ignoring unknown command %r' % cmd)

    # -- forking ----------------------------------------------------------------------------

    def fork(self, msg, fds, worker):
        req = msg.get('id')
        argv = msg.get('argv', [])
        problem = None
        if len(fds) != _FDS['fork' if worker else 'fork_server']:
            problem = 'came with %d descriptors' % len(fds)
        elif not isinstance(argv, list) or not all(isinstance(a, str) for a in argv):
            problem = 'argv is not a list of strings'
        elif worker == self.template:
            problem = 'a template forks fork servers, a fork server workers'
        if problem is None and msg.get('fresh') and self.develop:
            stale = watch.changed()
            if stale is not None:
                _close(fds)
                self.send({'event': 'stale', 'id': req, 'changed': stale})
                return
        if problem is None and worker and self.hooks is not None:
            try:
                self.hooks.pre_fork(req)
            except hookmod.HookError as e:
                problem = e.args[0]
                _log('%s\n%s' % (e.args[0], e.args[1].rstrip('\n')))
        if problem is None:
            process._flush_stdio()
            gc.freeze()
            try:
                pid = os.fork()
            except OSError as e:
                problem = 'fork: %s' % e
        if problem is not None:
            _close(fds)
            self.send({'event': 'fork_error', 'id': req, 'error': problem})
            return
        if pid == 0:
            self._child(argv, fds, worker)      # never returns
        _close(fds)
        self.children.add(pid)
        pidfd = _pidfd_open(pid)
        self.send({'event': 'forked', 'id': req, 'pid': pid, 'pidfd': pidfd is not None,
                   'start': _start_time(pid)}, [] if pidfd is None else [pidfd])
        if pidfd is not None:
            os.close(pidfd)

    def _child(self, argv, fds, worker):
        """The forked process: a worker (fds: listen, control, stdout, stderr) or a fork
        server (fds: its channel, stdout, stderr). It never returns to the loop."""
        code = EXIT_FATAL
        try:
            self._leave_parent(fds[-2], fds[-1])
            if worker:
                gc.enable()
                code = boot.serve_forked(
                    self.argv + argv + ['--listen-fd', str(fds[0]), '--control-fd', str(fds[1])],
                    self.app, self._after_fork)
            else:
                process.name = 'herd-fork-server'
                chan = _inherited_socket(fds[0], 'fork server channel')
                child = ForkServer(chan, self.argv + argv, self.location, False, self.develop)
                child.boot()
                code = child.run()
        except SystemExit as e:
            code = e.code
        except BaseException:
            _log_exc('forked process failed')
        boot._exit(code)

    def _leave_parent(self, stdout, stderr):
        """Drop what the child must not keep of the fork server: its channel (the master
        must see it close when the fork server dies), its wake-up pipe and signal
        handlers; take its own output and process group; collect again."""
        signal.set_wakeup_fd(-1)
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        _close(self.wakeup)
        _close(self.fds)
        self.selector.close()
        self.chan.close()
        process.control = None
        os.dup2(stdout, 1)
        os.dup2(stderr, 2)
        _close([stdout, stderr])
        try:
            os.setpgid(0, 0)    # as an exec'd worker: a signal to the group is its own
        except OSError:
            pass
        _reseed()

    def _after_fork(self, worker_id):
        signal.signal(signal.SIGTERM, boot.serve._on_sigterm)
        if self.hooks is None:
            return
        try:
            self.hooks.after_fork(worker_id)
        except hookmod.HookError as e:
            _boot_error(e.args[0], e.args[1])

    # -- children and the template ---------------------------------------------------------

    def reap(self):
        for pid in list(self.children):
            try:
                got, status = os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                got, status = pid, None
            if got == 0:
                continue
            self.children.discard(pid)
            if status is None:
                code, sig = -1, 0       # reaped by someone else: unknown
            elif os.WIFSIGNALED(status):
                code, sig = -1, os.WTERMSIG(status)
            else:
                code, sig = os.WEXITSTATUS(status), 0
            self.send({'event': 'exit', 'pid': pid, 'code': code, 'signal': sig})

    def preload_one(self):
        name = self.preload.pop(0)
        if name not in sys.modules:
            watch.start()
            try:
                importlib.import_module(name)
            except BaseException:
                pass    # it needs the project (Django's models need its settings)
        if not self.preload:
            watch.pause()

    def send(self, msg, fds=()):
        data = (json.dumps(msg) + '\n').encode('utf-8')
        try:
            if fds:
                n = self.chan.sendmsg([data], [(socket.SOL_SOCKET, socket.SCM_RIGHTS,
                                                array.array('i', fds))])
                data = data[n:]
            if data:
                self.chan.sendall(data)
        except OSError as e:
            _log('fork server channel failed: %s' % e)
            _hard_exit(EXIT_OK)


def _close(fds):
    for fd in fds or ():
        try:
            os.close(fd)
        except OSError:
            pass


def _format_exc():
    import traceback
    return traceback.format_exc()


def _boot_error(error, tb):
    """The app (or a hook) could not be loaded: tell the master, exit 4."""
    process.app_boot_failed('app_import', error, tb)
