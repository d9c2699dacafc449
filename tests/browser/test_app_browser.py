"""The annotator as a user meets it: headless Chromium, mouse strokes, keyboard, download."""

import base64
import io
import json

import nibabel as nib
import numpy as np
from conftest import page_errors
from PIL import Image
from scipy import ndimage as ndi

from superpixel_annotator.core.annotation import Annotation
from superpixel_annotator.core.superpixels import load_or_compute_superpixels
from superpixel_annotator.core.volume import Volume, load_volume
from superpixel_annotator.web.app import sample_path
from superpixel_annotator.web.layout import HELP_ITEMS

VIEW = "#{annotator}-view-{axis}"
# The plot element of a view (Plotly drops its js-plotly-plot class while it redraws).
PLOT = "(selector) => document.querySelector(selector + ' .dash-graph > div:last-child')"
ANNOTATOR = "annotator"  # the id create_app gives its annotator
UPLOAD = f"#{ANNOTATOR}-upload input[type=file]"
MESSAGE = f"#{ANNOTATOR}-message"
TIMEOUT_MS = 60_000

# True once the view's first trace shows a full-resolution slice (image size width x height)
# and the position indicators of the other views. Synchronous on purpose: wait_for_function
# takes a returned Promise for a truthy value. Image sizes are decoded once, in the background.
FULL_SLICE = """
([selector, width, height]) => {
    const gd = (PLOT)(selector);
    if (!gd || !gd.data || !gd.data.length || !gd.data[0].source) { return false; }
    const sizes = window._testImageSizes = window._testImageSizes || new Map();
    const source = gd.data[0].source;
    if (!sizes.has(source)) {
        sizes.set(source, null);
        const image = new Image();
        image.onload = () => sizes.set(source, [image.naturalWidth, image.naturalHeight]);
        image.src = source;
        return false;
    }
    const size = sizes.get(source);
    const indicators = gd.data.filter((trace) => trace.type === 'scatter').length;
    return size !== null && size[0] === width && size[1] === height && indicators >= 2;
}
""".replace("PLOT", PLOT)
HAS_ANNOTATION = """
(selector) => {
    const gd = (PLOT)(selector);
    return Boolean(gd && gd.data && gd.data.some((trace) => trace.name === 'annotation'));
}
""".replace("PLOT", PLOT)
NO_ANNOTATION = HAS_ANNOTATION.replace("return Boolean(", "return !Boolean(")
# A view's traces in order, by name or else by type; RECORD_TRACES keeps them at every redraw.
TRACES = "(selector) => (PLOT)(selector).data.map((trace) => trace.name || trace.type)".replace(
    "PLOT", PLOT
)
RECORD_TRACES = """
(selector) => {
    const gd = (PLOT)(selector), drawn = window.__drawnTraces = [];
    gd.on('plotly_afterplot', () => drawn.push((TRACES)(selector)));
}
""".replace("PLOT", PLOT).replace("TRACES", TRACES)
NO_SHAPES = """
(selector) => {
    const gd = (PLOT)(selector);
    return Boolean(gd && gd.layout && !(gd.layout.shapes && gd.layout.shapes.length));
}
""".replace("PLOT", PLOT)
# The overlay image of a view (a PNG data URI), or null when the view shows no annotation.
OVERLAY = """
(selector) => {
    const gd = (PLOT)(selector);
    const trace = gd && gd.data && gd.data.find((t) => t.name === 'annotation');
    return trace ? trace.source : null;
}
""".replace("PLOT", PLOT)
OVERLAY_IS = f"([selector, expected]) => ({OVERLAY.strip()})(selector) === expected"
OVERLAY_IS_NOT = OVERLAY_IS.replace("=== expected", "!== expected")
# Move a view's slider (dash-slicer names it after the view's graph).
MOVE_SLIDER = """
([selector, index]) => {
    const graph = document.querySelector(selector + ' .dash-graph');
    window.dash_clientside.set_props(graph.id.replace(/-graph$/, '-slider'), {value: index});
}
"""
# Whether dash-slicer's timer of every view is off and past the ticks it waits for before
# it first publishes the view's position (it turns itself off after publishing).
TIMERS_SETTLED = """
(selectors) => selectors.every((selector) => {
    const graph = document.querySelector(selector + ' .dash-graph');
    const timer = graph && window.dash_component_api.getLayout(
        graph.id.replace(/-graph$/, '-timer'));
    return Boolean(timer) && timer.props.disabled === true && timer.props.n_intervals >= 5;
})
"""
# The layout of the dash-slicer component ``part`` of the view inside ``selector``.
VIEW_PART = """
(selector, part) => {
    const graph = document.querySelector(selector + ' .dash-graph');
    return window.dash_component_api.getLayout(graph.id.replace(/-graph$/, '-' + part));
}
"""
# The ticks of dash-slicer's timer of the view inside ``selector``.
TIMER_TICKS = f"(selector) => ({VIEW_PART.strip()})(selector, 'timer').props.n_intervals"
# Page coordinates of a point given in the view's data coordinates (mm).
DATA_TO_PAGE = """
([selector, x, y]) => {
    const gd = (PLOT)(selector);
    if (!gd || !gd._fullLayout || !gd._fullLayout.xaxis) { return null; }
    const rect = gd.getBoundingClientRect();
    const xaxis = gd._fullLayout.xaxis, yaxis = gd._fullLayout.yaxis;
    return [rect.left + xaxis._offset + xaxis.d2p(x), rect.top + yaxis._offset + yaxis.d2p(y)];
}
""".replace("PLOT", PLOT)


