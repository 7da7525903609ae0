"""Evaluate a gunicorn config file as gunicorn does, and print its names as JSON.

herd runs this with the configured interpreter: python3 gunicorn_conf.py LOCATION. LOCATION
is PATH, file:PATH or python:MODULE, as gunicorn's -c takes it. The file is executed as the
module __config__ with the working directory first on sys.path (gunicorn's --chdir default),
so it may import its neighbours and read os.environ as under gunicorn.

Printed on stdout, one JSON object: each public module-level name that is not a module or a
class, as {"value": V} for a JSON value, {"callable": true} for a function (a server hook),
or {"repr": "..."} for anything else. Whatever the file prints goes to stderr, so that stdout
holds the JSON alone. Stdlib only; CPython 3.8 or newer.
"""

import importlib
import importlib.machinery
import importlib.util
import json
import os
import sys
import types


def load(location):
    if location.startswith("python:"):
        return vars(importlib.import_module(location[len("python:"):]))
    if location.startswith("file:"):
        location = location[len("file:"):]
    # SourceFileLoader whatever the extension: gunicorn reads a .conf name too (with a
    # warning, which herd gives instead).
    loader = importlib.machinery.SourceFileLoader("__config__", location)
    spec = importlib.util.spec_from_file_location("__config__", location, loader=loader)
    mod = importlib.util.module_from_spec(spec)
    sys.modules["__config__"] = mod
    spec.loader.exec_module(mod)
    return vars(mod)


def describe(value):
    if callable(value):
        return {"callable": True}
    try:
        json.dumps(value)
    except (TypeError, ValueError):
        return {"repr": repr(value)}
    return {"value": value}


def main():
    out = sys.stdout
    sys.stdout = sys.stderr
    sys.path.insert(0, os.getcwd())
    names = load(sys.argv[1])
    result = {}
    for name, value in names.items():
        if name.startswith("_") or isinstance(value, (types.ModuleType, type)):
            continue
        result[name] = describe(value)
    json.dump(result, out)
    out.write("\n")


if __name__ == "__main__":
    main()
