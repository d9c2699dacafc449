"""The PACS browser's functions against a real Orthanc (``orthanc_server``): searching
studies, listing series, opening one (retrieved once into the cache), and Save to PACS,
whose DICOM Segmentation is fetched back and checked with highdicom."""

import dataclasses

import dash
import numpy as np
import pydicom
import pytest
from dicom_series import phantom_image, seg_source_labels, write_series

from superpixel_annotator.core.dicom import load_dicom_series
from superpixel_annotator.core.editing import EditSession
from superpixel_annotator.core.image_files import Limits
from superpixel_annotator.core.volume import Volume, load_volume
from superpixel_annotator.pacs.dicomweb import DicomWebSource
from superpixel_annotator.web.annotator import VolumeAnnotator
from superpixel_annotator.web.app import sample_path
from superpixel_annotator.web.callbacks.pacs import (
    open_request,
    open_series,
    save_to_pacs,
    search_studies,
    study_series,
)
from superpixel_annotator.web.context import case_data

SIZE = 6.5


@pytest.fixture(scope="module")
def phantom_series(tmp_path_factory, orthanc_server):
    """The sample phantom as an MR series stored in Orthanc: its folder, files in slice
    order, RAS affine, study UID and series UID."""
    voxels, affine = phantom_image()
    folder = tmp_path_factory.mktemp("pacs") / "series"
    files = write_series(folder, voxels, affine, description="PHANTOM PACS")
    orthanc_server.upload(files)
    first = pydicom.dcmread(files[0], stop_before_pixels=True)
    return folder, files, affine, first.StudyInstanceUID, first.SeriesInstanceUID


@pytest.fixture(scope="module")
def annotator(orthanc_server, tmp_path_factory):
    return VolumeAnnotator(
        dash.Dash(__name__),
        load_volume(sample_path()),
        "annotator",
        cache_dir=tmp_path_factory.mktemp("cache"),
        pacs=DicomWebSource(orthanc_server.dicomweb_url),
    )


@pytest.fixture(scope="module")
def context(annotator):
    return annotator.context


def item_ids(component) -> list:
    """The ids of a rendered list's items."""
    found = []

    def walk(node):
        if isinstance(node, (list, tuple)):
            for child in node:
                walk(child)
        elif hasattr(node, "to_plotly_json"):
            if isinstance(getattr(node, "id", None), dict):
                found.append(node.id)
            walk(getattr(node, "children", None))

    walk(component)
    return found


def no_progress(_):
    pass


def test_search_lists_the_study_and_its_series_and_a_click_opens_it(context, phantom_series):
    folder, _, _, study, series = phantom_series
    answer = search_studies(context, " JD-1234 ", "", None)
    studies = [item["uid"] for item in item_ids(answer["studies"])]
    assert study in studies
    items = item_ids(study_series(context, {"type": context.ids["pacs-study"], "uid": study}))
    assert [item["uid"] for item in items] == [series]
    request = open_request(items[0])
    assert request == {"study": study, "series": series}

    opened = open_series(context, request, SIZE, no_progress)
    assert opened["message"].startswith("Opened PHANTOM_PACS")
    case = context.case_of(opened["case"])
    expected = load_dicom_series(folder)
    np.testing.assert_array_equal(case.volume.data, expected.data)
    np.testing.assert_allclose(case.volume.affine, expected.affine)
    # Opened again, the series is not retrieved again.
    retrieved = list((context.cache_dir / "pacs").iterdir())
    assert len(retrieved) == 1
    mtime = retrieved[0].stat().st_mtime_ns
    assert open_series(context, request, SIZE, no_progress)["case"]["key"] == case.key
    assert [p.stat().st_mtime_ns for p in (context.cache_dir / "pacs").iterdir()] == [mtime]


def test_searches_that_cannot_run_say_why(context, phantom_series):
    assert "patient ID or a date" in search_studies(context, "  ", None, "")["message"]
    empty = search_studies(context, "nobody-here", None, None)["studies"]
    assert "No study found" in str(empty.to_plotly_json())
    context = dataclasses.replace(context, pacs=DicomWebSource("http://127.0.0.1:9"))
    answer = search_studies(context, "JD-1234", None, None)
    assert answer["message_color"] == "warning" and "127.0.0.1:9" in answer["message"]
    assert "\n" not in answer["message"]


def test_save_to_pacs_stores_a_segmentation_on_the_source_frames(context, phantom_series, tmp_path):
    _, files, affine, study, series = phantom_series
    opened = open_series(context, {"study": study, "series": series}, SIZE, no_progress)
    case = context.case_of(opened["case"])
    session = EditSession(case, None, context.label_values)
    session.stroke(0, 30, "M60,60L140,120", 1)
    session.stroke(0, 45, "M80,80L120,120", 2)
    labels = context.segmentations.get(case, session.annotation.marks())
    assert set(np.unique(labels).tolist()) == {0, 1, 2}

    answer = save_to_pacs(context, opened["case"], session.annotation.to_state())
    assert answer["message_color"] == "success", answer["message"]

    segs = [found for found in context.pacs.series(study) if found.modality == "SEG"]
    context.pacs.retrieve_series(study, segs[-1].uid, tmp_path / "seg")
    seg_path = next((tmp_path / "seg").iterdir())
    assert [s.SegmentLabel for s in pydicom.dcmread(seg_path).SegmentSequence] == [
        label.name for label in context.labels[:2]
    ]
    on_source = seg_source_labels(seg_path, files)
    np.testing.assert_array_equal(Volume.from_source_array(on_source, affine).data, labels)
    # Back from the PACS, it opens as it was saved: the marks travel with the labels.
    reopened = EditSession(case, None, context.label_values)
    _, text = reopened.open_segmentation(seg_path.read_bytes(), seg_path.name, Limits())
    assert "matches the superpixels exactly" in text
    marks = session.annotation.marked_labels()
    np.testing.assert_array_equal(reopened.annotation.marked_labels(), marks)


def test_save_to_pacs_of_a_scan_not_from_dicom_says_so(annotator):
    shown = case_data(annotator.initial_case)
    answer = save_to_pacs(annotator.context, shown, None)
    assert answer["message"] == "Not saved: this scan was not read from DICOM."
