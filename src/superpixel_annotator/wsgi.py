"""The WSGI entry points ``superpixel_annotator.wsgi:server`` and ``:celery_app`` (see
:mod:`.serve.wsgi`)."""

from .serve.wsgi import app, celery_app, server

__all__ = ["app", "celery_app", "server"]
