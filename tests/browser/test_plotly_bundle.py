"""The page runs on the partial plotly.js bundle in assets/, never on Dash's full one."""

from urllib.parse import urlsplit

from conftest import page_errors
from test_app_browser import (
    HAS_ANNOTATION,
    TIMEOUT_MS,
    open_annotator,
    stroke_across_coronal_plane,
    view,
)

# Every trace type the annotator draws; the full plotly.js registers some fifty. mesh3d (the
# 3D view) is registered when a figure first draws one, so that its modules do not run at
# page load.
TRACE_TYPES = ["bar", "image", "mesh3d", "scatter"]
REGISTERED = "() => Object.keys(Plotly.PlotSchema.get().traces).sort()"
# True once the graph inside ``selector`` has drawn a trace of ``type`` through its trace
# module: plotly.js makes a trace of an unregistered type invisible.
DRAWS_TRACE = """
([selector, type]) => {
    const gd = document.querySelector(selector + ' .js-plotly-plot');
    return Boolean(gd && gd._fullData &&
        gd._fullData.some((trace) => trace.type === type && trace.visible === true));
}
"""


def test_page_uses_the_partial_bundle_for_every_trace_type(page, app_url, sample):
    requested = []
    page.on("request", lambda request: requested.append(urlsplit(request.url).path))
    open_annotator(page, app_url, sample)
    assert page.evaluate(REGISTERED) == ["bar", "image", "scatter"]

    stroke_across_coronal_plane(page, sample)
    page.wait_for_function(HAS_ANNOTATION, arg=view(0), timeout=TIMEOUT_MS)
    page.click("label[for=annotator-show-3d]")
    page.wait_for_function(DRAWS_TRACE, arg=["#annotator-view-3d", "mesh3d"], timeout=TIMEOUT_MS)
    assert page.evaluate(REGISTERED) == TRACE_TYPES
    page.click("label[for=annotator-show-statistics]")
    page.wait_for_function(
        DRAWS_TRACE, arg=["#annotator-statistics-chart", "bar"], timeout=TIMEOUT_MS
    )
    for axis in range(3):
        for trace_type in ("image", "scatter"):
            page.wait_for_function(DRAWS_TRACE, arg=[view(axis), trace_type], timeout=TIMEOUT_MS)

    assert [path for path in requested if path.endswith("/plotly-partial.min.js")]
    assert not [path for path in requested if path.endswith("/plotly.min.js")]
    assert page_errors(page) == []
