"""The callbacks that run in the browser (``js/annotator.js`` and ``js/strokes.js``): local
storage of the annotation, overlay traces, stale slices, strokes, keyboard shortcuts and
the stroke level switches (Fine and Grow, one at a time)."""

from __future__ import annotations

from collections.abc import Sequence

import dash
from dash import Input, Output, State

from ..ids import STROKE_LEVELS, AnnotatorIds
from ..scripts import browser_function
from ..slicer import SessionSlicer


def register(app: dash.Dash, ids: AnnotatorIds, slicers: Sequence[SessionSlicer]) -> None:
    """Register one annotator's browser-side callbacks with ``app``."""
    _register_storage(app, ids)
    for axis, slicer in enumerate(slicers):
        _register_view(app, ids, axis, slicer)
    app.clientside_callback(
        browser_function("installShortcuts"),
        Output(ids["shortcuts"], "data"),
        Input(ids["browser-config"], "data"),
    )
    app.clientside_callback(
        browser_function("oneStrokeLevel"),
        [Output(ids[name], "value") for name in STROKE_LEVELS],
        [Input(ids[name], "value") for name in STROKE_LEVELS],
        prevent_initial_call=True,
    )


def _register_storage(app: dash.Dash, ids: AnnotatorIds) -> None:
    """Entering a case, restoring what this browser showed last, naming the browser's
    session (see :mod:`..jobs`), saving the annotation, and passing the annotation to the
    panels while they are shown."""
    case = State(ids["case"], "data")
    app.clientside_callback(
        browser_function("enterCase"),
        Output(ids["annotation"], "data"),
        [Output(slices, "data") for slices in ids.views("annotation-slices")],
        Output(ids["size"], "value"),
        Output(ids["dataset-case"], "data"),
        Input(ids["case"], "data"),
        State(ids["storage-prefix"], "data"),
        State(ids["size"], "value"),
        State(ids["browser-config"], "data"),
    )
    app.clientside_callback(
        browser_function("restoreCase"),
        Output(ids["saved"], "data"),
        Input(ids["storage-prefix"], "data"),
        case,
    )
    app.clientside_callback(
        browser_function("sessionId"),
        Output(ids["session"], "data"),
        Input(ids["storage-prefix"], "data"),
        State(ids["session"], "data"),
    )
    app.clientside_callback(
        browser_function("keepAnnotation"),
        Output(ids["annotation-3d"], "data"),
        Output(ids["annotation-statistics"], "data"),
        Input(ids["annotation"], "data"),
        Input(ids["show-3d"], "value"),
        Input(ids["show-statistics"], "value"),
        case,
        State(ids["storage-prefix"], "data"),
        State(ids["browser-config"], "data"),
        prevent_initial_call=True,
    )


def _register_view(app: dash.Dash, ids: AnnotatorIds, axis: int, slicer: SessionSlicer) -> None:
    """One view's position, strokes, stale slices and overlay traces."""
    geometry = ids.view("geometry", axis)
    slices = ids.view("annotation-slices", axis)
    config = State(ids.view("stroke-config", axis), "data")
    app.clientside_callback(
        browser_function("publishState"),
        Output(slicer.state.id, "data", allow_duplicate=True),
        Output(slicer.timer.id, "n_intervals"),
        Input(geometry, "data"),
        State(slicer.slider.id, "value"),
        State(slicer.info.id, "data"),
        State(slicer.timer.id, "n_intervals"),
        prevent_initial_call="initial_duplicate",
    )
    app.clientside_callback(
        browser_function("publishMove"),
        Input(slicer.slider.id, "value"),
        State(slicer.info.id, "data"),
        config,
        prevent_initial_call=True,
    )
    # Installers return nothing; their nominal output makes Dash call them when a page of a
    # multi-page app mounts the annotator, not only at the app's start.
    app.clientside_callback(
        browser_function("installStrokes"),
        Output(ids.view("stroke-config", axis), "data"),
        Input(geometry, "data"),
        config,
    )
    app.clientside_callback(
        browser_function("receiveIds"),
        Input(ids.view("ids", axis), "data"),
        config,
        prevent_initial_call=True,
    )
    app.clientside_callback(
        browser_function("requestStale"),
        Output(ids.view("stale-request", axis), "data"),
        Input(slicer.slider.id, "value"),
        Input(slices, "data"),
        State(ids["browser-config"], "data"),
        prevent_initial_call=True,
    )
    app.clientside_callback(
        browser_function("requestBorders"),
        Output(ids.view("boundary-request", axis), "data"),
        Input(slicer.state.id, "data"),
        Input(ids["show-boundaries"], "value"),
        prevent_initial_call=True,
    )
    full_slice, thumbnails = slicer.slice_data
    app.clientside_callback(
        browser_function("requestThumbnails"),
        Input(full_slice.id, "data"),
        State(thumbnails.id, "data"),
        config,
        prevent_initial_call=True,
    )
    image_traces, indicator_traces = slicer.figure_parts
    app.clientside_callback(
        browser_function("showOverlays"),
        Output(slicer.extra_traces.id, "data"),
        Output(slicer.graph.id, "figure", allow_duplicate=True),
        Input(slicer.slider.id, "value"),
        Input(slices, "data"),
        Input(ids.view("boundary-slice", axis), "data"),
        Input(ids["show-boundaries"], "value"),
        Input(ids["show-annotation"], "value"),
        Input(ids["opacity"], "value"),
        State(geometry, "data"),
        State(slicer.extra_traces.id, "data"),
        State(ids["browser-config"], "data"),
        State(image_traces.id, "data"),
        State(indicator_traces.id, "data"),
        State(slicer.graph.id, "figure"),
        config,
        prevent_initial_call="initial_duplicate",
    )
