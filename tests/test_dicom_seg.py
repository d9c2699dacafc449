"""DICOM SEG of a DICOM series: written with highdicom, checked with pydicom and highdicom's
own reader, read back, and refused when it is not a SEG of the scan."""

import base64
import os

import dash
import highdicom as hd
import numpy as np
import pydicom
import pytest
from dicom_series import PATIENT_NAME, write_series
from pydicom.sr.codedict import codes
from scipy.spatial.transform import Rotation

from superpixel_annotator.core.annotation import Annotation
from superpixel_annotator.core.dicom import load_dicom_series
from superpixel_annotator.core.editing import EditSession
from superpixel_annotator.core.image_files import Limits, VolumeError
from superpixel_annotator.core.label_tables import BRATS_LABELS
from superpixel_annotator.core.palette import hex_to_rgb
from superpixel_annotator.core.segmentation_io import (
    read_segmentation,
    read_segmentation_bytes,
    save_segmentation,
)
from superpixel_annotator.core.volume import Volume
from superpixel_annotator.web.annotator import VolumeAnnotator
from superpixel_annotator.web.callbacks import panels
from superpixel_annotator.web.context import case_data
from superpixel_blocks import block_superpixels

IDENTIFYING = (PATIENT_NAME, "Doe", "Jane", "JD-1234", "19700101")
AFFINE = np.array([[1.0, 0, 0, -3.0], [0, 0.8, 0, 5.0], [0, 0, 2.5, -20.0], [0, 0, 0, 1.0]])
SHAPE = (16, 14, 8)  # the written array: [column, row, slice]
# Non-consecutive values: the SEG then holds an empty segment 3.
VALUES = (1, 2, 4)


def oblique(affine: np.ndarray) -> np.ndarray:
    turn = np.eye(4)
    axis = np.array([1, 2, 0.5]) / np.linalg.norm([1, 2, 0.5])
    turn[:3, :3] = Rotation.from_rotvec(np.radians(20) * axis).as_matrix()
    return turn @ affine


def source_labels(seed: int) -> np.ndarray:
    """Labels in the written array's order: boxes of each value, some slices left empty."""
    rng = np.random.default_rng(seed)
    labels = np.zeros(SHAPE, np.uint8)
    for value in VALUES:
        corner = rng.integers(0, [10, 8, 4])
        labels[corner[0] : corner[0] + 5, corner[1] : corner[1] + 6, corner[2] : corner[2] + 3] = (
            value
        )
    return labels


@pytest.fixture(scope="module", params=["axial", "oblique"])
def series(request, tmp_path_factory):
    """(volume, files in slice order, labels in the written order, labels in display order)."""
    folder = tmp_path_factory.mktemp(request.param)
    affine = AFFINE if request.param == "axial" else oblique(AFFINE)
    array = np.random.default_rng(1).integers(0, 900, SHAPE)
    files = write_series(folder, array, affine, description=request.param)
    volume = load_dicom_series(folder)
    labels = source_labels(seed=len(request.param))
    # What the loader's own source-to-display reordering gives, checked in test_dicom.
    display = Volume.from_source_array(labels, affine).data.astype(np.uint8)
    return volume, files, labels, display


def refusal(function, *args, **options) -> str:
    with pytest.raises(VolumeError) as caught:
        function(*args, **options)
    message = str(caught.value)
    assert "\n" not in message and not any(field in message for field in IDENTIFYING)
    return message


def test_volume_keeps_the_slice_headers_in_source_order(series):
    volume, files, _, _ = series
    uids = [pydicom.dcmread(path).SOPInstanceUID for path in files]
    assert [header.SOPInstanceUID for header in volume.dicom_headers] == uids
    assert "PixelData" not in volume.dicom_headers[0]
    assert PATIENT_NAME not in repr(volume)


