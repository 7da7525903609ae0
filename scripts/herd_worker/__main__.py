"""Runs the worker from a source checkout: python3 scripts/herd_worker --app MODULE:APP ...

herd starts its embedded copy through a start-up file of its own (supervisor/spawn/
workercode.go); this one is for the worker's tests and for running a worker by hand.
"""

if __name__ == '__main__':     # not when multiprocessing's spawn imports the main module
    import importlib
    import os
    import sys

    _here = os.path.dirname(os.path.abspath(__file__))
    if sys.path and os.path.abspath(sys.path[0]) == _here:
        del sys.path[0]     # the package's modules are no top-level ones, nor the app's
    sys.path.insert(0, os.path.dirname(_here))
    try:
        _boot = importlib.import_module(os.path.basename(_here) + '.boot')
    finally:
        del sys.path[0]
    _boot.run()
