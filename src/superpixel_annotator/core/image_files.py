"""Opening image files safely: size and format checked from the header before any voxel is
read, limits, voxel grids and the display orientation.

Every refusal is a :class:`VolumeError` whose one-line message names the file and the problem.
"""

from __future__ import annotations

import base64
import binascii
import gzip
import io
import itertools
import math
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np
from nibabel import orientations
from nibabel.spatialimages import SpatialImage

DISPLAY_AXCODES = ("I", "P", "L")
DISPLAY_ORNT = orientations.axcodes2ornt(DISPLAY_AXCODES)
# Two images are on the same grid when their corner voxels are this close in world space.
GRID_TOLERANCE_MM = 0.01
_GZIP_MAGIC = b"\x1f\x8b"
_NIFTI1_MAGIC = (344, b"n+1\x00")
_NIFTI2_MAGIC = (4, b"n+2\x00")
_MGH_VERSION = b"\x00\x00\x00\x01"
_HEADER_PEEK_BYTES = 540
DICOM_PEEK_BYTES = 132
"""The bytes that tell a DICOM Part 10 file: a 128-byte preamble, then ``DICM``."""


class VolumeError(ValueError):
    """A file that cannot be used as a volume; the message names the file and the problem."""


@dataclass(frozen=True)
class Limits:
    """The largest file and image the annotator accepts, checked before voxels are read.

    The defaults admit a 512x512x400 CT (105 M voxels; 0.42 GB as float32, 0.84 GB as
    float64). At the voxel limit the float32 intensities and int32 superpixel ids take
    0.5 GB each, which is about what one server process can hold per scan.

    Attributes
    ----------
    max_bytes : int
        Largest file size in bytes (default 1 GB = 10**9 bytes).
    max_voxels : int
        Largest number of voxels of the 3D volume shown (default 2**27, about 134 M).
    max_header_bytes : int
        Largest NIfTI header with its extensions, which are read whole, in bytes (default
        2**26 = 64 MB; the superpixel marks of an image of ``max_voxels`` take at most 13 MB).
    """

    max_bytes: int = 1_000_000_000
    max_voxels: int = 2**27
    max_header_bytes: int = 2**26

    def __post_init__(self) -> None:
        if min(self.max_bytes, self.max_voxels, self.max_header_bytes) < 1:
            raise ValueError(f"limits must be positive, got {self}")

    def check_size(self, size: int, filename: str) -> None:
        """Refuse a file of ``size`` bytes over :attr:`max_bytes`.

        Raises
        ------
        VolumeError
            For example ``big.nii.gz: 1.3 GB is over the 1.0 GB upload limit``.
        """
        if size > self.max_bytes:
            raise VolumeError(
                f"{filename}: {file_size(size)} is over the "
                f"{file_size(self.max_bytes)} upload limit"
            )

    def check_voxels(self, shape: Sequence[int], filename: str) -> None:
        """Refuse a 3D image of ``shape`` with more than :attr:`max_voxels` voxels.

        Raises
        ------
        VolumeError
            Naming the shape, its voxel count and the limit.
        """
        voxels = math.prod(int(length) for length in shape)
        if voxels > self.max_voxels:
            raise VolumeError(
                f"{filename}: {'x'.join(map(str, shape))} = {voxels:,} voxels is over "
                f"the limit of {self.max_voxels:,} voxels"
            )


DEFAULT_LIMITS = Limits()


def open_image_path(path: str | os.PathLike, limits: Limits) -> tuple[SpatialImage, str]:
    """Open the image at ``path`` without reading its voxels; also return its printable name."""
    filename = printable(os.fspath(path))
    path = Path(path)
    try:
        status = path.stat()
    except FileNotFoundError:
        raise VolumeError(f"{filename}: no such file") from None
    except OSError as error:
        raise VolumeError(f"{filename}: cannot be read ({error_line(error)})") from None
    if path.is_dir():
        raise VolumeError(f"{filename}: is a directory, not an image file")
    if not path.is_file():
        raise VolumeError(f"{filename}: is not a regular file")
    limits.check_size(status.st_size, filename)
    if status.st_size == 0:
        raise VolumeError(f"{filename}: the file is empty")
    try:
        image = nib.load(path)
    except Exception as error:  # nibabel raises many types for unreadable files
        raise VolumeError(f"{filename}: not a readable image ({error_line(error)})") from None
    return image, filename