def test_segments_reference_their_source_slices_and_hold_their_voxels(series, tmp_path):
    volume, files, labels, display = series
    path = tmp_path / "seg.dcm"
    save_segmentation(volume, display, path, label_classes=BRATS_LABELS)

    seg = pydicom.dcmread(path)
    source = pydicom.dcmread(files[0])
    assert seg.SOPClassUID == pydicom.uid.SegmentationStorage
    assert seg.SegmentationType == "BINARY"
    assert seg.FrameOfReferenceUID == source.FrameOfReferenceUID
    assert seg.ReferencedSeriesSequence[0].SeriesInstanceUID == source.SeriesInstanceUID
    assert seg.StudyInstanceUID == source.StudyInstanceUID
    uids = [pydicom.dcmread(file).SOPInstanceUID for file in files]
    frames = seg.pixel_array.reshape(-1, *seg.pixel_array.shape[-2:])
    seen = set()
    for frame, pixels in zip(seg.PerFrameFunctionalGroupsSequence, frames, strict=True):
        segment = frame.SegmentIdentificationSequence[0].ReferencedSegmentNumber
        referenced = frame.DerivationImageSequence[0].SourceImageSequence[0]
        k = uids.index(referenced.ReferencedSOPInstanceUID)
        np.testing.assert_array_equal(pixels, labels[:, :, k].T == segment)
        seen.add((segment, k))
    drawn = {(v, k) for v in VALUES for k in range(SHAPE[2]) if (labels[:, :, k] == v).any()}
    assert seen == drawn  # one frame per segment and slice with voxels, no other

    segments = seg.SegmentSequence
    assert [item.SegmentNumber for item in segments] == [1, 2, 3, 4]
    assert [item.SegmentLabel for item in segments] == [label.name for label in BRATS_LABELS]
    expected_types = [codes.SCT.Necrosis, codes.SCT.Edema, codes.SCT.Neoplasm, codes.SCT.Neoplasm]
    for item, label, expected in zip(segments, BRATS_LABELS, expected_types, strict=True):
        assert item.SegmentAlgorithmType == "MANUAL"
        assert item.SegmentedPropertyTypeCodeSequence[0].CodeValue == expected.value
        assert item.SegmentedPropertyCategoryCodeSequence[0].CodeValue == "49755003"
        lab = hd.color.CIELabColor.from_rgb(*hex_to_rgb(label.color)).value
        assert list(item.RecommendedDisplayCIELabValue) == list(lab)

    by_source = hd.seg.segread(path).get_pixels_by_source_instance(uids, segment_numbers=VALUES)
    for channel, value in enumerate(VALUES):
        np.testing.assert_array_equal(by_source[..., channel], labels.T == value)


def test_segmentation_round_trips_by_content_and_name(series, tmp_path):
    volume, _, _, display = series
    path = tmp_path / "labels.dcm"
    save_segmentation(volume, display, path)
    assert pydicom.dcmread(path).SegmentSequence[3].SegmentLabel == "Label 4"
    read = read_segmentation(path, volume)
    assert read.superpixel_marks is None and read.labels.dtype == np.uint8
    np.testing.assert_array_equal(read.labels, display)
    content = path.read_bytes()
    unnamed = read_segmentation_bytes(content, "upload", volume).labels
    np.testing.assert_array_equal(unnamed, display)
    renamed = tmp_path / "labels"
    renamed.write_bytes(content)
    np.testing.assert_array_equal(read_segmentation(renamed, volume).labels, display)


def test_frames_without_source_references_are_placed_by_position(series, tmp_path):
    volume, _, _, display = series
    path = tmp_path / "seg.dcm"
    save_segmentation(volume, display, path)
    seg = pydicom.dcmread(path)
    for frame in seg.PerFrameFunctionalGroupsSequence:
        del frame.DerivationImageSequence
    seg.save_as(path)
    np.testing.assert_array_equal(read_segmentation(path, volume).labels, display)

    position = seg.PerFrameFunctionalGroupsSequence[0].PlanePositionSequence[0]
    position.ImagePositionPatient = [float(v) + 0.7 for v in position.ImagePositionPatient]
    seg.save_as(path)
    assert "frame 1 does not lie on its slice" in refusal(read_segmentation, path, volume)


def test_seg_of_another_series_is_refused(series, tmp_path):
    volume, _, _, display = series
    other = load_dicom_series(write_series_folder(tmp_path / "other", seed=5))
    path = tmp_path / "other.dcm"
    save_segmentation(other, np.roll(display, 1, axis=0), path)
    message = refusal(read_segmentation, path, volume)
    assert message.startswith(str(path)) and "another frame of reference" in message

    seg = pydicom.dcmread(path)  # on this frame of reference, but of the other series
    seg.FrameOfReferenceUID = volume.dicom_headers[0].FrameOfReferenceUID
    seg.save_as(path)
    assert "another series" in refusal(read_segmentation, path, volume)


