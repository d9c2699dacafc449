"""Label maps as DICOM Segmentations (SEG) of the DICOM series they were drawn on.

:func:`write_dicom_seg` writes a binary SEG with highdicom: segment ``n`` holds the voxels
of label ``n``, for ``n`` from 1 to the largest label drawn (the standard numbers segments
1, 2, 3... without gaps, and keeping segment number and label value equal lets any reader,
this one included, give the labels back without a label table); labels not drawn are
empty segments, without frames. Each frame references the source slice it lies on.

:func:`read_dicom_seg` reads a binary SEG of the series back onto the volume's grid. It
reads the header first and checks its type, series, frame of reference, grid and sizes
before any pixel data; frames are unpacked one at a time. Every refusal is a
:class:`.VolumeError` with a one-line message naming the file; patient fields are never used.
"""

from __future__ import annotations

import io
import math
import os
from collections.abc import Sequence
from copy import deepcopy
from importlib import metadata
from pathlib import Path

import highdicom as hd
import numpy as np
import pydicom
from nibabel import orientations
from pydicom.sr.codedict import codes
from pydicom.uid import SegmentationStorage

from .image_files import (
    DEFAULT_LIMITS,
    Limits,
    VolumeError,
    display_transform,
    error_line,
    is_dicom_content,
    printable,
)
from .label_tables import LABEL_COLORS
from .palette import MAX_LABEL, LabelClass, hex_to_rgb
from .volume import Volume

# A frame lies on a slice when its position is within this fraction of the smallest
# voxel spacing of the slice's, and its orientation within this of the series'.
POSITION_TOLERANCE = 0.1
ORIENTATION_TOLERANCE = 1e-4
SEG_SERIES_NUMBER = 1000
# SCT codes for segment names holding these words (lower case), checked in this order; the
# category of all of them is "Morphologically Abnormal Structure".
_NAMED_TYPES = (
    ("necro", codes.SCT.Necrosis),
    ("oedema", codes.SCT.Edema),
    ("edema", codes.SCT.Edema),
    ("tumo", codes.SCT.Neoplasm),
    ("neoplas", codes.SCT.Neoplasm),
    ("enhancing", codes.SCT.Neoplasm),
    ("lesion", codes.SCT.Lesion),
)
# Patient and study attributes highdicom copies from the source, which anonymised series
# may lack; they are written empty then.
_COPIED_ATTRIBUTES = (
    "PatientID",
    "PatientName",
    "PatientBirthDate",
    "PatientSex",
    "AccessionNumber",
    "StudyID",
    "StudyDate",
    "StudyTime",
)


NOTE_CREATOR = "superpixel-annotator"
"""The private creator of the element that holds the annotator's note in a SEG."""
_NOTE_GROUP = 0x0071
_NOTE_ELEMENT = 0x01


def default_label_class(value: int) -> LabelClass:
    """The label class of a value missing from the label table: ``Label N``, a palette colour."""
    return LabelClass(value, f"Label {value}", LABEL_COLORS[(value - 1) % len(LABEL_COLORS)])