def view(axis: int, annotator: str = ANNOTATOR) -> str:
    """The CSS selector of one slice view of an annotator."""
    return VIEW.format(annotator=annotator, axis=axis)


def overlay(page, selector: str = view(0)) -> str | None:
    """The view's annotation overlay as a data URI, ``None`` when it shows none."""
    return page.evaluate(OVERLAY, selector)


def wait_overlay(page, expected: str | None, selector: str = view(0)) -> None:
    """Wait until the view's overlay is ``expected``."""
    page.wait_for_function(OVERLAY_IS, arg=[selector, expected], timeout=TIMEOUT_MS)


def wait_overlay_change(page, before: str | None, selector: str = view(0)) -> str:
    """Wait until the view's overlay differs from ``before``; returns the new one."""
    page.wait_for_function(OVERLAY_IS_NOT, arg=[selector, before], timeout=TIMEOUT_MS)
    return overlay(page, selector)


def annotation_state(page) -> str | None:
    """The annotation state the page holds."""
    return page.evaluate(
        f"() => window.dash_component_api.getLayout('{ANNOTATOR}-annotation').props.data"
    )


def overlay_indices(uri: str) -> np.ndarray:
    """The label indices of an overlay PNG data URI."""
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(uri.split(",", 1)[1]))))


def open_annotator(page, url, sample, annotators=(ANNOTATOR,)):
    """Load the page and wait until every view of the annotators shows a full slice."""
    page.goto(url)
    wait_full_slices(page, sample, annotators)


def wait_full_slices(page, sample, annotators=(ANNOTATOR,)):
    """Wait until every view of the annotators shows a full slice of ``sample``."""
    for annotator in annotators:
        for axis in range(3):
            rows, cols = (sample.data.shape[a] for a in range(3) if a != axis)
            selector = view(axis, annotator)
            page.wait_for_function(FULL_SLICE, arg=[selector, cols, rows], timeout=TIMEOUT_MS)


def phantom_variant(path, change) -> None:
    """Write to ``path`` the sample phantom's voxels passed through ``change``, same affine."""
    source = nib.load(sample_path())
    nib.save(nib.Nifti1Image(change(np.asarray(source.dataobj)), source.affine), path)


def upload_scan(page, path) -> Volume:
    """Upload the scan at ``path`` through the drop zone and wait until every view shows it.

    Returns the scan as the server reads it.
    """
    page.set_input_files(UPLOAD, str(path))
    name = path.name.split(".")[0]
    page.wait_for_selector(f"{MESSAGE}:has-text('Opened {name}')", timeout=TIMEOUT_MS)
    scan = load_volume(path)
    wait_full_slices(page, scan)
    return scan


def draw_stroke(page, axis, points_mm, annotator=ANNOTATOR):
    """Press, drag through ``points_mm`` (x, y in the view's mm) and release, as a user does."""
    selector = view(axis, annotator)
    pixels = [
        page.wait_for_function(DATA_TO_PAGE, arg=[selector, x, y]).json_value()
        for x, y in points_mm
    ]
    page.mouse.move(*pixels[0])
    page.mouse.down()
    for pixel in pixels[1:]:
        page.mouse.move(*pixel, steps=8)
    page.mouse.up()


