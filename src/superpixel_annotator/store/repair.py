"""Keeping the labels folder in step with the database: each case's latest copy, and the
start-up check that removes what a crash left behind.

The check reads only the labels folder and ``versions/*/``. It lists the files first, then
reads the saves in progress, then the versions: a version file exists only after its save
in progress was committed, and that row is deleted only in the transaction that inserts the
version (or by whoever then removes the file), so a listed file that neither table names
was never acknowledged and will never be.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path

from sqlalchemy import delete, select

from .database import LATEST_VERSION, Database, latest_versions, saves_in_progress, versions
from .files import (
    LATEST_SUFFIX,
    TEMPORARY_COPY,
    VERSIONS_FOLDER,
    check_case_name,
    copy_atomically,
    remove_file,
    remove_version_file,
    same_content,
    version_file_of,
)

ABANDONED_AFTER = timedelta(minutes=10)
"""A save in progress this old was abandoned, whichever host started it: a save takes
seconds. A save of a process of this host that has ended is abandoned at once."""


def latest_copy_path(labels_dir: Path, case: str) -> Path:
    """Where the copy of ``case``'s latest version is kept."""
    return labels_dir / f"{check_case_name(case)}{LATEST_SUFFIX}"


def version_path(labels_dir: Path, case: str, file_name: str) -> Path:
    """The file of a version of ``case``."""
    return labels_dir / VERSIONS_FOLDER / case / file_name


def refresh_latest_copy(
    database: Database, labels_dir: Path, case: str, saved: tuple[int, str] | None = None
) -> int | None:
    """Make ``case``'s latest copy hold its latest version, if it does not already.

    Saves finishing at once each copy the version they read as latest, then read the latest
    again and copy anew if it changed: the last copy written is of the latest version.

    Parameters
    ----------
    saved : (int, str), optional
        The number and file name of a version just saved, copied without reading the latest
        version first.

    Returns
    -------
    int or None
        The version copied; ``None`` when the copy already held the latest version.

    Raises
    ------
    StoreError
        When the database cannot be read.
    FileNotFoundError
        When the latest version's file is missing.
    """
    target = latest_copy_path(labels_dir, case)
    copied, previous, latest = None, None, saved or _latest_file(database, case)
    while latest is not None and latest != previous:
        source = version_path(labels_dir, case, latest[1])
        if not same_content(source, target):
            copy_atomically(source, target)
            copied = latest[0]
        previous, latest = latest, _latest_file(database, case)
    return copied


def check_store(database: Database, labels_dir: Path) -> list[str]:
    """Remove what interrupted saves left, report versions whose file is missing, and
    rewrite latest copies that differ from their latest version.

    Returns
    -------
    list of str
        One line per difference found or repaired.
    """
    report = [
        f"removed {path.name}, a latest copy left unfinished"
        for path in labels_dir.iterdir()
        if TEMPORARY_COPY.fullmatch(path.name) and remove_file(path)
    ]
    # In this order: files, saves in progress, versions (see the module's docstring).
    listed = dict(_version_files(labels_dir))
    with database.transaction() as connection:
        pending = connection.execute(select(saves_in_progress)).all()
    with database.transaction() as connection:
        rows = connection.execute(
            select(versions.c.case_name, versions.c.number, versions.c.file_name)
        ).all()
    report += _settle_abandoned_saves(database, labels_dir, pending)
    known = {(row.case_name, row.file_name) for row in [*pending, *rows]}
    for case, names in listed.items():
        for name in names:
            if (case, version_file_of(name)) not in known:
                remove_file(version_path(labels_dir, case, name))
                report.append(f"{case}: removed {name}, never acknowledged")
    report += [
        f"{row.case_name}: version {row.number}: its file is missing"
        for row in rows
        if not version_path(labels_dir, row.case_name, row.file_name).exists()
    ]
    return report + _rewrite_latest_copies(database, labels_dir)


def _rewrite_latest_copies(database: Database, labels_dir: Path) -> list[str]:
    """Rewrite the latest copies that differ from their latest version's file."""
    report = []
    with database.transaction() as connection:
        latest = connection.execute(latest_versions()).all()
    for row in sorted(latest, key=lambda row: row.case_name):
        source = version_path(labels_dir, row.case_name, row.file_name)
        if not source.exists() or same_content(source, latest_copy_path(labels_dir, row.case_name)):
            continue
        try:
            copied = refresh_latest_copy(database, labels_dir, row.case_name)
        except FileNotFoundError:  # a version saved since, whose file is missing
            continue
        if copied is not None:
            report.append(f"{row.case_name}: latest copy rewritten from version {copied}")
    return report


def _latest_file(database: Database, case: str) -> tuple[int, str] | None:
    with database.transaction() as connection:
        row = connection.execute(LATEST_VERSION, {"case": case}).first()
    return None if row is None else (row.number, row.file_name)


def _version_files(labels_dir: Path) -> Iterator[tuple[str, list[str]]]:
    """(case, names of the files the store wrote there) of each folder of ``versions/``."""
    folder = labels_dir / VERSIONS_FOLDER
    for entry in sorted(os.scandir(folder), key=lambda entry: entry.name):
        try:
            check_case_name(entry.name)
        except ValueError:
            continue
        if entry.is_dir(follow_symlinks=False):
            names = sorted(os.listdir(entry.path))
            yield entry.name, [name for name in names if version_file_of(name)]


def _settle_abandoned_saves(database: Database, labels_dir: Path, pending: list) -> list[str]:
    """Claim each abandoned save in progress and remove its files."""
    report = []
    now = datetime.now(timezone.utc)
    for row in pending:
        if not _is_abandoned(row.host, row.pid, row.started_at, now):
            continue
        with database.transaction() as connection:
            claimed = connection.execute(
                delete(saves_in_progress).where(
                    saves_in_progress.c.case_name == row.case_name,
                    saves_in_progress.c.file_name == row.file_name,
                )
            ).rowcount
        if claimed:
            remove_version_file(labels_dir / VERSIONS_FOLDER / row.case_name, row.file_name)
            report.append(f"{row.case_name}: removed {row.file_name}, an interrupted save")
    return report


def _is_abandoned(host: str, pid: int, started_at: datetime, now: datetime) -> bool:
    if now - started_at > ABANDONED_AFTER:
        return True
    if host != socket.gethostname():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False
