"""``superpixel-annotator-serve [FILE ...]``: the annotator under gunicorn, for a team or in Docker.

The process becomes ``gunicorn --config gunicorn_conf.py superpixel_annotator.wsgi:server``
(same PID, so signals from ``docker stop`` reach the gunicorn master directly). The flags
are those of ``superpixel-annotator`` and reach the workers through the environment (see
:mod:`.settings`); gunicorn's own settings come from the environment too (see
:mod:`.gunicorn_conf`).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from .settings import ENVIRONMENT, add_scan_arguments, settings_from_arguments

CONFIG_FILE = Path(__file__).with_name("gunicorn_conf.py")
WSGI_APP = "superpixel_annotator.wsgi:server"


def build_parser() -> argparse.ArgumentParser:
    """The command-line interface of the launcher."""
    variables = ", ".join(f"{name} ({meaning})" for name, meaning in ENVIRONMENT.items())
    parser = argparse.ArgumentParser(
        prog="superpixel-annotator-serve",
        description="Serve the annotator to several users with gunicorn (default port 8050).",
        epilog=(
            "Environment: PORT or BIND (address), WEB_CONCURRENCY (workers, default 2), "
            f"GUNICORN_CMD_ARGS (more options), {variables}."
        ),
    )
    add_scan_arguments(parser)
    return parser


def gunicorn_command() -> list[str]:
    """The gunicorn command line, run with this interpreter.

    Returns
    -------
    list of str
    """
    return [sys.executable, "-m", "gunicorn", "--config", str(CONFIG_FILE), WSGI_APP]


def main(argv: list[str] | None = None) -> None:
    """Replace this process by gunicorn serving the files (or the sample).

    Parameters
    ----------
    argv : list of str, optional
        Command-line arguments; default ``sys.argv[1:]``.
    """
    args = build_parser().parse_args(argv)
    os.environ.update(settings_from_arguments(args).to_environment())
    command = gunicorn_command()
    os.execv(command[0], command)
