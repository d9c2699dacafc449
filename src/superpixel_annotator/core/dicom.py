"""Reading DICOM series into a :class:`~.volume.Volume`.

A folder holds one or more series: single-frame image files sharing a SeriesInstanceUID.
:func:`find_series` lists them from the files' headers and :func:`load_dicom_series` reads
one. Only the folder's own files are examined, not its subfolders, at most
:data:`MAX_DICOM_FILES` of them; files without the ``DICM`` marker after the 128-byte
preamble (DICOM Part 10) are ignored.

Layout. Pixel ``(r, c)`` of a slice, as pydicom's ``pixel_array[r, c]``, lies at
``ImagePositionPatient + c * PixelSpacing[1] * row_cosine + r * PixelSpacing[0] *
column_cosine`` (LPS): the column index ``c`` moves along the *row* direction cosine, the
first three values of ImageOrientationPatient, and PixelSpacing is (between rows, between
columns). The source array given to :meth:`.Volume.from_source_array` is indexed
``[c, r, k]`` (ITK's x, y, z), ``k`` ordering the slices by position along the normal
``row_cosine x column_cosine``. Its affine's columns are ``row_cosine * PixelSpacing[1]``,
``column_cosine * PixelSpacing[0]``, ``normal * step`` and the first slice's position, in
LPS, then turned to RAS (nibabel's world) by ``diag(-1, -1, 1, 1)``. Slices are read
straight into the display-order array, through a view of it in that source order, so that
no copy of the volume is made, by :mod:`.dicom_pixels`.

Every refusal is a :class:`.VolumeError` with a one-line message naming the series by its
description (or UID when it has none). Patient fields are never used.
"""

from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pydicom
from nibabel import orientations
from pydicom.valuerep import VR

from .dicom_pixels import read_slices
from .image_files import (
    DEFAULT_LIMITS,
    DICOM_PEEK_BYTES,
    DISPLAY_ORNT,
    Limits,
    VolumeError,
    display_shape,
    error_line,
    is_dicom_content,
    is_dicom_file,
    printable,
)
from .volume import Volume

MAX_DICOM_FILES = 5000
CHOOSE_BY_UID = "choose one by its UID"
"""What a message listing a folder's several series asks (``--series UID``)."""
# Slice steps may differ from the series' median step by this fraction.
STEP_TOLERANCE = 0.01
# Slices may lie this fraction of the smallest pixel spacing off the normal of the first one.
TILT_TOLERANCE = 0.1
# Two ImageOrientationPatient are the same when no direction cosine differs by more.
ORIENTATION_TOLERANCE = 1e-4
_FILES_PEEKED = 10
# Header values longer than this are left unread (only short attributes are used).
_DEFER_BYTES = 1024


@dataclass(frozen=True)
class DicomSeries:
    """One series of a folder, as its files' headers describe it.

    Attributes
    ----------
    uid : str
        SeriesInstanceUID.
    description : str
        SeriesDescription, printable, or ``""``.
    modality : str
        Modality (``CT``, ``MR``...), or ``""``.
    files : tuple of Path
        The series' files, in file name order.
    slices : int
        The number of files.
    """

    uid: str
    description: str
    modality: str
    files: tuple[Path, ...]
    slices: int


@dataclass(frozen=True)
class _Header:
    """What is read from one file's header; ``None`` for an attribute missing or invalid.

    ``pixel_offset`` is where the file's reading stopped: at its pixel data element."""

    path: Path
    size: int
    pixel_offset: int | None
    series_uid: str
    description: str
    modality: str
    transfer_syntax: str
    frames: int | None
    samples: int | None
    rows: int | None
    columns: int | None
    spacing: tuple[float, ...] | None
    orientation: tuple[float, ...] | None
    position: tuple[float, ...] | None
    slope: float | None
    intercept: float | None
    dataset: pydicom.Dataset


_REQUIRED = {
    "rows": "Rows",
    "columns": "Columns",
    "spacing": "PixelSpacing",
    "orientation": "ImageOrientationPatient",
    "position": "ImagePositionPatient",
    "slope": "RescaleSlope",
    "intercept": "RescaleIntercept",
}