def stroke_across_coronal_plane(page, sample, annotator=ANNOTATOR):
    """A horizontal stroke on the middle axial slice along the row the coronal view shows."""
    coronal_index = sample.data.shape[1] // 2
    width_mm = sample.data.shape[2] * sample.spacing[2]
    y = coronal_index * sample.spacing[1]
    points = [(0.35 * width_mm, y), (0.5 * width_mm, y), (0.65 * width_mm, y)]
    draw_stroke(page, 0, points, annotator)


def callback_outputs_requested(page) -> list[str]:
    """The outputs of the server callbacks the page calls from now on, as it names them."""
    outputs: list[str] = []

    def on_request(request) -> None:
        if request.url.split("?")[0].endswith("/_dash-update-component"):
            outputs.append(json.loads(request.post_data)["output"])

    page.on("request", on_request)
    return outputs


def test_views_show_full_resolution_slices_and_indicators(page, app_url, sample):
    # Catches dash-slicer under Dash 4 showing only 32-px thumbnails without explicit ranges.
    requested = callback_outputs_requested(page)
    open_annotator(page, app_url, sample)
    assert not [e for e in page_errors(page) if "TypeError" in e]
    # The hidden 3D view and statistics cost a page load nothing.
    assert requested and not [o for o in requested if "view-3d" in o or "statistics" in o]
    # Without Dash's Babel polyfill, the views load: its regenerator runtime, which Dash's
    # lazily loaded components need, comes with dash-bootstrap-components.
    globals_ = "() => [typeof window._babelPolyfill, typeof window.regeneratorRuntime]"
    assert page.evaluate(globals_) == ["undefined", "object"]


# The source of the superpixel borders the view inside ``selector`` draws, once it is not
# ``before``.
BORDERS_OTHER_THAN = """
([selector, before]) => {
    const gd = (PLOT)(selector);
    const borders = gd && gd.data && gd.data.find((trace) => trace.name === 'superpixels');
    return borders && borders.source !== before ? borders.source : null;
}
""".replace("PLOT", PLOT)


def test_a_page_load_asks_the_server_for_each_view_slice_once(page, app_url, sample):
    # dash-slicer's timer, started by the views' first relayout, published every view's
    # position again after the page was usable: 21 requests per page load instead of 9,
    # and all three views drawn again a second later.
    requested = callback_outputs_requested(page)
    open_annotator(page, app_url, sample)
    page.wait_for_function(TIMERS_SETTLED, arg=[view(axis) for axis in range(3)])
    slices = [output for output in requested if output.endswith("-server-data.data")]
    assert len(slices) == 3 and len(set(slices)) == 3
    # The superpixel borders are hidden: a request for them could only be refused.
    assert not [output for output in requested if "boundary-slice" in output]


def test_superpixel_borders_show_and_follow_the_slices(page, app_url, sample):
    requested = callback_outputs_requested(page)
    open_annotator(page, app_url, sample)
    page.click("label[for=annotator-show-boundaries]")
    shown = [
        page.wait_for_function(BORDERS_OTHER_THAN, arg=[view(axis), None], timeout=TIMEOUT_MS)
        for axis in range(3)
    ]
    borders = [output for output in requested if "boundary-slice" in output]
    assert len(borders) == 3 and len(set(borders)) == 3
    page.hover(view(0) + " .dash-graph")
    page.click(view(0) + " .modebar-btn[data-attr=dragmode][data-val=pan]")
    point = [view(0), 30 * sample.spacing[2], 40 * sample.spacing[1]]
    page.mouse.click(*page.wait_for_function(DATA_TO_PAGE, arg=point).json_value())
    for axis in (1, 2):
        before = shown[axis].json_value()
        page.wait_for_function(BORDERS_OTHER_THAN, arg=[view(axis), before], timeout=TIMEOUT_MS)


# Each thumbnails response as [output, number of thumbnails], in the order they arrive.
THUMBNAILS_RECORDER = """
window._thumbnails = [];
const fetchOnce = window.fetch;
window.fetch = async (...args) => {
    const response = await fetchOnce(...args);
    const output = args[1] && args[1].body ? JSON.parse(args[1].body).output : '';
    if (output.endsWith('-thumbs.data')) {
        const body = await response.clone().json();
        window._thumbnails.push([output, Object.values(body.response)[0].data.length]);
    }
    return response;
};
"""


