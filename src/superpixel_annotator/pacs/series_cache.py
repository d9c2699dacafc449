"""Series retrieved from a DICOMweb server, kept in a cache folder so that each is
downloaded once: the PACS browser and a PACS dataset both open series through here.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from pathlib import Path

from .dicomweb import DicomWebSource

RETRIEVED_FOLDER = "pacs"
"""The cache folder's subfolder holding the series retrieved, one folder per series."""


def series_folder(source: DicomWebSource, study_uid: str, series_uid: str, cache_dir: Path) -> Path:
    """Where a series of ``source`` is kept once retrieved: one folder per server and series
    in ``cache_dir``, named by a hash (no UID or patient data in the name)."""
    key = hashlib.sha256(f"{source.url}\0{study_uid}\0{series_uid}".encode()).hexdigest()
    return Path(cache_dir) / RETRIEVED_FOLDER / key[:32]


def retrieved_series(
    source: DicomWebSource, study_uid: str, series_uid: str, cache_dir: Path
) -> Path:
    """The folder of a series of ``source`` (see :func:`series_folder`), retrieved unless
    already there: downloaded whole into a temporary folder and then renamed into place, so
    that processes retrieving it at once never read it half written.

    Raises
    ------
    PacsError
        When the series cannot be retrieved (see :meth:`DicomWebSource.retrieve_series`).
    OSError
        When the cache folder cannot be written.
    """
    folder = series_folder(source, study_uid, series_uid, cache_dir)
    if folder.is_dir():
        return folder
    folder.parent.mkdir(parents=True, exist_ok=True)
    temporary = Path(tempfile.mkdtemp(prefix=".retrieving-", dir=folder.parent))
    try:
        source.retrieve_series(study_uid, series_uid, temporary)
        os.rename(temporary, folder)
    except OSError:
        if not folder.is_dir():  # not another process's rename winning the race
            raise
    finally:
        shutil.rmtree(temporary, ignore_errors=True)
    return folder
