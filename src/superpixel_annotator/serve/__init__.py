"""Running the annotator: the development server (:mod:`.cli`), gunicorn (:mod:`.launcher`,
:mod:`.gunicorn_conf`, :mod:`.wsgi`), and the settings and start-up they share
(:mod:`.settings`)."""

from .launcher import main

__all__ = ["main"]