def test_thumbnails_are_asked_for_after_each_view_first_slice(page, app_url, sample):
    # dash-slicer asks for them as the page starts, before the slices: taking them in cost
    # a page load about 0.14 s, and they are needed only while a slider is dragged.
    page.add_init_script(THUMBNAILS_RECORDER)
    requested = callback_outputs_requested(page)
    open_annotator(page, app_url, sample)
    page.wait_for_function("() => window._thumbnails.length === 3", timeout=TIMEOUT_MS)
    received = page.evaluate("() => window._thumbnails")
    assert sorted(count for _, count in received) == sorted(sample.data.shape)
    for thumbnails, _ in received:
        full_slice = thumbnails.replace("-thumbs.data", "-server-data.data")
        assert requested.count(thumbnails) == 1
        assert requested.index(full_slice) < requested.index(thumbnails)


def test_a_view_asks_for_its_thumbnails_once_while_they_are_on_their_way(page, app_url, sample):
    # A slice received before the thumbnails came asked for them again.
    held = []

    def hold_thumbnails(route) -> None:
        if json.loads(route.request.post_data)["output"].endswith("-thumbs.data"):
            held.append(route)
        else:
            route.continue_()

    page.route("**/_dash-update-component*", hold_thumbnails)
    page.add_init_script(THUMBNAILS_RECORDER)
    requested = callback_outputs_requested(page)
    open_annotator(page, app_url, sample)
    page.wait_for_function(TIMERS_SETTLED, arg=[view(axis) for axis in range(3)])
    page.evaluate(IDLE)  # each view's idle request for its thumbnails was made
    start = page.evaluate(SLICE_RECEIVED, view(0))
    page.focus(view(0) + " [role=slider]")
    page.keyboard.press("ArrowRight")
    page.wait_for_function(f"() => ({SLICE_RECEIVED})({view(0)!r}) === {start + 1}")
    page.evaluate(IDLE)
    assert len(held) == 3
    for route in held:
        route.continue_()
    page.wait_for_function("() => window._thumbnails.length === 3", timeout=TIMEOUT_MS)
    thumbnails = [output for output in requested if output.endswith("-thumbs.data")]
    assert len(thumbnails) == 3 and len(set(thumbnails)) == 3


# Each request for a view's full-resolution slice as [output, the ticks of the view's
# dash-slicer timer when it was sent].
SLICE_REQUEST_RECORDER = """
window._sliceRequests = [];
const fetchBefore = window.fetch;
window.fetch = (...args) => {
    const output = args[1] && args[1].body ? JSON.parse(args[1].body).output : '';
    if (output.endsWith('-server-data.data')) {
        const timer = window.dash_component_api.getLayout(
            output.replace(/-server-data.data$/, '-timer'));
        window._sliceRequests.push([output, timer.props.n_intervals]);
    }
    return fetchBefore(...args);
};
"""
# Resolves two animation frames from now.
NEXT_FRAMES = """
() => new Promise((done) => requestAnimationFrame(() => requestAnimationFrame(done)))
"""
# Resolves once the browser has been idle twice: what was asked for at its last idle time
# has run.
IDLE = """
() => new Promise((done) => requestIdleCallback(() => requestIdleCallback(done)))
"""
# The index of the full-resolution slice the view inside ``selector`` received last.
SLICE_RECEIVED = """
(selector) => {
    const slice = (VIEW_PART)(selector, 'server-data');
    return slice.props.data ? slice.props.data.index : null;
}
""".replace("VIEW_PART", VIEW_PART.strip())


def slice_requests_after(page, selector: str, move) -> list:
    """The view's slice requests from ``move()`` until the view has received the slice its
    slider shows and its timer is off."""
    page.evaluate("() => { window._sliceRequests = []; }")
    move()
    handle = page.locator(selector + " [role=slider]")
    page.wait_for_function(
        f"() => ({SLICE_RECEIVED})({selector!r}) === "
        f"Number(document.querySelector({selector!r} + ' [role=slider]')"
        ".getAttribute('aria-valuenow'))"
    )
    page.wait_for_function(TIMERS_SETTLED, arg=[selector])
    assert handle.get_attribute("aria-valuenow") == str(page.evaluate(SLICE_RECEIVED, selector))
    return page.evaluate("() => window._sliceRequests")