def is_dicom_folder(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a directory with DICOM files among its first few files.

    Parameters
    ----------
    path : str or path-like
        Any path; only the ``DICM`` marker of up to 10 of its files is read.

    Returns
    -------
    bool
        True when one of them is a DICOM Part 10 file.
    """
    try:
        with os.scandir(path) as entries:
            peeked = 0
            for entry in entries:
                if entry.is_file():
                    if is_dicom_file(Path(entry.path)):
                        return True
                    peeked += 1
                    if peeked == _FILES_PEEKED:
                        return False
    except OSError:
        return False
    return False


def find_series(folder: str | os.PathLike, *, limits: Limits = DEFAULT_LIMITS) -> list[DicomSeries]:
    """The DICOM series of a folder, from its files' headers (pixel data is not read).

    Parameters
    ----------
    folder : str or path-like
        A directory; its subfolders are not examined.
    limits : Limits
        Files over ``limits.max_bytes`` are skipped unread: no series holding them could
        be loaded.

    Returns
    -------
    list of DicomSeries
        Ordered by description and UID; empty when the folder holds no DICOM image.

    Raises
    ------
    VolumeError
        When ``folder`` is not a readable directory or holds more than
        :data:`MAX_DICOM_FILES` files.
    """
    series = []
    for uid, headers in _read_headers(folder, limits).items():
        first = headers[0]
        files = tuple(sorted(header.path for header in headers))
        series.append(DicomSeries(uid, first.description, first.modality, files, len(files)))
    return sorted(series, key=lambda found: (found.description, found.uid))


def load_dicom_series(
    folder: str | os.PathLike,
    *,
    series_uid: str | None = None,
    limits: Limits = DEFAULT_LIMITS,
) -> Volume:
    """Read one DICOM series of a folder into display order.

    Slices are ordered by their position along the normal of their orientation, never by
    file name or InstanceNumber. Sizes and limits are checked from the headers before any
    pixel data is read.

    Parameters
    ----------
    folder : str or path-like
        A directory of single-frame DICOM image files (see :func:`find_series`).
    series_uid : str, optional
        Which series to read; needed when the folder holds several.
    limits : Limits
        The largest series accepted: total file bytes and voxels.

    Returns
    -------
    Volume
        Intensities through RescaleSlope and RescaleIntercept as float32, named after the
        series description (letters, digits, ``-_.``) or ``dicom-series``, with the slices'
        headers (``dicom_headers``). For CT, a note says that intensities are in HU.

    Raises
    ------
    VolumeError
        With a one-line message naming the series when it cannot be read as one regular
        3D grid: several series and no ``series_uid``, mixed orientations or sizes, missing,
        duplicate or unevenly spaced slices, gantry tilt, multi-frame files, pixel data that
        cannot be decoded, or a series over ``limits``.
    """
    name = printable(os.fspath(folder))
    headers = _choose_series(name, _read_headers(folder, limits), series_uid)
    label = _label(headers[0])
    _check_headers(label, headers)
    first = headers[0]
    shape = (first.columns, first.rows, len(headers))
    if min(shape) < 2:
        raise VolumeError(
            f"{label}: an image of shape {shape} is too thin to annotate; "
            "it needs at least 2 voxels along every axis"
        )
    limits.check_size(sum(header.size for header in headers), label)
    limits.check_voxels(shape, label)
    headers, affine = _stack_geometry(label, headers)
    source = _read_pixels(label, headers, affine)
    # A first slice that varies (nearly always) spares two passes over the volume.
    if np.ptp(source[:, :, 0]) == 0 and source.min() == source.max():
        raise VolumeError(f"{label}: every voxel is {source.flat[0]:g}; nothing to annotate")
    volume = Volume.from_source_array(source, affine, _volume_name(first))
    volume = replace(volume, dicom_headers=tuple(_kept_header(h.dataset) for h in headers))
    if first.modality == "CT":
        return replace(volume, notes=(f"{label}: CT intensities are in Hounsfield units (HU)",))
    return volume


def _read_headers(folder: str | os.PathLike, limits: Limits) -> dict[str, list[_Header]]:
    """The headers of the folder's DICOM image files, by SeriesInstanceUID."""
    name = printable(os.fspath(folder))
    if not Path(folder).is_dir():
        raise VolumeError(f"{name}: not a folder")
    try:
        with os.scandir(folder) as entries:
            files = []
            for entry in entries:
                if entry.is_file():
                    files.append((Path(entry.path), entry.stat().st_size))
                    if len(files) > MAX_DICOM_FILES:
                        raise VolumeError(
                            f"{name}: more than {MAX_DICOM_FILES:,} files; "
                            "a DICOM series folder holds fewer"
                        )
    except OSError as error:
        raise VolumeError(f"{name}: cannot be read ({error_line(error)})") from None
    groups: dict[str, list[_Header]] = {}
    for path, size in sorted(files):
        header = _read_header(path, size) if size <= limits.max_bytes else None
        if header is not None:
            groups.setdefault(header.series_uid, []).append(header)
    return groups


def _read_header(path: Path, size: int) -> _Header | None:
    """The header of a DICOM image file; ``None`` for any other file."""
    try:
        with open(path, "rb") as file:
            if not is_dicom_content(file.read(DICOM_PEEK_BYTES)):
                return None
            file.seek(0)
            dataset = pydicom.dcmread(file, stop_before_pixels=True, defer_size=_DEFER_BYTES)
            pixel_offset = file.tell()
        series_uid = str(dataset.get("SeriesInstanceUID", "") or "")
        transfer_syntax = str(dataset.file_meta.get("TransferSyntaxUID", "") or "")
    except Exception:  # pydicom raises many types for malformed files
        return None
    if not series_uid or "Rows" not in dataset:
        return None
    return _Header(
        path=path,
        size=size,
        pixel_offset=pixel_offset,
        series_uid=series_uid,
        description=printable(str(dataset.get("SeriesDescription", "") or "")).strip(),
        modality=printable(str(dataset.get("Modality", "") or "")).strip(),
        transfer_syntax=transfer_syntax,
        frames=_integer(dataset, "NumberOfFrames", default=1),
        samples=_integer(dataset, "SamplesPerPixel", default=1),
        rows=_integer(dataset, "Rows"),
        columns=_integer(dataset, "Columns"),
        spacing=_numbers(dataset, "PixelSpacing", 2),
        orientation=_numbers(dataset, "ImageOrientationPatient", 6),
        position=_numbers(dataset, "ImagePositionPatient", 3),
        slope=_number(dataset, "RescaleSlope", default=1.0),
        intercept=_number(dataset, "RescaleIntercept", default=0.0),
        dataset=dataset,
    )


def _kept_header(dataset: pydicom.Dataset) -> pydicom.Dataset:
    """The header without private attributes, in sequences too, its long values read.

    Elements that cannot hold a sequence are left as read: pydicom converts them when
    used, and converting all of them took longer than reading the series' pixels."""
    for tag in list(dataset.keys()):
        element = dataset.get_item(tag, keep_deferred=True)
        if tag.is_private:
            del dataset[tag]
        elif element.value is None or element.VR in (None, VR.SQ, VR.UN):
            element = dataset[tag]
            for item in element.value if element.VR == VR.SQ else ():
                item.remove_private_tags()
    return dataset


def _integer(dataset: pydicom.Dataset, keyword: str, default: int | None = None) -> int | None:
    value = _number(dataset, keyword, default)
    return int(value) if value is not None and value == int(value) else None


def _number(dataset: pydicom.Dataset, keyword: str, default: float | None = None) -> float | None:
    value = dataset.get(keyword)
    if value in (None, ""):
        return default
    values = _finite([value], 1)
    return values[0] if values else None


def _numbers(dataset: pydicom.Dataset, keyword: str, count: int) -> tuple[float, ...] | None:
    """The ``count`` finite numbers of an attribute, or ``None``."""
    return _finite(dataset.get(keyword), count)


def _finite(value: object, count: int) -> tuple[float, ...] | None:
    """The ``count`` items of ``value`` as finite floats, or ``None``."""
    try:
        values = tuple(float(item) for item in value)
    except (TypeError, ValueError, OverflowError):
        return None
    if len(values) != count or not all(map(math.isfinite, values)):
        return None
    return values


def _label(header: _Header) -> str:
    """How messages name a series: its description, or its UID when it has none."""
    if header.description:
        return f'DICOM series "{header.description}"'
    return f"DICOM series {printable(header.series_uid)}"


def _volume_name(header: _Header) -> str:
    """The series description made safe for a file name, or ``dicom-series``."""
    name = re.sub(r"[^A-Za-z0-9._-]+", "_", header.description).strip("._-")
    return name or "dicom-series"


def _choose_series(
    folder: str, groups: dict[str, list[_Header]], series_uid: str | None
) -> list[_Header]:
    """The headers of the series asked for, or of the only one."""
    if not groups:
        raise VolumeError(f"no DICOM series in {folder}")
    if series_uid is not None and series_uid in groups:
        return groups[series_uid]
    listing = "; ".join(
        f"{_label(headers[0])} ({headers[0].modality or 'no modality'}, "
        f"{len(headers)} slices, UID {printable(uid)})"
        for uid, headers in sorted(groups.items(), key=lambda item: item[1][0].description)
    )
    if series_uid is not None:
        raise VolumeError(
            f"{folder}: no DICOM series with UID {printable(series_uid)}; there are: {listing}"
        )
    if len(groups) > 1:
        raise VolumeError(f"{folder}: {len(groups)} DICOM series, {CHOOSE_BY_UID}: {listing}")
    return next(iter(groups.values()))


def _check_headers(label: str, headers: list[_Header]) -> None:
    """Refuse multi-frame, colour or incomplete files and slices of different grids.

    Messages never name files: exports may name them after the patient."""
    multi_frame = [header for header in headers if header.frames != 1]
    if multi_frame:
        example = multi_frame[0]
        raise VolumeError(
            f"{label}: {len(multi_frame)} file(s) hold several frames (one holds "
            f"{example.frames}); enhanced multi-frame "
            "objects are not supported, export the series as one file per slice"
        )
    colour = [header for header in headers if header.samples != 1]
    if colour:
        raise VolumeError(
            f"{label}: {colour[0].samples} samples per pixel in {len(colour)} file(s); only "
            "greyscale images are supported"
        )
    for field, keyword in _REQUIRED.items():
        missing = [header for header in headers if getattr(header, field) is None]
        if missing:
            raise VolumeError(f"{label}: {len(missing)} file(s) have no valid {keyword}")
    sizes = sorted({(header.rows, header.columns) for header in headers})
    if len(sizes) > 1:
        shown = " and ".join(f"{rows}x{columns}" for rows, columns in sizes[:2])
        raise VolumeError(f"{label}: slices of different sizes, {shown} (rows x columns)")
    spacings = np.array([header.spacing for header in headers])
    if not np.allclose(spacings, spacings[0], rtol=STEP_TOLERANCE, atol=0):
        shown = " and ".join(f"{a:g}x{b:g}" for a, b in (spacings.min(0), spacings.max(0)))
        raise VolumeError(f"{label}: slices of different pixel spacings, {shown} mm")
    orientations = np.array([header.orientation for header in headers])
    if np.abs(orientations - orientations[0]).max() > ORIENTATION_TOLERANCE:
        raise VolumeError(
            f"{label}: slices of different orientations (ImageOrientationPatient), "
            "as in a localizer; only one stack of parallel slices can be read"
        )


def _stack_geometry(label: str, headers: list[_Header]) -> tuple[list[_Header], np.ndarray]:
    """The headers in slice order and the RAS affine of the ``[c, r, k]`` array."""
    row_cosine, column_cosine = np.reshape(headers[0].orientation, (2, 3))
    normal = np.cross(row_cosine, column_cosine)
    normal /= np.linalg.norm(normal)
    positions = np.array([header.position for header in headers])
    along = positions @ normal
    order = np.argsort(along, kind="stable")
    headers = [headers[index] for index in order]
    positions, along = positions[order], along[order]
    steps = np.diff(along)
    step = float(np.median(steps))
    if steps.min() <= STEP_TOLERANCE * step:
        index = int(np.argmin(steps))
        raise VolumeError(
            f"{label}: slices {index + 1} and {index + 2} (in position order) are at the same "
            "position "
            f"({along[index]:.4g} mm along the normal)"
        )
    uneven = np.flatnonzero(np.abs(steps - step) > STEP_TOLERANCE * step)
    if uneven.size:
        index = int(uneven[0])
        raise VolumeError(
            f"{label}: slices missing or unevenly spaced: {steps[index]:.4g} mm between "
            f"slices {index} and {index + 1} (at {along[index]:.4g} and "
            f"{along[index + 1]:.4g} mm along the normal) where the step is {step:.4g} mm"
        )
    offsets = positions - positions[0]
    in_plane = np.linalg.norm(offsets - np.outer(offsets @ normal, normal), axis=1)
    if in_plane.max() > TILT_TOLERANCE * min(headers[0].spacing):
        angle = np.degrees(np.arctan2(in_plane[-1], along[-1] - along[0]))
        raise VolumeError(
            f"{label}: gantry tilt: the slices are stacked {angle:.3g} degrees off the "
            "normal of their orientation; tilted series are not supported"
        )
    row_spacing, column_spacing = headers[0].spacing
    affine = np.eye(4)
    affine[:3, 0] = row_cosine * column_spacing
    affine[:3, 1] = column_cosine * row_spacing
    affine[:3, 2] = normal * (along[-1] - along[0]) / (len(headers) - 1)
    affine[:3, 3] = positions[0]
    return headers, np.diag([-1.0, -1.0, 1.0, 1.0]) @ affine


def _read_pixels(label: str, headers: list[_Header], affine: np.ndarray) -> np.ndarray:
    """The rescaled intensities in the ``[c, r, k]`` source order, as float32.

    The array is a view of a C-ordered array in display order, which
    :meth:`.Volume.from_source_array` then takes without copying.
    """
    source_shape = (headers[0].columns, headers[0].rows, len(headers))
    source_ornt = orientations.io_orientation(affine)
    display = np.empty(display_shape(source_shape, source_ornt), np.float32)
    to_source = orientations.ornt_transform(DISPLAY_ORNT, source_ornt)
    source = orientations.apply_orientation(display, to_source)
    read_slices(label, headers, source)
    return source
