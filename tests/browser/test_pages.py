"""Annotators on the pages of a Dash multi-page app (examples/multi_page.py).

The portal serves the bundled phantom at ``/scan-1`` and its lesion map at ``/scan-2``; the
nav bar switches pages in the browser (Dash pages), without reloading.
"""

from pathlib import Path

import numpy as np
import pytest
from conftest import page_errors
from test_app_browser import (
    HAS_ANNOTATION,
    NO_ANNOTATION,
    TIMEOUT_MS,
    draw_stroke,
    open_annotator,
    overlay,
    stroke_across_coronal_plane,
    view,
    wait_full_slices,
    wait_overlay,
)

from superpixel_annotator.core.volume import load_volume
from superpixel_annotator.web.app import resource_dir, sample_path

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "multi_page.py"
PHANTOM, LESION = "scan-1", "scan-2"


@pytest.fixture(scope="module")
def portal_url(serve):
    return serve(program=(str(EXAMPLE),))


@pytest.fixture(scope="module")
def scans():
    """The volumes of the two pages."""
    lesion_map = resource_dir("sample_data") / "head_phantom_lesion.nii.gz"
    return {PHANTOM: load_volume(sample_path()), LESION: load_volume(lesion_map)}


def go_to(page, scans, annotator: str) -> None:
    """Follow the nav bar's link to an annotator's page and wait until its views are shown."""
    page.click(f".nav a[href='/{annotator}']")
    wait_full_slices(page, scans[annotator], annotators=(annotator,))


def stroke_across_lesion(page, lesion) -> None:
    """A stroke on the coronal view the lesion page opens on, across the lesion's core."""
    index = lesion.data.shape[1] // 2
    rows, cols = np.nonzero(np.take(lesion.data, index, axis=1) == lesion.data.max())
    row = int(np.median(rows))
    dy, dx = lesion.spacing[0], lesion.spacing[2]
    points = [(col * dx, row * dy) for col in (cols.min() - 2, cols.mean(), cols.max() + 2)]
    draw_stroke(page, 1, points, annotator=LESION)


def test_each_page_has_its_own_annotator(page, portal_url, scans):
    open_annotator(page, portal_url + PHANTOM, scans[PHANTOM], annotators=(PHANTOM,))
    stroke_across_coronal_plane(page, scans[PHANTOM], annotator=PHANTOM)
    page.wait_for_function(HAS_ANNOTATION, arg=view(0, PHANTOM), timeout=TIMEOUT_MS)

    go_to(page, scans, LESION)
    assert page.url == portal_url + LESION
    assert page.locator(view(0, PHANTOM)).count() == 0  # the other page left the document
    assert all(page.evaluate(NO_ANNOTATION, view(axis, LESION)) for axis in range(3))
    stroke_across_lesion(page, scans[LESION])
    page.wait_for_function(HAS_ANNOTATION, arg=view(1, LESION), timeout=TIMEOUT_MS)
    assert not [e for e in page_errors(page) if "TypeError" in e]


def test_a_page_comes_back_as_it_was(page, portal_url, scans):
    open_annotator(page, portal_url + PHANTOM, scans[PHANTOM], annotators=(PHANTOM,))
    stroke_across_coronal_plane(page, scans[PHANTOM], annotator=PHANTOM)
    page.wait_for_function(HAS_ANNOTATION, arg=view(0, PHANTOM), timeout=TIMEOUT_MS)
    annotated = overlay(page, view(0, PHANTOM))

    go_to(page, scans, LESION)
    stroke_across_lesion(page, scans[LESION])
    page.wait_for_function(HAS_ANNOTATION, arg=view(1, LESION), timeout=TIMEOUT_MS)

    go_to(page, scans, PHANTOM)
    wait_overlay(page, annotated, view(0, PHANTOM))
    page.keyboard.press("Control+z")  # the shortcut reaches the annotator on screen
    wait_overlay(page, None, view(0, PHANTOM))
    assert not page_errors(page)
