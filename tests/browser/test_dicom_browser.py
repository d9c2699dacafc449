"""DICOM in the browser: a series uploaded as .dcm files or a .zip, annotated; a zip bomb
refused in one line with the scan and its annotation kept; a series opened from a real
Orthanc through the PACS browser, annotated, and saved back as a DICOM SEG whose frames
hold what Download gives."""

import io
import shutil
import struct
import zipfile

import numpy as np
import pytest
from dicom_series import PATIENT_NAME, phantom_image, seg_source_labels, write_series
from test_app_browser import (
    HAS_ANNOTATION,
    MESSAGE,
    TIMEOUT_MS,
    UPLOAD,
    open_annotator,
    stroke_across_coronal_plane,
    view,
    wait_full_slices,
)

from superpixel_annotator.core.dicom import load_dicom_series
from superpixel_annotator.core.volume import Volume, load_volume
from superpixel_annotator.pacs.dicomweb import DicomWebSource

PACS_PATIENT = "PACS-BROWSER-1"
CASE_DATA = "() => window.dash_component_api.getLayout('annotator-case').props.data"


@pytest.fixture(scope="module")
def phantom_series(tmp_path_factory):
    """The sample phantom written as an MR series with shuffled file names."""
    folder = tmp_path_factory.mktemp("dicom") / "series"
    files = write_series(folder, *phantom_image(), description="PHANTOM AX")
    return folder, files


def wait_message(page, text: str) -> str:
    page.wait_for_selector(f"{MESSAGE}:has-text({text!r})", timeout=TIMEOUT_MS)
    return page.inner_text(MESSAGE)


def test_a_series_uploaded_as_files_or_a_zip_opens_and_takes_strokes(
    page, app_url, sample, phantom_series, tmp_path
):
    folder, files = phantom_series
    scan = load_dicom_series(folder)
    open_annotator(page, app_url, sample)
    named = [shutil.copy(path, tmp_path / f"{path.name}.dcm") for path in files]
    page.set_input_files(UPLOAD, [str(path) for path in named])
    text = wait_message(page, "Opened PHANTOM_AX")
    assert PATIENT_NAME not in text
    page.wait_for_selector("#annotator-name:text-is('PHANTOM_AX')", timeout=TIMEOUT_MS)
    wait_full_slices(page, scan)
    stroke_across_coronal_plane(page, scan)
    page.wait_for_function(HAS_ANNOTATION, arg=view(0), timeout=TIMEOUT_MS)

    archive = tmp_path / "phantom.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as output:
        for path in folder.iterdir():
            output.write(path, f"export/{path.name}")
    open_annotator(page, app_url, sample)
    page.set_input_files(UPLOAD, str(archive))
    wait_message(page, "Opened PHANTOM_AX")
    wait_full_slices(page, scan)


def test_a_zip_bomb_is_refused_in_one_line_keeping_scan_and_annotation(
    page, app_url, sample, tmp_path
):
    open_annotator(page, app_url, sample)
    stroke_across_coronal_plane(page, sample)
    page.wait_for_function(HAS_ANNOTATION, arg=view(0), timeout=TIMEOUT_MS)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as output:
        for index in range(2):
            output.writestr(f"{index}.dcm", bytes(1000))
    # Each member claims 700 MB, as a zip bomb's do (the unit tests decompress a real one).
    content = bytearray(buffer.getvalue())
    at = 0
    while (at := content.find(b"PK\x01\x02", at + 1)) > 0:
        content[at + 24 : at + 28] = struct.pack("<L", 700_000_000)
    buffer = io.BytesIO(bytes(content))
    bomb = tmp_path / "bomb.zip"
    bomb.write_bytes(buffer.getvalue())
    page.set_input_files(UPLOAD, str(bomb))
    text = wait_message(page, "bomb.zip")
    assert "expand to 1.4 GB" in text and "\n" not in text and "Traceback" not in text
    assert page.inner_text("#annotator-name") == sample.name
    assert page.evaluate(HAS_ANNOTATION, view(0))


