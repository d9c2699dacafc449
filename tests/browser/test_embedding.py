"""Two annotators embedded side by side in a host portal (examples/two_raters.py)."""

from pathlib import Path

import pytest
from test_app_browser import (
    HAS_ANNOTATION,
    NO_ANNOTATION,
    TIMEOUT_MS,
    open_annotator,
    stroke_across_coronal_plane,
    view,
)

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "two_raters.py"
RATERS = ("rater-a", "rater-b")


@pytest.fixture(scope="module")
def portal_url(serve):
    return serve(program=(str(EXAMPLE),))


def test_two_annotators_on_one_page_are_independent(page, portal_url, sample):
    open_annotator(page, portal_url, sample, annotators=RATERS)
    view_a, view_b = (view(0, rater) for rater in RATERS)

    stroke_across_coronal_plane(page, sample, annotator="rater-a")
    page.wait_for_function(HAS_ANNOTATION, arg=view_a, timeout=TIMEOUT_MS)
    assert page.evaluate(NO_ANNOTATION, view_b)

    # Keyboard shortcuts act on the annotator last clicked: B has nothing to undo.
    page.click("#rater-b-view-1 .card-header")
    page.click("#rater-b-undo")
    page.keyboard.press("Control+z")
    assert page.evaluate(HAS_ANNOTATION, view_a)

    stroke_across_coronal_plane(page, sample, annotator="rater-b")
    page.wait_for_function(HAS_ANNOTATION, arg=view_b, timeout=TIMEOUT_MS)
    page.click("#rater-a-view-1 .card-header")
    page.keyboard.press("Control+z")
    page.wait_for_function(NO_ANNOTATION, arg=view_a, timeout=TIMEOUT_MS)
    assert page.evaluate(HAS_ANNOTATION, view_b)
