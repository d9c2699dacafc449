"""Reading volumes into display orientation and writing label maps back.

Every array the rest of the package sees is in *display order*: axis 0 runs
superior to inferior (axial slices, top of the head first), axis 1 anterior to
posterior and axis 2 from the patient's right to left. Shown with row 0 on top,
that puts anterior up in axial views, superior up in coronal and sagittal views
and the patient's right on the viewer's left (radiological convention).

Files come from a path (:func:`load_volume`, :func:`read_segmentation`) or, for
uploads, from bytes held in memory (:func:`read_volume_bytes`,
:func:`read_segmentation_bytes`). Both are checked the same way; every refusal is a
:class:`VolumeError` whose one-line message names the file and the problem.
"""

from __future__ import annotations

import base64
import binascii
import gzip
import hashlib
import io
import itertools
import os
import re
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, replace
from functools import cached_property
from pathlib import Path

import nibabel as nib
import numpy as np
from nibabel import orientations
from nibabel.spatialimages import SpatialImage

DISPLAY_AXCODES = ("I", "P", "L")
_DISPLAY_ORNT = orientations.axcodes2ornt(DISPLAY_AXCODES)
_NIFTI_SUFFIXES = (".nii.gz", ".nii", ".mgz", ".mgh", ".img", ".hdr")
MAX_LABEL = 255
"""The largest label value; labels are stored as uint8."""
_MARKS_TAG = b"superpixel-annotator superpixel marks, int16, zlib, base64\n"
_COMMENT_EXTENSION = 6
# Two images are on the same grid when their corner voxels are this close in world space.
GRID_TOLERANCE_MM = 0.01
_GZIP_MAGIC = b"\x1f\x8b"
_NIFTI1_MAGIC = (344, b"n+1\x00")
_NIFTI2_MAGIC = (4, b"n+2\x00")
_MGH_VERSION = b"\x00\x00\x00\x01"
_HEADER_PEEK_BYTES = 348


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
    """

    max_bytes: int = 1_000_000_000
    max_voxels: int = 2**27

    def __post_init__(self) -> None:
        if self.max_bytes < 1 or self.max_voxels < 1:
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
                f"{filename}: {_file_size(size)} is over the "
                f"{_file_size(self.max_bytes)} upload limit"
            )

    def check_voxels(self, shape: Sequence[int], filename: str) -> None:
        """Refuse a 3D image of ``shape`` with more than :attr:`max_voxels` voxels.

        Raises
        ------
        VolumeError
            Naming the shape, its voxel count and the limit.
        """
        voxels = int(np.prod(shape, dtype=np.int64))
        if voxels > self.max_voxels:
            raise VolumeError(
                f"{filename}: {'x'.join(map(str, shape))} = {voxels:,} voxels is over "
                f"the limit of {self.max_voxels:,} voxels"
            )


DEFAULT_LIMITS = Limits()


@dataclass(frozen=True, eq=False)
class Volume:
    """A 3D scan in display order with what is needed to write results back.

    Attributes
    ----------
    data : ndarray of float32, shape (n_axial, n_coronal, n_sagittal)
        Intensities in display order.
    spacing : tuple of float
        Voxel size in mm along the display axes.
    affine : ndarray, shape (4, 4)
        The source file's voxel-to-world affine (for the source array order).
    source_ornt : ndarray
        nibabel orientation of the source array axes.
    name : str
        The source file name without its directories and image suffix.
    notes : tuple of str
        Remarks on how the file was read (a volume chosen from a 4D file, NaNs
        replaced), each one line naming the file, to show to the user.
    """

    data: np.ndarray
    spacing: tuple[float, float, float]
    affine: np.ndarray
    source_ornt: np.ndarray
    name: str
    notes: tuple[str, ...] = ()

    @classmethod
    def from_source_array(
        cls, array: np.ndarray, affine: np.ndarray, name: str = "volume"
    ) -> Volume:
        """Build a volume from an array in source order and its affine."""
        source_ornt = orientations.io_orientation(affine)
        data = orientations.apply_orientation(np.asarray(array), _to_display(source_ornt))
        zooms = np.sqrt((np.asarray(affine)[:3, :3] ** 2).sum(axis=0))
        spacing = tuple(float(zooms[int(axis)]) for axis in to_display_axes(source_ornt))
        return cls(
            data=np.ascontiguousarray(data, dtype=np.float32),
            spacing=spacing,
            affine=np.asarray(affine, dtype=np.float64),
            source_ornt=source_ornt,
            name=name,
        )

    def to_source(self, array: np.ndarray) -> np.ndarray:
        """Reorder an array of ``data.shape`` from display order to source order."""
        to_source = orientations.ornt_transform(_DISPLAY_ORNT, self.source_ornt)
        return np.ascontiguousarray(orientations.apply_orientation(array, to_source))

    @property
    def source_shape(self) -> tuple[int, ...]:
        """The shape of the volume as stored in its file."""
        display_axis = _to_display(self.source_ornt)[:, 0].astype(int)
        return tuple(self.data.shape[axis] for axis in display_axis)

    @cached_property
    def display_affine(self) -> np.ndarray:
        """The voxel-to-world affine of ``data`` (display order), shape (4, 4)."""
        return _display_affine(self.affine, self.source_shape)

    @cached_property
    def content_hash(self) -> str:
        """A digest of the intensities, spacing and affine, for cache keys."""
        digest = hashlib.sha256()
        digest.update(str(self.data.shape).encode())
        digest.update(np.asarray(self.spacing).tobytes())
        digest.update(self.affine.tobytes())
        digest.update(self.data.tobytes())
        return digest.hexdigest()[:32]


def to_display_axes(source_ornt: np.ndarray) -> list[int]:
    """For each display axis, the index of the source axis it comes from."""
    source_axis_of_world = {int(world): axis for axis, (world, _) in enumerate(source_ornt)}
    return [source_axis_of_world[int(world)] for world, _ in _DISPLAY_ORNT]


def image_stem(path: str | os.PathLike) -> str:
    """The file name without its directories and image suffix (``a/case.nii.gz`` -> ``case``).

    Both ``/`` and ``\\`` separate directories, as browsers may send Windows paths.
    """
    name = re.split(r"[/\\]", os.fspath(path))[-1]
    for suffix in _NIFTI_SUFFIXES:
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return Path(name).stem


def load_volume(
    path: str | os.PathLike, *, volume_index: int = 0, limits: Limits = DEFAULT_LIMITS
) -> Volume:
    """Read a 3D image that nibabel understands into display order.

    Parameters
    ----------
    path : str or path-like
        A NIfTI (``.nii``, ``.nii.gz``), MGH (``.mgh``, ``.mgz``) or other
        nibabel-readable 3D or 4D image.
    volume_index : int
        Which volume of a 4D file to show (from 0); the only valid value for 3D files is 0.
    limits : Limits
        The largest file and image accepted, checked before the voxels are read.

    Returns
    -------
    Volume
        Intensities as float32. NaN and infinite values are set to the lowest finite
        value; that, and a volume chosen from a 4D file, are told in ``notes``.

    Raises
    ------
    VolumeError
        With a one-line message naming the file when it is not a usable 3D image.
    """
    image, filename = _open_path(path, limits)
    return _volume_from_image(image, filename, volume_index, limits)


def read_volume_bytes(
    content: bytes, filename: str, *, volume_index: int = 0, limits: Limits = DEFAULT_LIMITS
) -> Volume:
    """Read an image held in memory, such as an upload, into display order.

    The format is recognised from the content: NIfTI-1 or NIfTI-2 single files and MGH,
    each gzipped or not (``.nii``, ``.nii.gz``, ``.mgh``, ``.mgz``).

    Parameters
    ----------
    content : bytes
        The whole file.
    filename : str
        The file's name as the user knows it. Only used in messages and, without its
        directories and image suffix, as the volume's name; never opened.
    volume_index, limits
        As for :func:`load_volume`.

    Returns
    -------
    Volume
        As for :func:`load_volume`.

    Raises
    ------
    VolumeError
        With a one-line message naming the file when it is not a usable 3D image.
    """
    image, filename = _open_bytes(content, filename, limits)
    return _volume_from_image(image, filename, volume_index, limits)


def load_modalities(
    paths: Sequence[str | os.PathLike],
    *,
    volume_index: int = 0,
    limits: Limits = DEFAULT_LIMITS,
) -> list[Volume]:
    """Read co-registered modalities of one case (FLAIR, T1c, ...), each with :func:`load_volume`.

    Parameters
    ----------
    paths : sequence of str or path-like
        At least one file; all must share the first one's voxel grid.
    volume_index, limits
        As for :func:`load_volume`, applied to every file.

    Returns
    -------
    list of Volume
        In the order of ``paths``.

    Raises
    ------
    VolumeError
        When a file is unusable or not on the first file's grid (see :func:`check_modalities`).
    """
    if not paths:
        raise ValueError("load_modalities needs at least one path")
    volumes = [load_volume(path, volume_index=volume_index, limits=limits) for path in paths]
    check_modalities(volumes, [_printable(os.fspath(path)) for path in paths])
    return volumes


def check_modalities(volumes: Sequence[Volume], filenames: Sequence[str] | None = None) -> None:
    """Refuse volumes that do not share the first volume's voxel grid.

    Volumes stored in different axis orders are on the same grid when, once in display
    order, their shapes are equal and every corner voxel lies within
    :data:`GRID_TOLERANCE_MM` of the first volume's in world space.

    Parameters
    ----------
    volumes : sequence of Volume
        The modalities of one case, the first being the reference.
    filenames : sequence of str, optional
        Names for messages, one per volume; default: the volumes' names.

    Raises
    ------
    VolumeError
        For example ``T1c.nii.gz: shape (240, 240, 150) differs from FLAIR.nii.gz
        (240, 240, 155)``.
    """
    names = [_printable(name) for name in filenames] if filenames else [v.name for v in volumes]
    if len(names) != len(volumes):
        raise ValueError(f"{len(volumes)} volumes but {len(names)} file names")
    reference, reference_name = volumes[0], names[0]
    for volume, name in zip(volumes[1:], names[1:], strict=True):
        _check_same_grid(
            name,
            volume.affine,
            volume.source_shape,
            reference_name,
            reference.affine,
            reference.source_shape,
        )


@dataclass(frozen=True, eq=False)
class Segmentation:
    """A label map read from a file.

    Attributes
    ----------
    labels : ndarray of uint8
        The labels in display order, the scan's shape.
    superpixel_marks : ndarray of int16 or None
        The superpixel marks :func:`save_segmentation` stored with the labels, if any.
    """

    labels: np.ndarray
    superpixel_marks: np.ndarray | None


def read_segmentation(
    path: str | os.PathLike, volume: Volume, *, limits: Limits = DEFAULT_LIMITS
) -> Segmentation:
    """Read a label map drawn on ``volume`` (for instance one :func:`save_segmentation` wrote).

    Parameters
    ----------
    path : str or path-like
        A 3D image on the volume's voxel grid, in any axis order.
    volume : Volume
        The scan the labels belong to.
    limits : Limits
        The largest file accepted.

    Returns
    -------
    Segmentation
        The labels in display order, and the superpixel marks saved with them.

    Raises
    ------
    VolumeError
        When the file is unreadable, not on the volume's grid, or holds values that are not
        integers from 0 to :data:`MAX_LABEL`; one line naming the file.
    """
    image, filename = _open_path(path, limits)
    return Segmentation(_labels_from_image(image, filename, volume), _superpixel_marks(image))


def read_segmentation_bytes(
    content: bytes, filename: str, volume: Volume, *, limits: Limits = DEFAULT_LIMITS
) -> Segmentation:
    """Read a label map held in memory, such as an upload; see :func:`read_segmentation`.

    ``content`` and ``filename`` are as for :func:`read_volume_bytes`.
    """
    image, filename = _open_bytes(content, filename, limits)
    return Segmentation(_labels_from_image(image, filename, volume), _superpixel_marks(image))


def save_segmentation(
    volume: Volume,
    labels: np.ndarray,
    path: str | os.PathLike,
    superpixel_marks: np.ndarray | None = None,
) -> None:
    """Write a label map in the source file's orientation, shape and affine.

    Parameters
    ----------
    volume : Volume
        The volume the labels belong to.
    labels : ndarray of int, shape ``volume.data.shape``
        Label values in display order; 0 is background.
    path : str or path-like
        Output file, normally ``.nii.gz``.
    superpixel_marks : ndarray of int, optional
        The annotation behind the labels, one value per superpixel
        (:meth:`~superpixel_annotator.annotation.Annotation.marked_labels`), stored in a
        NIfTI comment extension that other tools ignore, so that the annotator opens the
        file back exactly.
    """
    labels = np.asarray(labels)
    if labels.shape != volume.data.shape:
        raise ValueError(f"labels have shape {labels.shape}, expected {volume.data.shape}")
    dtype = np.uint8 if labels.max(initial=0) < 256 else np.uint16
    image = nib.Nifti1Image(volume.to_source(labels.astype(dtype)), volume.affine)
    image.set_qform(volume.affine, code=1)
    image.set_sform(volume.affine, code=1)
    image.header.set_intent("label")
    if superpixel_marks is not None:
        packed = zlib.compress(np.asarray(superpixel_marks, "<i2").tobytes(), 6)
        content = _MARKS_TAG + base64.b64encode(packed)
        image.header.extensions.append(nib.nifti1.Nifti1Extension(_COMMENT_EXTENSION, content))
    nib.save(image, os.fspath(path))


def _superpixel_marks(image: SpatialImage) -> np.ndarray | None:
    """The superpixel marks :func:`save_segmentation` stored in ``image``; None when there are
    none or they cannot be decoded."""
    contents = [
        extension.get_content()
        for extension in getattr(image.header, "extensions", ())
        if extension.get_code() == _COMMENT_EXTENSION
    ]
    marked = [c for c in contents if isinstance(c, bytes) and c.startswith(_MARKS_TAG)]
    if not marked:
        return None
    try:
        raw = zlib.decompress(base64.b64decode(marked[0][len(_MARKS_TAG) :], validate=True))
    except (binascii.Error, zlib.error):
        return None
    return None if len(raw) % 2 else np.frombuffer(raw, "<i2").astype(np.int16)


def _open_path(path: str | os.PathLike, limits: Limits) -> tuple[SpatialImage, str]:
    """Open the image at ``path`` without reading its voxels; also return its printable name."""
    filename = _printable(os.fspath(path))
    path = Path(path)
    try:
        status = path.stat()
    except FileNotFoundError:
        raise VolumeError(f"{filename}: no such file") from None
    except OSError as error:
        raise VolumeError(f"{filename}: cannot be read ({_reason(error)})") from None
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
        raise VolumeError(f"{filename}: not a readable image ({_reason(error)})") from None
    return image, filename


def _open_bytes(content: bytes, filename: str, limits: Limits) -> tuple[SpatialImage, str]:
    """Parse the header of an in-memory image; also return the file's printable base name."""
    filename = _printable(re.split(r"[/\\]", filename)[-1]) or "upload"
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
        image = image_class.from_stream(stream) if image_class else None
    except Exception as error:  # gzip, zlib and nibabel raise many types for bad content
        raise VolumeError(f"{filename}: not a readable image ({_reason(error)})") from None
    if image is None:
        raise VolumeError(f"{filename}: not a readable image (not NIfTI-1, NIfTI-2 or MGH)")
    return image, filename


