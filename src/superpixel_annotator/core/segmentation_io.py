"""Label maps: reading them back onto a scan's grid and saving them with its geometry.

A saved file carries each superpixel's marked label in a NIfTI comment extension that other
tools ignore, so that the annotator opens its own files back exactly. For a scan read from
a DICOM series, label maps are also written and read as DICOM SEG (:mod:`.dicom_seg`).
"""

from __future__ import annotations

import base64
import binascii
import os
import zlib
from collections.abc import Sequence
from dataclasses import dataclass

import nibabel as nib
import numpy as np
from isal import igzip
from nibabel import orientations
from nibabel.spatialimages import SpatialImage

from .image_files import (
    DEFAULT_LIMITS,
    Limits,
    VolumeError,
    check_affine,
    check_same_grid,
    check_voxel_type,
    display_transform,
    is_dicom_content,
    is_dicom_file,
    open_image_bytes,
    open_image_path,
    read_voxels,
    significant_shape,
)
from .palette import MAX_LABEL, LabelClass
from .volume import Volume

_MARKS_TAG = b"superpixel-annotator superpixel marks, int16, zlib, base64\n"
_COMMENT_EXTENSION = 6
# zlib's wrapper and block headers: compressed data is at most this much, and 1 %, larger
# than the data.
_ZLIB_OVERHEAD_BYTES = 64
_DICOM_SUFFIX = ".dcm"


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
    path: str | os.PathLike,
    volume: Volume,
    *,
    limits: Limits = DEFAULT_LIMITS,
    max_marks: int | None = None,
) -> Segmentation:
    """Read a label map drawn on ``volume`` (for instance one :func:`save_segmentation` wrote).

    Parameters
    ----------
    path : str or path-like
        A 3D image on the volume's voxel grid, in any axis order; or, for a volume read
        from DICOM, a DICOM SEG of its series (recognised by its content or a ``.dcm``
        name, see :func:`~.dicom_seg.read_dicom_seg`).
    volume : Volume
        The scan the labels belong to.
    limits : Limits
        The largest file accepted.
    max_marks : int, optional
        The most superpixel marks expected: the superpixel count + 1 (see
        :meth:`~superpixel_annotator.core.annotation.Annotation.marked_labels`); default: the
        volume's voxel count + 1. More marks than that count as none, and are never
        decompressed beyond it.

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
    if _is_dicom_path(path):
        from .dicom_seg import read_dicom_seg  # highdicom takes 0.7 s to import

        labels, note = read_dicom_seg(path, volume, limits=limits)
        return Segmentation(labels, _decoded_marks(note, _marks_cap(max_marks, volume)))
    image, filename = open_image_path(path, limits)
    labels = _labels_from_image(image, filename, volume)
    return Segmentation(labels, _superpixel_marks(image, _marks_cap(max_marks, volume)))


def read_segmentation_bytes(
    content: bytes,
    filename: str,
    volume: Volume,
    *,
    limits: Limits = DEFAULT_LIMITS,
    max_marks: int | None = None,
) -> Segmentation:
    """Read a label map held in memory, such as an upload; see :func:`read_segmentation`.

    ``content`` and ``filename`` are as for :func:`read_volume_bytes`; a DICOM SEG is
    recognised by its ``DICM`` marker or a ``.dcm`` name.
    """
    if is_dicom_content(content) or filename.lower().endswith(_DICOM_SUFFIX):
        from .dicom_seg import read_dicom_seg  # highdicom takes 0.7 s to import

        labels, note = read_dicom_seg(content, volume, filename=filename, limits=limits)
        return Segmentation(labels, _decoded_marks(note, _marks_cap(max_marks, volume)))
    image, filename = open_image_bytes(content, filename, limits)
    labels = _labels_from_image(image, filename, volume)
    return Segmentation(labels, _superpixel_marks(image, _marks_cap(max_marks, volume)))


def save_segmentation(
    volume: Volume,
    labels: np.ndarray,
    path: str | os.PathLike,
    superpixel_marks: np.ndarray | None = None,
    *,
    label_classes: Sequence[LabelClass] = (),
) -> None:
    """Write a label map in the source file's orientation, shape and affine.

    A path ending in ``.dcm`` gets a DICOM SEG of the volume's DICOM series
    (:func:`~.dicom_seg.write_dicom_seg`); other paths a NIfTI file.

    Parameters
    ----------
    volume : Volume
        The volume the labels belong to.
    labels : ndarray of int, shape ``volume.data.shape``
        Label values in display order; 0 is background.
    path : str or path-like
        Output file, normally ``.nii.gz``; ``.dcm`` for a volume read from DICOM.
    superpixel_marks : ndarray of int, optional
        The annotation behind the labels, one value per superpixel
        (:meth:`~superpixel_annotator.annotation.Annotation.marked_labels`), stored in a
        NIfTI comment extension (in a SEG, a private element) that other tools ignore, so
        that the annotator opens the file back exactly.
    label_classes : sequence of LabelClass
        For a SEG, the segments' names and colours by label value; values missing from it
        are named ``Label N``.

    Raises
    ------
    VolumeError
        For a ``.dcm`` path and a volume not read from DICOM.
    """
    labels = np.asarray(labels)
    if labels.shape != volume.data.shape:
        raise ValueError(f"labels have shape {labels.shape}, expected {volume.data.shape}")
    if os.fspath(path).lower().endswith(_DICOM_SUFFIX):
        from .dicom_seg import write_dicom_seg  # highdicom takes 0.7 s to import

        note = None if superpixel_marks is None else _encoded_marks(superpixel_marks)
        write_dicom_seg(volume, labels, path, label_classes, note)
        return
    dtype = np.uint8 if labels.dtype == np.uint8 or labels.max(initial=0) < 256 else np.uint16
    image = nib.Nifti1Image(volume.to_source(labels.astype(dtype, copy=False)), volume.affine)
    image.set_qform(volume.affine, code=1)
    image.set_sform(volume.affine, code=1)
    image.header.set_intent("label")
    if superpixel_marks is not None:
        content = _encoded_marks(superpixel_marks)
        image.header.extensions.append(nib.nifti1.Nifti1Extension(_COMMENT_EXTENSION, content))
    save_label_image(image, path)


def save_label_image(image: nib.Nifti1Image, path: str | os.PathLike) -> None:
    """Write a NIfTI image of integer voxels, the bytes nibabel would write.

    A ``.nii.gz`` file whose voxels are Fortran-ordered (see :meth:`Volume.to_source`) is
    written directly: the header, then the voxels as they lie in memory, compressed by
    ISA-L's gzip (level 1), which every gzip reader reads. For a 240x240x155 label map
    that takes about 5 ms, against 55 ms through nibabel's writer and zlib.
    """
    path = os.fspath(path)
    data = np.asanyarray(image.dataobj)
    if not (path.lower().endswith(".nii.gz") and data.flags.f_contiguous):
        nib.save(image, path)
        return
    image.update_header()
    image.header.set_slope_inter(1.0, 0.0)  # what nibabel writes for unscaled integers
    with igzip.open(path, "wb", compresslevel=1) as file:
        image.header.write_to(file)
        file.write(data.T.data)


def _is_dicom_path(path: str | os.PathLike) -> bool:
    """Whether ``path`` names a ``.dcm`` file or one that starts as a DICOM file."""
    # A file that cannot be opened is opened again, and the problem told, by the reader.
    return os.fspath(path).lower().endswith(_DICOM_SUFFIX) or is_dicom_file(path)


def _marks_cap(max_marks: int | None, volume: Volume) -> int:
    """The most marks to read: ``max_marks``, else one per voxel and one for id 0."""
    return volume.data.size + 1 if max_marks is None else max(int(max_marks), 0)


def _encoded_marks(superpixel_marks: np.ndarray) -> bytes:
    """Superpixel marks as :func:`save_segmentation` stores them: a tag, then base64 of
    zlib-compressed little-endian int16."""
    packed = zlib.compress(np.asarray(superpixel_marks, "<i2").tobytes(), 6)
    return _MARKS_TAG + base64.b64encode(packed)


def _superpixel_marks(image: SpatialImage, max_marks: int) -> np.ndarray | None:
    """The superpixel marks :func:`save_segmentation` stored in ``image``; None when there are
    none, more than ``max_marks``, or they cannot be decoded."""
    contents = [
        extension.get_content()
        for extension in getattr(image.header, "extensions", ())
        if extension.get_code() == _COMMENT_EXTENSION
    ]
    marked = [c for c in contents if isinstance(c, bytes) and c.startswith(_MARKS_TAG)]
    return _decoded_marks(marked[0], max_marks) if marked else None


def _decoded_marks(content: bytes | None, max_marks: int) -> np.ndarray | None:
    """The superpixel marks of :func:`_encoded_marks` ``content``; None when there is none,
    it holds more than ``max_marks``, or it cannot be decoded."""
    if not isinstance(content, bytes) or not content.startswith(_MARKS_TAG):
        return None
    encoded = content[len(_MARKS_TAG) :]
    max_raw = 2 * max_marks
    if len(encoded) // 4 * 3 > max_raw + max_raw // 100 + _ZLIB_OVERHEAD_BYTES:
        return None
    decompressor = zlib.decompressobj()
    try:
        raw = decompressor.decompress(base64.b64decode(encoded, validate=True), max_raw + 1)
    except (binascii.Error, zlib.error):
        return None
    if len(raw) > max_raw or not decompressor.eof or len(raw) % 2:
        return None
    return np.frombuffer(raw, "<i2").astype(np.int16)


def _labels_from_image(image: SpatialImage, filename: str, volume: Volume) -> np.ndarray:
    """Check an opened label image against ``volume``, then read it as uint8 in display order."""
    shape = significant_shape(image, filename)
    if len(shape) != 3:
        raise VolumeError(f"{filename}: a segmentation must be a 3D image, got shape {shape}")
    check_voxel_type(image, filename)
    check_affine(image.affine, filename)
    check_same_grid(
        filename, image.affine, shape, f"the scan {volume.name}", volume.affine, volume.source_shape
    )
    labels = read_voxels(image, filename, 0)
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
    display = orientations.apply_orientation(
        labels.astype(np.uint8), display_transform(source_ornt)
    )
    return np.ascontiguousarray(display)
