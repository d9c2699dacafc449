"""The user's own data in the browser: upload, bad files, reload, opening a segmentation."""

import os
import subprocess
import sys

import nibabel as nib
import numpy as np
import pytest
from conftest import free_port, wait_until_serving
from test_app_browser import (
    HAS_ANNOTATION,
    MESSAGE,
    NO_ANNOTATION,
    PLOT,
    TIMEOUT_MS,
    UPLOAD,
    open_annotator,
    overlay,
    phantom_variant,
    stroke_across_coronal_plane,
    upload_scan,
    view,
    wait_full_slices,
    wait_overlay,
)

from superpixel_annotator.web.app import sample_path

OPEN_SEGMENTATION = "#annotator-open-segmentation input[type=file]"
# The slice images (first trace) of the three views.
SLICE_SOURCES = """
() => [0, 1, 2].map((axis) => {
    const gd = (PLOT)('#annotator-view-' + axis);
    return gd && gd.data && gd.data.length ? gd.data[0].source : null;
})
""".replace("PLOT", PLOT)


@pytest.fixture(scope="module")
def cropped_scan(tmp_path_factory):
    """The sample without its last 10 slices along the first file axis: another scan of
    another shape."""
    path = tmp_path_factory.mktemp("scans") / "cropped_phantom.nii.gz"
    phantom_variant(path, lambda voxels: voxels[:-10])
    return path


def wait_message(page, text: str) -> str:
    page.wait_for_selector(f"{MESSAGE}:has-text({text!r})", timeout=TIMEOUT_MS)
    return page.inner_text(MESSAGE)


def test_uploaded_scan_replaces_the_scan_for_this_user_only_and_a_reload_keeps_it(
    browser, page, app_url, sample, cropped_scan
):
    open_annotator(page, app_url, sample)
    before = page.evaluate(SLICE_SOURCES)
    cropped = upload_scan(page, cropped_scan)  # every view shows full slices of the new shape
    page.wait_for_selector("#annotator-name:has-text('cropped_phantom')", timeout=TIMEOUT_MS)
    assert cropped.data.shape != sample.data.shape
    changed = (
        f"() => ({SLICE_SOURCES.strip()})().every((source, axis) => source !== {before}[axis])"
    )
    page.wait_for_function(changed, timeout=TIMEOUT_MS)  # ... of the new scan, in every view
    stroke_across_coronal_plane(page, cropped)
    page.wait_for_function(HAS_ANNOTATION, arg=view(0), timeout=TIMEOUT_MS)
    drawn = overlay(page)

    def wait_uploaded_scan_and_labels(shown) -> None:
        shown.wait_for_selector("#annotator-name:has-text('cropped_phantom')", timeout=TIMEOUT_MS)
        wait_full_slices(shown, cropped)
        wait_overlay(shown, drawn)

    # A reload, then a new tab of this browser, come back to them without uploading again.
    page.reload()
    wait_uploaded_scan_and_labels(page)
    tab = page.context.new_page()
    tab.goto(app_url)
    wait_uploaded_scan_and_labels(tab)
    tab.close()

    other = browser.new_context(viewport={"width": 1400, "height": 1000}).new_page()
    open_annotator(other, app_url, sample)
    assert other.inner_text("#annotator-name") == sample.name
    other.context.close()


@pytest.mark.parametrize(
    ("name", "content", "problem"),
    [
        ("random.nii.gz", bytes(range(256)) * 8, "not a readable image"),
        ("empty.nii", b"", "empty"),
    ],
    ids=["random", "empty"],
)
def test_bad_upload_says_why_and_keeps_scan_and_annotation(
    page, app_url, sample, tmp_path, name, content, problem
):
    open_annotator(page, app_url, sample)
    stroke_across_coronal_plane(page, sample)
    page.wait_for_function(HAS_ANNOTATION, arg=view(0), timeout=TIMEOUT_MS)
    path = tmp_path / name
    path.write_bytes(content)
    page.set_input_files(UPLOAD, str(path))
    text = wait_message(page, name)
    assert problem in text and "Traceback" not in text and text.count("\n") == 0
    assert page.inner_text("#annotator-name") == sample.name
    assert page.evaluate(HAS_ANNOTATION, view(0))


