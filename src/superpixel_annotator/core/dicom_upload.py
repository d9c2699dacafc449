"""DICOM series uploaded through the browser: the ``.dcm`` files of one series, or one
``.zip`` of them.

An upload is written into a temporary folder and read there by
:func:`~.dicom.load_dicom_series`, so uploads and folders share every check. A zip is
checked from its end record and central directory before anything is extracted: at most
:data:`~.dicom.MAX_DICOM_FILES` members, no zip64 record, and the sizes its members
declare, which bound what is decompressed (Python's ``zipfile`` reads no more than a
member declares, and refuses a member whose data disagrees with its checksum), within the
upload limit. A zip bomb is refused before any of it is decompressed.

Member names are never used as paths: members are written under numbered names, so an
archive cannot write outside the folder.
"""

from __future__ import annotations

import io
import struct
import tempfile
import zipfile
from collections.abc import Sequence
from pathlib import Path

from .dicom import CHOOSE_BY_UID, MAX_DICOM_FILES, load_dicom_series
from .image_files import Limits, VolumeError, error_line, file_size, printable
from .volume import Volume

DICOM_SUFFIX = ".dcm"
ZIP_SUFFIX = ".zip"
_END_RECORD = struct.Struct("<4s4H2LH")
_ZIP64_LOCATOR_SIZE = 20
_DIRECTORY_ENTRY_BYTES = 46 + 2 * 65535  # fixed part, then name, extra field and comment
_CHUNK_BYTES = 2**20
_SKIPPED_PREFIXES = ("__MACOSX/",)


def is_dicom_upload(filenames: Sequence[str]) -> bool:
    """Whether uploaded files are a DICOM series: all named ``*.dcm``, or one ``*.zip``."""
    names = [name.lower() for name in filenames if isinstance(name, str)]
    if len(names) != len(filenames) or not names:
        return False
    return all(name.endswith(DICOM_SUFFIX) for name in names) or (
        len(names) == 1 and names[0].endswith(ZIP_SUFFIX)
    )


def read_dicom_upload(files: Sequence[tuple[str, bytes]], limits: Limits) -> Volume:
    """Read the DICOM series of an upload (see :func:`is_dicom_upload`).

    Parameters
    ----------
    files : sequence of (str, bytes)
        Each uploaded file's name and content.
    limits : Limits
        Bounds of the series (see :func:`~.dicom.load_dicom_series`); a zip's members may
        declare at most ``limits.max_bytes`` in all.

    Returns
    -------
    Volume

    Raises
    ------
    VolumeError
        One line naming the upload and the problem: a zip that is not one, a zip bomb, too
        many files, or any problem of the series.
    """
    name = printable(files[0][0]) if len(files) == 1 else f"{len(files)} DICOM files"
    with tempfile.TemporaryDirectory(prefix="dicom-upload-") as folder:
        written = 0
        for filename, content in files:
            if filename.lower().endswith(ZIP_SUFFIX):
                written += _extract_zip(content, printable(filename), Path(folder), limits)
            else:
                written += 1
                (Path(folder) / f"{written:05d}{DICOM_SUFFIX}").write_bytes(content)
        try:
            return load_dicom_series(folder, limits=limits)
        except VolumeError as error:
            # A folder's choice of series is the command line's; an upload is chosen by
            # uploading one series alone.
            text = str(error).replace(folder, name)
            raise VolumeError(text.replace(CHOOSE_BY_UID, "upload one alone")) from None


def _extract_zip(content: bytes, name: str, folder: Path, limits: Limits) -> int:
    """Write the members of a zip into ``folder`` under numbered names; return how many."""
    _check_end_record(content, name)
    try:
        with zipfile.ZipFile(io.BytesIO(content)) as archive:
            members = [
                info
                for info in archive.infolist()
                if not info.is_dir() and not info.filename.startswith(_SKIPPED_PREFIXES)
            ]
            declared = sum(info.file_size for info in members)
            if declared > limits.max_bytes:
                raise VolumeError(
                    f"{name}: its files expand to {file_size(declared)}, over the "
                    f"{file_size(limits.max_bytes)} limit"
                )
            for number, info in enumerate(members, start=1):
                _copy_member(archive, info, folder / f"{number:05d}{DICOM_SUFFIX}")
    except (zipfile.BadZipFile, zipfile.LargeZipFile, NotImplementedError, EOFError) as error:
        raise VolumeError(f"{name}: not a readable zip ({error_line(error)})") from None
    except RuntimeError as error:  # an encrypted member
        raise VolumeError(f"{name}: {error_line(error)}") from None
    return len(members)


def _check_end_record(content: bytes, name: str) -> None:
    """Refuse, from its end record, a zip with more members than a series folder may hold,
    a zip64 archive, or a comment (which hides where the record is)."""
    if len(content) < _END_RECORD.size or content[:2] != b"PK":
        raise VolumeError(f"{name}: not a zip file")
    end = _END_RECORD.unpack(content[-_END_RECORD.size :])
    signature, entries, directory_size, comment = end[0], end[4], end[5], end[7]
    locator = content[-_END_RECORD.size - _ZIP64_LOCATOR_SIZE :][:4]
    if signature != b"PK\x05\x06" or comment:
        raise VolumeError(f"{name}: not a plain zip file (it ends with a comment or is cut)")
    if locator == b"PK\x06\x07":
        raise VolumeError(f"{name}: zip64 archives are not accepted; zip the series alone")
    if entries > MAX_DICOM_FILES or directory_size > MAX_DICOM_FILES * _DIRECTORY_ENTRY_BYTES:
        raise VolumeError(
            f"{name}: more than {MAX_DICOM_FILES:,} files; a DICOM series holds fewer"
        )


def _copy_member(archive: zipfile.ZipFile, info: zipfile.ZipInfo, target: Path) -> None:
    with archive.open(info) as source, target.open("wb") as destination:
        while chunk := source.read(_CHUNK_BYTES):
            destination.write(chunk)