def write_series_folder(folder, seed):
    array = np.random.default_rng(seed).integers(0, 900, SHAPE)
    write_series(folder, array, AFFINE, description="other")
    return folder


def test_unusable_files_are_refused_in_one_line(series, tmp_path):
    volume, files, _, display = series
    assert "not a DICOM file" in refusal(
        read_segmentation_bytes, os.urandom(4000), "random.dcm", volume
    )
    image = files[0].read_bytes()
    assert "not a Segmentation" in refusal(read_segmentation_bytes, image, "x.dcm", volume)
    path = tmp_path / "seg.dcm"
    save_segmentation(volume, display, path)
    content = path.read_bytes()
    message = refusal(read_segmentation_bytes, content[: len(content) - 300], "cut.dcm", volume)
    assert message.startswith("cut.dcm: ")
    assert "limit" in refusal(
        read_segmentation_bytes, content, "big.dcm", volume, limits=Limits(max_bytes=1000)
    )
    seg = pydicom.dcmread(path)
    seg.NumberOfFrames = 10**6  # refused from the header, before any decoding
    seg.save_as(path)
    assert "10000" in refusal(read_segmentation, path, volume)


def test_a_volume_not_from_dicom_has_no_seg(series, tmp_path):
    volume, _, _, display = series
    nifti = Volume.from_source_array(volume.to_source(volume.data), volume.affine, "scan")
    message = refusal(save_segmentation, nifti, display, tmp_path / "x.dcm")
    assert "scan was not" in message and not (tmp_path / "x.dcm").exists()
    path = tmp_path / "seg.dcm"
    save_segmentation(volume, display, path)
    assert "needs a scan read from DICOM" in refusal(read_segmentation, path, nifti)


def test_download_offers_dicom_seg_for_a_dicom_scan(series, tmp_path):
    volume, _, _, _ = series
    superpixels = block_superpixels(shape=volume.data.shape, block=3)
    annotator = VolumeAnnotator(
        dash.Dash(__name__), volume, id="ann", superpixels=superpixels, cache_dir=tmp_path
    )
    annotation = Annotation(superpixels, annotator.initial_case.appearance)
    annotation.set_superpixel_labels(np.arange(superpixels.count + 1) % 3)
    state, shown = annotation.to_state(), case_data(annotator.initial_case)
    assert panels.seg_button_style(annotator.context, shown) == {}

    sent, message, is_open = panels.download(annotator.context, state, shown, dicom=True)
    assert sent["filename"] == f"{volume.name}_segmentation.dcm"
    assert message is dash.no_update and is_open is False
    content = base64.b64decode(sent["content"])
    seg = pydicom.dcmread(pydicom.filebase.DicomBytesIO(content))
    assert [item.SegmentLabel for item in seg.SegmentSequence] == ["Tumour", "Oedema"]
    expected = annotation.label_volume()
    np.testing.assert_array_equal(read_segmentation_bytes(content, "x", volume).labels, expected)

    # The marks behind the labels travel in a private element: the SEG opens back exactly.
    session = EditSession(annotator.initial_case, None, annotator.context.label_values)
    _, text = session.open_segmentation(content, sent["filename"], Limits())
    assert "matches the superpixels exactly" in text
    np.testing.assert_array_equal(session.annotation.marked_labels(), annotation.marked_labels())
    np.testing.assert_array_equal(session.annotation.label_volume(), expected)

    nifti, _, _ = panels.download(annotator.context, state, shown)
    assert nifti["filename"].endswith("_segmentation.nii.gz")


def test_download_of_dicom_seg_for_a_nifti_scan_says_why(small_case, tmp_path):
    volume, superpixels = small_case
    annotator = VolumeAnnotator(
        dash.Dash(__name__), volume, id="ann", superpixels=superpixels, cache_dir=tmp_path
    )
    annotation = Annotation(superpixels)
    annotation.set_superpixel_labels(np.arange(superpixels.count + 1) % 2)
    shown = case_data(annotator.initial_case)
    assert panels.seg_button_style(annotator.context, shown) == {"display": "none"}
    sent, message, is_open = panels.download(
        annotator.context, annotation.to_state(), shown, dicom=True
    )
    assert sent is dash.no_update and is_open and "not read from DICOM" in message
