"""WSGI entry point for production servers: ``gunicorn superpixel_annotator.wsgi:server``.

The scan is the file named by the environment variable ``SUPERPIXEL_ANNOTATOR_FILE``
(several modalities separated by ``os.pathsep``; unset or empty: the bundled sample).
With ``SUPERPIXEL_ANNOTATOR_CELERY_BROKER`` set, superpixels of uploads are computed by
Celery workers: ``celery -A superpixel_annotator.wsgi:celery_app worker``, started with the
same environment. A file that cannot be opened, or a malformed
``SUPERPIXEL_ANNOTATOR_CACHE_MAX_MB``, stops the server with a one-line message on stderr
and exit status 4, gunicorn's "app failed to load" code: a preloading master exits with it,
and a master whose workers load the app halts on it instead of restarting them forever.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterable, Sequence

import dash

from .app import celery_manager, create_app, load_startup_scan
from .serve import BROKER_VARIABLE, FILE_VARIABLE
from .superpixels import CacheSettingError
from .volume import VolumeError

APP_LOAD_ERROR = 4


def with_worker_pid(wsgi_app: Callable) -> Callable:
    """Wrap a WSGI app so each response names its worker process in ``X-Worker-Pid``."""

    def app(environ: dict, start_response: Callable) -> Iterable[bytes]:
        def start_with_pid(status: str, headers: list, exc_info=None):
            headers.append(("X-Worker-Pid", str(os.getpid())))
            return start_response(status, headers, exc_info)

        return wsgi_app(environ, start_with_pid)

    return app


def build_app(paths: Sequence[str], background_manager=None) -> dash.Dash:
    """The annotator app for the scan at ``paths`` (modalities; none: the sample), with
    background callbacks on ``background_manager`` (default: local processes).

    Raises
    ------
    VolumeError
        When a file is not a usable 3D image or the modalities disagree.
    CacheSettingError
        When ``SUPERPIXEL_ANNOTATOR_CACHE_MAX_MB`` is malformed.
    """
    volumes = load_startup_scan(paths)
    print(
        f"superpixel-annotator: preparing {volumes[0].name} {volumes[0].data.shape}",
        file=sys.stderr,
    )
    app = create_app(volumes, background_manager=background_manager)
    app.server.wsgi_app = with_worker_pid(app.server.wsgi_app)
    return app


_broker = os.environ.get(BROKER_VARIABLE)
_manager = celery_manager(_broker) if _broker else None
# The Celery app whose workers run the background callbacks (None without a broker).
celery_app = _manager.handle if _manager else None
try:
    app = build_app(
        [path for path in os.environ.get(FILE_VARIABLE, "").split(os.pathsep) if path], _manager
    )
except (VolumeError, CacheSettingError) as error:
    print(f"superpixel-annotator: {error}", file=sys.stderr, flush=True)
    raise SystemExit(APP_LOAD_ERROR) from None
server = app.server
