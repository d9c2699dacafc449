"""DICOM in the browser: a series uploaded as .dcm files or a .zip, annotated; a zip bomb
refused in one line with the scan and its annotation kept."""

import io
import shutil
import struct
import zipfile

import nibabel as nib
import numpy as np
import pytest
from dicom_series import PATIENT_NAME, write_series
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
from superpixel_annotator.web.app import sample_path


@pytest.fixture(scope="module")
def phantom_series(tmp_path_factory):
    """The sample phantom written as an MR series with shuffled file names."""
    source = nib.load(sample_path())
    folder = tmp_path_factory.mktemp("dicom") / "series"
    files = write_series(
        folder, np.asarray(source.dataobj, float), source.affine, description="PHANTOM AX"
    )
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
    assert page.inner_text("#annotator-name") == "PHANTOM_AX"
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