def test_annotation_survives_a_reload(page, app_url, sample):
    open_annotator(page, app_url, sample)
    stroke_across_coronal_plane(page, sample)
    page.wait_for_function(HAS_ANNOTATION, arg=view(0), timeout=TIMEOUT_MS)
    page.reload()
    wait_full_slices(page, sample)
    for axis in (0, 1):
        page.wait_for_function(HAS_ANNOTATION, arg=view(axis), timeout=TIMEOUT_MS)
    page.click("#annotator-undo")  # the history came back too
    page.wait_for_function(NO_ANNOTATION, arg=view(0), timeout=TIMEOUT_MS)


FILL_STORAGE = """
() => {
    try {
        for (let i = 0; ; i++) { localStorage.setItem('filler' + i, 'x'.repeat(1 << 20)); }
    } catch (error) {}
    for (let size = 1 << 19; size >= 1; size >>= 1) {
        try { localStorage.setItem('filler-' + size, 'x'.repeat(size)); } catch (error) {}
    }
}
"""


def test_a_full_browser_storage_is_said_and_the_annotation_stays_on_screen(page, app_url, sample):
    open_annotator(page, app_url, sample)
    page.evaluate(FILL_STORAGE)
    stroke_across_coronal_plane(page, sample)
    page.wait_for_function(HAS_ANNOTATION, arg=view(0), timeout=TIMEOUT_MS)
    assert "Download it to keep it" in wait_message(page, "storage is full")
    kept = page.evaluate("() => Object.keys(localStorage).filter((k) => k.length > 40)")
    assert not [key for key in kept if key.startswith(STORAGE_PREFIX)]


# The local storage keys of the annotator that create_app makes.
STORAGE_PREFIX = "superpixel-annotator:annotator:"
SAVE_LOST_CASE = """
([prefix, key]) => {
    localStorage.setItem(prefix + 'case', key);
    localStorage.setItem(prefix + key, 'labels of the lost scan');
}
"""


def test_a_saved_scan_the_server_lost_is_said_once_and_its_labels_stay(page, app_url, sample):
    open_annotator(page, app_url, sample)
    lost = "0" * 32
    page.evaluate(SAVE_LOST_CASE, [STORAGE_PREFIX, lost])
    page.reload()
    assert "open it again" in wait_message(page, "no longer on the server")
    wait_full_slices(page, sample)
    assert page.inner_text("#annotator-name") == sample.name
    saved = page.evaluate("(key) => localStorage.getItem(key)", STORAGE_PREFIX + lost)
    assert saved == "labels of the lost scan"
    # Asked for once: the next load asks for the scan shown instead.
    shown = page.evaluate("(key) => localStorage.getItem(key)", STORAGE_PREFIX + "case")
    assert shown not in (None, lost)


def test_downloaded_segmentation_opens_back_exactly(page, app_url, sample, tmp_path):
    open_annotator(page, app_url, sample)
    stroke_across_coronal_plane(page, sample)
    page.wait_for_function(HAS_ANNOTATION, arg=view(0), timeout=TIMEOUT_MS)
    with page.expect_download(timeout=TIMEOUT_MS) as download:
        page.click("#annotator-download-button")
    path = tmp_path / download.value.suggested_filename
    download.value.save_as(path)
    page.click("#annotator-undo")
    page.wait_for_function(NO_ANNOTATION, arg=view(0), timeout=TIMEOUT_MS)

    page.set_input_files(OPEN_SEGMENTATION, str(path))
    assert "matches the superpixels exactly" in wait_message(page, path.name)
    page.wait_for_function(HAS_ANNOTATION, arg=view(0), timeout=TIMEOUT_MS)


