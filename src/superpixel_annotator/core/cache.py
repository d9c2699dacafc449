"""The disk cache: its directory, its bound (least recently used files go first) and atomic
writes, shared by superpixel files (:mod:`.superpixels`) and case files (:mod:`.cases`)."""

from __future__ import annotations

import math
import os
import re
import tempfile
import zipfile
from pathlib import Path

import numpy as np
from numpy.lib import format as npy_format

from .npz import ArchiveError, read_member

CACHE_VARIABLE = "SUPERPIXEL_ANNOTATOR_CACHE"


def cache_directory(cache_dir: str | os.PathLike | None = None) -> Path:
    """The cache directory: ``cache_dir``, else ``$SUPERPIXEL_ANNOTATOR_CACHE``, else
    ``~/.cache/superpixel-annotator``."""
    if cache_dir is not None:
        return Path(cache_dir)
    default = Path.home() / ".cache" / "superpixel-annotator"
    return Path(os.environ.get(CACHE_VARIABLE, default))


CACHE_LIMIT_VARIABLE = "SUPERPIXEL_ANNOTATOR_CACHE_MAX_MB"
DEFAULT_CACHE_LIMIT_MB = 5000
# The files the limit applies to: superpixels at the cache's top, cases in cases/ (see
# cases.py). Nothing else is ever removed, whatever else the directory holds.
_CACHE_FILE_PATTERNS = ("*.npz", "cases/*.npz")
_CACHE_FILE_NAME = re.compile(r"[0-9a-f]{32}(-[0-9a-f]{16})?\.npz")


class CacheSettingError(ValueError):
    """A malformed cache setting in the environment."""


def cache_limit_bytes() -> int:
    """The most bytes the cache's files may take: ``$SUPERPIXEL_ANNOTATOR_CACHE_MAX_MB``
    megabytes (10^6 bytes), else 5 GB.

    Raises
    ------
    CacheSettingError
        When the variable is set but not a number of megabytes of at least 0.
    """
    text = os.environ.get(CACHE_LIMIT_VARIABLE, "").strip()
    if not text:
        return DEFAULT_CACHE_LIMIT_MB * 10**6
    try:
        megabytes = float(text)
    except ValueError:
        megabytes = math.nan
    if not (math.isfinite(megabytes) and megabytes >= 0):
        raise CacheSettingError(
            f"{CACHE_LIMIT_VARIABLE}={text!r}: not a number of megabytes of at least 0"
        )
    return round(megabytes * 10**6)


def mark_cache_file_used(path: Path) -> bool:
    """Count the cache file at ``path`` as used now: :func:`trim_cache` removes the least
    recently used files first, by modification time.

    Returns
    -------
    bool
        Whether the file exists.
    """
    try:
        os.utime(path)
    except FileNotFoundError:
        return False
    except OSError:  # e.g. a read-only cache: the file is still there to read
        pass
    return True


def trim_cache(cache_dir: Path, keep: Path) -> list[Path]:
    """Remove the least recently used superpixel and case files of the cache until they take
    at most :func:`cache_limit_bytes`, never ``keep`` (the file just written).

    Other processes may read, write and trim meanwhile: a file already gone is skipped, and
    a reader that has a removed file open still reads all of it.

    Parameters
    ----------
    cache_dir : Path
        The cache directory (see :func:`cache_directory`).
    keep : Path
        A file in it that stays even when it alone is over the limit.

    Returns
    -------
    list of Path
        The files removed, least recently used first.
    """
    max_bytes = cache_limit_bytes()
    files = []
    for pattern in _CACHE_FILE_PATTERNS:
        for path in cache_dir.glob(pattern):
            if not _CACHE_FILE_NAME.fullmatch(path.name):
                continue
            try:
                status = path.stat()
            except FileNotFoundError:
                continue
            files.append((status.st_mtime_ns, status.st_size, path))
    total = sum(size for _, size, _ in files)
    removed = []
    for _, size, path in sorted(files):
        if total <= max_bytes:
            break
        if path == keep:
            continue
        try:
            path.unlink(missing_ok=True)
        except OSError:  # not this process's to remove (another user's, read-only)
            continue
        total -= size
        removed.append(path)
    return removed


def savez_fast(file, **arrays: np.ndarray) -> None:
    """``np.savez_compressed`` at the fastest deflate level: the same ``.npz`` format, written
    about twice as fast (a 512x512x400 label volume in 0.7 s rather than 1.9 s) and about
    twice as large."""
    with zipfile.ZipFile(file, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as archive:
        for name, array in arrays.items():
            with archive.open(f"{name}.npy", "w", force_zip64=True) as member:
                npy_format.write_array(member, np.asanyarray(array), allow_pickle=False)


def write_npz_atomically(path: Path, arrays: dict, save=np.savez) -> None:
    """Write ``arrays`` with ``save`` (``np.savez`` or :func:`savez_fast`) to a temporary
    file beside ``path``, flush it to disk, then rename it, so that readers never see a partial
    file, even after a power failure.

    Raises
    ------
    OSError
        When the file cannot be written (the temporary file is removed).
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor, temporary = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
    try:
        with os.fdopen(descriptor, "wb") as file:
            save(file, **arrays)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    finally:
        Path(temporary).unlink(missing_ok=True)
    _sync_directory(path.parent)


def _sync_directory(directory: Path) -> None:
    """Flush a rename in ``directory`` to disk, where the system can (not on Windows)."""
    try:
        descriptor = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(descriptor)
    except OSError:
        pass
    finally:
        os.close(descriptor)


class CacheFileError(ValueError):
    """A cache file that is damaged or not as this version writes it."""


class CacheArchive:
    """A ``.npz`` file of the cache opened to read arrays of bounded size.

    Each array's size is checked against a bound from its zip entry and its ``.npy`` header
    before it is read, so that a damaged or forged file costs no more than the bound.

    Parameters
    ----------
    path : Path
        The file.

    Raises
    ------
    FileNotFoundError
        When there is no file at ``path``.
    CacheFileError
        When it is not a zip file.
    """

    def __init__(self, path: Path) -> None:
        try:
            self._zip = zipfile.ZipFile(path)
        except FileNotFoundError:
            raise
        except (OSError, zipfile.BadZipFile, ValueError, EOFError) as error:
            raise CacheFileError(f"{path}: {error}") from None
        self._path = path

    def __enter__(self) -> CacheArchive:
        return self

    def __exit__(self, *exc_info) -> None:
        self._zip.close()

    def has(self, name: str) -> bool:
        """Whether an array was saved as ``name``."""
        try:
            self._zip.getinfo(f"{name}.npy")
        except KeyError:
            return False
        return True

    def array(self, name: str, max_bytes: int, *, stored: bool = False) -> np.ndarray:
        """The array saved as ``name``, refused when its data would exceed ``max_bytes``.

        Parameters
        ----------
        name : str
            The keyword it was saved with by ``np.savez``.
        max_bytes : int
            The most bytes its data may take.
        stored : bool
            Whether it must be stored uncompressed (as ``np.savez`` writes), so that it is no
            larger than the file.

        Returns
        -------
        ndarray

        Raises
        ------
        CacheFileError
            When it is missing, too large, or unreadable.
        """
        try:
            return read_member(
                self._zip, self._zip.getinfo(f"{name}.npy"), max_bytes, stored=stored
            )
        except (KeyError, ArchiveError) as error:
            raise CacheFileError(f"{self._path}: {name}: {error}") from None
