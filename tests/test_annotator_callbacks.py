"""The Dash layer's callbacks, called as functions (no browser, no callback context).

The web functions take what triggered them (an action, a component id) as an argument, so
they are called here with it directly. What an edit does to the annotation is tested
without Dash in ``test_editing.py``; here, what the browser gets back.
"""

import base64
import dataclasses
import json

import dash
import nibabel as nib
import numpy as np
import orjson
import pytest

from superpixel_annotator.core.annotation import Annotation, split_marks
from superpixel_annotator.core.editing import proposal_arrays, shown_labels
from superpixel_annotator.core.geometry import section, view_geometry
from superpixel_annotator.core.image_files import Limits
from superpixel_annotator.core.statistics import label_statistics
from superpixel_annotator.web.annotator import VolumeAnnotator
from superpixel_annotator.web.callbacks import editing, overlays, panels, scans
from superpixel_annotator.web.callbacks.overlays import STALE
from superpixel_annotator.web.context import CASE_GONE, case_data
from superpixel_annotator.web.dataset_panel import DATASET_HELP
from superpixel_annotator.web.layout import HELP_ITEMS
from superpixel_annotator.web.pacs_panel import PACS_HELP


@pytest.fixture
def annotator(small_case, tmp_path):
    volume, superpixels = small_case
    return VolumeAnnotator(
        dash.Dash(__name__), volume, id="ann", superpixels=superpixels, cache_dir=tmp_path
    )


def session(annotator) -> dict:
    """The case store of a session showing the annotator's initial scan."""
    return case_data(annotator.initial_case)


def stroke_path(annotator, axis, rows_cols):
    """An SVG path in a view's mm coordinates for (row, col) voxel positions."""
    geometry = view_geometry(annotator.initial_case.volume.spacing, axis)
    points = [f"{c * geometry['dx']},{r * geometry['dy']}" for r, c in rows_cols]
    return "M" + "L".join(points)


# The default of ``edit``'s ``stroke``: the store value a view sends for ``path``.
FROM_PATH = object()


