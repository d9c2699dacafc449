"""What protects a server that hosts annotators from hostile requests: a bound on request
bodies, bounded log lines, short answers to malformed callback requests, and security
headers on every response.

:class:`~.annotator.VolumeAnnotator` applies the first three to the app it joins;
:func:`~.app.create_app` adds the headers, which an embedding app applies with
:func:`add_security_headers`.
"""

from __future__ import annotations

import logging
import re
import traceback
from pathlib import Path

import dash
import flask
from werkzeug.exceptions import HTTPException

MAX_LOG_CHARS = 2000
LOGGERS = ("werkzeug", "gunicorn.error", "dash")
MALFORMED = "Malformed callback request"
DEFAULT_FRAME_ANCESTORS = "'self'"
# Sources of a frame-ancestors list: keywords, schemes and hosts, no directive separators.
FRAME_SOURCES = re.compile(r"[A-Za-z0-9'*:/.\-]+( [A-Za-z0-9'*:/.\-]+)*")
_DASH_DIR = str(Path(dash.__file__).parent)


class BoundedLogRecords(logging.Filter):
    """Cut log records, their traceback included, to their first and last
    :data:`MAX_LOG_CHARS` / 2 characters: a value that Dash puts in an error message (a
    whole callback return value) must not fill the log."""

    def filter(self, record: logging.LogRecord) -> bool:
        """Shorten ``record`` in place; keep it."""
        text = record.getMessage()
        if record.exc_info:
            text += "\n" + "".join(traceback.format_exception(*record.exc_info))
        if len(text) > MAX_LOG_CHARS:
            half = MAX_LOG_CHARS // 2
            text = f"{text[:half]} [… {len(text) - 2 * half:,} characters cut …] {text[-half:]}"
        record.msg, record.args = text, ()
        record.exc_info, record.exc_text = None, None
        return True


def bound_logs(server: flask.Flask) -> None:
    """Cut long records of the server's logger and of those of werkzeug, gunicorn and Dash
    (idempotent)."""
    for logger in (server.logger, *map(logging.getLogger, LOGGERS)):
        if not any(isinstance(f, BoundedLogRecords) for f in logger.filters):
            logger.addFilter(BoundedLogRecords())


def limit_request_body(server: flask.Flask, max_bytes: int) -> None:
    """Refuse request bodies over ``max_bytes`` with 413, unless the server has a limit."""
    if server.config.get("MAX_CONTENT_LENGTH") is None:
        server.config["MAX_CONTENT_LENGTH"] = max_bytes


def raised_in_dash(error: BaseException) -> bool:
    """Whether ``error`` was raised by Dash's own code (reading or checking a callback
    request or its answer) rather than by a callback."""
    frames = traceback.extract_tb(error.__traceback__)
    return bool(frames) and frames[-1].filename.startswith(_DASH_DIR)


def answer_malformed_callbacks(server: flask.Flask) -> None:
    """Answer requests that Dash fails on (wrong outputs, inputs that no callback has) with
    400 and one log line, instead of 500 and the request's values in the log; other errors
    go on as before."""

    def handle(error: Exception):
        if isinstance(error, HTTPException):
            return error
        if not raised_in_dash(error):
            raise error
        server.logger.warning("%s %s: %s", MALFORMED, flask.request.path, error)
        return flask.Response(MALFORMED, 400, mimetype="text/plain")

    server.register_error_handler(Exception, handle)


def content_security_policy(app: dash.Dash, frame_ancestors: str) -> str:
    """The policy the annotator's pages satisfy: scripts from the server and Dash's inline
    scripts by hash, inline styles (Dash and Plotly set them), images as data and blob
    URIs, and framing by ``frame_ancestors``."""
    scripts = " ".join(["'self'", *dict.fromkeys(app.csp_hashes())])
    return (
        "default-src 'self'; "
        f"script-src {scripts}; "
        "style-src 'self' 'unsafe-inline'; "
        "img-src 'self' data: blob:; "
        "font-src 'self' data:; "
        "connect-src 'self'; "
        "worker-src 'self' blob:; "
        "object-src 'none'; "
        "base-uri 'self'; "
        "form-action 'self'; "
        f"frame-ancestors {frame_ancestors}"
    )


def add_security_headers(app: dash.Dash, frame_ancestors: str = DEFAULT_FRAME_ANCESTORS) -> None:
    """Send ``X-Content-Type-Options: nosniff``, a Content-Security-Policy and framing
    rules with every response of the app's server.

    Call it once the app's callbacks are registered (the policy names its inline scripts
    by hash).

    Parameters
    ----------
    app : dash.Dash
        The app whose server answers.
    frame_ancestors : str
        Who may show the pages in a frame, as CSP sources: ``'self'`` (default, also sent
        as ``X-Frame-Options: SAMEORIGIN``), ``'none'``, or hosts such as
        ``'self' https://portal.example.org``.

    Raises
    ------
    ValueError
        When ``frame_ancestors`` is not a list of sources.
    """
    if not FRAME_SOURCES.fullmatch(frame_ancestors):
        raise ValueError(f"frame ancestors must be CSP sources, not {frame_ancestors!r}")
    policy = content_security_policy(app, frame_ancestors)

    def add(response: flask.Response) -> flask.Response:
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers.setdefault("Content-Security-Policy", policy)
        if frame_ancestors == DEFAULT_FRAME_ANCESTORS:
            response.headers.setdefault("X-Frame-Options", "SAMEORIGIN")
        return response

    app.server.after_request(add)
