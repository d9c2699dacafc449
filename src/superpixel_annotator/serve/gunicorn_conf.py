"""Gunicorn settings for serving the annotator to a team (``superpixel-annotator-serve``).

Read with ``gunicorn --config``; the Docker image and the deployment tests use this file
through the same launcher (:mod:`superpixel_annotator.serve`). Environment variables:

``PORT``
    Port to listen on, on all interfaces (default 8050).
``BIND``
    Overrides ``PORT`` with gunicorn addresses, space-separated (``127.0.0.1:8050``,
    ``unix:/run/annotator.sock``).
``WEB_CONCURRENCY``
    Number of worker processes (default 2).
``GUNICORN_CMD_ARGS``
    Any other gunicorn option, e.g. ``--threads 8 --timeout 300``; it overrides this file.

The app is loaded once in the master process before the workers are forked
(``preload_app``): the scan and its superpixels are read (or computed and cached) once and
shared copy-on-write by the workers, a file that cannot be opened stops the server before
any worker starts, and a long superpixel computation cannot trip the worker timeout. Each
user's annotation lives in their browser, so any worker can answer any request.
"""

import os

bind = os.environ.get("BIND", "").split() or [f"0.0.0.0:{os.environ.get('PORT', '8050')}"]
workers = int(os.environ.get("WEB_CONCURRENCY", "2"))
worker_class = "gthread"
threads = 4
timeout = 120
graceful_timeout = 20
preload_app = True
proc_name = "superpixel-annotator"

# Request bodies are bounded by the app (Flask's MAX_CONTENT_LENGTH, from the upload limits);
# gunicorn bounds the rest. The app's URLs are short; headers leave room for a portal's
# cookies.
limit_request_line = 4094
limit_request_fields = 50
limit_request_field_size = 8190

accesslog = "-"
access_log_format = '%(h)s "%(r)s" %(s)s %(b)s %(M)sms worker=%(p)s'
errorlog = "-"

# Heartbeat files on a RAM disk: an overlay /tmp in containers can stall workers.
worker_tmp_dir = "/dev/shm" if os.path.isdir("/dev/shm") else None
# gunicorn >= 25.1 opens a control socket under $HOME; the annotator needs none, and several
# servers on one host would share its path. Older gunicorn ignores the unknown name.
control_socket_disable = True
