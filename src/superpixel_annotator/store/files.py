"""The label store's files: case names that stay inside the labels folder, the names of
version files and of temporary files, and writes that survive a crash (a temporary file in
the same folder, ``fsync``, ``os.replace``, ``fsync`` of the folder).

The labels folder holds ``<case>_segmentation.nii.gz`` (a copy of the case's latest version)
and ``versions/<case>/v<number>-<random hex>.nii.gz`` (every version). Temporary files start
with a dot and have names that no case, version or latest copy can have:
``versions/<case>/.v<number>-<hex>.tmp.nii.gz`` and ``.<case>_segmentation.nii.gz.<hex>.tmp``.
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
from collections.abc import Callable
from pathlib import Path

from .database import MAX_CASE_NAME_LENGTH

VERSIONS_FOLDER = "versions"
LATEST_SUFFIX = "_segmentation.nii.gz"
VERSION_FILE = re.compile(r"v\d{4,}-[0-9a-f]{16}\.nii\.gz")
TEMPORARY_VERSION_FILE = re.compile(r"\.(v\d{4,}-[0-9a-f]{16})\.tmp\.nii\.gz")
TEMPORARY_COPY = re.compile(r"\..+" + re.escape(LATEST_SUFFIX) + r"\.[0-9a-f]{16}\.tmp")
_CHUNK_BYTES = 1 << 20


def check_case_name(case: str) -> str:
    """``case`` if it names a file inside the labels folder and nothing else.

    Raises
    ------
    ValueError
        When it is empty, ``.``, longer than 200 characters, or contains a path separator,
        ``..`` or NUL.
    """
    if not isinstance(case, str) or not case or case == ".":
        raise ValueError(f"case name {case!r}: empty")
    if len(case) > MAX_CASE_NAME_LENGTH:
        raise ValueError(f"case name {case[:40]!r}...: over {MAX_CASE_NAME_LENGTH} characters")
    if any(part in case for part in ("/", "\\", "..", "\0")):
        raise ValueError(f"case name {case!r}: contains '/', '\\', '..' or NUL")
    return case


def version_file_name(number: int) -> str:
    """A new, unique file name for version ``number`` of a case."""
    return f"v{number:04d}-{secrets.token_hex(8)}.nii.gz"


def temporary_version_name(file_name: str) -> str:
    """The name the version file ``file_name`` is written under before it is complete."""
    return "." + file_name.removesuffix(".nii.gz") + ".tmp.nii.gz"


def version_file_of(name: str) -> str | None:
    """The version file a file of a case's versions folder is or becomes (``None`` for a
    file the store did not write)."""
    if VERSION_FILE.fullmatch(name):
        return name
    temporary = TEMPORARY_VERSION_FILE.fullmatch(name)
    return temporary[1] + ".nii.gz" if temporary else None


def write_durably(folder: Path, file_name: str, write: Callable[[Path], None]) -> Path:
    """Have ``write(path)`` write a temporary file in ``folder`` (created if missing), then
    make it ``folder / file_name`` so that after a crash it is either whole or absent.

    Returns
    -------
    Path
        The file written.
    """
    make_folder(folder)
    temporary = folder / temporary_version_name(file_name)
    try:
        write(temporary)
        fsync_file(temporary)
        os.replace(temporary, folder / file_name)
    except BaseException:
        remove_file(temporary)
        raise
    fsync_folder(folder)
    return folder / file_name


def copy_atomically(source: Path, target: Path) -> None:
    """Replace ``target`` by a copy of ``source`` at once: readers see the old file or the
    new one, never a part.

    Not flushed to the disk: the copy is of a version that is on the disk already, and
    after a power failure the start-up check rewrites a copy that differs from it.

    Raises
    ------
    FileNotFoundError
        When ``source`` is missing.
    """
    for attempt in range(3):
        temporary = target.with_name(f".{target.name}.{secrets.token_hex(8)}.tmp")
        try:
            shutil.copyfile(source, temporary)
            os.replace(temporary, target)
            break
        except FileNotFoundError:
            remove_file(temporary)
            # Else a check in another process took our temporary file for a leftover.
            if attempt == 2 or not source.exists():
                raise
        except BaseException:
            remove_file(temporary)
            raise


def same_content(first: Path, second: Path) -> bool:
    """Whether two files hold the same bytes (``False`` when either is missing)."""
    try:
        if first.stat().st_size != second.stat().st_size:
            return False
        with first.open("rb") as one, second.open("rb") as other:
            while chunk := one.read(_CHUNK_BYTES):
                if chunk != other.read(_CHUNK_BYTES):
                    return False
    except FileNotFoundError:
        return False
    return True


def make_folder(folder: Path) -> None:
    """Create ``folder`` (and its parents) durably, if missing."""
    if folder.is_dir():
        return
    make_folder(folder.parent)
    try:
        folder.mkdir()
    except FileExistsError:
        return
    fsync_folder(folder.parent)


def fsync_file(path: Path) -> None:
    """Write ``path``'s data to the disk."""
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def fsync_folder(folder: Path) -> None:
    """Write ``folder``'s entries (files created, renamed or removed) to the disk."""
    descriptor = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def remove_version_file(folder: Path, file_name: str) -> None:
    """Remove a version file of ``folder``, whole or still temporary."""
    remove_file(folder / temporary_version_name(file_name))
    remove_file(folder / file_name)


def remove_file(path: Path) -> bool:
    """Remove ``path`` if it exists; whether it did."""
    try:
        path.unlink()
    except FileNotFoundError:
        return False
    return True
