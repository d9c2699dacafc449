"""What the label store returns and raises: versions, case summaries, locks, and the
errors that carry them."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from .database import StoreError


@dataclass(frozen=True)
class Version:
    """A saved version of a case's labels.

    Attributes
    ----------
    case : str
        The case's name.
    number : int
        1 for the first version of the case, then 2, 3...
    user : str
        Who saved it.
    saved_at : datetime
        When, timezone-aware in UTC.
    done : bool
        Whether the user marked the case done with it.
    labelled_voxels : int
        How many voxels have a label.
    labelled_ml : float
        Their volume in millilitres.
    path : Path
        Its file (NIfTI).
    """

    case: str
    number: int
    user: str
    saved_at: datetime
    done: bool
    labelled_voxels: int
    labelled_ml: float
    path: Path


@dataclass(frozen=True)
class CaseSummary:
    """A case's line in the case list.

    Attributes
    ----------
    name : str
        The case's name.
    status : str
        ``"new"`` (no version), ``"in progress"`` or ``"done"`` (its latest version's mark).
    version, user, saved_at, labelled_ml
        Of its latest version; ``None`` for a new case.
    """

    name: str
    status: str
    version: int | None
    user: str | None
    saved_at: datetime | None
    labelled_ml: float | None


@dataclass(frozen=True)
class Lock:
    """A user editing a case until ``expires_at`` (timezone-aware, UTC)."""

    case: str
    user: str
    expires_at: datetime


class VersionConflict(StoreError):
    """A save based on a version that is not the latest.

    Attributes
    ----------
    latest : Version or None
        The latest version; ``None`` when the case has none (the base named a version that
        does not exist).
    """

    def __init__(self, case: str, base: int | None, latest: Version | None) -> None:
        newest = "no version" if latest is None else _describe(latest)
        super().__init__(f"{case}: the save was based on version {base}, but the case has {newest}")
        self.latest = latest


class CaseLocked(StoreError):
    """A case another user is editing; ``lock`` says who, until when."""

    def __init__(self, lock: Lock) -> None:
        super().__init__(
            f"{lock.case} is being edited by {lock.user} until {lock.expires_at:%H:%M:%S} UTC"
        )
        self.lock = lock


def _describe(version: Version) -> str:
    return f"version {version.number}, saved by {version.user} at {version.saved_at:%H:%M:%S} UTC"
