"""WSGI entry point for production servers: ``gunicorn superpixel_annotator.wsgi:server``.

The scan is the file named by the environment variable ``SUPERPIXEL_ANNOTATOR_FILE``
(unset or empty: the bundled sample). A file that cannot be opened stops the server with a
one-line message on stderr and exit status 4, gunicorn's "app failed to load" code: a
preloading master exits with it, and a master whose workers load the app halts on it
instead of restarting them forever.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterable

import flask

from .app import create_app, sample_path
from .serve import FILE_VARIABLE
from .volume import VolumeError, load_volume

APP_LOAD_ERROR = 4


def with_worker_pid(wsgi_app: Callable) -> Callable:
    """Wrap a WSGI app so each response names its worker process in ``X-Worker-Pid``."""

    def app(environ: dict, start_response: Callable) -> Iterable[bytes]:
        def start_with_pid(status: str, headers: list, exc_info=None):
            headers.append(("X-Worker-Pid", str(os.getpid())))
            return start_response(status, headers, exc_info)

        return wsgi_app(environ, start_with_pid)

    return app


def build_server(path: str | os.PathLike | None = None) -> flask.Flask:
    """The annotator's Flask server for the scan at ``path`` (``None``: the sample).

    Raises
    ------
    VolumeError
        When the file is not a usable 3D image.
    """
    volume = load_volume(path or sample_path())
    print(f"superpixel-annotator: preparing {volume.name} {volume.data.shape}", file=sys.stderr)
    server = create_app(volume).server
    server.wsgi_app = with_worker_pid(server.wsgi_app)
    return server


try:
    server = build_server(os.environ.get(FILE_VARIABLE))
except VolumeError as error:
    print(f"superpixel-annotator: {error}", file=sys.stderr, flush=True)
    raise SystemExit(APP_LOAD_ERROR) from None
