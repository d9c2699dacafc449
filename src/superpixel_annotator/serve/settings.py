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
from ..web.limits import DEFAULT_SERVER_LIMITS, ServerLimits
from ..web.security import DEFAULT_FRAME_ANCESTORS, FRAME_SOURCES

FILE_VARIABLE = "SUPERPIXEL_ANNOTATOR_FILE"
BROKER_VARIABLE = "SUPERPIXEL_ANNOTATOR_CELERY_BROKER"
VOLUME_VARIABLE = "SUPERPIXEL_ANNOTATOR_VOLUME"
MAX_UPLOAD_VARIABLE = "SUPERPIXEL_ANNOTATOR_MAX_UPLOAD_MB"
MAX_VOXELS_VARIABLE = "SUPERPIXEL_ANNOTATOR_MAX_VOXELS"
MAX_FILES_VARIABLE = "SUPERPIXEL_ANNOTATOR_MAX_FILES"
MAX_TOTAL_VARIABLE = "SUPERPIXEL_ANNOTATOR_MAX_UPLOAD_TOTAL_MB"
MAX_JOBS_VARIABLE = "SUPERPIXEL_ANNOTATOR_MAX_JOBS"
QUEUE_VARIABLE = "SUPERPIXEL_ANNOTATOR_QUEUE_SECONDS"
FRAME_VARIABLE = "SUPERPIXEL_ANNOTATOR_FRAME_ANCESTORS"
LABELS_DIR_VARIABLE = "SUPERPIXEL_ANNOTATOR_LABELS_DIR"
DATABASE_VARIABLE = "SUPERPIXEL_ANNOTATOR_DATABASE"
LABELS_VARIABLE = "SUPERPIXEL_ANNOTATOR_LABELS"
MODALITIES_VARIABLE = "SUPERPIXEL_ANNOTATOR_MODALITIES"
USERS_VARIABLE = "SUPERPIXEL_ANNOTATOR_USERS"
SERIES_VARIABLE = "SUPERPIXEL_ANNOTATOR_SERIES"
DICOMWEB_VARIABLE = "SUPERPIXEL_ANNOTATOR_DICOMWEB"
_TEXT_SETTINGS = {
    SERIES_VARIABLE: "series",
    DICOMWEB_VARIABLE: "dicomweb",
    LABELS_DIR_VARIABLE: "labels_dir",
    DATABASE_VARIABLE: "database",
    LABELS_VARIABLE: "labels",
    MODALITIES_VARIABLE: "modalities",
    USERS_VARIABLE: "users",
}
ENVIRONMENT = {
    FILE_VARIABLE: f"the scan's files, separated by {os.pathsep!r} (as FILE ...)",
    VOLUME_VARIABLE: "as --volume",
    MAX_UPLOAD_VARIABLE: "as --max-upload-mb",
    MAX_VOXELS_VARIABLE: "as --max-voxels",
    MAX_FILES_VARIABLE: "as --max-files",
    MAX_TOTAL_VARIABLE: "as --max-upload-total-mb",
    MAX_JOBS_VARIABLE: "as --max-jobs",
    QUEUE_VARIABLE: "as --queue-seconds",
    FRAME_VARIABLE: "as --frame-ancestors",
    BROKER_VARIABLE: "as --celery-broker",
    SERIES_VARIABLE: "as --series",
    DICOMWEB_VARIABLE: "as --dicomweb",
    LABELS_DIR_VARIABLE: "as --labels-dir",
    DATABASE_VARIABLE: "as --database",
    LABELS_VARIABLE: "as --labels",
    MODALITIES_VARIABLE: "as --modalities",
    USERS_VARIABLE: "as --users",
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
        The scan's modalities, one DICOM folder, or one dataset folder; none: the bundled
        sample.
    series : str or None
        Which series of a DICOM folder holding several (its SeriesInstanceUID).
    dicomweb : str or None
        The DICOMweb URL of a PACS whose series users open and save segmentations to.
    volume_index : int
        Which volume of 4D files to show.
    limits : Limits
        The largest file and image accepted, at start-up and for uploads.
    celery_broker : str or None
        Compute superpixels of uploads on Celery workers through this broker.
    server_limits : ServerLimits
        Files and bytes per upload, superpixel jobs at once and their queue.
    frame_ancestors : str
        Who may show the app in a frame, as CSP sources.
    labels_dir, database, modalities : str or None
        A dataset's labels folder, metadata database URL and modality patterns.
    labels : str or None
        The label table: a file or a preset name; none: the default labels.
    users : str or None
        The users file; none: one user, no login.
    """

    files: tuple[str, ...] = ()
    volume_index: int = 0
    limits: Limits = DEFAULT_LIMITS
    celery_broker: str | None = None
    server_limits: ServerLimits = DEFAULT_SERVER_LIMITS
    frame_ancestors: str = DEFAULT_FRAME_ANCESTORS
    series: str | None = None
    dicomweb: str | None = None
    labels_dir: str | None = None
    database: str | None = None
    labels: str | None = None
    modalities: str | None = None
    users: str | None = None

    def to_environment(self) -> dict[str, str]:
        """The settings as environment variables (see :func:`settings_from_environment`)."""
        variables = {
            VOLUME_VARIABLE: str(self.volume_index),
            MAX_UPLOAD_VARIABLE: repr(self.limits.max_bytes / 1e6),
            MAX_VOXELS_VARIABLE: str(self.limits.max_voxels),
            MAX_FILES_VARIABLE: str(self.server_limits.max_files),
            MAX_JOBS_VARIABLE: str(self.server_limits.max_jobs),
            QUEUE_VARIABLE: repr(self.server_limits.queue_seconds),
            FRAME_VARIABLE: self.frame_ancestors,
        }
        if self.server_limits.max_total_bytes is not None:
            variables[MAX_TOTAL_VARIABLE] = repr(self.server_limits.max_total_bytes / 1e6)
        if self.files:
            variables[FILE_VARIABLE] = os.pathsep.join(self.files)
        if self.celery_broker:
            variables[BROKER_VARIABLE] = self.celery_broker
        for variable, field in _TEXT_SETTINGS.items():
            if getattr(self, field) is not None:
                variables[variable] = getattr(self, field)
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
_COUNT = number_at_least(1, int)
_SECONDS = number_at_least(0, float)


def _frame_ancestors(text: str) -> str:
    """An argparse type: CSP sources, space-separated."""
    text = " ".join(text.split())
    if not FRAME_SOURCES.fullmatch(text):
        raise argparse.ArgumentTypeError(f"not a list of CSP sources: {text!r}")
    return text


def add_scan_arguments(parser: argparse.ArgumentParser) -> None:
    """The flags both commands take: the scan, its limits and the Celery broker."""
    parser.add_argument(
        "files",
        nargs="*",
        metavar="FILE",
        help="NIfTI (.nii, .nii.gz) or MGH (.mgh, .mgz) scans of one case; several files are "
        "co-registered modalities on one voxel grid, the first shown first; or a folder of "
        "one DICOM series; or one dataset folder: a case per image file or per subfolder of "
        "modalities (default: the bundled phantom)",
    )
    parser.add_argument(
        "--series",
        default=os.environ.get(SERIES_VARIABLE) or None,
        metavar="UID",
        help="the SeriesInstanceUID to open from a DICOM folder holding several series",
    )
    parser.add_argument(
        "--dicomweb",
        default=os.environ.get(DICOMWEB_VARIABLE) or None,
        metavar="URL",
        help="a PACS's DICOMweb root, e.g. http://pacs:8042/dicom-web: the page gets a "
        "study browser opening its series, and Save to PACS (DICOM SEG); with --labels-dir "
        "and no FILE, its image series are a dataset's cases",
    )
    add_dataset_arguments(parser)
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
    add_request_arguments(parser)
    parser.add_argument(
        "--celery-broker",
        default=os.environ.get(BROKER_VARIABLE) or None,
        metavar="URL",
        help="compute superpixels of uploaded scans on Celery workers through this broker, "
        f"e.g. redis://localhost:6379/0 (default: ${BROKER_VARIABLE}, else in a local process); "
        "start workers with `celery -A superpixel_annotator.wsgi:celery_app worker`",
    )


def add_dataset_arguments(parser: argparse.ArgumentParser) -> None:
    """The flags of a dataset, its labels and its users."""
    environ = os.environ
    parser.add_argument(
        "--labels-dir",
        default=environ.get(LABELS_DIR_VARIABLE) or None,
        metavar="DIR",
        help="where a dataset's labels are saved (default DATASET/labels; required for a "
        "dataset of a --dicomweb server)",
    )
    parser.add_argument(
        "--database",
        default=environ.get(DATABASE_VARIABLE) or None,
        metavar="URL",
        help="the dataset's metadata database, e.g. postgresql+psycopg://user@host/db when "
        "several hosts serve one dataset (default SQLite in the labels folder)",
    )
    parser.add_argument(
        "--labels",
        default=environ.get(LABELS_VARIABLE) or None,
        metavar="FILE",
        help="label table: an ITK-SNAP label description file, a 3D Slicer colour table, a "
        "JSON or CSV file (value, name, colour), or the preset 'brats'",
    )
    parser.add_argument(
        "--modalities",
        default=environ.get(MODALITIES_VARIABLE) or None,
        metavar="PATTERNS",
        help="the modalities of each case folder, as comma-separated name patterns in display "
        "order, e.g. '*_ct.nii.gz,*_pet.nii.gz' (default: FLAIR, T1c, T1, T2 by name)",
    )
    parser.add_argument(
        "--users",
        default=environ.get(USERS_VARIABLE) or None,
        metavar="FILE",
        help="log in with the users of FILE (see `superpixel-annotator-users add`); "
        "default: one user, no login",
    )


def add_request_arguments(parser: argparse.ArgumentParser) -> None:
    """The flags that bound what requests may ask: files per upload, jobs, framing."""
    defaults = DEFAULT_SERVER_LIMITS
    parser.add_argument(
        "--max-files",
        type=_COUNT,
        default=defaults.max_files,
        metavar="N",
        help="most files in one upload (default %(default)d)",
    )
    parser.add_argument(
        "--max-upload-total-mb",
        type=_MAX_UPLOAD_MB,
        metavar="M",
        help="most MB of all files of one upload (default twice --max-upload-mb); with "
        "--max-files, it bounds every request body",
    )
    parser.add_argument(
        "--max-jobs",
        type=_COUNT,
        default=defaults.max_jobs,
        metavar="N",
        help="most superpixel computations at once per server, one per browser; more wait "
        "(default %(default)d)",
    )
    parser.add_argument(
        "--queue-seconds",
        type=_SECONDS,
        default=defaults.queue_seconds,
        metavar="S",
        help="how long a computation waits for its turn before it is refused (default %(default)g)",
    )
    parser.add_argument(
        "--frame-ancestors",
        type=_frame_ancestors,
        default=DEFAULT_FRAME_ANCESTORS,
        metavar="SOURCES",
        help="who may show the app in a frame, as Content-Security-Policy sources, e.g. "
        "\"'self' https://portal.example.org\" (default %(default)s)",
    )


def _megabytes(value: float | None) -> int | None:
    return None if value is None else round(value * 1e6)


def settings_from_arguments(args: argparse.Namespace) -> Settings:
    """The settings that flags added by :func:`add_scan_arguments` give."""
    return _settings(vars(args))


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

    defaults = DEFAULT_SERVER_LIMITS
    return _settings(
        {
            "files": [path for path in environ.get(FILE_VARIABLE, "").split(os.pathsep) if path],
            "volume": read(VOLUME_VARIABLE, _VOLUME, 0),
            "max_upload_mb": read(
                MAX_UPLOAD_VARIABLE, _MAX_UPLOAD_MB, DEFAULT_LIMITS.max_bytes / 1e6
            ),
            "max_voxels": read(MAX_VOXELS_VARIABLE, _MAX_VOXELS, DEFAULT_LIMITS.max_voxels),
            "celery_broker": environ.get(BROKER_VARIABLE) or None,
            "max_files": read(MAX_FILES_VARIABLE, _COUNT, defaults.max_files),
            "max_upload_total_mb": read(MAX_TOTAL_VARIABLE, _MAX_UPLOAD_MB, None),
            "max_jobs": read(MAX_JOBS_VARIABLE, _COUNT, defaults.max_jobs),
            "queue_seconds": read(QUEUE_VARIABLE, _SECONDS, defaults.queue_seconds),
            "frame_ancestors": read(FRAME_VARIABLE, _frame_ancestors, DEFAULT_FRAME_ANCESTORS),
            **{field: environ.get(name) or None for name, field in _TEXT_SETTINGS.items()},
        }
    )


def _settings(values: dict) -> Settings:
    """The settings of parsed values named as the flags' destinations."""
    return Settings(
        files=tuple(values["files"]),
        volume_index=values["volume"],
        limits=Limits(
            max_bytes=_megabytes(values["max_upload_mb"]), max_voxels=values["max_voxels"]
        ),
        celery_broker=values["celery_broker"],
        server_limits=ServerLimits(
            max_files=values["max_files"],
            max_total_bytes=_megabytes(values["max_upload_total_mb"]),
            max_jobs=values["max_jobs"],
            queue_seconds=values["queue_seconds"],
        ),
        frame_ancestors=values["frame_ancestors"],
        **{field: values[field] for field in _TEXT_SETTINGS.values()},
    )
