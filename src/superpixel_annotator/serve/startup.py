"""The start-up both entry points share: the scan loaded and the app built from
:class:`~.settings.Settings`."""

from __future__ import annotations

import dash

from ..core.cache import CacheSettingError
from ..core.image_files import VolumeError
from ..web.app import celery_manager, create_app, load_startup_scan
from .settings import SettingError, Settings

STARTUP_ERRORS = (VolumeError, CacheSettingError, SettingError)
"""What stops a start with a one-line message: an unusable scan or a malformed setting."""


def background_manager(settings: Settings) -> dash.CeleryManager | None:
    """The Celery manager of the settings' broker; ``None`` (local processes) without one."""
    return celery_manager(settings.celery_broker) if settings.celery_broker else None


def start(settings: Settings, manager: dash.CeleryManager | None = None) -> dash.Dash:
    """Load the scan (printing its notes to stderr) and build the app with the settings,
    running background callbacks on ``manager`` (see :func:`background_manager`).

    Raises
    ------
    VolumeError, CacheSettingError, SettingError
        See :data:`STARTUP_ERRORS`.
    """
    volumes = load_startup_scan(
        settings.files, volume_index=settings.volume_index, limits=settings.limits
    )
    shown = ", ".join(f"{volume.name} {volume.data.shape}" for volume in volumes)
    print(f"Preparing {shown} ...", flush=True)
    return create_app(
        volumes,
        frame_ancestors=settings.frame_ancestors,
        limits=settings.limits,
        server_limits=settings.server_limits,
        background_manager=manager,
    )