def _image_class(head: bytes) -> type[SpatialImage] | None:
    """The single-file image type whose magic bytes start ``head``, if any."""
    for image_class, (offset, magic) in (
        (nib.Nifti1Image, _NIFTI1_MAGIC),
        (nib.Nifti2Image, _NIFTI2_MAGIC),
    ):
        if head[offset : offset + len(magic)] == magic:
            return image_class
    return nib.MGHImage if head.startswith(_MGH_VERSION) else None


def _volume_from_image(
    image: SpatialImage, filename: str, volume_index: int, limits: Limits
) -> Volume:
    """Check an opened image, then read one 3D volume of it as float32 in display order."""
    shape = _significant_shape(image, filename)
    if len(shape) > 4:
        raise VolumeError(f"{filename}: expected a 3D or 4D image, got shape {shape}")
    if min(shape[:3]) < 2:
        raise VolumeError(
            f"{filename}: an image of shape {shape} is too thin to annotate; "
            "it needs at least 2 voxels along every axis"
        )
    limits.check_voxels(shape[:3], filename)
    _check_voxel_type(image, filename)
    _check_affine(image.affine, filename)
    volume_count = shape[3] if len(shape) == 4 else 1
    if not 0 <= volume_index < volume_count:
        raise VolumeError(
            f"{filename}: there is no volume {volume_index}; the image has {volume_count} "
            f"volume{'s' if volume_count > 1 else ''}, numbered from 0"
        )
    notes = []
    if volume_count > 1:
        notes.append(
            f"{filename}: 4D image with {volume_count} volumes (0 to {volume_count - 1}), "
            f"showing volume {volume_index}"
        )
    # Kept in the file's type until reordered, so that only one float32 copy is made.
    array = _read_voxels(image, filename, volume_index)
    non_finite = 0
    if array.dtype.kind == "f":
        non_finite = array.size - int(np.count_nonzero(np.isfinite(array)))
    if non_finite == array.size:
        raise VolumeError(f"{filename}: every voxel is NaN or infinite")
    if non_finite:
        finite = np.isfinite(array)
        lowest = array[finite].min()
        array = np.where(finite, array, lowest)
        notes.append(
            f"{filename}: {non_finite:,} NaN or infinite voxels were set to the lowest "
            f"value, {lowest:g}"
        )
    if array.min() == array.max():
        raise VolumeError(f"{filename}: every voxel is {array.flat[0]:g}; nothing to annotate")
    volume = Volume.from_source_array(array, image.affine, name=image_stem(filename))
    return replace(volume, notes=tuple(notes))


