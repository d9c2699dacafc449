"""The start-up both entry points share: the scan or dataset loaded and the app built from
:class:`~.settings.Settings`."""

from __future__ import annotations

import dash

from ..core.cache import CacheSettingError
from ..core.datasets import DatasetError, is_dataset_folder
from ..core.image_files import VolumeError
from ..core.label_tables import LabelTableError, read_label_table
from ..core.palette import DEFAULT_LABELS
from ..pacs.dicomweb import DicomWebSource
from ..store import StoreError
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
    """Load the scan (files or a DICOM series) or dataset, printing notes to stderr, and
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
    workspace = None
    if len(settings.files) == 1 and is_dataset_folder(settings.files[0]):
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
            labels_dir = workspace.store.labels_dir
            print(
                f"Dataset {settings.files[0]}: {len(workspace.names)} cases, labels in {labels_dir}"
            )
    else:
        volumes = load_startup_scan(
            settings.files, volume_index=settings.volume_index, limits=settings.limits
        )
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
        pacs=DicomWebSource(settings.dicomweb, settings.limits) if settings.dicomweb else None,
    )
