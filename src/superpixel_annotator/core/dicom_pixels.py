"""Reading the pixel data of a DICOM series' single-frame files into a float32 array.

The headers were read before (see :mod:`.dicom`), stopping at each file's pixel data
element and noting where it starts. Uncompressed little-endian files (Implicit and
Explicit VR Little Endian) are read straight from there, as the integers pydicom's
decoder would give: the dtype from BitsAllocated and PixelRepresentation, bits above
BitsStored cleared or sign-extended. Any other file (compressed, big endian, deflated,
bit-packed, or whose pixel data element is not the one expected at that position) is
decoded by pydicom. Files are read by a few threads: reading and numpy's arithmetic
release the GIL.
"""

from __future__ import annotations

import struct
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Protocol

import numpy as np
import pydicom
from pydicom.pixels import pixel_array
from pydicom.uid import UID, ExplicitVRLittleEndian, ImplicitVRLittleEndian

from .image_files import VolumeError, error_line, printable
from .threads import WORKERS

# Whether each transfer syntax read directly has implicit VRs.
_IMPLICIT_VR = {ImplicitVRLittleEndian: True, ExplicitVRLittleEndian: False}
_PIXEL_DATA = (0x7FE0, 0x0010)


class SliceHeader(Protocol):
    """What is needed of one file's header to read its pixels."""

    path: Path
    pixel_offset: int | None
    transfer_syntax: str
    rows: int | None
    columns: int | None
    slope: float | None
    intercept: float | None
    dataset: pydicom.Dataset


def read_slices(label: str, headers: list[SliceHeader], source: np.ndarray) -> None:
    """Write each file's rescaled intensities into ``source[:, :, k]`` (``[c, r, k]`` order).

    Parameters
    ----------
    label : str
        How messages name the series.
    headers : list of SliceHeader
        One single-frame greyscale file per slice, in slice order, checked to share one
        size (rows, columns) and to have a RescaleSlope and RescaleIntercept.
    source : ndarray
        float32, of shape ``(columns, rows, len(headers))``.

    Raises
    ------
    VolumeError
        Naming the first slice, in slice order, whose file cannot be read or decoded or
        holds another number of pixels than its header says.
    """
    with ThreadPoolExecutor(WORKERS) as pool:
        futures = [
            pool.submit(_read_slice, label, index, headers, source[:, :, index].T)
            for index in range(len(headers))
        ]
        try:
            for future in futures:
                future.result()
        finally:
            pool.shutdown(cancel_futures=True)


def _read_slice(label: str, index: int, headers: list[SliceHeader], target: np.ndarray) -> None:
    """Write slice ``index`` into ``target`` (rows, columns)."""
    header = headers[index]
    file_name = f"slice {index + 1} of {len(headers)}"
    try:
        pixels = slice_pixels(header)
    except (OSError, EOFError) as error:
        raise VolumeError(f"{label}: {file_name} cannot be read ({error_line(error)})") from None
    except Exception as error:  # pydicom's decoders raise many types
        syntax = UID(header.transfer_syntax)
        raise VolumeError(
            f"{label}: the pixel data of {file_name} cannot be decoded, transfer syntax "
            f"{printable(syntax.name)} ({printable(str(syntax))}): {error_line(error)}"
        ) from None
    if pixels.shape != target.shape:
        raise VolumeError(
            f"{label}: {file_name} holds {pixels.shape} pixels, its header says {target.shape}"
        )
    # Written in the pixel array's order: for axial series, the display array's too.
    np.multiply(pixels, np.float32(header.slope), out=target, casting="unsafe")
    target += np.float32(header.intercept)


def slice_pixels(header: SliceHeader) -> np.ndarray:
    """The pixels of one single-frame file, (rows, columns), as pydicom's decoder gives them.

    Parameters
    ----------
    header : SliceHeader
        The file's header.

    Returns
    -------
    ndarray
        Read directly for uncompressed little-endian files, else decoded by pydicom.
    """
    pixels = _native_pixels(header)
    return pixel_array(header.path) if pixels is None else pixels


def _native_pixels(header: SliceHeader) -> np.ndarray | None:
    """The pixels read at the header's pixel offset, or ``None`` when pydicom must decode."""
    implicit = _IMPLICIT_VR.get(header.transfer_syntax)
    dataset = header.dataset
    bits = dataset.get("BitsAllocated")
    stored = dataset.get("BitsStored")
    signed = dataset.get("PixelRepresentation")
    if (
        implicit is None
        or header.pixel_offset is None
        or not header.rows
        or not header.columns
        or bits not in (8, 16, 32)
        or signed not in (0, 1)
        or not isinstance(stored, int)
        or not 0 < stored <= bits
    ):
        return None
    count = header.rows * header.columns
    size = count * bits // 8
    with open(header.path, "rb") as file:
        file.seek(header.pixel_offset)
        if implicit:
            *tag, length = struct.unpack("<HHI", file.read(8).ljust(8, b"\0"))
        else:
            *tag, vr, _, length = struct.unpack("<HH2sHI", file.read(12).ljust(12, b"\0"))
            if vr not in (b"OB", b"OW"):
                return None
        if tuple(tag) != _PIXEL_DATA or length != size + size % 2:
            return None
        content = file.read(size)
    if len(content) != size:
        return None
    pixels = np.frombuffer(content, f"<{'ui'[signed]}{bits // 8}").reshape(header.rows, -1)
    if stored < bits:
        pixels = np.left_shift(pixels, bits - stored)
        np.right_shift(pixels, bits - stored, out=pixels)
    return pixels
