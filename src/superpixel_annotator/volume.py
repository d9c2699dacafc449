"""Reading volumes into display orientation and writing label maps back.

Every array the rest of the package sees is in *display order*: axis 0 runs
superior to inferior (axial slices, top of the head first), axis 1 anterior to
posterior and axis 2 from the patient's right to left. Shown with row 0 on top,
that puts anterior up in axial views, superior up in coronal and sagittal views
and the patient's right on the viewer's left (radiological convention).
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import nibabel as nib
import numpy as np
from nibabel import orientations

DISPLAY_AXCODES = ("I", "P", "L")
_DISPLAY_ORNT = orientations.axcodes2ornt(DISPLAY_AXCODES)
_NIFTI_SUFFIXES = (".nii.gz", ".nii", ".mgz", ".mgh", ".img", ".hdr")


class VolumeError(ValueError):
    """A file that cannot be used as a volume; the message names the file and the problem."""


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
        The source file name without its image suffix.
    """

    data: np.ndarray
    spacing: tuple[float, float, float]
    affine: np.ndarray
    source_ornt: np.ndarray
    name: str

    @classmethod
    def from_source_array(
        cls, array: np.ndarray, affine: np.ndarray, name: str = "volume"
    ) -> Volume:
        """Build a volume from an array in source order and its affine."""
        source_ornt = orientations.io_orientation(affine)
        to_display = orientations.ornt_transform(source_ornt, _DISPLAY_ORNT)
        data = orientations.apply_orientation(np.asarray(array, np.float32), to_display)
        zooms = np.sqrt((np.asarray(affine)[:3, :3] ** 2).sum(axis=0))
        spacing = tuple(float(zooms[int(axis)]) for axis in to_display_axes(source_ornt))
        return cls(
            data=np.ascontiguousarray(data),
            spacing=spacing,
            affine=np.asarray(affine, dtype=np.float64),
            source_ornt=source_ornt,
            name=name,
        )

    def to_source(self, array: np.ndarray) -> np.ndarray:
        """Reorder an array of ``data.shape`` from display order to source order."""
        to_source = orientations.ornt_transform(_DISPLAY_ORNT, self.source_ornt)
        return np.ascontiguousarray(orientations.apply_orientation(array, to_source))

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
    """The file name without its image suffix (``case.nii.gz`` -> ``case``)."""
    name = Path(path).name
    for suffix in _NIFTI_SUFFIXES:
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return Path(name).stem


def load_volume(path: str | os.PathLike) -> Volume:
    """Read a 3D image that nibabel understands into display order.

    Parameters
    ----------
    path : str or path-like
        A NIfTI (``.nii``, ``.nii.gz``) or other nibabel-readable 3D image.

    Returns
    -------
    Volume

    Raises
    ------
    VolumeError
        With a one-line message naming the file when it is not a usable 3D image.
    """
    path = Path(path)
    if not path.exists():
        raise VolumeError(f"{path}: no such file")
    if path.is_dir():
        raise VolumeError(f"{path}: is a directory, not an image file")
    try:
        image = nib.load(path)
        array = np.asarray(image.dataobj, dtype=np.float32)
    except Exception as error:  # nibabel raises many types for unreadable files
        reason = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise VolumeError(f"{path}: not a readable image ({reason})") from None
    if array.ndim == 4 and array.shape[3] == 1:
        array = array[..., 0]
    if array.ndim != 3:
        raise VolumeError(f"{path}: expected a 3D image, got shape {array.shape}")
    if min(array.shape) < 2:
        raise VolumeError(f"{path}: image of shape {array.shape} is too thin to annotate")
    if not np.isfinite(array).all():
        array = np.nan_to_num(array, nan=0.0, posinf=0.0, neginf=0.0)
    return Volume.from_source_array(array, image.affine, name=image_stem(path))


def save_segmentation(volume: Volume, labels: np.ndarray, path: str | os.PathLike) -> None:
    """Write a label map in the source file's orientation, shape and affine.

    Parameters
    ----------
    volume : Volume
        The volume the labels belong to.
    labels : ndarray of int, shape ``volume.data.shape``
        Label values in display order; 0 is background.
    path : str or path-like
        Output file, normally ``.nii.gz``.
    """
    labels = np.asarray(labels)
    if labels.shape != volume.data.shape:
        raise ValueError(f"labels have shape {labels.shape}, expected {volume.data.shape}")
    dtype = np.uint8 if labels.max(initial=0) < 256 else np.uint16
    image = nib.Nifti1Image(volume.to_source(labels.astype(dtype)), volume.affine)
    image.set_qform(volume.affine, code=1)
    image.set_sform(volume.affine, code=1)
    image.header.set_intent("label")
    nib.save(image, os.fspath(path))
