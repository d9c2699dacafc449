"""Writing DICOM series with pydicom, one file per slice, for the DICOM reading tests."""

from __future__ import annotations

import random
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import (
    CTImageStorage,
    ExplicitVRLittleEndian,
    MRImageStorage,
    generate_uid,
)
from pydicom.valuerep import DSfloat

from superpixel_annotator.web.app import sample_path

PATIENT_NAME = "Doe^Jane"
# RAS (nibabel) and LPS (DICOM) world coordinates differ by the sign of x and y.
RAS_TO_LPS = np.diag([-1.0, -1.0, 1.0, 1.0])


def phantom_image() -> tuple[np.ndarray, np.ndarray]:
    """The bundled phantom's voxels (in its file's order) and RAS affine, to write as a
    series."""
    image = nib.load(sample_path())
    return np.asarray(image.dataobj), image.affine


def decimal_strings(values) -> list[DSfloat]:
    """Values as DICOM decimal strings, rounded to fit the 16 characters DS allows."""
    return [DSfloat(float(value), auto_format=True) for value in values]


def write_series(
    folder: Path,
    volume_array: np.ndarray,
    affine_ras: np.ndarray,
    *,
    description: str = "T1 AX",
    modality: str = "MR",
    slope: float = 1.0,
    intercept: float = 0.0,
    shuffle_names: bool = True,
    series_uid: str | None = None,
    patient_id: str = "JD-1234",
    seed: int = 0,
) -> list[Path]:
    """Write ``volume_array`` (RAS affine ``affine_ras``) as a series of single-frame files.

    Slice ``k`` is ``volume_array[:, :, k]``: its DICOM columns follow the array's axis 0
    (the row direction cosine is the affine's first column), its rows axis 1. Stored values
    are ``round((value - intercept) / slope)`` as signed 16-bit integers. With
    ``shuffle_names`` the file names are random and carry no order, and InstanceNumber is
    shuffled too, so that a reader can only order the slices by position.

    Returns
    -------
    list of Path
        The files, in slice order.
    """
    folder.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    affine_lps = RAS_TO_LPS @ np.asarray(affine_ras, dtype=float)
    zooms = np.linalg.norm(affine_lps[:3, :3], axis=0)
    cosines = affine_lps[:3, :2] / zooms[:2]
    stored = np.round((np.asarray(volume_array, dtype=float) - intercept) / slope)
    stored = stored.astype(np.int16)
    series_uid = series_uid or generate_uid()
    study_uid, frame_uid = generate_uid(), generate_uid()
    slices = stored.shape[2]
    instance_numbers = list(range(1, slices + 1))
    if shuffle_names:
        rng.shuffle(instance_numbers)
    paths = []
    for k in range(slices):
        dataset = _slice_dataset(modality, stored[:, :, k].T)
        dataset.update(
            {
                "PatientName": PATIENT_NAME,
                "PatientID": patient_id,
                "PatientBirthDate": "19700101",
                "StudyInstanceUID": study_uid,
                "SeriesInstanceUID": series_uid,
                "FrameOfReferenceUID": frame_uid,
                "SeriesDescription": description,
                "InstanceNumber": instance_numbers[k],
                "ImageOrientationPatient": decimal_strings(cosines.T.ravel()),
                "ImagePositionPatient": decimal_strings((affine_lps @ [0, 0, k, 1])[:3]),
                "PixelSpacing": decimal_strings([zooms[1], zooms[0]]),
                "SliceThickness": DSfloat(float(zooms[2]), auto_format=True),
                "RescaleSlope": DSfloat(slope, auto_format=True),
                "RescaleIntercept": DSfloat(intercept, auto_format=True),
            }
        )
        name = f"{rng.getrandbits(64):016x}" if shuffle_names else f"slice{k:04d}.dcm"
        paths.append(folder / name)
        dataset.save_as(paths[-1], enforce_file_format=True)
    return paths


def _slice_dataset(modality: str, pixels: np.ndarray) -> Dataset:
    """A CT or MR Image Storage dataset holding ``pixels`` (rows, columns), int16."""
    sop_class = CTImageStorage if modality == "CT" else MRImageStorage
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_class
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    dataset = Dataset()
    dataset.file_meta = meta
    dataset.SOPClassUID = sop_class
    dataset.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    dataset.Modality = modality
    dataset.SamplesPerPixel = 1
    dataset.PhotometricInterpretation = "MONOCHROME2"
    dataset.Rows, dataset.Columns = pixels.shape
    dataset.BitsAllocated = 16
    dataset.BitsStored = 16
    dataset.HighBit = 15
    dataset.PixelRepresentation = 1
    dataset.PixelData = np.ascontiguousarray(pixels, dtype="<i2").tobytes()
    return dataset


def edit_file(path: Path, **elements) -> None:
    """Change data elements of one written file in place (``None`` deletes one)."""
    dataset = pydicom.dcmread(path)
    for keyword, value in elements.items():
        if value is None:
            delattr(dataset, keyword)
        else:
            setattr(dataset, keyword, value)
    dataset.save_as(path, enforce_file_format=True)


def seg_source_labels(seg_path: Path, source_files: list[Path]) -> np.ndarray:
    """The labels a DICOM SEG gives each voxel of its source series, read by highdicom by
    the source instance each frame references: ``[column, row, k]`` for ``source_files[k]``,
    as :func:`write_series` lays out its array (segment number n is label n)."""
    import highdicom as hd

    seg = hd.seg.segread(seg_path)
    uids = [pydicom.dcmread(path, stop_before_pixels=True).SOPInstanceUID for path in source_files]
    numbers = [int(segment.SegmentNumber) for segment in seg.SegmentSequence]
    by_source = seg.get_pixels_by_source_instance(uids, segment_numbers=numbers)
    labels = np.zeros(by_source.shape[:3], np.uint8)
    for channel, number in enumerate(numbers):
        labels[by_source[..., channel] > 0] = number
    return labels.transpose(2, 1, 0)