def _labels_from_image(image: SpatialImage, filename: str, volume: Volume) -> np.ndarray:
    """Check an opened label image against ``volume``, then read it as uint8 in display order."""
    shape = _significant_shape(image, filename)
    if len(shape) != 3:
        raise VolumeError(f"{filename}: a segmentation must be a 3D image, got shape {shape}")
    _check_voxel_type(image, filename)
    _check_affine(image.affine, filename)
    _check_same_grid(
        filename, image.affine, shape, f"the scan {volume.name}", volume.affine, volume.source_shape
    )
    labels = _read_voxels(image, filename, 0)
    if labels.dtype.kind == "f":
        if not np.isfinite(labels).all():
            raise VolumeError(f"{filename}: holds NaN or infinite values, not labels")
        fractional = labels[labels != np.round(labels)]
        if fractional.size:
            raise VolumeError(
                f"{filename}: holds non-integer values (such as {fractional[0]:g}), not labels"
            )
    lowest, highest = labels.min(), labels.max()
    if lowest < 0:
        raise VolumeError(f"{filename}: holds negative values (such as {lowest:g}), not labels")
    if highest > MAX_LABEL:
        raise VolumeError(
            f"{filename}: holds label {highest:g}; labels must be between 0 and {MAX_LABEL}"
        )
    source_ornt = orientations.io_orientation(image.affine)
    display = orientations.apply_orientation(labels.astype(np.uint8), _to_display(source_ornt))
    return np.ascontiguousarray(display)