def test_a_slider_step_asks_for_its_slice_at_once_and_a_drag_where_it_stops(page, app_url, sample):
    # dash-slicer publishes a moved slider's position from its timer, 200 ms after the last
    # move: a step showed the new slice in full resolution about half a second after the key.
    page.add_init_script(SLICE_REQUEST_RECORDER)
    open_annotator(page, app_url, sample)
    page.wait_for_function(TIMERS_SETTLED, arg=[view(axis) for axis in range(3)])
    start = page.evaluate(SLICE_RECEIVED, view(0))
    ticks = page.evaluate(TIMER_TICKS, view(0))
    page.focus(view(0) + " [role=slider]")
    requests = slice_requests_after(page, view(0), lambda: page.keyboard.press("ArrowRight"))
    # Asked for once, before the timer could publish the position (its second tick).
    assert len(requests) == 1 and requests[0][1] - ticks <= 1
    assert page.evaluate(SLICE_RECEIVED, view(0)) == start + 1

    def press_five_times() -> None:
        for _ in range(5):
            page.keyboard.press("ArrowRight")

    slice_requests_after(page, view(0), press_five_times)
    assert page.evaluate(SLICE_RECEIVED, view(0)) == start + 6

    def drag_handle() -> None:
        box = page.locator(view(0) + " [role=slider]").bounding_box()
        track = page.locator(view(0) + " .dash-slider-track").bounding_box()
        x, y = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
        page.mouse.move(x, y)
        page.mouse.down()
        for step in range(1, 6):
            page.mouse.move(x - step * 0.02 * track["width"], y)
            page.evaluate(NEXT_FRAMES)  # as a browser sends pointer moves, once a frame
        page.mouse.up()

    # A drag is left to dash-slicer's timer: none of its slices is asked for before the
    # timer's second tick (a slow drag's pauses are asked for too).
    ticks = page.evaluate(TIMER_TICKS, view(0))
    requests = slice_requests_after(page, view(0), drag_handle)
    assert requests and all(request_ticks - ticks >= 2 for _, request_ticks in requests)
    assert page.evaluate(SLICE_RECEIVED, view(0)) < start + 6


