"""The worker process: its exit codes, its log lines on stderr, how it leaves, its control
channel to the master, and the descriptors it inherits. Every other module uses these.

The exit codes, the control channel's messages and the descriptors: docs/protocol.md.
"""

import faulthandler
import json
import os
import socket
import sys
import threading
import traceback

EXIT_OK = 0
EXIT_FATAL = 1
EXIT_BOOT_ERROR = 3
EXIT_APP_IMPORT_ERROR = 4

worker_id = 0          # --worker-id, set by boot: it tags every log line
name = 'herd-worker'   # what the log lines call this process (a fork server says so)
control = None         # the control socket, once start_control took it; or None
# Set by a serving loop that stops in its own way (the ASGI worker: lifespan shutdown):
# called from the control thread at EOF instead of the exit at once, and at dump_stacks
# after the threads' stacks.
on_master_gone = None
on_dump_stacks = None
_control_lock = threading.Lock()


# ---------------------------------------------------------------------------------------
# logging and leaving

def _log(msg):
    try:
        sys.stderr.write('%s[%d] %s\n' % (name, worker_id, msg))
        sys.stderr.flush()
    except Exception:
        pass


def _log_exc(msg):
    _log('%s\n%s' % (msg, traceback.format_exc().rstrip('\n')))


def _flush_stdio():
    for f in (sys.stdout, sys.stderr):
        try:
            if f is not None:
                f.flush()
        except Exception:
            pass


def _hard_exit(code):
    _flush_stdio()
    os._exit(code)


# ---------------------------------------------------------------------------------------
# control channel and descriptors

def start_control(fd):
    """Take the inherited control socket fd: messages go out on it (_send_control), and a
    thread watches it for the master's commands and its EOF."""
    global control
    ctl = _inherited_socket(fd, '--control-fd')
    control = ctl
    threading.Thread(target=_watch_control, args=(ctl,), name='herd-control',
                     daemon=True).start()


def _send_control(obj):
    if control is None:
        return
    data = (json.dumps(obj) + '\n').encode('utf-8')
    with _control_lock:
        try:
            control.sendall(data)
        except OSError:
            pass    # the watcher sees the EOF and exits


def _watch_control(ctl):
    seen = set()
    try:
        for line in ctl.makefile('rb'):
            try:
                msg = json.loads(line.decode('utf-8'))
                cmd = msg.get('cmd') if isinstance(msg, dict) else None
            except ValueError:
                cmd = None
            if cmd == 'dump_stacks':
                _flush_stdio()
                faulthandler.dump_traceback(file=sys.stderr, all_threads=True)
                if on_dump_stacks is not None:
                    on_dump_stacks()
            elif line.strip():
                key = str(cmd)
                if key not in seen:
                    seen.add(key)
                    _log('ignoring unknown control message: %s' % line[:200].decode(
                        'utf-8', 'replace').strip())
    except Exception:
        pass
    if on_master_gone is not None:
        try:
            on_master_gone()
            return
        except Exception:
            pass
    _hard_exit(EXIT_OK)     # the master is gone, or wants us gone


def app_boot_failed(kind, error, tb, log_line=None):
    """The app could not be loaded or started (kind: app_import, app_lifespan): tell the
    master its error and traceback on the control channel (or, with none, print the
    traceback), and exit 4, the contract for an app that cannot boot."""
    error = error.replace('\r', ' ').replace('\n', ' ')
    _log(log_line or error)
    if control is None:
        sys.stderr.write(tb)
    _send_control({'event': 'boot_error', 'kind': kind, 'error': error, 'traceback': tb})
    _hard_exit(EXIT_APP_IMPORT_ERROR)


def _boot_fail(msg):
    _log(msg)
    _send_control({'event': 'boot_error', 'kind': 'worker', 'error': msg, 'traceback': ''})
    _hard_exit(EXIT_BOOT_ERROR)


def _inherited_socket(fd, what):
    try:
        sock = socket.socket(fileno=fd)
        if sock.type != socket.SOCK_STREAM:
            raise OSError('not a SOCK_STREAM socket')
        # Go hands fds over non-blocking at times; O_NONBLOCK would make accept() fail.
        sock.setblocking(True)
        # Keep it out of the app's subprocesses: a child holding the control socket would
        # hide this worker's death from the master.
        sock.set_inheritable(False)
        return sock
    except (OSError, ValueError) as e:
        _boot_fail('%s %d unusable: %s' % (what, fd, e))