def edit(
    annotator,
    state,
    *,
    axis=None,
    path=None,
    stroke=FROM_PATH,
    button=None,
    label=1,
    index=None,
    fine=False,
    grow=False,
    brush=False,
    preview=None,
    case=None,
    segmentation=None,
):
    """Call the edit callback for a stroke along ``path`` on the middle slice (or ``index``),
    or for a view's raw ``stroke`` store value, or for a button (``"undo"``, ``"redo"``,
    ``"fill"``, ``"fill-accept"``, ``"fill-discard"``), or for a ``segmentation`` file
    (name, bytes) dropped on *Open segmentation*."""
    strokes = [None, None, None]
    middle = [annotator.volume.data.shape[a] // 2 for a in range(3)]
    if segmentation:
        action = ("open-segmentation", None)
    elif button:
        action = (button, None)
    else:
        shown = middle[axis] if index is None else index
        strokes[axis] = {"path": path, "index": shown} if stroke is FROM_PATH else stroke
        action = ("stroke", axis)
    inputs = {
        "strokes": strokes,
        "undo": 1,
        "redo": 1,
        "fill": 1,
        "fill_accept": 1,
        "fill_discard": 1,
        "segmentation": segmentation
        and "data:application/gzip;base64," + base64.b64encode(segmentation[1]).decode(),
        "segmentation_name": segmentation and segmentation[0],
        "fine": fine,
        "grow": grow,
        "brush": brush,
        "indices": [middle[a] if index is None or a != axis else index for a in range(3)],
        "label": label,
        "state": state,
        "preview": preview,
        "case": case or session(annotator),
    }
    return editing.edit(annotator.context, action, inputs)


def apply_patch(slices: list, patch) -> list:
    """What the browser does with a ``dash.Patch`` (as sent) of assignments to list items."""
    slices = list(slices)
    if patch is dash.no_update:
        return slices
    for operation in patch["operations"]:
        assert operation["operation"] == "Assign"
        (index,) = operation["location"]
        slices[index] = operation["params"]["value"]
    return slices


def show_stale_slices(annotator, axis, slices, state, preview=None):
    """What the browser gets when the user visits every slice marked stale."""
    render = overlays.stale_slice_callback(annotator.context, axis)
    for index in [i for i, uri in enumerate(slices) if uri == STALE]:
        slices = apply_patch(slices, render([index, 0.0], state, preview, session(annotator)))
    return slices


def annotation_of(annotator, state) -> Annotation:
    """The annotation of ``state`` on the annotator's scan, as the server shows it."""
    case = annotator.initial_case
    return Annotation.from_state(case.superpixels, state, appearance=case.appearance)


def full_render(annotator, state, axis, preview=None):
    """Every overlay slice of a view, rendered from scratch."""
    annotation = annotation_of(annotator, state)
    proposal = proposal_arrays(preview, annotator.superpixels.count)
    annotation.superpixel_labels[:], annotation.erased[:] = split_marks(
        shown_labels(annotation, proposal).superpixels
    )
    labels = annotation.label_volume()
    return [
        annotator.context.overlay_uri(section(labels, axis, index))
        for index in range(labels.shape[axis])
    ]


@pytest.fixture(params=["superpixel outlines", "smooth outlines"])
def any_annotator(request, small_case, tmp_path):
    """An annotator whose labels follow the superpixels, or are smoothed."""
    volume, superpixels = small_case
    if request.param == "smooth outlines":
        superpixels = dataclasses.replace(
            superpixels, params={"outline_smoothing": 2.0}, spacing=volume.spacing
        )
    return VolumeAnnotator(
        dash.Dash(__name__), volume, id="ann", superpixels=superpixels, cache_dir=tmp_path
    )


def test_patched_overlays_equal_full_render_after_strokes_undos_and_fills(any_annotator):
    annotator = any_annotator
    shape = annotator.volume.data.shape
    client = [[None] * shape[axis] for axis in range(3)]
    state = preview = None
    rng = np.random.default_rng(7)
    actions = ["stroke", "stroke", "undo", "redo", "fill", "fill-accept", "fill-discard"]
    for step in range(40):
        action = rng.choice(actions)
        if action == "stroke":
            axis = int(rng.integers(3))
            rows, cols = (shape[a] for a in range(3) if a != axis)
            points = rng.uniform(0, [rows, cols], size=(int(rng.integers(1, 4)), 2))
            result = edit(
                annotator,
                state,
                axis=axis,
                path=stroke_path(annotator, axis, points),
                label=int(rng.choice([0, 1, 2, 3])),
                fine=bool(rng.integers(2)),
                preview=preview,
            )
        else:
            result = edit(annotator, state, button=str(action), preview=preview)
        if result["state"] is not dash.no_update:
            state = result["state"]
        if result["preview"] is not dash.no_update:
            preview = result["preview"]
        for axis in range(3):
            client[axis] = apply_patch(client[axis], result["slices"][axis])
            client[axis] = show_stale_slices(annotator, axis, client[axis], state, preview)
            expected = full_render(annotator, state, axis, preview)
            assert client[axis] == expected, (step, action, axis)
    assert state is not None


def test_fill_previews_then_accept_applies_and_discard_keeps(annotator):
    state = edit(annotator, None, axis=0, path=stroke_path(annotator, 0, [(7, 7)]))["state"]
    before = annotation_of(annotator, state)
    proposed = edit(annotator, state, button="fill")
    assert proposed["state"] is dash.no_update and proposed["fill_bar"] is True
    preview = proposed["preview"]
    assert preview["ids"] and "Accept" in proposed["fill_text"]
    shown = [op["params"]["value"] for op in proposed["slices"][0]["operations"]]
    assert any(uri not in (None, STALE) for uri in shown)

    discarded = edit(annotator, state, button="fill-discard", preview=preview)
    assert discarded["state"] is dash.no_update
    assert discarded["preview"] is None and discarded["fill_bar"] is False

    accepted = edit(annotator, state, button="fill-accept", preview=preview)
    after = annotation_of(annotator, accepted["state"])
    expected = before.superpixel_labels.copy()
    expected[preview["ids"]] = preview["labels"]
    np.testing.assert_array_equal(after.superpixel_labels, expected)
    np.testing.assert_array_equal(
        after.superpixel_labels, before.autofill_labels(annotator.initial_case.intensities)
    )
    after.undo()
    np.testing.assert_array_equal(after.superpixel_labels, before.superpixel_labels)


def test_fill_with_nothing_to_propose_says_so(annotator):
    result = edit(annotator, None, button="fill")
    assert result["state"] is dash.no_update and result["preview"] is dash.no_update
    assert result["slices"] == [dash.no_update] * 3
    assert "found no similar superpixels" in result["message"] and result["show_message"]


@pytest.mark.parametrize(
    "preview",
    [{"ids": [10**9], "labels": [1]}, {"ids": "x"}, {"ids": [1, 2], "labels": [1]}, [1]],
    ids=["id", "text", "lengths", "list"],
)
def test_malformed_preview_is_ignored(annotator, preview):
    result = edit(annotator, None, button="fill-accept", preview=preview)
    assert result["state"] is dash.no_update


def test_a_stroke_sends_its_patches_as_json_orjson_encodes_as_they_are(annotator):
    # Dash encodes a response with orjson, and converts it all in Python first when orjson
    # refuses a part of it, as it refuses a dash.Patch object.
    path = stroke_path(annotator, 0, [(1, 1), (1, 16)])
    result = edit(annotator, None, axis=0, path=path, index=1)
    sent = json.loads(orjson.dumps(result["slices"]))
    assert [patch["__dash_patch_update"] for patch in sent] == ["__dash_patch_update"] * 3


def test_stroke_sends_only_touched_slices(annotator):
    # A stroke in the first block row: those superpixels end at slice 3 of 6 along axis 0.
    path = stroke_path(annotator, 0, [(1, 1), (1, 16)])
    result = edit(annotator, None, axis=0, path=path, index=1)
    axial_patch = result["slices"][0]["operations"]
    sent = {op["location"][0]: op["params"]["value"] for op in axial_patch}
    assert [op["location"][0] for op in axial_patch] == [0, 1, 2]  # each slice once
    # Only the slice on screen is rendered now; the others when a view shows them.
    assert sent[1].startswith("data:image/png") and sent[0] == sent[2] == STALE
    assert result["show_message"] is False


def test_no_action_is_no_update(annotator):
    with pytest.raises(dash.exceptions.PreventUpdate):
        editing.edit(
            annotator.context, None, {"preview": None, "state": None, "case": session(annotator)}
        )


@pytest.mark.parametrize(
    ("stroke", "label"),
    [
        ({"path": "not a path", "index": 3}, 1),
        ({"path": "M1,2L3", "index": 3}, 1),
        ({"path": "M" + "1," * 200_000, "index": 3}, 1),
        ({"path": "M1e400,2L3,4", "index": 3}, 1),
        ({"path": "M1,2L3,4", "index": 3}, 99),
        ({"path": "M1,2L3,4", "index": 3}, "1"),
        ({"path": "M1,2L3,4", "index": 10_000}, 1),
        ({"path": "M1,2L3,4", "index": "3"}, 1),
        ({"path": "M1,2L3,4"}, 1),
        ({"path": ["M1,2L3,4"], "index": 3}, 1),
        ("M1,2L3,4", 1),
        (None, 1),
    ],
    ids=[
        "text",
        "odd",
        "huge",
        "overflow",
        "label",
        "label-str",
        "index",
        "index-str",
        "no-index",
        "path-list",
        "not-a-dict",
        "none",
    ],
)
def test_malformed_strokes_are_refused_without_touching_the_annotation(annotator, stroke, label):
    state = edit(annotator, None, axis=0, path=stroke_path(annotator, 0, [(7, 7)]))["state"]
    result = edit(annotator, state, axis=0, stroke=stroke, label=label)
    assert result["state"] is dash.no_update  # the state is not replaced
    assert result["slices"] == [dash.no_update] * 3
    assert result["message"].startswith("Stroke ignored") and result["show_message"] is True


def test_far_away_coordinates_are_clipped_not_expanded(annotator):
    row_mm = 7 * view_geometry(annotator.volume.spacing, 0)["dy"]
    path = f"M-1e300,{row_mm}L1e300,{row_mm}"
    result = edit(annotator, None, axis=0, path=path)
    annotation = annotation_of(annotator, result["state"])
    assert annotation.superpixel_labels.any()


@pytest.mark.parametrize("state", ["garbage", "x" * 1_000_000, 12], ids=["text", "huge", "int"])
def test_malformed_state_is_refused_with_a_message(annotator, state):
    result = edit(annotator, state, axis=0, path=stroke_path(annotator, 0, [(7, 7)]))
    assert result["state"] is dash.no_update
    assert result["slices"] == [dash.no_update] * 3
    assert "refused" in result["message"] and result["show_message"] is True


def test_download_writes_source_geometry(annotator, tmp_path):
    state = edit(annotator, None, axis=0, path=stroke_path(annotator, 0, [(7, 4), (7, 13)]))[
        "state"
    ]
    sent, message, is_open = panels.download(annotator.context, state, session(annotator))
    assert sent["filename"] == "small_segmentation.nii.gz"
    assert message is dash.no_update and is_open is False
    path = tmp_path / sent["filename"]
    path.write_bytes(base64.b64decode(sent["content"]))
    image = nib.load(path)
    np.testing.assert_allclose(image.affine, annotator.volume.affine)
    expected = annotator.volume.to_source(annotation_of(annotator, state).label_volume())
    np.testing.assert_array_equal(np.asarray(image.dataobj), expected)


def test_downloaded_smooth_segmentation_opens_back_exactly(any_annotator):
    annotator = any_annotator
    state = None
    for axis, label, rows_cols in [
        (0, 1, [(2, 2), (12, 15)]),
        (1, 2, [(1, 3), (4, 14)]),
        (0, 0, [(7, 8)]),  # erases superpixels inside the labels
        (2, 0, [(3, 7)]),
    ]:
        path = stroke_path(annotator, axis, rows_cols)
        state = edit(annotator, state, axis=axis, path=path, label=label, fine=True)["state"]
    saved = annotation_of(annotator, state)
    assert saved.erased.any()
    sent = panels.download(annotator.context, state, session(annotator))
    content = base64.b64decode(sent[0]["content"])

    result = edit(annotator, None, segmentation=(sent[0]["filename"], content))
    assert "matches the superpixels exactly" in result["message"]
    opened = annotation_of(annotator, result["state"])
    np.testing.assert_array_equal(opened.marked_labels(), saved.marked_labels())
    np.testing.assert_array_equal(opened.label_volume(), saved.label_volume())


def test_an_unusable_segmentation_says_why_and_keeps_the_annotation(annotator):
    state = edit(annotator, None, axis=0, path=stroke_path(annotator, 0, [(7, 7)]))["state"]
    result = edit(annotator, state, segmentation=("broken.nii.gz", bytes(range(256)) * 4))
    assert result["state"] is dash.no_update and result["slices"] == [dash.no_update] * 3
    assert "broken.nii.gz" in result["message"] and result["message_color"] == "warning"
    assert "\n" not in result["message"]


def test_download_of_empty_annotation_says_so(annotator):
    sent, message, is_open = panels.download(annotator.context, None, session(annotator))
    assert sent is dash.no_update and "empty" in message and is_open


def test_download_of_brush_strokes_alone_holds_their_voxels(annotator, tmp_path):
    path = stroke_path(annotator, 0, [(7, 7), (7, 9)])
    state = edit(annotator, None, axis=0, path=path, brush=True)["state"]
    sent, message, _ = panels.download(annotator.context, state, session(annotator))
    assert message is dash.no_update
    saved = tmp_path / sent["filename"]
    saved.write_bytes(base64.b64decode(sent["content"]))
    painted = annotator.volume.to_source(annotation_of(annotator, state).label_volume())
    assert painted.any()
    np.testing.assert_array_equal(np.asarray(nib.load(saved).dataobj), painted)


def test_boundaries_follow_the_slice_and_skip_when_hidden(annotator):
    boundary = overlays.boundary_callback(annotator.context, 0)
    case = session(annotator)
    result = boundary({"index": 2}, True, None, case)
    assert result["index"] == 2 and result["uri"].startswith("data:image/png")
    with pytest.raises(dash.exceptions.PreventUpdate):
        boundary({"index": 2}, False, None, case)
    with pytest.raises(dash.exceptions.PreventUpdate):
        boundary({"index": 2}, True, result, case)
    with pytest.raises(dash.exceptions.PreventUpdate):
        boundary({"index": "2; drop"}, True, None, case)


def test_3d_view_has_outline_and_one_mesh_per_label(annotator):
    state = edit(annotator, None, axis=0, path=stroke_path(annotator, 0, [(7, 4), (7, 13)]))[
        "state"
    ]
    state = edit(annotator, state, axis=0, path=stroke_path(annotator, 0, [(10, 4)]), label=2)[
        "state"
    ]
    case = session(annotator)
    figure = panels.figure_3d(annotator.context, state, True, case)
    names = [trace["name"] for trace in figure["data"]]
    assert len(figure["data"]) == 3, names
    hidden = panels.figure_3d(annotator.context, state, False, case)
    assert hidden["data"] == [] and not hidden["layout"]["xaxis"]["visible"]
    assert "Turn on 3D view" in hidden["layout"]["annotations"][0]["text"]


def test_two_instances_in_one_app_do_not_clash(small_case, tmp_path):
    volume, superpixels = small_case
    app = dash.Dash(__name__)
    first = VolumeAnnotator(app, volume, id="first", superpixels=superpixels, cache_dir=tmp_path)
    second = VolumeAnnotator(app, volume, id="second", superpixels=superpixels, cache_dir=tmp_path)
    app.layout = dash.html.Div([first.layout, second.layout])
    ids = []

    def collect(component):
        if getattr(component, "id", None) is not None:
            ids.append(str(component.id))
        children = getattr(component, "children", None)
        for child in children if isinstance(children, list) else [children]:
            if hasattr(child, "to_plotly_json"):
                collect(child)

    collect(app.layout)
    assert len(ids) == len(set(ids))
    outputs = [key for key in app.callback_map]
    assert len(outputs) == len(set(outputs))


def test_statistics_follow_the_spacing_and_export_csv(annotator):
    path = stroke_path(annotator, 0, [(7, 4), (7, 13)])
    state = edit(annotator, None, axis=0, path=path, label=2)["state"]
    case = session(annotator)
    is_open, table, chart = panels.statistics_view(annotator.context, state, True, case)
    assert is_open and chart.data[0].x == ("Oedema",)
    annotation = annotation_of(annotator, state)
    labels = annotation.label_volume()
    voxels = int((labels == 2).sum())
    expected_ml = voxels * np.prod(annotator.volume.spacing) / 1000
    assert chart.data[0].y == (pytest.approx(expected_ml),)
    # Counted in the labelled box, the numbers are those of the whole volume, to the bit.
    volume = annotator.volume
    whole = label_statistics(
        labels, annotation.superpixel_labels, {volume.name: volume.data}, volume.spacing
    )
    assert panels.statistics(annotator.context, state, case) == whole
    assert panels.statistics(annotator.context, None, case) == []
    sent = panels.statistics_download(annotator.context, state, case)
    header, row = sent["content"].splitlines()
    assert sent["filename"] == "small_statistics.csv"
    assert header.startswith("label,voxels,volume_mm3,volume_ml,superpixels,mean_small")
    assert row.startswith(f"2,{voxels},")
    assert panels.statistics_view(annotator.context, state, False, case) == (
        False,
        dash.no_update,
        dash.no_update,
    )


@pytest.mark.parametrize("request_", [None, [], ["3"], [10_000], [-1], [True], "x"], ids=str)
def test_malformed_stale_requests_are_ignored(annotator, request_):
    with pytest.raises(dash.exceptions.PreventUpdate):
        overlays.stale_slice_callback(annotator.context, 0)(
            request_, None, None, session(annotator)
        )


def test_superpixel_ids_of_a_slice_carry_their_coarse_regions(annotator):
    case = annotator.initial_case
    superpixel_ids = overlays.superpixel_ids_callback(annotator.context, 0)
    result = superpixel_ids([2, case.key], session(annotator))
    expected = np.unique(case.superpixels.labels[2])
    assert result["index"] == 2 and result["ids"] == expected[expected > 0].tolist()
    coarse = case.superpixels.coarse
    expected_coarse = coarse[result["ids"]] if coarse is not None else result["ids"]
    assert result["coarse"] == list(expected_coarse)
    for request in ([2, "another-key"], [10_000, case.key], ["2", case.key], None, [2]):
        with pytest.raises(dash.exceptions.PreventUpdate):
            superpixel_ids(request, session(annotator))


def upload_url(content: bytes) -> str:
    return "data:application/octet-stream;base64," + base64.b64encode(content).decode()


def open_scan(
    annotator,
    contents=None,
    filenames=None,
    *,
    trigger="upload",
    size="4.5",
    saved=None,
    case=None,
    context=None,
):
    """Call the open-scan callback as after a change of ``trigger`` (``"upload"``,
    ``"size"`` or ``"saved"``)."""
    context = context or annotator.context
    return scans.open_scan(
        context,
        lambda progress: None,
        context.ids[trigger],
        {
            "contents": contents,
            "size": size,
            "saved": saved,
            "filenames": filenames,
            "state": None,
            "case": case or session(annotator),
        },
    )


def test_uploaded_scan_opens_as_a_new_case(annotator, tmp_path):
    source = np.random.default_rng(3).normal(100, 10, (12, 14, 16)).astype(np.float32)
    path = tmp_path / "mine.nii.gz"
    nib.save(nib.Nifti1Image(source, np.eye(4)), path)
    result = open_scan(annotator, [upload_url(path.read_bytes())], ["mine.nii.gz"])
    case = annotator.case_of(result["case"])
    assert case.key != annotator.initial_case.key and case.volume.name == "mine"
    assert result["case"]["restore"] is True and result["message"].startswith("Opened mine")


@pytest.mark.parametrize(
    ("contents", "names", "problem"),
    [
        ([upload_url(b"")], ["empty.nii"], "empty"),
        ([upload_url(bytes(range(256)) * 4)], ["random.nii.gz"], "not a readable image"),
        (["not a data url"], ["x.nii"], "not a file"),
        ([upload_url(b"x" * 2000)], ["big.nii"], "upload limit"),
        (None, None, "no file"),
    ],
    ids=["empty", "random", "not-url", "too-big", "none"],
)
def test_bad_upload_says_why_and_keeps_the_case(annotator, contents, names, problem):
    limited = dataclasses.replace(annotator.context, limits=Limits(max_bytes=1500))
    result = open_scan(annotator, contents, names, context=limited)
    assert result["case"] is dash.no_update
    assert problem in result["message"] and result["message_color"] == "warning"
    assert "\n" not in result["message"]


def test_uploads_read_as_modalities_of_one_scan(annotator, tmp_path):
    shapes = {"flair.nii.gz": (12, 14, 16), "t1c.nii.gz": (12, 14, 16)}
    volumes = scans.read_uploads(annotator.context, uploaded_scans(tmp_path, shapes), list(shapes))
    assert [volume.name for volume in volumes] == ["flair", "t1c"]
    assert volumes[0].data.shape == volumes[1].data.shape
    assert sorted(volumes[0].data.shape) == [12, 14, 16]


def uploaded_scans(tmp_path, shapes: dict) -> list[str]:
    """Upload data URLs of noise scans, one per name, of the given shapes."""
    contents = []
    for seed, (name, shape) in enumerate(shapes.items()):
        data = np.random.default_rng(seed).normal(100, 10, shape).astype(np.float32)
        nib.save(nib.Nifti1Image(data, np.eye(4)), tmp_path / name)
        contents.append(upload_url((tmp_path / name).read_bytes()))
    return contents


def test_uploaded_modalities_must_share_a_grid(annotator, tmp_path):
    shapes = {"flair.nii.gz": (12, 14, 16), "t1c.nii.gz": (12, 14, 15)}
    result = open_scan(annotator, uploaded_scans(tmp_path, shapes), list(shapes))
    assert result["case"] is dash.no_update
    assert "t1c.nii.gz" in result["message"] and "flair.nii.gz" in result["message"]


def test_two_uploaded_modalities_open_one_case_with_both(annotator, tmp_path):
    shapes = {"flair.nii.gz": (12, 14, 16), "t1c.nii.gz": (12, 14, 16)}
    result = open_scan(annotator, uploaded_scans(tmp_path, shapes), list(shapes))
    case = annotator.case_of(result["case"])
    assert [volume.name for volume in case.volumes] == ["flair", "t1c"]


def test_new_size_maps_the_annotation_and_the_saved_size_restores_it(annotator):
    chosen = open_scan(annotator, trigger="size", size="3.5")
    assert chosen["message"].startswith("Superpixels recomputed")
    assert chosen["case"]["size"] == "3.5" and chosen["case"]["restore"] is False
    assert chosen["case"]["previous"] == session(annotator)
    # A page load asks for the size chosen last: the browser's annotation for it wins.
    restored = open_scan(annotator, trigger="saved", saved={"size": "3.5"})
    assert restored["case"]["key"] == chosen["case"]["key"]
    assert restored["case"]["restore"] is True and restored["case"]["previous"] is None
    assert restored["message"] is dash.no_update
    # The menu follows the case: no work.
    followed = open_scan(annotator, trigger="size", size="3.5", case=chosen["case"])
    assert followed["case"] is dash.no_update and followed["message"] is dash.no_update


def test_undo_with_nothing_left_goes_back_to_the_previous_superpixels(annotator):
    chosen = open_scan(annotator, trigger="size", size="3.5")["case"]
    result = edit(annotator, chosen["state"], button="undo", case=chosen)
    assert result["case"] == chosen["previous"] == session(annotator)
    assert result["state"] is dash.no_update and result["slices"] == [dash.no_update] * 3
    # With a step to undo, undo undoes it and the case stays.
    new = annotator.case_of(chosen)
    geometry = view_geometry(new.volume.spacing, 0)
    path = f"M{7 * geometry['dx']},{7 * geometry['dy']}"
    state = edit(annotator, chosen["state"], axis=0, path=path, case=chosen)["state"]
    undone = edit(annotator, state, button="undo", case=chosen)
    assert undone["case"] is dash.no_update and undone["state"] is not dash.no_update
    # Without a previous case, undo with nothing left changes nothing.
    nothing = edit(annotator, None, button="undo")
    assert nothing["case"] is dash.no_update and nothing["state"] is dash.no_update


def test_a_page_load_returns_to_the_scan_this_browser_showed_last(annotator, small_case, tmp_path):
    shapes = {"mine.nii.gz": (12, 14, 16)}
    uploaded = open_scan(annotator, uploaded_scans(tmp_path, shapes), list(shapes))
    # Another worker process, which knows the case from the disk cache only.
    volume, superpixels = small_case
    other = VolumeAnnotator(
        dash.Dash(__name__), volume, id="ann", superpixels=superpixels, cache_dir=tmp_path
    )
    saved = {"case": uploaded["case"]["key"], "size": "3.5"}
    restored = open_scan(other, trigger="saved", saved=saved)
    assert restored["case"]["key"] == uploaded["case"]["key"]  # the case wins over the size
    assert restored["case"]["restore"] is True and not restored["case"]["initial"]
    assert other.case_of(restored["case"]).volume.name == "mine"
    assert restored["message"] is dash.no_update


def test_a_saved_scan_gone_from_the_server_is_said_and_the_scan_shown_stays(annotator):
    gone = open_scan(annotator, trigger="saved", saved={"case": "0" * 32})
    assert gone["message"] == CASE_GONE and gone["message_color"] == "warning"
    assert gone["case"] is dash.no_update
    # The saved size still counts: the scan shown opens at that size.
    sized = open_scan(annotator, trigger="saved", saved={"case": "0" * 32, "size": "3.5"})
    assert sized["message"] == CASE_GONE
    assert sized["case"]["size"] == "3.5" and sized["case"]["restore"] is True
    shown = annotator.case_of(sized["case"]).volume
    assert shown.content_hash == annotator.volume.content_hash


@pytest.mark.parametrize(
    "saved",
    [None, "0" * 32, {"case": "../../etc/passwd"}, {"case": 5}, {"case": "A" * 32}, {"size": "x"}],
)
def test_malformed_saved_values_are_ignored(annotator, saved):
    result = open_scan(annotator, trigger="saved", saved=saved)
    assert all(value is dash.no_update for value in result.values())


def test_a_scan_gone_from_the_server_says_to_open_it_again(annotator):
    gone = {**session(annotator), "key": "0" * 32}
    result = open_scan(annotator, trigger="size", size="3.5", case=gone)
    assert result["message"] == CASE_GONE and result["case"] is dash.no_update
    assert edit(annotator, None, button="undo", case=gone)["message"] == CASE_GONE
    sent, message, is_open = panels.download(annotator.context, None, gone)
    assert sent is dash.no_update and message == CASE_GONE and is_open


def test_views_follow_the_case_and_the_modality(annotator, tmp_path):
    shapes = {"flair.nii.gz": (12, 14, 16), "t1c.nii.gz": (12, 14, 16)}
    opened = open_scan(annotator, uploaded_scans(tmp_path, shapes), list(shapes))["case"]
    ids, slicers = annotator.ids, annotator.slicers
    shown = scans.show_case(annotator.context, slicers, ids["case"], opened, 1)
    shape = annotator.case_of(opened).shape
    assert shown["slider_max"] == [n - 1 for n in shape]
    assert shown["slider_value"] == [n // 2 for n in shape]
    assert shown["modality"] == 0 and shown["name"] == "flair"  # a new case opens on the first
    assert shown["preview"] is None and shown["fill_bar"] is False
    switched = scans.show_case(annotator.context, slicers, ids["modality"], opened, 1)
    assert switched["modality"] == 1 and switched["slider_value"] == [dash.no_update] * 3
    assert switched["preview"] is dash.no_update
    invalid = scans.show_case(annotator.context, slicers, ids["modality"], opened, 7)
    assert invalid["modality"] == 0
    with pytest.raises(dash.exceptions.PreventUpdate):
        scans.show_case(annotator.context, slicers, ids["case"], {"key": "0" * 32}, 0)


# The component ids of an annotator with id "ann" in version 0.1.0: host apps may target
# them, so every one of them stays.
IDS_OF_0_1_0 = [
    *(
        f"ann-{name}"
        for name in (
            "annotation annotation-3d annotation-statistics case contrast download "
            "download-button fill fill-accept fill-bar fill-discard fill-preview fill-text fine "
            "help help-button label message modality name opacity open-segmentation progress "
            "redo root saved shortcuts show-3d show-annotation show-boundaries show-statistics "
            "size statistics statistics-chart statistics-csv statistics-download "
            "statistics-table storage-prefix undo upload view-3d"
        ).split()
    ),
    *(
        f"ann-{name}-{axis}"
        for name in (
            "annotation-slices boundary-slice geometry ids ids-request stale-request stroke "
            "stroke-config view"
        ).split()
        for axis in range(3)
    ),
]


def layout_ids(component) -> set:
    """The ids of a layout's components."""
    found = {component.id} if isinstance(getattr(component, "id", None), str) else set()
    children = getattr(component, "children", None)
    for child in children if isinstance(children, (list, tuple)) else [children]:
        if hasattr(child, "to_plotly_json"):
            found |= layout_ids(child)
    return found


def test_the_component_ids_of_0_1_0_are_kept(annotator):
    ids = layout_ids(annotator.layout)
    assert [name for name in IDS_OF_0_1_0 if name not in ids] == []
    assert set(annotator.ids.for_browser().values()) <= ids


def test_the_grow_switch_grows_the_stroke_label_beyond_the_superpixels_crossed(annotator):
    path = stroke_path(annotator, 0, [(7, 7)])
    results = [
        edit(annotator, None, axis=0, path=path, **switches)
        for switches in ({"fine": True}, {"grow": True, "fine": True})
    ]
    fine, grown = (annotation_of(annotator, result["state"]) for result in results)
    crossed = np.flatnonzero(fine.superpixel_labels)
    assert crossed.size == 1
    assert grown.superpixel_labels[crossed] == 1
    labelled = np.flatnonzero(grown.superpixel_labels)
    assert labelled.size > 1
    # The message tells how far it grew, also beyond the slices on screen.
    assert not results[0]["show_message"] and results[1]["show_message"]
    volume_ml = annotator.initial_case.superpixel_sizes[labelled].sum() * np.prod(
        annotator.volume.spacing
    )
    text = f"labelled {labelled.size} superpixels ({volume_ml / 1000:.1f} mL)"
    assert text in results[1]["message"]


def test_the_brush_switch_paints_voxels_and_their_slices_only(annotator):
    path = stroke_path(annotator, 0, [(7, 7), (7, 9)])
    result = edit(annotator, None, axis=0, path=path, brush=True, fine=True)
    brushed = annotation_of(annotator, result["state"])
    assert not brushed.superpixel_labels.any() and len(brushed.voxel_marks)
    middle = annotator.volume.data.shape[0] // 2
    painted = brushed.label_volume()
    assert painted[middle].any() and not np.delete(painted, middle, axis=0).any()
    axial = result["slices"][0]
    assert list(axial["operations"][0]["location"]) == [middle]  # the one axial slice


def test_the_help_is_laid_out_empty_and_sent_when_opened(annotator):
    help_panel = next(c for c in annotator.layout.children if getattr(c, "id", "") == "ann-help")
    assert help_panel.children is None
    shown, card = panels.toggle_help(annotator.context, False)
    text = json.dumps(card.to_plotly_json(), default=lambda c: c.to_plotly_json())
    assert shown and all(name in text for name, _ in HELP_ITEMS)
    assert not any(name in text for name, _ in DATASET_HELP + PACS_HELP)
    assert panels.toggle_help(annotator.context, True) == (False, dash.no_update)