def open_image_bytes(content: bytes, filename: str, limits: Limits) -> tuple[SpatialImage, str]:
    """Parse the header of an in-memory image; also return the file's printable base name."""
    filename = printable(re.split(r"[/\\]", filename)[-1]) or "upload"
    limits.check_size(len(content), filename)
    if not content:
        raise VolumeError(f"{filename}: the file is empty")
    stream = io.BytesIO(content)
    if content.startswith(_GZIP_MAGIC):
        stream = gzip.GzipFile(fileobj=stream, mode="rb")
    try:
        head = stream.read(_HEADER_PEEK_BYTES)
        stream.seek(0)
        image_class = _image_class(head)
        header_bytes = _nifti_header_bytes(head, image_class)
    except Exception as error:  # gzip, zlib and nibabel raise many types for bad content
        raise VolumeError(f"{filename}: not a readable image ({error_line(error)})") from None
    if image_class is None:
        raise VolumeError(f"{filename}: not a readable image (not NIfTI-1, NIfTI-2 or MGH)")
    if not header_bytes <= limits.max_header_bytes:
        raise VolumeError(
            f"{filename}: the header and its extensions take {file_size(header_bytes)}, over "
            f"the limit of {file_size(limits.max_header_bytes)}"
        )
    try:
        image = image_class.from_stream(stream)
    except Exception as error:
        raise VolumeError(f"{filename}: not a readable image ({error_line(error)})") from None
    return image, filename


def _nifti_header_bytes(head: bytes, image_class: type[SpatialImage] | None) -> float:
    """The bytes before a NIfTI file's voxels, its header and extensions, from the start of
    the file; 0 for other formats."""
    if image_class not in (nib.Nifti1Image, nib.Nifti2Image):
        return 0
    header_class = image_class.header_class
    header = header_class(head[: header_class.template_dtype.itemsize], check=False)
    return float(header["vox_offset"])


def _image_class(head: bytes) -> type[SpatialImage] | None:
    """The single-file image type whose magic bytes start ``head``, if any."""
    for image_class, (offset, magic) in (
        (nib.Nifti1Image, _NIFTI1_MAGIC),
        (nib.Nifti2Image, _NIFTI2_MAGIC),
    ):
        if head[offset : offset + len(magic)] == magic:
            return image_class
    return nib.MGHImage if head.startswith(_MGH_VERSION) else None


def significant_shape(image: SpatialImage, filename: str) -> tuple[int, ...]:
    """The image shape without trailing axes of length 1 beyond the third; at least 3D."""
    shape = tuple(int(length) for length in image.shape)
    while len(shape) > 3 and shape[-1] == 1:
        shape = shape[:-1]
    if len(shape) < 3:
        raise VolumeError(f"{filename}: expected a 3D image, got shape {shape}")
    return shape


def check_voxel_type(image: SpatialImage, filename: str) -> None:
    dtype = image.get_data_dtype()
    if dtype.kind not in "biuf":
        raise VolumeError(f"{filename}: voxels of type {dtype} are not supported, only numbers")


def check_affine(affine: np.ndarray, filename: str) -> None:
    linear = np.asarray(affine)[:3, :3]
    if not np.isfinite(affine).all() or abs(np.linalg.det(linear)) < 1e-12:
        raise VolumeError(
            f"{filename}: the voxel-to-world affine is degenerate (a voxel size of 0?)"
        )


def check_same_grid(
    filename: str,
    affine: np.ndarray,
    source_shape: tuple[int, ...],
    reference_name: str,
    reference_affine: np.ndarray,
    reference_shape: tuple[int, ...],
) -> None:
    """Refuse an image whose display-order grid is not the reference's."""
    ornt = orientations.io_orientation(affine)
    reference_ornt = orientations.io_orientation(reference_affine)
    grid_shape = display_shape(source_shape, ornt)
    if grid_shape != display_shape(reference_shape, reference_ornt):
        if tuple(source_shape) != tuple(reference_shape):
            raise VolumeError(
                f"{filename}: shape {tuple(source_shape)} differs from "
                f"{reference_name} {tuple(reference_shape)}"
            )
        raise VolumeError(
            f"{filename}: axis orientation {''.join(orientations.ornt2axcodes(ornt))} "
            f"differs from {reference_name} "
            f"{''.join(orientations.ornt2axcodes(reference_ornt))}"
        )
    corners = np.array(list(itertools.product(*[(0, length - 1) for length in grid_shape])))
    corners = np.column_stack([corners, np.ones(len(corners))]).T
    world = display_affine(affine, source_shape) @ corners
    reference_world = display_affine(reference_affine, reference_shape) @ corners
    if not np.allclose(world, reference_world, rtol=0, atol=GRID_TOLERANCE_MM):
        distance = np.linalg.norm((world - reference_world)[:3], axis=0).max()
        raise VolumeError(
            f"{filename}: not on the voxel grid of {reference_name} (corners up to "
            f"{distance:.3g} mm apart); files must be co-registered and resampled alike"
        )


