# A Django project's gunicorn.conf.py as deployments write it.
import multiprocessing
import os

bind = os.environ.get("BIND", "127.0.0.1:8000")
wsgi_app = "djsite:application"
workers = int(os.environ.get("WEB_CONCURRENCY", min(2, multiprocessing.cpu_count())))
worker_class = "gthread"
threads = 2
timeout = 30
graceful_timeout = 10
keepalive = 5
max_requests = 1000
max_requests_jitter = 50

accesslog = "access.log"
errorlog = "-"
loglevel = "info"
access_log_format = '%(h)s %(l)s %(u)s %(t)s "%(r)s" %(s)s %(b)s "%(f)s" "%(a)s" %(M)s'

raw_env = ["SITE_MODE=production"]
forwarded_allow_ips = "127.0.0.1"
preload_app = False
proc_name = "djsite"


def post_fork(server, worker):
    server.log.info("worker %s forked", worker.pid)