@pytest.fixture(scope="module")
def pacs_url(serve, orthanc_server, tmp_path_factory):
    """A server given the session's Orthanc, which holds the phantom as a series of
    ``PACS_PATIENT``."""
    voxels, affine = phantom_image()
    folder = tmp_path_factory.mktemp("pacs") / "series"
    files = write_series(
        folder, voxels, affine, description="PHANTOM BROWSER", patient_id=PACS_PATIENT
    )
    orthanc_server.upload(files)
    return serve("--dicomweb", orthanc_server.dicomweb_url), files, affine


def test_a_series_opened_from_the_pacs_is_saved_back_as_a_segmentation(
    page, pacs_url, sample, orthanc_server, tmp_path
):
    url, files, affine = pacs_url
    open_annotator(page, url, sample)
    page.fill("#annotator-pacs-patient", PACS_PATIENT)
    page.click("#annotator-pacs-search")
    page.click(f".list-group-item:has-text({PACS_PATIENT!r})", timeout=TIMEOUT_MS)
    page.click(".list-group-item:has-text('PHANTOM BROWSER')", timeout=TIMEOUT_MS)
    text = wait_message(page, "Opened PHANTOM_BROWSER")
    assert "from the PACS" in text and PATIENT_NAME not in text
    page.wait_for_selector("#annotator-name:text-is('PHANTOM_BROWSER')", timeout=TIMEOUT_MS)
    scan = load_dicom_series(files[0].parent)
    wait_full_slices(page, scan)
    stroke_across_coronal_plane(page, scan)
    page.wait_for_function(HAS_ANNOTATION, arg=view(0), timeout=TIMEOUT_MS)

    page.click("#annotator-pacs-save")
    wait_message(page, "Saved to the PACS")
    with page.expect_download() as download:
        page.click("#annotator-download-button")
    download.value.save_as(tmp_path / "labels.nii.gz")
    downloaded = load_volume(tmp_path / "labels.nii.gz").data
    assert downloaded.any()

    pacs = DicomWebSource(orthanc_server.dicomweb_url)
    (study,) = pacs.studies(patient_id=PACS_PATIENT)
    (seg,) = [series for series in pacs.series(study.uid) if series.modality == "SEG"]
    pacs.retrieve_series(study.uid, seg.uid, tmp_path / "seg")
    on_source = seg_source_labels(next((tmp_path / "seg").iterdir()), files)
    np.testing.assert_array_equal(Volume.from_source_array(on_source, affine).data, downloaded)


STORAGE_PREFIX = "superpixel-annotator:annotator:"
MOVE_STATE = """
([prefix, key, former]) => {
    const state = localStorage.getItem(prefix + key);
    localStorage.setItem(prefix + former, state);
    localStorage.removeItem(prefix + key);
    return state;
}
"""


def test_an_annotation_saved_under_a_dicom_scans_former_key_comes_back(page, serve, phantom_series):
    """Case keys of DICOM scans count their instances' UIDs since DICOM SEG came: an
    annotation a browser kept under the key before comes back, and is kept under the new."""
    folder, _ = phantom_series
    url = serve(str(folder))
    scan = load_dicom_series(folder)
    open_annotator(page, url, scan)
    stroke_across_coronal_plane(page, scan)
    page.wait_for_function(HAS_ANNOTATION, arg=view(0), timeout=TIMEOUT_MS)
    case = page.evaluate(CASE_DATA)
    assert case["former_key"] != case["key"]
    state = page.evaluate(MOVE_STATE, [STORAGE_PREFIX, case["key"], case["former_key"]])
    assert state
    page.reload()
    wait_full_slices(page, scan)
    page.wait_for_function(HAS_ANNOTATION, arg=view(0), timeout=TIMEOUT_MS)
    kept = page.evaluate("(key) => localStorage.getItem(key)", STORAGE_PREFIX + case["key"])
    assert kept == state
