"""WSGI entry point for production servers: ``gunicorn superpixel_annotator.wsgi:server``.

The settings come from the environment (see :mod:`.settings`: the scan's files, limits,
Celery broker). With a broker set, superpixels of uploads are computed by Celery workers:
``celery -A superpixel_annotator.wsgi:celery_app worker``, started with the same
environment. A file that cannot be opened or a malformed setting stops the server with a
one-line message on stderr and exit status 4, gunicorn's "app failed to load" code: a
preloading master exits with it, and a master whose workers load the app halts on it
instead of restarting them forever.

With ``SUPERPIXEL_ANNOTATOR_DEBUG_HEADERS=1`` each response names its worker process in
``X-Worker-Pid`` (the deployment tests use it to see several workers answer); otherwise no
response says anything about the server's processes.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterable

from .settings import settings_from_environment
from .startup import STARTUP_ERRORS, background_manager, start

APP_LOAD_ERROR = 4
DEBUG_HEADERS_VARIABLE = "SUPERPIXEL_ANNOTATOR_DEBUG_HEADERS"


def with_worker_pid(wsgi_app: Callable) -> Callable:
    """Wrap a WSGI app so each response names its worker process in ``X-Worker-Pid``."""

    def app(environ: dict, start_response: Callable) -> Iterable[bytes]:
        def start_with_pid(status: str, headers: list, exc_info=None):
            headers.append(("X-Worker-Pid", str(os.getpid())))
            return start_response(status, headers, exc_info)

        return wsgi_app(environ, start_with_pid)

    return app


try:
    _settings = settings_from_environment()
    _manager = background_manager(_settings)
    app = start(_settings, _manager)
except STARTUP_ERRORS as error:
    print(f"superpixel-annotator: {error}", file=sys.stderr, flush=True)
    raise SystemExit(APP_LOAD_ERROR) from None
if os.environ.get(DEBUG_HEADERS_VARIABLE) == "1":
    app.server.wsgi_app = with_worker_pid(app.server.wsgi_app)
server = app.server
# The Celery app whose workers run the background callbacks (None without a broker).
celery_app = _manager.handle if _manager else None