def read_voxels(image: SpatialImage, filename: str, volume_index: int) -> np.ndarray:
    """The voxels of one 3D volume of ``image``, with the file's scaling applied."""
    # Axes beyond the fourth have length 1 (see significant_shape).
    extra_axes = len(image.shape) - 3
    index = (slice(None),) * 3 + ((volume_index,) + (0,) * (extra_axes - 1))[:extra_axes]
    try:
        return np.asarray(image.dataobj[index])
    except Exception as error:  # truncated data surfaces as EOFError, OSError or ValueError
        raise VolumeError(
            f"{filename}: the voxel data cannot be read, the file may be truncated "
            f"({error_line(error)})"
        ) from None


def display_transform(source_ornt: np.ndarray) -> np.ndarray:
    return orientations.ornt_transform(source_ornt, DISPLAY_ORNT)


def display_shape(source_shape: Sequence[int], source_ornt: np.ndarray) -> tuple[int, ...]:
    display = [0, 0, 0]
    for source_axis, (display_axis, _) in enumerate(display_transform(source_ornt)):
        display[int(display_axis)] = int(source_shape[source_axis])
    return tuple(display)


def display_affine(affine: np.ndarray, source_shape: Sequence[int]) -> np.ndarray:
    """The voxel-to-world affine of an image once reordered into display order."""
    to_display = display_transform(orientations.io_orientation(affine))
    return np.asarray(affine) @ orientations.inv_ornt_aff(to_display, tuple(source_shape))


def file_size(size: int) -> str:
    """A size in bytes as decimal GB, MB or kB (the units of file managers and the CLI)."""
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if size >= scale:
            return f"{size / scale:.1f} {unit}"
    return f"{size} bytes"


def is_dicom_content(content: bytes) -> bool:
    """Whether ``content`` starts as a DICOM Part 10 file: ``DICM`` after the 128-byte
    preamble (its first :data:`DICOM_PEEK_BYTES` bytes are enough)."""
    return content[128:DICOM_PEEK_BYTES] == b"DICM"


def is_dicom_file(path: str | os.PathLike) -> bool:
    """Whether the file at ``path`` starts as a DICOM Part 10 file; ``False`` when it
    cannot be read."""
    try:
        with open(path, "rb") as file:
            return is_dicom_content(file.read(DICOM_PEEK_BYTES))
    except OSError:
        return False


def printable(text: str) -> str:
    """``text`` with line breaks and other unprintable characters replaced by ``?``."""
    return "".join(char if char.isprintable() else "?" for char in text)


def error_line(error: BaseException) -> str:
    """The first line of an error's message, printable, for a one-line refusal.

    Parameters
    ----------
    error : BaseException
        Any error; for an ``OSError``, its ``strerror`` (which names no file).

    Returns
    -------
    str
        The line, or the error's type name when it has no message.
    """
    if isinstance(error, OSError) and error.strerror:
        return error.strerror
    text = str(error).strip()
    return printable(text.splitlines()[0].rstrip(": ")) if text else type(error).__name__


def decode_data_url(content, filename, limits: Limits) -> bytes:
    """The bytes of an upload sent as a data URL (``data:...;base64,...``), refused before
    decoding when over ``limits.max_bytes``.

    Raises
    ------
    VolumeError
        When ``content`` is not a base64 data URL or is too large; naming ``filename``.
    """
    name = filename if isinstance(filename, str) else "upload"
    if not isinstance(content, str) or "," not in content:
        raise VolumeError(f"{name}: the upload is not a file")
    encoded = content.split(",", 1)[1]
    limits.check_size(len(encoded) * 3 // 4, name)
    try:
        return base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        raise VolumeError(f"{name}: the upload is not valid base64") from None
