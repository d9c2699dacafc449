"""``superpixel-annotator-serve [FILE ...]``: the annotator under gunicorn, for a team or in Docker.

The process becomes ``gunicorn --config gunicorn_conf.py superpixel_annotator.wsgi:server``
(same PID, so signals from ``docker stop`` reach the gunicorn master directly). Settings
come from the environment, see :mod:`superpixel_annotator.gunicorn_conf`.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

FILE_VARIABLE = "SUPERPIXEL_ANNOTATOR_FILE"
BROKER_VARIABLE = "SUPERPIXEL_ANNOTATOR_CELERY_BROKER"
CONFIG_FILE = Path(__file__).with_name("gunicorn_conf.py")
WSGI_APP = "superpixel_annotator.wsgi:server"


def build_parser() -> argparse.ArgumentParser:
    """The command-line interface of the launcher."""
    parser = argparse.ArgumentParser(
        prog="superpixel-annotator-serve",
        description="Serve the annotator to several users with gunicorn (default port 8050).",
        epilog=(
            "Environment: PORT or BIND (address), WEB_CONCURRENCY (workers, default 2), "
            "SUPERPIXEL_ANNOTATOR_CACHE (cache, shared by the workers), "
            "SUPERPIXEL_ANNOTATOR_CACHE_MAX_MB (its bound, default 5000), "
            f"{BROKER_VARIABLE} (as --celery-broker), GUNICORN_CMD_ARGS (more options)."
        ),
    )
    parser.add_argument(
        "files",
        nargs="*",
        metavar="FILE",
        help="a 3D scan (.nii, .nii.gz, .mgz); several files are co-registered modalities "
        "of one scan; default: the bundled phantom",
    )
    parser.add_argument(
        "--celery-broker",
        metavar="URL",
        help="compute superpixels of uploads on Celery workers through this broker "
        "(e.g. redis://localhost:6379/0); start workers with "
        "`celery -A superpixel_annotator.wsgi:celery_app worker`",
    )
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
    if args.files:
        os.environ[FILE_VARIABLE] = os.pathsep.join(args.files)
    if args.celery_broker:
        os.environ[BROKER_VARIABLE] = args.celery_broker
    command = gunicorn_command()
    os.execv(command[0], command)


if __name__ == "__main__":
    main()