def test_another_tools_segmentation_opens_as_it_is(page, app_url, sample, tmp_path):
    """A cube that cuts through the superpixels opens voxel for voxel: the statistics count
    its voxels exactly, also after a reload (its voxel marks travel in the saved state)."""
    source = nib.load(sample_path())
    labels = np.zeros(source.shape, np.uint8)
    centre = [n // 2 for n in source.shape]
    labels[tuple(slice(c - 6, c + 7) for c in centre)] = 2
    path = tmp_path / "other_tool.nii.gz"
    nib.save(nib.Nifti1Image(labels, source.affine), path)

    open_annotator(page, app_url, sample)
    page.set_input_files(OPEN_SEGMENTATION, str(path))
    text = wait_message(page, "as it is")
    assert "other_tool.nii.gz" in text and "voxels the superpixels do not follow" in text
    page.wait_for_function(HAS_ANNOTATION, arg=view(0), timeout=TIMEOUT_MS)
    page.reload()
    page.wait_for_function(HAS_ANNOTATION, arg=view(0), timeout=TIMEOUT_MS)
    page.click("label[for=annotator-show-statistics]")
    table = "#annotator-statistics-table"
    page.wait_for_selector(f"{table} td:text-is('{13**3}')", timeout=TIMEOUT_MS)


@pytest.fixture(scope="module")
def two_modalities(serve, tmp_path_factory):
    """A server opened on the sample and its negative (same grid), as two modalities."""
    source = nib.load(sample_path())
    data = np.asarray(source.dataobj, dtype=np.float32)
    negative = tmp_path_factory.mktemp("modalities") / "negative.nii.gz"
    nib.save(nib.Nifti1Image(data.max() - data, source.affine), negative)
    return serve(str(sample_path()), str(negative))


def test_views_switch_modality_and_keep_the_annotation(page, two_modalities, sample):
    open_annotator(page, two_modalities, sample)
    stroke_across_coronal_plane(page, sample)
    page.wait_for_function(HAS_ANNOTATION, arg=view(0), timeout=TIMEOUT_MS)
    before = page.evaluate(SLICE_SOURCES)
    page.click("label:has-text('negative')")
    changed = (
        f"() => ({SLICE_SOURCES.strip()})().every((source, axis) => source !== {before}[axis])"
    )
    page.wait_for_function(changed, timeout=TIMEOUT_MS)
    wait_full_slices(page, sample)
    assert page.evaluate(HAS_ANNOTATION, view(0))


def wait_size(page, value: str) -> None:
    page.wait_for_function(
        "(value) => document.querySelector('#annotator-size')?.value === value",
        arg=value,
        timeout=TIMEOUT_MS,
    )


def test_new_superpixel_size_keeps_the_annotation_undo_goes_back_and_a_reload_keeps_it(
    page, app_url, sample
):
    """The labels stay voxel for voxel on superpixels of another size (the voxels the new
    superpixels do not follow are kept as voxel marks), also after a reload."""
    open_annotator(page, app_url, sample)
    stroke_across_coronal_plane(page, sample)
    page.wait_for_function(HAS_ANNOTATION, arg=view(0), timeout=TIMEOUT_MS)
    coarse = overlay(page)

    page.select_option("#annotator-size", label="Fine (3.5 mm)")
    assert "voxels kept finer" in wait_message(page, "Superpixels recomputed")
    wait_size(page, "3.5")
    wait_overlay(page, coarse)

    page.click("#annotator-undo")  # nothing to undo on the new superpixels: back to the old
    wait_size(page, "4.5")  # ... and the menu says so
    wait_overlay(page, coarse)

    page.click(f"{MESSAGE} .btn-close")  # so that the next message is the next change's
    page.wait_for_selector(MESSAGE, state="hidden", timeout=TIMEOUT_MS)
    page.select_option("#annotator-size", label="Fine (3.5 mm)")
    wait_message(page, "Superpixels recomputed")
    page.reload()
    wait_size(page, "3.5")
    wait_overlay(page, coarse)


def test_annotation_survives_a_server_restart(browser, sample, tmp_path):
    port = free_port()
    command = [sys.executable, "-m", "superpixel_annotator.cli", "--port", str(port)]
    env = {**os.environ, "SUPERPIXEL_ANNOTATOR_CACHE": str(tmp_path)}

    def start() -> subprocess.Popen:
        server = subprocess.Popen(
            command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        wait_until_serving(server)
        return server

    page = browser.new_context(viewport={"width": 1400, "height": 1000}).new_page()
    server = start()
    try:
        open_annotator(page, f"http://127.0.0.1:{port}/", sample)
        stroke_across_coronal_plane(page, sample)
        page.wait_for_function(HAS_ANNOTATION, arg=view(0), timeout=TIMEOUT_MS)
    finally:
        server.terminate()
        server.wait(timeout=30)
    server = start()  # a new process: it knows nothing of the first one's sessions
    try:
        page.reload()
        wait_full_slices(page, sample)
        page.wait_for_function(HAS_ANNOTATION, arg=view(0), timeout=TIMEOUT_MS)
    finally:
        server.terminate()
        server.wait(timeout=30)
        page.context.close()
