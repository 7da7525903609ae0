"""What a development-mode fork server's imports depend on, so that it can tell, when asked
to fork, whether the code on disk is still what it imported (docs/protocol.md, "fork
server"). It records, from the moment start() is called:

- every file opened for reading (an audit hook, Python >= 3.8: module sources and their
  bytecode caches, and what the app reads at import, a .env or a JSON file), with its
  modification time and size at the moment it was opened;
- every module the import system looked for and did not find (a finder at the end of
  sys.meta_path): an optional import that fails today (settings_local) may succeed once the
  file exists.

changed() names the first of them that differs now, or returns None: the process's modules
are those on disk. Recording is inherited by fork and stopped by pause(): a worker forked
from a fork server records nothing.
"""

import importlib
import importlib.machinery
import os
import site
import sys
import sysconfig

_active = [False]
_in_hook = [False]
_opened = {}        # path -> (st_mtime_ns, st_size), or None when it could not be stat'ed
_missing = set()    # (module name, the path it was looked for on, as a tuple, or None)
_installed = [False]


def _stat(path):
    try:
        st = os.stat(path)
    except (OSError, ValueError):
        return None
    return (st.st_mtime_ns, st.st_size)


_SKIPPED = ('/proc/', '/sys/', '/dev/')


def _audit(event, args):
    if event != 'open' or not _active[0] or _in_hook[0]:
        return
    path = args[0]
    if not isinstance(path, str) or path in _opened or path.startswith(_SKIPPED):
        return
    # Read-only opens only: a file the app writes (a cache, a database) changes because it
    # runs, not because someone edited it. open() gives a mode, os.open flags.
    mode = args[1] if len(args) > 1 else None
    flags = args[2] if len(args) > 2 else 0
    if isinstance(mode, str):
        if any(c in mode for c in 'wax+'):
            return
    elif isinstance(flags, int) and flags & os.O_ACCMODE != os.O_RDONLY:
        return
    _in_hook[0] = True
    try:
        _opened[path] = _stat(path)
    finally:
        _in_hook[0] = False


class _MissingFinder(object):
    """Last on sys.meta_path: whatever reaches it, no other finder found."""

    @staticmethod
    def find_spec(name, path=None, target=None):
        if _active[0]:
            _missing.add((name, tuple(path) if path is not None else None))
        return None

    @staticmethod
    def invalidate_caches():
        pass


def start():
    """Record from now on (once per process tree: a fork inherits the records)."""
    if not _installed[0]:
        _installed[0] = True
        sys.addaudithook(_audit)
        sys.meta_path.append(_MissingFinder)
    _active[0] = True


def pause():
    """Stop recording, and note the source files of the modules loaded from bytecode
    caches (their .py was stat'ed by the import system, not opened)."""
    _active[0] = False
    for name, mod in list(sys.modules.items()):
        f = getattr(mod, '__file__', None)
        if isinstance(f, str) and f not in _opened:
            _opened[f] = _stat(f)


def changed():
    """The first recorded file that changed on disk, or module that can be found now: a
    name; None when the process's imports are those the disk would give."""
    for path, before in list(_opened.items()):
        if _stat(path) != before:
            return path
    if _missing:
        importlib.invalidate_caches()
        for name, path in list(_missing):
            try:
                spec = importlib.machinery.PathFinder.find_spec(
                    name, list(path) if path is not None else None)
            except (ImportError, ValueError, TypeError):
                spec = None
            if spec is not None:
                return name
    return None


def _library_dirs():
    dirs = set()
    paths = sysconfig.get_paths()
    for key in ('stdlib', 'platstdlib', 'purelib', 'platlib'):
        if paths.get(key):
            dirs.add(os.path.realpath(paths[key]))
    try:
        dirs.update(os.path.realpath(d) for d in site.getsitepackages())
    except AttributeError:      # a virtualenv's old site.py
        pass
    user = getattr(site, 'USER_SITE', None)
    if user:
        dirs.add(os.path.realpath(user))
    return tuple(d + os.sep for d in dirs)


def third_party():
    """The modules loaded from the standard library and site-packages (not the project's),
    in the order they were imported: what a template may import ahead of the next
    generation."""
    dirs = _library_dirs()
    names = []
    for name, mod in list(sys.modules.items()):
        f = getattr(mod, '__file__', None)
        if name == '__main__' or name.startswith('herd_worker'):
            continue
        if f is None or os.path.realpath(f).startswith(dirs):
            names.append(name)
    return names
