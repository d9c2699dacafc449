"""Reading scans into display orientation.

Every array the rest of the package sees is in *display order*: axis 0 runs
superior to inferior (axial slices, top of the head first), axis 1 anterior to
posterior and axis 2 from the patient's right to left. Shown with row 0 on top,
that puts anterior up in axial views, superior up in coronal and sagittal views
and the patient's right on the viewer's left (radiological convention).

Files come from a path (:func:`load_volume`) or, for uploads, from bytes held in memory
(:func:`read_volume_bytes`). Both are checked the same way (:mod:`.image_files`); every
refusal is a :class:`VolumeError` whose one-line message names the file and the problem.
Label maps are read and written by :mod:`.segmentation_io`.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from nibabel import orientations
from nibabel.spatialimages import SpatialImage

from .image_files import (
    DEFAULT_LIMITS,
    DISPLAY_ORNT,
    Limits,
    VolumeError,
    check_affine,
    check_same_grid,
    check_voxel_type,
    display_affine,
    display_transform,
    open_image_bytes,
    open_image_path,
    printable,
    read_voxels,
    significant_shape,
)

if TYPE_CHECKING:
    from pydicom import Dataset

_NIFTI_SUFFIXES = (".nii.gz", ".nii", ".mgz", ".mgh", ".img", ".hdr")


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
    dicom_headers : tuple of pydicom.Dataset
        For a volume read from a DICOM series, its slices' headers (no pixel data, no
        private attributes) in source order, slice ``k`` being ``source[:, :, k]``: what a
        DICOM SEG needs to reference the series. Empty for other volumes.
    """

    data: np.ndarray
    spacing: tuple[float, float, float]
    affine: np.ndarray
    source_ornt: np.ndarray
    name: str
    notes: tuple[str, ...] = ()
    # Not in repr: the headers name the patient.
    dicom_headers: tuple[Dataset, ...] = field(default=(), repr=False)

    @classmethod
    def from_source_array(
        cls, array: np.ndarray, affine: np.ndarray, name: str = "volume"
    ) -> Volume:
        """Build a volume from an array in source order and its affine."""
        source_ornt = orientations.io_orientation(affine)
        data = orientations.apply_orientation(np.asarray(array), display_transform(source_ornt))
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
        """Reorder an array of ``data.shape`` from display order to source order.

        The copy is Fortran-ordered, the order in which NIfTI files store voxels: it is
        made in the display array's own memory order (a flip and a transpose of the axes
        of a C-ordered array), several times faster than a C-ordered copy.
        """
        to_source = orientations.ornt_transform(DISPLAY_ORNT, self.source_ornt)
        return np.ascontiguousarray(orientations.apply_orientation(array, to_source).T).T

    @property
    def source_shape(self) -> tuple[int, ...]:
        """The shape of the volume as stored in its file."""
        display_axis = display_transform(self.source_ornt)[:, 0].astype(int)
        return tuple(self.data.shape[axis] for axis in display_axis)

    @cached_property
    def display_affine(self) -> np.ndarray:
        """The voxel-to-world affine of ``data`` (display order), shape (4, 4)."""
        return display_affine(self.affine, self.source_shape)

    @cached_property
    def content_hash(self) -> str:
        """A digest of the intensities, spacing and affine, and for a volume read from
        DICOM its instances' SOP Instance UIDs, for cache keys: a DICOM series and a file
        of the same voxels are different scans (only the series has a DICOM SEG)."""
        return self._content_hashes[0]

    @property
    def former_content_hash(self) -> str | None:
        """For a volume read from DICOM, its :attr:`content_hash` as it was before the UIDs
        counted, under which browsers may keep annotations of it; ``None`` for other
        volumes."""
        return self._content_hashes[1] if self.dicom_headers else None

    @cached_property
    def _content_hashes(self) -> tuple[str, str]:
        digest = hashlib.sha256()
        digest.update(str(self.data.shape).encode())
        digest.update(np.asarray(self.spacing).tobytes())
        digest.update(self.affine.tobytes())
        digest.update(memoryview(np.ascontiguousarray(self.data)).cast("B"))
        former = digest.hexdigest()[:32]
        for header in self.dicom_headers:
            digest.update(str(header.SOPInstanceUID).encode())
        return digest.hexdigest()[:32], former


def to_display_axes(source_ornt: np.ndarray) -> list[int]:
    """For each display axis, the index of the source axis it comes from."""
    source_axis_of_world = {int(world): axis for axis, (world, _) in enumerate(source_ornt)}
    return [source_axis_of_world[int(world)] for world, _ in DISPLAY_ORNT]


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
    image, filename = open_image_path(path, limits)
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
    image, filename = open_image_bytes(content, filename, limits)
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
    check_modalities(volumes, [printable(os.fspath(path)) for path in paths])
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
    names = [printable(name) for name in filenames] if filenames else [v.name for v in volumes]
    if len(names) != len(volumes):
        raise ValueError(f"{len(volumes)} volumes but {len(names)} file names")
    reference, reference_name = volumes[0], names[0]
    for volume, name in zip(volumes[1:], names[1:], strict=True):
        check_same_grid(
            name,
            volume.affine,
            volume.source_shape,
            reference_name,
            reference.affine,
            reference.source_shape,
        )


def _volume_from_image(
    image: SpatialImage, filename: str, volume_index: int, limits: Limits
) -> Volume:
    """Check an opened image, then read one 3D volume of it as float32 in display order."""
    shape = significant_shape(image, filename)
    if len(shape) > 4:
        raise VolumeError(f"{filename}: expected a 3D or 4D image, got shape {shape}")
    if min(shape[:3]) < 2:
        raise VolumeError(
            f"{filename}: an image of shape {shape} is too thin to annotate; "
            "it needs at least 2 voxels along every axis"
        )
    limits.check_voxels(shape[:3], filename)
    check_voxel_type(image, filename)
    check_affine(image.affine, filename)
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
    array = read_voxels(image, filename, volume_index)
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
