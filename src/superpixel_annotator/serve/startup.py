"""The start-up both entry points share: the scan or dataset loaded and the app built from
:class:`~.settings.Settings`."""

from __future__ import annotations

from collections.abc import Sequence

import dash

from ..core.cache import CacheSettingError, cache_directory
from ..core.datasets import DatasetError, is_dataset_folder
from ..core.image_files import VolumeError
from ..core.label_tables import LabelTableError, read_label_table
from ..core.palette import DEFAULT_LABELS, LabelClass
from ..core.volume import Volume
from ..pacs.dicomweb import DicomWebSource
from ..store import StoreError
from ..store.pacs_dataset import PacsWorkspace, open_pacs_workspace
from ..web.app import celery_manager, create_app, load_startup_scan, open_folder, print_notes
from ..web.auth import UsersFileError, read_users
from .settings import SettingError, Settings

STARTUP_ERRORS = (
    VolumeError,
    CacheSettingError,
    SettingError,
    DatasetError,
    LabelTableError,
    StoreError,
    UsersFileError,
)
"""What stops a start with a one-line message: an unusable scan, dataset, label table,
database or users file, or a malformed setting."""


def background_manager(settings: Settings) -> dash.CeleryManager | None:
    """The Celery manager of the settings' broker; ``None`` (local processes) without one."""
    return celery_manager(settings.celery_broker) if settings.celery_broker else None


def start(settings: Settings, manager: dash.CeleryManager | None = None) -> dash.Dash:
    """Load the scan (files or a DICOM series) or dataset (a folder, or the series of the
    ``--dicomweb`` server given ``--labels-dir`` and no file), printing notes to stderr, and
    build the app with the settings, running background callbacks on ``manager`` (see
    :func:`background_manager`).

    Raises
    ------
    VolumeError, CacheSettingError, SettingError, DatasetError, LabelTableError, StoreError,
    UsersFileError
        See :data:`STARTUP_ERRORS`.
    """
    labels = read_label_table(settings.labels) if settings.labels else DEFAULT_LABELS
    users = read_users(settings.users) if settings.users else None
    pacs = DicomWebSource(settings.dicomweb, settings.limits) if settings.dicomweb else None
    workspace = None
    if pacs is not None and not settings.files and (settings.labels_dir or settings.database):
        volumes, workspace = open_pacs_dataset(pacs, settings, labels)
    elif len(settings.files) == 1 and is_dataset_folder(settings.files[0]):
        volumes, workspace = open_folder(
            settings.files[0],
            labels=labels,
            limits=settings.limits,
            series_uid=settings.series,
            labels_dir=settings.labels_dir,
            database=settings.database,
            modalities=settings.modalities,
        )
        if workspace is None:
            print_notes(volumes[0].notes)
    else:
        volumes = load_startup_scan(
            settings.files, volume_index=settings.volume_index, limits=settings.limits
        )
    if workspace is not None:
        labels_dir = workspace.store.labels_dir
        print(f"Dataset {workspace.where}: {len(workspace.names)} cases, labels in {labels_dir}")
    shown = ", ".join(f"{volume.name} {volume.data.shape}" for volume in volumes)
    print(f"Preparing {shown} ...", flush=True)
    return create_app(
        volumes,
        frame_ancestors=settings.frame_ancestors,
        users=users,
        labels=labels,
        limits=settings.limits,
        server_limits=settings.server_limits,
        background_manager=manager,
        workspace=workspace,
        pacs=pacs,
    )


def open_pacs_dataset(
    source: DicomWebSource, settings: Settings, labels: Sequence[LabelClass]
) -> tuple[list[Volume], PacsWorkspace]:
    """The dataset of the image series of ``source``, labels in ``settings.labels_dir``,
    and the series a server starts with; notes are printed to stderr.

    Raises
    ------
    SettingError
        Without a labels folder.
    VolumeError, DatasetError, StoreError
        When the server cannot be searched, has no image series, or no case opens; or the
        database cannot be used.
    """
    if not settings.labels_dir:
        raise SettingError("a dataset of a DICOMweb server needs --labels-dir DIR for its labels")
    workspace, notes = open_pacs_workspace(
        source,
        labels=labels,
        limits=settings.limits,
        labels_dir=settings.labels_dir,
        cache_dir=cache_directory(),
        database=settings.database,
    )
    print_notes(notes)
    return workspace.start_volumes(), workspace