def write_dicom_seg(
    volume: Volume,
    labels: np.ndarray,
    path: str | os.PathLike,
    label_classes: Sequence[LabelClass] = (),
    note: bytes | None = None,
) -> None:
    """Write a label map as a binary DICOM SEG referencing the volume's DICOM series.

    Parameters
    ----------
    volume : Volume
        A volume read from a DICOM series (with ``dicom_headers``).
    labels : ndarray of int, shape ``volume.data.shape``
        Label values from 0 (background) to :data:`MAX_LABEL`, in display order.
    path : str or path-like
        The file written.
    label_classes : sequence of LabelClass
        Segment names and colours (recommended display CIELab) by label value; a value
        missing from it is named ``Label N`` (:func:`default_label_class`).
    note : bytes, optional
        The annotator's own data (the superpixel marks behind the labels), stored in a
        private element that other readers ignore (see :data:`NOTE_CREATOR`).

    Raises
    ------
    VolumeError
        When the volume was not read from DICOM.
    ValueError
        When ``labels`` do not fit the volume, hold no label or values out of range.
    """
    headers = _source_headers(volume, printable(os.fspath(path)))
    labels = np.asarray(labels)
    if labels.shape != volume.data.shape:
        raise ValueError(f"labels have shape {labels.shape}, expected {volume.data.shape}")
    highest = int(labels.max(initial=0))
    if highest == 0 or labels.min(initial=0) < 0 or highest > MAX_LABEL:
        raise ValueError(f"labels must be from 0 to {MAX_LABEL}, with one above 0")
    classes = {label.value: label for label in label_classes}
    descriptions = [
        _segment_description(classes.get(value) or default_label_class(value))
        for value in range(1, highest + 1)
    ]
    # Source order [column, row, slice] to frames [slice, row, column].
    frames = volume.to_source(labels.astype(np.uint8, copy=False)).T
    first = deepcopy(headers[0])
    for keyword in _COPIED_ATTRIBUTES:
        if keyword not in first:
            setattr(first, keyword, None)
    segmentation = hd.seg.Segmentation(
        source_images=[first, *headers[1:]],
        pixel_array=frames,
        segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
        segment_descriptions=descriptions,
        series_instance_uid=hd.UID(),
        series_number=SEG_SERIES_NUMBER,
        sop_instance_uid=hd.UID(),
        instance_number=1,
        manufacturer="superpixel-annotator",
        manufacturer_model_name="superpixel-annotator",
        software_versions=metadata.version("superpixel-annotator"),
        device_serial_number="none",
        content_description="Labels drawn in the superpixel annotator",
        specific_character_set="ISO_IR 192",
    )
    if note is not None:
        block = segmentation.private_block(_NOTE_GROUP, NOTE_CREATOR, create=True)
        block.add_new(_NOTE_ELEMENT, "OB", note)
    segmentation.save_as(path, enforce_file_format=True)