def test_stroke_colours_superpixels_in_all_views_and_undo_redo(page, app_url, sample):
    open_annotator(page, app_url, sample)
    traces = page.evaluate(TRACES, view(0))
    page.evaluate(RECORD_TRACES, view(0))
    stroke_across_coronal_plane(page, sample)
    for axis in (0, 1):
        page.wait_for_function(HAS_ANNOTATION, arg=view(axis), timeout=TIMEOUT_MS)
    page.wait_for_function(NO_SHAPES, arg=view(0), timeout=TIMEOUT_MS)
    # The first figure drawn with the server's answer is composed as dash-slicer composes
    # it: the slice's images, the overlays, the other views' position indicators.
    drawn = page.evaluate("() => window.__drawnTraces")
    images = [trace for trace in traces if trace == "image"]
    others = [trace for trace in traces if trace != "image"]
    assert next(t for t in drawn if "annotation" in t) == [*images, "annotation", *others]

    # Slices off screen when the stroke landed are rendered when a view shows them.
    page.evaluate(MOVE_SLIDER, [view(0), sample.data.shape[0] // 2 + 1])
    page.wait_for_function(HAS_ANNOTATION, arg=view(0), timeout=TIMEOUT_MS)

    page.keyboard.press("Control+z")
    for axis in (0, 1):
        page.wait_for_function(NO_ANNOTATION, arg=view(axis), timeout=TIMEOUT_MS)

    stroke_across_coronal_plane(page, sample)  # the very same stroke again counts again
    page.wait_for_function(HAS_ANNOTATION, arg=view(0), timeout=TIMEOUT_MS)
    page.click("#annotator-undo")
    page.wait_for_function(NO_ANNOTATION, arg=view(0), timeout=TIMEOUT_MS)
    page.click("#annotator-redo")
    page.wait_for_function(HAS_ANNOTATION, arg=view(1), timeout=TIMEOUT_MS)


# Counts the figures drawn per graph id from now on (dcc.Graph draws each with Plotly.react).
DRAW_COUNTER = """
() => {
    window._draws = {};
    if (window.Plotly.react._counted) { return; }
    const react = window.Plotly.react;
    window.Plotly.react = function (gd, ...rest) {
        const graph = gd.closest('.dash-graph');
        window._draws[graph.id] = (window._draws[graph.id] || 0) + 1;
        return react.call(this, gd, ...rest);
    };
    window.Plotly.react._counted = true;
}
"""


def test_an_edit_draws_each_view_once(page, app_url, sample):
    # dash-slicer composed the view's figure again after showOverlays had drawn it, and
    # drew each changed view a second time (20-30 ms each on the CT phantom).
    open_annotator(page, app_url, sample)
    page.evaluate(DRAW_COUNTER)
    stroke_across_coronal_plane(page, sample)
    for axis in range(3):
        page.wait_for_function(HAS_ANNOTATION, arg=view(axis), timeout=TIMEOUT_MS)
    for _ in range(3):
        page.evaluate(NEXT_FRAMES)
    draws = page.evaluate("() => window._draws")
    views = [
        page.evaluate(f"() => document.querySelector({view(axis)!r} + ' .dash-graph').id")
        for axis in range(3)
    ]
    assert [draws.get(graph) for graph in views] == [1, 1, 1]


def test_download_keeps_source_geometry(page, app_url, sample, tmp_path):
    open_annotator(page, app_url, sample)
    page.keyboard.press("2")  # the second label
    stroke_across_coronal_plane(page, sample)
    page.wait_for_function(HAS_ANNOTATION, arg=view(0), timeout=TIMEOUT_MS)
    with page.expect_download(timeout=TIMEOUT_MS) as download:
        page.click("#annotator-download-button")
    assert download.value.suggested_filename == f"{sample.name}_segmentation.nii.gz"
    path = tmp_path / download.value.suggested_filename
    download.value.save_as(path)
    saved = nib.load(path)
    source = nib.load(sample_path())
    np.testing.assert_allclose(saved.affine, source.affine)
    assert saved.shape == source.shape
    assert set(np.unique(np.asarray(saved.dataobj))) == {0, 2}


def test_empty_download_says_so_and_tabs_do_not_share_strokes(browser, page, app_url, sample):
    open_annotator(page, app_url, sample)
    stroke_across_coronal_plane(page, sample)
    page.wait_for_function(HAS_ANNOTATION, arg=view(0), timeout=TIMEOUT_MS)

    other = browser.new_context(viewport={"width": 1400, "height": 1000}).new_page()
    open_annotator(other, app_url, sample)
    assert other.evaluate(NO_ANNOTATION, view(0))
    other.click("#annotator-download-button")
    other.wait_for_selector("#annotator-message:has-text('Nothing to download')")
    other.context.close()


MESHES_3D = """
(names) => {
    const graph = document.getElementById('annotator-view-3d');
    const gd = graph && graph.querySelector('.js-plotly-plot');
    const shown = gd && gd.data ? gd.data.map((trace) => trace.name) : [];
    return names.every((name) => shown.includes(name));
}
"""


def test_3d_view_and_statistics_show_each_label(page, app_url, sample):
    open_annotator(page, app_url, sample)
    stroke_across_coronal_plane(page, sample)
    page.wait_for_function(HAS_ANNOTATION, arg=view(0), timeout=TIMEOUT_MS)
    page.click("label[for=annotator-show-3d]")
    page.wait_for_function(MESHES_3D, arg=["Tumour"], timeout=TIMEOUT_MS)
    page.keyboard.press("2")
    anterior = [(col * sample.spacing[2], 35 * sample.spacing[1]) for col in (55, 60)]
    draw_stroke(page, 0, anterior)  # away from the first stroke's row
    page.wait_for_function(MESHES_3D, arg=["Tumour", "Oedema"], timeout=TIMEOUT_MS)
    page.click("label[for=annotator-show-statistics]")
    page.wait_for_selector("#annotator-statistics-table:has-text('Oedema')", timeout=TIMEOUT_MS)
    assert "Tumour" in page.inner_text("#annotator-statistics-table")


def test_help_opens_with_its_text_and_closes(page, app_url, sample):
    open_annotator(page, app_url, sample)
    assert page.locator("#annotator-help li").count() == 0  # sent when opened
    page.click("#annotator-help-button")
    page.wait_for_selector("#annotator-help li:has-text('Grow strokes')", timeout=TIMEOUT_MS)
    assert page.locator("#annotator-help li").count() == len(HELP_ITEMS)
    page.click("#annotator-help-button")
    page.wait_for_selector("#annotator-help", state="hidden", timeout=TIMEOUT_MS)


SLIDER_AT = """
([selector, index]) => {
    const handle = document.querySelector(selector + ' [role=slider]');
    return Boolean(handle) && handle.getAttribute('aria-valuenow') === String(index);
}
"""


def test_click_in_pan_mode_moves_the_other_views(page, app_url, sample):
    open_annotator(page, app_url, sample)
    page.hover(view(0) + " .dash-graph")
    page.click(view(0) + " .modebar-btn[data-attr=dragmode][data-val=pan]")
    row, col = 40, 30
    point = [view(0), col * sample.spacing[2], row * sample.spacing[1]]
    page.mouse.click(*page.wait_for_function(DATA_TO_PAGE, arg=point).json_value())
    page.wait_for_function(SLIDER_AT, arg=[view(1), row], timeout=TIMEOUT_MS)
    page.wait_for_function(SLIDER_AT, arg=[view(2), col], timeout=TIMEOUT_MS)


def test_fill_shows_a_preview_that_enter_accepts_and_escape_discards(page, app_url, sample):
    open_annotator(page, app_url, sample)
    stroke_across_coronal_plane(page, sample)
    page.wait_for_function(HAS_ANNOTATION, arg=view(0), timeout=TIMEOUT_MS)
    labelled = overlay(page)

    page.keyboard.press("f")
    page.wait_for_selector("#annotator-fill-bar.show", timeout=TIMEOUT_MS)
    wait_overlay_change(page, labelled)
    page.keyboard.press("Escape")
    page.wait_for_selector("#annotator-fill-bar.show", state="detached", timeout=TIMEOUT_MS)
    wait_overlay(page, labelled)

    page.keyboard.press("f")
    page.wait_for_selector("#annotator-fill-bar.show", timeout=TIMEOUT_MS)
    previewed = wait_overlay_change(page, labelled)
    page.keyboard.press("Enter")
    wait_overlay_change(page, previewed)
    page.keyboard.press("Control+z")
    wait_overlay(page, labelled)


# Pixels of a view's stroke canvas that show the first label's colour (#e6194b) over the slice.
LABEL_PIXELS_ON_CANVAS = """
(selector) => {
    const canvas = document.querySelector(selector + ' .dash-graph > canvas');
    if (!canvas || !canvas.width) { return 0; }
    const rgba = canvas.getContext('2d').getImageData(0, 0, canvas.width, canvas.height).data;
    let count = 0;
    for (let p = 0; p < rgba.length; p += 4) {
        if (rgba[p + 3] === 255 && rgba[p] > 120 && rgba[p] > 2 * rgba[p + 2]) { count++; }
    }
    return count;
}
"""


# Holds the page's edit requests (strokes) until released, to look between mouseup and answer.
HOLD_EDITS = """
() => {
    const fetch = window.fetch, held = window.__heldEdits = [];
    window.fetch = (url, options) => {
        const body = (options && options.body) || '';
        if (typeof body === 'string' && body.includes('annotator-annotation.data')) {
            return new Promise((resolve) => held.push(() => resolve(fetch(url, options))));
        }
        return fetch(url, options);
    };
}
"""


def test_stroke_shows_its_labels_before_the_server_answers(page, app_url, sample, cache_dir):
    open_annotator(page, app_url, sample)
    page.evaluate(HOLD_EDITS)
    page.hover(view(0) + " .dash-graph")  # the view asks for its slice's superpixel ids
    stroke_across_coronal_plane(page, sample)
    page.wait_for_function(f"() => ({LABEL_PIXELS_ON_CANVAS.strip()})({view(0)!r}) > 100")
    page.wait_for_function("() => window.__heldEdits.length > 0")
    assert not page.evaluate(HAS_ANNOTATION, view(0))

    graph = page.evaluate(f"() => document.querySelector({view(0)!r} + ' .dash-graph').id")
    shown = page.evaluate(f"() => window._superpixelStrokeViews[{graph!r}].painted.ids")

    page.evaluate("() => window.__heldEdits.forEach((release) => release())")
    page.wait_for_function(HAS_ANNOTATION, arg=view(0), timeout=TIMEOUT_MS)
    page.wait_for_function(f"() => ({LABEL_PIXELS_ON_CANVAS.strip()})({view(0)!r}) === 0")
    # The canvas showed exactly the superpixels of the slice that the server labelled.
    state = annotation_state(page)
    superpixels = load_or_compute_superpixels(sample, cache_dir)
    labels = Annotation.from_state(superpixels, state).superpixel_labels
    on_slice = np.unique(superpixels.labels[sample.data.shape[0] // 2])
    assert sorted(shown) == [int(i) for i in on_slice if i > 0 and labels[i] == 1]


def test_erased_superpixel_inside_the_labels_stays_unlabelled(page, app_url, sample, cache_dir):
    open_annotator(page, app_url, sample)
    stroke_across_coronal_plane(page, sample)
    page.wait_for_function(HAS_ANNOTATION, arg=view(0), timeout=TIMEOUT_MS)
    superpixels = load_or_compute_superpixels(sample, cache_dir)
    labelled = Annotation.from_state(superpixels, annotation_state(page)).superpixel_labels > 0
    # A superpixel of the axial slice whose neighbours are all labelled: smooth outlines
    # would fill it back.
    index = sample.data.shape[0] // 2
    on_slice = superpixels.labels[index]
    candidates = [
        k
        for k in np.unique(on_slice[labelled[on_slice]])
        if labelled[superpixels.labels[ndi.binary_dilation(superpixels.labels == k)]].all()
    ]
    assert candidates
    enclosed = max(candidates, key=lambda k: np.count_nonzero(on_slice == k))
    rows, cols = np.nonzero(on_slice == enclosed)
    centre = np.argmin((rows - rows.mean()) ** 2 + (cols - cols.mean()) ** 2)
    before = overlay(page)
    page.keyboard.press("s")  # fine strokes
    page.keyboard.press("e")  # eraser
    draw_stroke(page, 0, [(cols[centre] * sample.spacing[2], rows[centre] * sample.spacing[1])])
    after = wait_overlay_change(page, before)
    assert Annotation.from_state(superpixels, annotation_state(page)).erased[enclosed]
    assert not overlay_indices(after)[on_slice == enclosed].any()
    assert overlay_indices(after)[(on_slice != enclosed) & labelled[on_slice]].any()


LEVEL_KEYS = {"fine": "s", "grow": "g", "brush": "b"}


def switch_levels(page, first: str, then: str) -> None:
    """Turn on a stroke level's switch, then another's, by their keys: the second switches
    the first off."""
    for part in (first, then):
        page.keyboard.press(LEVEL_KEYS[part])
        page.wait_for_selector(f"#{ANNOTATOR}-{part}:checked")
    page.wait_for_selector(f"#{ANNOTATOR}-{first}:not(:checked)")


def test_the_brush_paints_voxels_along_its_stroke_on_its_slice(page, app_url, sample, cache_dir):
    open_annotator(page, app_url, sample)
    switch_levels(page, "grow", "brush")
    stroke_across_coronal_plane(page, sample)
    page.wait_for_function(HAS_ANNOTATION, arg=view(0), timeout=TIMEOUT_MS)
    page.wait_for_function(HAS_ANNOTATION, arg=view(1), timeout=TIMEOUT_MS)
    superpixels = load_or_compute_superpixels(sample, cache_dir)
    annotation = Annotation.from_state(superpixels, annotation_state(page))
    assert not annotation.superpixel_labels.any()
    z, y, _ = np.unravel_index(annotation.voxel_marks.indices, sample.data.shape)
    assert (z == sample.data.shape[0] // 2).all()
    reach = 1.5 / sample.spacing[1]
    assert np.abs(y - sample.data.shape[1] // 2).max() <= reach
    assert (annotation.voxel_marks.labels == 1).all() and z.size > 10


def test_grow_strokes_replace_fine_strokes_and_grow_the_label_in_3d(
    page, app_url, sample, cache_dir
):
    open_annotator(page, app_url, sample)
    switch_levels(page, "fine", "grow")
    stroke_across_coronal_plane(page, sample)
    page.wait_for_function(HAS_ANNOTATION, arg=view(0), timeout=TIMEOUT_MS)
    page.wait_for_selector("#annotator-message:has-text('The grow stroke labelled')")
    superpixels = load_or_compute_superpixels(sample, cache_dir)
    labelled = Annotation.from_state(superpixels, annotation_state(page)).superpixel_labels > 0
    # A stroke at the fine level labels only superpixels of the slice it is drawn on.
    on_slice = np.unique(superpixels.labels[sample.data.shape[0] // 2])
    assert np.count_nonzero(labelled) > np.count_nonzero(labelled[on_slice])
