"""Every server setting in one place, from command-line flags or the environment, and the
start-up both entry points share (:mod:`.startup`).

The ``superpixel-annotator`` command reads flags (whose defaults come from the environment);
``superpixel-annotator-serve`` reads the same flags and hands them to gunicorn's workers
through the environment (:meth:`Settings.to_environment`), where the WSGI module reads them
back (:func:`settings_from_environment`). So both serve the same scan with the same limits.
"""

from __future__ import annotations

import argparse
import math
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from ..core.cache import CACHE_LIMIT_VARIABLE, CACHE_VARIABLE
from ..core.image_files import DEFAULT_LIMITS, Limits

FILE_VARIABLE = "SUPERPIXEL_ANNOTATOR_FILE"
BROKER_VARIABLE = "SUPERPIXEL_ANNOTATOR_CELERY_BROKER"
VOLUME_VARIABLE = "SUPERPIXEL_ANNOTATOR_VOLUME"
MAX_UPLOAD_VARIABLE = "SUPERPIXEL_ANNOTATOR_MAX_UPLOAD_MB"
MAX_VOXELS_VARIABLE = "SUPERPIXEL_ANNOTATOR_MAX_VOXELS"
ENVIRONMENT = {
    FILE_VARIABLE: f"the scan's files, separated by {os.pathsep!r} (as FILE ...)",
    VOLUME_VARIABLE: "as --volume",
    MAX_UPLOAD_VARIABLE: "as --max-upload-mb",
    MAX_VOXELS_VARIABLE: "as --max-voxels",
    BROKER_VARIABLE: "as --celery-broker",
    CACHE_VARIABLE: "the cache directory, shared by the workers",
    CACHE_LIMIT_VARIABLE: "the cache's bound in MB (default 5000)",
}
"""The server's environment variables and what each sets."""


class SettingError(ValueError):
    """A malformed setting in the environment."""


@dataclass(frozen=True)
class Settings:
    """What a server is started with.

    Attributes
    ----------
    files : tuple of str
        The scan's modalities; none: the bundled sample.
    volume_index : int
        Which volume of 4D files to show.
    limits : Limits
        The largest file and image accepted, at start-up and for uploads.
    celery_broker : str or None
        Compute superpixels of uploads on Celery workers through this broker.
    """

    files: tuple[str, ...] = ()
    volume_index: int = 0
    limits: Limits = DEFAULT_LIMITS
    celery_broker: str | None = None

    def to_environment(self) -> dict[str, str]:
        """The settings as environment variables (see :func:`settings_from_environment`)."""
        variables = {
            VOLUME_VARIABLE: str(self.volume_index),
            MAX_UPLOAD_VARIABLE: repr(self.limits.max_bytes / 1e6),
            MAX_VOXELS_VARIABLE: str(self.limits.max_voxels),
        }
        if self.files:
            variables[FILE_VARIABLE] = os.pathsep.join(self.files)
        if self.celery_broker:
            variables[BROKER_VARIABLE] = self.celery_broker
        return variables


def number_at_least(minimum: int, convert: Callable[[str], int | float]) -> Callable:
    """An argparse type: ``convert`` the text and refuse infinity, NaN and values below
    ``minimum``."""

    def parse(text: str) -> int | float:
        try:
            value = convert(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
        if not (math.isfinite(value) and value >= minimum):
            raise argparse.ArgumentTypeError(f"must be at least {minimum}, not {text}")
        return value

    return parse


_VOLUME = number_at_least(0, int)
_MAX_UPLOAD_MB = number_at_least(1, float)
_MAX_VOXELS = number_at_least(1, int)


def add_scan_arguments(parser: argparse.ArgumentParser) -> None:
    """The flags both commands take: the scan, its limits and the Celery broker."""
    parser.add_argument(
        "files",
        nargs="*",
        metavar="FILE",
        help="NIfTI (.nii, .nii.gz) or MGH (.mgh, .mgz) scans of one case; several files are "
        "co-registered modalities on one voxel grid, the first shown first "
        "(default: the bundled phantom)",
    )
    parser.add_argument(
        "--volume",
        type=_VOLUME,
        default=0,
        metavar="N",
        help="which volume of 4D files to show, counting from 0 (default 0)",
    )
    parser.add_argument(
        "--max-upload-mb",
        type=_MAX_UPLOAD_MB,
        default=DEFAULT_LIMITS.max_bytes / 1e6,
        metavar="M",
        help="largest file accepted, here or uploaded, in MB (default %(default)g)",
    )
    parser.add_argument(
        "--max-voxels",
        type=_MAX_VOXELS,
        default=DEFAULT_LIMITS.max_voxels,
        metavar="V",
        help="largest number of voxels of a volume (default %(default)d)",
    )
    parser.add_argument(
        "--celery-broker",
        default=os.environ.get(BROKER_VARIABLE) or None,
        metavar="URL",
        help="compute superpixels of uploaded scans on Celery workers through this broker, "
        f"e.g. redis://localhost:6379/0 (default: ${BROKER_VARIABLE}, else in a local process); "
        "start workers with `celery -A superpixel_annotator.wsgi:celery_app worker`",
    )


def settings_from_arguments(args: argparse.Namespace) -> Settings:
    """The settings that flags added by :func:`add_scan_arguments` give."""
    return Settings(
        files=tuple(args.files),
        volume_index=args.volume,
        limits=Limits(max_bytes=round(args.max_upload_mb * 1e6), max_voxels=args.max_voxels),
        celery_broker=args.celery_broker,
    )


def settings_from_environment(environ: Mapping[str, str] = os.environ) -> Settings:
    """The settings the environment variables of :data:`ENVIRONMENT` give.

    Raises
    ------
    SettingError
        When a variable is malformed; naming it.
    """

    def read(name: str, parse: Callable, default):
        text = environ.get(name, "").strip()
        try:
            return parse(text) if text else default
        except argparse.ArgumentTypeError as error:
            raise SettingError(f"{name}={text!r}: {error}") from None

    max_mb = read(MAX_UPLOAD_VARIABLE, _MAX_UPLOAD_MB, DEFAULT_LIMITS.max_bytes / 1e6)
    max_voxels = read(MAX_VOXELS_VARIABLE, _MAX_VOXELS, DEFAULT_LIMITS.max_voxels)
    return Settings(
        files=tuple(path for path in environ.get(FILE_VARIABLE, "").split(os.pathsep) if path),
        volume_index=read(VOLUME_VARIABLE, _VOLUME, 0),
        limits=Limits(max_bytes=round(max_mb * 1e6), max_voxels=max_voxels),
        celery_broker=environ.get(BROKER_VARIABLE) or None,
    )