def _significant_shape(image: SpatialImage, filename: str) -> tuple[int, ...]:
    """The image shape without trailing axes of length 1 beyond the third; at least 3D."""
    shape = tuple(int(length) for length in image.shape)
    while len(shape) > 3 and shape[-1] == 1:
        shape = shape[:-1]
    if len(shape) < 3:
        raise VolumeError(f"{filename}: expected a 3D image, got shape {shape}")
    return shape


def _check_voxel_type(image: SpatialImage, filename: str) -> None:
    dtype = image.get_data_dtype()
    if dtype.kind not in "biuf":
        raise VolumeError(f"{filename}: voxels of type {dtype} are not supported, only numbers")


def _check_affine(affine: np.ndarray, filename: str) -> None:
    linear = np.asarray(affine)[:3, :3]
    if not np.isfinite(affine).all() or abs(np.linalg.det(linear)) < 1e-12:
        raise VolumeError(
            f"{filename}: the voxel-to-world affine is degenerate (a voxel size of 0?)"
        )


def _check_same_grid(
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
    display_shape = _display_shape(source_shape, ornt)
    if display_shape != _display_shape(reference_shape, reference_ornt):
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
    corners = np.array(list(itertools.product(*[(0, length - 1) for length in display_shape])))
    corners = np.column_stack([corners, np.ones(len(corners))]).T
    world = _display_affine(affine, source_shape) @ corners
    reference_world = _display_affine(reference_affine, reference_shape) @ corners
    if not np.allclose(world, reference_world, rtol=0, atol=GRID_TOLERANCE_MM):
        distance = np.linalg.norm((world - reference_world)[:3], axis=0).max()
        raise VolumeError(
            f"{filename}: not on the voxel grid of {reference_name} (corners up to "
            f"{distance:.3g} mm apart); files must be co-registered and resampled alike"
        )


def _read_voxels(image: SpatialImage, filename: str, volume_index: int) -> np.ndarray:
    """The voxels of one 3D volume of ``image``, with the file's scaling applied."""
    # Axes beyond the fourth have length 1 (see _significant_shape).
    extra_axes = len(image.shape) - 3
    index = (slice(None),) * 3 + ((volume_index,) + (0,) * (extra_axes - 1))[:extra_axes]
    try:
        return np.asarray(image.dataobj[index])
    except Exception as error:  # truncated data surfaces as EOFError, OSError or ValueError
        raise VolumeError(
            f"{filename}: the voxel data cannot be read, the file may be truncated "
            f"({_reason(error)})"
        ) from None


def _to_display(source_ornt: np.ndarray) -> np.ndarray:
    return orientations.ornt_transform(source_ornt, _DISPLAY_ORNT)


def _display_shape(source_shape: Sequence[int], source_ornt: np.ndarray) -> tuple[int, ...]:
    display = [0, 0, 0]
    for source_axis, (display_axis, _) in enumerate(_to_display(source_ornt)):
        display[int(display_axis)] = int(source_shape[source_axis])
    return tuple(display)


def _display_affine(affine: np.ndarray, source_shape: Sequence[int]) -> np.ndarray:
    """The voxel-to-world affine of an image once reordered into display order."""
    to_display = _to_display(orientations.io_orientation(affine))
    return np.asarray(affine) @ orientations.inv_ornt_aff(to_display, tuple(source_shape))


def _file_size(size: int) -> str:
    """A size in bytes as decimal GB, MB or kB (the units of file managers and the CLI)."""
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if size >= scale:
            return f"{size / scale:.1f} {unit}"
    return f"{size} bytes"


def _printable(text: str) -> str:
    """``text`` with line breaks and other unprintable characters replaced by ``?``."""
    return "".join(char if char.isprintable() else "?" for char in text)


def _reason(error: BaseException) -> str:
    """A one-line description of an exception raised while reading a file."""
    if isinstance(error, OSError) and error.strerror:
        return error.strerror
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__
