"""The standby hand-over (--standby-fd, development mode): a worker interpreter started
ahead of need waits here for the master to hand it its sockets and the rest of its command
line. The message and what comes of a bad one: docs/protocol.md.
"""

import array
import importlib
import json
import os
import socket

from .process import EXIT_OK, _boot_fail, _hard_exit, _inherited_socket, _log


def _await_handover(argv):
    """With --standby-fd N, wait for the master's hand-over and return the whole command
    line it completes; without, return argv as it is."""
    if '--standby-fd' not in argv:
        return argv
    i = argv.index('--standby-fd')
    try:
        fd = int(argv[i + 1])
    except (IndexError, ValueError):
        _boot_fail('--standby-fd needs a descriptor number')
    rest = argv[:i] + argv[i + 2:]
    sock = _inherited_socket(fd, '--standby-fd')
    data, fds = _receive_handover(sock)
    sock.close()
    if not data.endswith(b'\n'):
        for f in fds:
            os.close(f)
        _hard_exit(EXIT_OK)     # let go before it was needed
    try:
        extra = json.loads(data.decode('utf-8'))['argv']
        if not isinstance(extra, list) or not all(isinstance(a, str) for a in extra) \
                or len(fds) != 2:
            raise ValueError('%d descriptors' % len(fds))
    except (ValueError, KeyError, TypeError) as e:
        _boot_fail('bad standby hand-over %r: %s' % (data[:200], e))
    # The app's modules are imported only now: whatever the directories held while this
    # interpreter waited, the import system must look at them afresh.
    importlib.invalidate_caches()
    return rest + extra + ['--listen-fd', str(fds[0]), '--control-fd', str(fds[1])]


def _receive_handover(sock):
    """Read the hand-over message and the descriptors sent with it."""
    data, fds = b'', []
    int_size = array.array('i').itemsize
    try:
        while not data.endswith(b'\n'):
            msg, ancillary, _, _ = sock.recvmsg(65536, socket.CMSG_SPACE(4 * int_size))
            for level, kind, payload in ancillary:
                if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                    received = array.array('i')
                    received.frombytes(payload[:len(payload) - len(payload) % int_size])
                    fds.extend(received)
            if not msg:
                break
            data += msg
    except OSError as e:
        _log('standby socket failed: %s' % e)
    return data, fds
