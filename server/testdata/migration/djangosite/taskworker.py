"""Stands in for `celery -A proj worker`: writes its pid, then waits for work until TERM."""
import os
import signal
import sys
import time

with open(sys.argv[1], 'w') as f:
    f.write('%d\n' % os.getpid())
signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
print('task worker ready', flush=True)
while True:
    time.sleep(3600)