def read_dicom_seg(
    source: bytes | str | os.PathLike,
    volume: Volume,
    *,
    filename: str | None = None,
    limits: Limits = DEFAULT_LIMITS,
) -> tuple[np.ndarray, bytes | None]:
    """Read a binary DICOM SEG of the volume's series as a label map.

    Segment ``n`` becomes label ``n``; where segments overlap, the one whose frame comes
    last in the file wins. A frame is put on the source slice it references by SOP Instance
    UID or, without such a reference, on the slice at its plane position.

    Parameters
    ----------
    source : bytes, str or path-like
        The SEG file's content, or its path.
    volume : Volume
        A volume read from a DICOM series (with ``dicom_headers``).
    filename : str, optional
        The file's name for messages; default: ``source`` when it is a path.
    limits : Limits
        The largest file accepted.

    Returns
    -------
    labels : ndarray of uint8
        The labels in display order, ``volume.data.shape``.
    note : bytes or None
        The ``note`` :func:`write_dicom_seg` stored, if any.

    Raises
    ------
    VolumeError
        With a one-line message naming the file when it is not a DICOM file, not a binary
        SEG, a SEG of another series or frame of reference or grid, damaged, or over
        ``limits``.
    """
    if isinstance(source, bytes):
        name = printable(filename or "segmentation")
    else:
        name = printable(filename or os.fspath(source))
        source = _read_file(Path(source), name, limits)
    headers = _source_headers(volume, name)
    limits.check_size(len(source), name)
    if not is_dicom_content(source):
        raise VolumeError(f"{name}: not a DICOM file (no DICM marker after the preamble)")
    try:
        frame_count = _check_header(_parse(source, name, True), headers, name)
        dataset = _parse(source, name, False)
        slice_of_frame = _frame_slices(dataset, headers, frame_count, name)
    except VolumeError:
        raise
    except Exception as error:  # values pydicom cannot convert raise many types
        raise VolumeError(f"{name}: a damaged DICOM header ({error_line(error)})") from None
    rows, columns = int(headers[0].Rows), int(headers[0].Columns)
    packed = np.frombuffer(dataset.get("PixelData") or b"", np.uint8)
    pixels = rows * columns
    if packed.size < math.ceil(frame_count * pixels / 8):
        raise VolumeError(f"{name}: the pixel data is shorter than its {frame_count} frames")
    labels = np.zeros((columns, rows, len(headers)), np.uint8)  # source order
    for index, (segment, k) in enumerate(slice_of_frame):
        start = index * pixels
        bits = np.unpackbits(
            packed[start // 8 : math.ceil((start + pixels) / 8)], bitorder="little"
        )
        mask = bits[start % 8 : start % 8 + pixels].reshape(rows, columns).astype(bool)
        labels[:, :, k].T[mask] = segment
    display = orientations.apply_orientation(labels, display_transform(volume.source_ornt))
    return np.ascontiguousarray(display), _note(dataset)


def _note(dataset: pydicom.Dataset) -> bytes | None:
    """The value of the annotator's private element, when the SEG has one."""
    try:
        value = dataset.private_block(_NOTE_GROUP, NOTE_CREATOR)[_NOTE_ELEMENT].value
    except KeyError:
        return None
    # An OB value is padded with a NUL byte to an even length.
    return bytes(value).rstrip(b"\0") if isinstance(value, bytes) else None


def _source_headers(volume: Volume, name: str) -> tuple[pydicom.Dataset, ...]:
    if not volume.dicom_headers:
        raise VolumeError(
            f"{name}: a DICOM SEG needs a scan read from DICOM; {volume.name} was not "
            "(save it as .nii.gz)"
        )
    return volume.dicom_headers


def _segment_description(label: LabelClass) -> hd.seg.SegmentDescription:
    """Segment ``label.value``: its name, colour and a coded category and type."""
    lowered = label.name.lower()
    coded = [code for word, code in _NAMED_TYPES if word in lowered]
    category = codes.SCT.MorphologicallyAbnormalStructure if coded else codes.SCT.Tissue
    return hd.seg.SegmentDescription(
        segment_number=label.value,
        segment_label=label.name,
        segmented_property_category=category,
        segmented_property_type=coded[0] if coded else codes.SCT.Tissue,
        algorithm_type=hd.seg.SegmentAlgorithmTypeValues.MANUAL,
        display_color=hd.color.CIELabColor.from_rgb(*hex_to_rgb(label.color)),
    )


def _read_file(path: Path, name: str, limits: Limits) -> bytes:
    try:
        limits.check_size(path.stat().st_size, name)
        return path.read_bytes()
    except FileNotFoundError:
        raise VolumeError(f"{name}: no such file") from None
    except OSError as error:
        raise VolumeError(f"{name}: cannot be read ({error.strerror or error})") from None


def _parse(content: bytes, name: str, stop_before_pixels: bool) -> pydicom.Dataset:
    try:
        return pydicom.dcmread(io.BytesIO(content), stop_before_pixels=stop_before_pixels)
    except Exception as error:  # pydicom raises many types for malformed files
        raise VolumeError(f"{name}: not a readable DICOM file ({error_line(error)})") from None


def _check_header(dataset: pydicom.Dataset, headers: Sequence[pydicom.Dataset], name: str) -> int:
    """Refuse a header that is not of a binary SEG on the series' grid; the frame count."""
    sop_class = dataset.get("SOPClassUID")
    if sop_class != SegmentationStorage:
        kind = printable(pydicom.uid.UID(str(sop_class or "")).name) or "unknown"
        raise VolumeError(f"{name}: a DICOM object of type {kind}, not a Segmentation (SEG)")
    if dataset.get("SegmentationType") != "BINARY":
        raise VolumeError(
            f"{name}: a {printable(str(dataset.get('SegmentationType')))} segmentation; "
            "only BINARY ones are read"
        )
    if dataset.file_meta.get("TransferSyntaxUID", pydicom.uid.ExplicitVRLittleEndian).is_compressed:
        raise VolumeError(f"{name}: compressed pixel data is not supported")
    if dataset.get("FrameOfReferenceUID") != headers[0].get("FrameOfReferenceUID"):
        raise VolumeError(f"{name}: a SEG of another frame of reference, not of this scan")
    series = {item.get("SeriesInstanceUID") for item in dataset.get("ReferencedSeriesSequence", [])}
    if series and headers[0].SeriesInstanceUID not in series:
        raise VolumeError(f"{name}: a SEG of another series, not of this scan")
    grid = (dataset.get("Rows"), dataset.get("Columns"), dataset.get("BitsAllocated"))
    if grid != (headers[0].Rows, headers[0].Columns, 1):
        raise VolumeError(
            f"{name}: frames of {grid[0]}x{grid[1]} pixels, {grid[2]} bits; the scan's slices "
            f"have {headers[0].Rows}x{headers[0].Columns} pixels (1 bit expected)"
        )
    numbers = [item.get("SegmentNumber") for item in dataset.get("SegmentSequence", [])]
    if not numbers or not all(isinstance(n, int) and 1 <= n <= MAX_LABEL for n in numbers):
        raise VolumeError(f"{name}: segments must be numbered from 1 to {MAX_LABEL}")
    frames = dataset.get("NumberOfFrames")
    if not isinstance(frames, int) or not 0 < frames <= len(numbers) * len(headers):
        raise VolumeError(
            f"{name}: {printable(str(frames))} frames; at most {len(numbers) * len(headers)} "
            f"fit {len(numbers)} segments of {len(headers)} slices"
        )
    return frames


def _frame_slices(
    dataset: pydicom.Dataset, headers: Sequence[pydicom.Dataset], frame_count: int, name: str
) -> list[tuple[int, int]]:
    """For each frame, its segment number and the index of the source slice it lies on.

    The slice is the one the frame references, else the nearest; either way the frame's
    orientation, pixel spacing and position must be the slice's."""
    per_frame = dataset.get("PerFrameFunctionalGroupsSequence", [])
    if len(per_frame) != frame_count:
        raise VolumeError(f"{name}: {len(per_frame)} frame descriptions for {frame_count} frames")
    shared = dataset.get("SharedFunctionalGroupsSequence", [pydicom.Dataset()])[0]
    slice_of_uid = {header.SOPInstanceUID: k for k, header in enumerate(headers)}
    positions = np.array([_floats(header.ImagePositionPatient, 3) for header in headers])
    orientation = _floats(headers[0].ImageOrientationPatient, 6)
    spacing = _floats(headers[0].PixelSpacing, 2)
    steps = np.linalg.norm(np.diff(positions, axis=0), axis=1)
    tolerance = POSITION_TOLERANCE * min(*spacing, *steps)
    result = []
    for index, frame in enumerate(per_frame):
        where = f"{name}: frame {index + 1}"
        try:
            segment = int(
                _group(frame, shared, "SegmentIdentificationSequence").ReferencedSegmentNumber
            )
            plane = _floats(
                _group(frame, shared, "PlaneOrientationSequence").ImageOrientationPatient, 6
            )
            measures = _floats(_group(frame, shared, "PixelMeasuresSequence").PixelSpacing, 2)
            position = _floats(
                _group(frame, shared, "PlanePositionSequence").ImagePositionPatient, 3
            )
        except (AttributeError, IndexError, KeyError, TypeError, ValueError):
            raise VolumeError(f"{where} has no valid segment, orientation or position") from None
        if not 1 <= segment <= MAX_LABEL:
            raise VolumeError(f"{where} is of segment {segment}; segments are 1 to {MAX_LABEL}")
        if np.abs(plane - orientation).max() > ORIENTATION_TOLERANCE or not np.allclose(
            measures, spacing, rtol=POSITION_TOLERANCE / 10
        ):
            raise VolumeError(f"{where} is not on the grid of the scan's slices")
        referenced = [
            slice_of_uid[source.get("ReferencedSOPInstanceUID")]
            for derivation in frame.get("DerivationImageSequence", [])
            for source in derivation.get("SourceImageSequence", [])
            if source.get("ReferencedSOPInstanceUID") in slice_of_uid
        ]
        distances = np.linalg.norm(positions - position, axis=1)
        k = referenced[0] if referenced else int(np.argmin(distances))
        if distances[k] > tolerance:
            raise VolumeError(f"{where} does not lie on its slice of the scan")
        result.append((segment, k))
    return result


def _floats(value, count: int) -> np.ndarray:
    """``count`` finite numbers of a DICOM value; ValueError otherwise."""
    numbers = np.array([float(item) for item in value], dtype=float)
    if numbers.shape != (count,) or not np.isfinite(numbers).all():
        raise ValueError(f"expected {count} numbers")
    return numbers


def _group(frame: pydicom.Dataset, shared: pydicom.Dataset, keyword: str) -> pydicom.Dataset:
    """A functional group's first item, from the frame's groups or else the shared ones."""
    return (frame.get(keyword) or shared.get(keyword))[0]
