"""The embeddable annotator: three linked slice views, labels, undo/redo, 3D view and download.

Server-side, an annotator holds only read-only data for its volume (intensities,
superpixels, the head outline). The annotation itself travels with the user's
session in a ``dcc.Store`` as a compact string (see :class:`Annotation`), so any
worker process can handle any request.
"""

from __future__ import annotations

import json
import re
import tempfile
from collections.abc import Sequence
from functools import cached_property
from pathlib import Path

import dash
import dash_bootstrap_components as dbc
import numpy as np
import plotly.graph_objects as go
from dash import Input, Output, State, ctx, dcc, html
from dash_slicer import VolumeSlicer

from .annotation import Annotation, AnnotationStateError
from .meshes import label_meshes, outline_mesh, scene_layout
from .overlays import (
    boundary_section_uri,
    label_palette,
    label_section_uri,
    section,
    touched_slices,
)
from .palette import DEFAULT_LABELS, LabelClass
from .statistics import label_statistics, statistics_csv
from .superpixels import Superpixels, load_or_compute_superpixels
from .volume import Volume, save_segmentation

VIEW_NAMES = ("Axial", "Coronal", "Sagittal")
MAX_STROKE_VERTICES = 5000
# An overlay slice that changed but is not on screen: rendered when a view shows it.
STALE = "stale"
_SWATCH_STYLE = {
    "display": "inline-block",
    "width": "0.8em",
    "height": "0.8em",
    "borderRadius": "2px",
    "marginRight": "0.3em",
    "verticalAlign": "middle",
}
_NUMBER = re.compile(r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?")

HELP_ITEMS = (
    (
        "Draw",
        "on any slice view with the mouse: every region the stroke touches gets the "
        "selected label, in all three views at once. A region is a group of neighbouring "
        "superpixels of similar intensity; with Fine strokes (key S) only the superpixels "
        "crossed are labelled, for corrections.",
    ),
    ("Labels", "keys 1-9 pick a label; the Eraser (key E or 0) removes labels."),
    (
        "Fill",
        "(key F) labels the unlabelled superpixels that look like the ones you "
        "labelled and touch them; erased superpixels stop it. Undo takes it back.",
    ),
    ("Undo / Redo", "buttons, or Ctrl+Z / Ctrl+Y (also Ctrl+Shift+Z)."),
    (
        "Move",
        "through slices with the slider under each view. To pan and zoom, pick Pan in a "
        "view's toolbar (top right) and scroll; in Pan mode a click moves the other views "
        "to that point. Pick Draw open freeform to draw again.",
    ),
    ("Superpixels", "shows the superpixel borders; Contrast sets the intensity window."),
    ("Download segmentation", "saves the labels as NIfTI with the scan's geometry."),
)

_COMPOSE_OVERLAYS = """
function(index, annotationSlices, boundary, showBoundaries, showAnnotation, opacity, geometry,
         current) {
    const traces = [];
    const base = {type: 'image', hoverinfo: 'skip', x0: geometry.x0, y0: geometry.y0,
                  dx: geometry.dx, dy: geometry.dy};
    const annotation = annotationSlices ? annotationSlices[index] : null;
    if (showAnnotation && annotation && annotation !== STALE) {
        traces.push({...base, source: annotation, opacity: opacity, name: 'annotation'});
    }
    if (showBoundaries && boundary && boundary.index === index && boundary.uri) {
        traces.push({...base, source: boundary.uri, name: 'superpixels'});
    }
    // An unchanged overlay must not cost the view a redraw.
    const key = (list) => JSON.stringify((list || []).map((t) => [t.name, t.source, t.opacity]));
    return key(traces) === key(current) ? window.dash_clientside.no_update : traces;
}
""".replace("STALE", json.dumps(STALE))

# A view that shows a slice marked stale asks the server for it (with a time stamp, so that
# asking twice for the same slice still counts).
_REQUEST_STALE = """
function(index, annotationSlices) {
    if (annotationSlices && annotationSlices[index] === STALE) {
        return [index, performance.now()];
    }
    return window.dash_clientside.no_update;
}
""".replace("STALE", json.dumps(STALE))

# With explicit ranges Plotly emits no relayout on first render, and that event is what
# starts dash-slicer's state timer (full-resolution slice, position indicators).
_ANNOUNCE_LAYOUT = "function(geometry) { return {autosize: true}; }"

# The 3D view and the statistics get the annotation only while shown: hidden, strokes cost
# them no request.
_PASS_WHEN_SHOWN = """
function(state, show) { return show ? state : window.dash_clientside.no_update; }
"""

_INSTALL_SHORTCUTS = """
function(config) {
    const registry = window._superpixelAnnotators = window._superpixelAnnotators || {
        active: null, ids: []
    };
    if (!config || registry.ids.includes(config.id)) {
        return window.dash_clientside.no_update;
    }
    if (!registry.ids.length) {
        document.addEventListener('pointerdown', (event) => {
            const root = event.target.closest && event.target.closest('[data-annotator]');
            if (root) { registry.active = root.dataset.annotator; }
        }, true);
    }
    registry.ids.push(config.id);
    document.addEventListener('keydown', (event) => {
        if ((registry.active || registry.ids[0]) !== config.id) { return; }
        const target = event.target;
        if (target && (target.isContentEditable || target.tagName === 'TEXTAREA' ||
                       (target.tagName === 'INPUT' && target.type === 'text'))) { return; }
        const key = event.key.toLowerCase();
        const modifier = event.ctrlKey || event.metaKey;
        const click = (part) => document.getElementById(config.id + '-' + part).click();
        if (modifier && key === 'z' && !event.shiftKey) {
            click('undo');
        } else if (modifier && (key === 'y' || key === 'z')) {
            click('redo');
        } else if (!modifier && key === 'f') {
            click('fill');
        } else if (!modifier && key === 's') {
            click('fine');
        } else if (!modifier && (key === 'e' || key === '0')) {
            window.dash_clientside.set_props(config.id + '-label', {value: 0});
        } else if (!modifier && config.labels.includes(Number(key))) {
            window.dash_clientside.set_props(config.id + '-label', {value: Number(key)});
        } else {
            return;
        }
        event.preventDefault();
    });
    return window.dash_clientside.no_update;
}
"""


def parse_stroke_path(path: str) -> np.ndarray:
    """The (x, y) vertices of a Plotly SVG path such as ``"M1,2L3,4"``.

    Raises
    ------
    ValueError
        If the path is not a list of coordinate pairs of a sensible length.
    """
    if not isinstance(path, str) or len(path) > 40 * MAX_STROKE_VERTICES:
        raise ValueError("stroke path is not a string of a sensible length")
    numbers = np.array([float(n) for n in _NUMBER.findall(path)])
    if numbers.size < 2 or numbers.size % 2 or not np.isfinite(numbers).all():
        raise ValueError("stroke path is not a list of coordinate pairs")
    return numbers.reshape(-1, 2)


def drawn_path(relayout_data: dict | None) -> str | None:
    """The SVG path of the shape just drawn, from a graph's ``relayoutData``."""
    if not isinstance(relayout_data, dict):
        return None
    shapes = relayout_data.get("shapes")
    if isinstance(shapes, list) and shapes and isinstance(shapes[-1], dict):
        return shapes[-1].get("path")
    return None


class VolumeAnnotator:
    """A superpixel annotator for one volume, to place in any Dash layout.

    Parameters
    ----------
    app : dash.Dash
        The app to register this instance's callbacks with.
    volume : Volume
        The scan to annotate.
    id : str
        Prefix of every component id of this instance; unique per page.
    superpixels : Superpixels, optional
        Precomputed superpixels; by default computed (or read from the disk cache).
    labels : sequence of LabelClass
        The label palette.
    cache_dir : str or Path, optional
        Where superpixels are cached (see :func:`load_or_compute_superpixels`).

    Attributes
    ----------
    layout : dash component
        The annotator's layout; place it anywhere in the app's layout.
    """

    def __init__(
        self,
        app: dash.Dash,
        volume: Volume,
        id: str,
        *,
        superpixels: Superpixels | None = None,
        labels: Sequence[LabelClass] = DEFAULT_LABELS,
        cache_dir: str | Path | None = None,
    ) -> None:
        self.id = id
        self.volume = volume
        self.superpixels = superpixels or load_or_compute_superpixels(volume, cache_dir)
        self.labels = tuple(labels)
        self._palette = label_palette(self.labels)
        self._clim = _default_window(volume.data, self.superpixels.labels > 0)
        self.slicers = [self._make_slicer(app, axis) for axis in range(3)]
        self.layout = self._make_layout()
        self._register_callbacks(app)

    def _part(self, name: str) -> str:
        return f"{self.id}-{name}"

    # -- layout -------------------------------------------------------------------------

    def _make_slicer(self, app: dash.Dash, axis: int) -> VolumeSlicer:
        slicer = VolumeSlicer(
            app,
            self.volume.data,
            spacing=self.volume.spacing,
            axis=axis,
            scene_id=self.id,
            clim=self._clim,
        )
        rows_axis, cols_axis = (a for a in range(3) if a != axis)
        height, width = self.volume.data.shape[rows_axis], self.volume.data.shape[cols_axis]
        dy, dx = self.volume.spacing[rows_axis], self.volume.spacing[cols_axis]
        # dash-slicer reads layout.*axis.range from the figure prop, which Dash 4 leaves
        # undefined under autorange: state the ranges (see also _ANNOUNCE_LAYOUT).
        slicer.graph.figure.update_xaxes(range=[-0.5 * dx, (width - 0.5) * dx])
        slicer.graph.figure.update_yaxes(range=[(height - 0.5) * dy, -0.5 * dy])
        slicer.graph.figure.update_layout(
            dragmode="drawopenpath",
            newshape={"line": {"color": self.labels[0].color, "width": 3}, "opacity": 0.9},
            uirevision=True,
            plot_bgcolor="black",
        )
        slicer.graph.config.update(
            modeBarButtonsToAdd=["drawopenpath"],
            modeBarButtonsToRemove=["toImage", "lasso2d", "select2d"],
            displaylogo=False,
        )
        slicer.graph.style = {"height": "42vh"}
        return slicer

    def _button(self, text: str, name: str, color: str, title: str | None = None) -> dbc.Button:
        return dbc.Button(text, id=self._part(name), size="sm", color=color, title=title)

    def _panel_header(self, panel: str, label: str) -> dbc.CardHeader:
        """A card header whose switch shows the panel (see :meth:`_register_panel`)."""
        switch = dbc.Switch(
            id=self._part(f"show-{panel}"), label=label, value=False, className="mb-0"
        )
        return dbc.CardHeader(switch, className="py-1 small")

    def _statistics_panel(self):
        return dbc.Card(
            [
                self._panel_header("statistics", "Statistics"),
                dbc.Collapse(
                    dbc.CardBody(
                        dbc.Row(
                            [
                                dbc.Col(html.Div(id=self._part("statistics-table")), lg=8),
                                dbc.Col(
                                    [
                                        dcc.Graph(
                                            id=self._part("statistics-chart"),
                                            style={"height": "160px"},
                                            config={"displayModeBar": False},
                                        ),
                                        self._button("Download CSV", "statistics-csv", "secondary"),
                                    ],
                                    lg=4,
                                ),
                            ]
                        )
                    ),
                    id=self._part("statistics"),
                    is_open=False,
                ),
            ],
            className="mb-2",
        )

    def _view_geometry(self, axis: int) -> dict:
        rows_axis, cols_axis = (a for a in range(3) if a != axis)
        return {
            "x0": 0,
            "y0": 0,
            "dx": self.volume.spacing[cols_axis],
            "dy": self.volume.spacing[rows_axis],
        }

    def _make_layout(self):
        label_options = [
            {
                "label": html.Span(
                    [
                        html.Span(style={**_SWATCH_STYLE, "background": label.color}),
                        f"{label.value} {label.name}",
                    ]
                ),
                "value": label.value,
            }
            for label in self.labels
        ]
        label_options.append({"label": html.Span("Eraser (E)"), "value": 0})
        toolbar = dbc.Row(
            [
                dbc.Col(
                    dbc.RadioItems(
                        id=self._part("label"),
                        options=label_options,
                        value=self.labels[0].value,
                        inline=True,
                        className="btn-group-sm",
                        inputClassName="btn-check",
                        labelClassName="btn btn-outline-secondary btn-sm",
                        labelCheckedClassName="active",
                    ),
                    width="auto",
                ),
                dbc.Col(
                    dbc.ButtonGroup(
                        [
                            self._button("Undo", "undo", "secondary", "Ctrl+Z"),
                            self._button("Redo", "redo", "secondary", "Ctrl+Y"),
                            self._button(
                                "Fill", "fill", "success", "Label similar touching superpixels (F)"
                            ),
                        ]
                    ),
                    width="auto",
                ),
                dbc.Col(
                    dbc.Switch(
                        id=self._part("fine"),
                        label="Fine strokes (S)",
                        value=False,
                        className="mb-0 small",
                    ),
                    width="auto",
                ),
                dbc.Col(
                    self._button("Download segmentation", "download-button", "primary"),
                    width="auto",
                ),
                dbc.Col(
                    dbc.Button("Help", id=self._part("help-button"), size="sm", color="link"),
                    width="auto",
                ),
            ],
            className="g-2 align-items-center mb-2",
        )
        display_controls = dbc.Row(
            [
                dbc.Col(
                    dbc.Switch(id=self._part("show-boundaries"), label="Superpixels", value=False),
                    width="auto",
                ),
                dbc.Col(
                    dbc.Switch(id=self._part("show-annotation"), label="Annotation", value=True),
                    width="auto",
                ),
                dbc.Col(html.Span("Opacity", className="small"), width="auto"),
                dbc.Col(
                    dcc.Slider(
                        id=self._part("opacity"),
                        min=0,
                        max=1,
                        step=0.05,
                        value=0.6,
                        marks=None,
                        tooltip={"placement": "bottom"},
                    ),
                    width=2,
                ),
                dbc.Col(html.Span("Contrast", className="small"), width="auto"),
                dbc.Col(
                    dcc.RangeSlider(
                        id=self._part("contrast"),
                        min=float(self.volume.data.min()),
                        max=float(self.volume.data.max()),
                        value=list(self._clim),
                        marks=None,
                        updatemode="mouseup",
                    ),
                    width=3,
                ),
            ],
            className="g-2 align-items-center mb-2",
        )
        views = [
            dbc.Col(
                dbc.Card(
                    [
                        dbc.CardHeader(VIEW_NAMES[axis], className="py-1 small"),
                        slicer.graph,
                        html.Div(slicer.slider, className="px-2"),
                        *slicer.stores,
                        dcc.Store(
                            id=self._part(f"annotation-slices-{axis}"), data=[None] * slicer.nslices
                        ),
                        dcc.Store(id=self._part(f"boundary-slice-{axis}")),
                        dcc.Store(id=self._part(f"stale-request-{axis}")),
                        dcc.Store(
                            id=self._part(f"geometry-{axis}"), data=self._view_geometry(axis)
                        ),
                    ],
                    id=self._part(f"view-{axis}"),
                    className="h-100",
                ),
                lg=6,
                className="mb-2",
            )
            for axis, slicer in enumerate(self.slicers)
        ]
        views.append(
            dbc.Col(
                dbc.Card(
                    [
                        self._panel_header("3d", "3D view"),
                        dcc.Loading(
                            dcc.Graph(
                                id=self._part("view-3d"),
                                style={"height": "46vh"},
                                config={"displaylogo": False},
                            )
                        ),
                    ],
                    className="h-100",
                ),
                lg=6,
                className="mb-2",
            )
        )
        return html.Div(
            [
                toolbar,
                dbc.Collapse(
                    dbc.Card(
                        dbc.CardBody(
                            html.Ul(
                                [html.Li([html.B(name), " ", text]) for name, text in HELP_ITEMS],
                                className="mb-0 small",
                            )
                        ),
                        className="mb-2",
                    ),
                    id=self._part("help"),
                    is_open=False,
                ),
                display_controls,
                dbc.Alert(
                    id=self._part("message"),
                    is_open=False,
                    dismissable=True,
                    color="warning",
                    className="py-1",
                ),
                dbc.Row(views, className="g-2"),
                self._statistics_panel(),
                dcc.Store(id=self._part("annotation"), storage_type="memory"),
                dcc.Store(id=self._part("annotation-3d"), storage_type="memory"),
                dcc.Store(
                    id=self._part("shortcuts"),
                    data={"id": self.id, "labels": [lb.value for lb in self.labels]},
                ),
                dcc.Download(id=self._part("download")),
                dcc.Download(id=self._part("statistics-download")),
                dcc.Store(id=self._part("annotation-statistics"), storage_type="memory"),
            ],
            id=self._part("root"),
            className="superpixel-annotator",
            **{"data-annotator": self.id},
        )

    # -- callbacks ----------------------------------------------------------------------

    def _register_callbacks(self, app: dash.Dash) -> None:
        part = self._part
        graphs = [slicer.graph.id for slicer in self.slicers]

        app.callback(
            output={
                "state": Output(part("annotation"), "data"),
                "slices": [Output(part(f"annotation-slices-{a}"), "data") for a in range(3)],
                "figures": [Output(graph, "figure", allow_duplicate=True) for graph in graphs],
                "relayouts": [
                    Output(graph, "relayoutData", allow_duplicate=True) for graph in graphs
                ],
                "message": Output(part("message"), "children", allow_duplicate=True),
                "show_message": Output(part("message"), "is_open", allow_duplicate=True),
            },
            inputs={
                "relayouts": [Input(graph, "relayoutData") for graph in graphs],
                "undo": Input(part("undo"), "n_clicks"),
                "redo": Input(part("redo"), "n_clicks"),
                "fill": Input(part("fill"), "n_clicks"),
                "fine": State(part("fine"), "value"),
                "indices": [State(slicer.slider.id, "value") for slicer in self.slicers],
                "label": State(part("label"), "value"),
                "state": State(part("annotation"), "data"),
            },
            prevent_initial_call=True,
        )(self.edit)

        app.callback(
            [Output(graph, "figure", allow_duplicate=True) for graph in graphs],
            Input(part("label"), "value"),
            prevent_initial_call=True,
        )(self.stroke_color)

        for axis, slicer in enumerate(self.slicers):
            app.callback(
                Output(part(f"boundary-slice-{axis}"), "data"),
                Input(slicer.state.id, "data"),
                Input(part("show-boundaries"), "value"),
                State(part(f"boundary-slice-{axis}"), "data"),
                prevent_initial_call=True,
            )(self._boundary_callback(axis))
            app.clientside_callback(
                _ANNOUNCE_LAYOUT,
                Output(slicer.graph.id, "relayoutData"),
                Input(part(f"geometry-{axis}"), "data"),
            )
            app.clientside_callback(
                _REQUEST_STALE,
                Output(part(f"stale-request-{axis}"), "data"),
                Input(slicer.slider.id, "value"),
                Input(part(f"annotation-slices-{axis}"), "data"),
            )
            app.callback(
                Output(part(f"annotation-slices-{axis}"), "data", allow_duplicate=True),
                Input(part(f"stale-request-{axis}"), "data"),
                State(part("annotation"), "data"),
                prevent_initial_call=True,
            )(self._stale_callback(axis))
            app.clientside_callback(
                _COMPOSE_OVERLAYS,
                Output(slicer.extra_traces.id, "data"),
                Input(slicer.slider.id, "value"),
                Input(part(f"annotation-slices-{axis}"), "data"),
                Input(part(f"boundary-slice-{axis}"), "data"),
                Input(part("show-boundaries"), "value"),
                Input(part("show-annotation"), "value"),
                Input(part("opacity"), "value"),
                State(part(f"geometry-{axis}"), "data"),
                State(slicer.extra_traces.id, "data"),
            )

        app.callback(
            [Output(slicer.clim.id, "data") for slicer in self.slicers],
            Input(part("contrast"), "value"),
            prevent_initial_call=True,
        )(lambda window: [tuple(window)] * 3)

        app.callback(
            Output(part("download"), "data"),
            Output(part("message"), "children", allow_duplicate=True),
            Output(part("message"), "is_open", allow_duplicate=True),
            Input(part("download-button"), "n_clicks"),
            State(part("annotation"), "data"),
            prevent_initial_call=True,
        )(self.download)

        self._register_panel(app, "3d", Output(part("view-3d"), "figure"), self.figure_3d)
        self._register_panel(
            app,
            "statistics",
            [
                Output(part("statistics"), "is_open"),
                Output(part("statistics-table"), "children"),
                Output(part("statistics-chart"), "figure"),
            ],
            self.statistics_view,
        )
        app.callback(
            Output(part("statistics-download"), "data"),
            Input(part("statistics-csv"), "n_clicks"),
            State(part("annotation"), "data"),
            prevent_initial_call=True,
        )(self.statistics_download)

        app.callback(
            Output(part("help"), "is_open"),
            Input(part("help-button"), "n_clicks"),
            State(part("help"), "is_open"),
            prevent_initial_call=True,
        )(lambda _, is_open: not is_open)

        app.clientside_callback(_INSTALL_SHORTCUTS, Input(part("shortcuts"), "data"))

    def _register_panel(self, app: dash.Dash, panel: str, outputs, function) -> None:
        """Call ``function(state, shown)`` for a panel that gets the annotation while shown."""
        shown = Input(self._part(f"show-{panel}"), "value")
        app.clientside_callback(
            _PASS_WHEN_SHOWN,
            Output(self._part(f"annotation-{panel}"), "data"),
            Input(self._part("annotation"), "data"),
            shown,
        )
        app.callback(outputs, Input(self._part(f"annotation-{panel}"), "data"), shown)(function)

    def annotation_from(self, state: str | None) -> Annotation:
        """The user's annotation from its session state (empty for ``None``)."""
        return Annotation.from_state(self.superpixels, state)

    def edit(self, relayouts, undo, redo, fill, fine, indices, label, state) -> dict:
        """Apply a stroke, undo or redo; send back the new state and the changed slices only.

        A stroke's drawn line is removed from its view and the view's ``relayoutData`` reset,
        so that an identical next stroke is seen as new.
        """
        result = {
            "state": dash.no_update,
            "slices": [dash.no_update] * 3,
            "figures": [dash.no_update] * 3,
            "relayouts": [dash.no_update] * 3,
            "message": dash.no_update,
            "show_message": dash.no_update,
        }
        try:
            annotation = self.annotation_from(state)
        except AnnotationStateError as error:
            return {
                **result,
                "message": f"Annotation state refused: {error}.",
                "show_message": True,
            }
        trigger = ctx.triggered_id
        if trigger == self._part("undo"):
            changed = annotation.undo()
        elif trigger == self._part("redo"):
            changed = annotation.redo()
        elif trigger == self._part("fill"):
            changed = annotation.autofill([self.volume.data])
        else:
            axis = [slicer.graph.id for slicer in self.slicers].index(trigger)
            path = drawn_path(relayouts[axis])
            if path is None:
                raise dash.exceptions.PreventUpdate
            cleared = dash.Patch()
            cleared["layout"]["shapes"] = []
            result["figures"][axis] = cleared
            result["relayouts"][axis] = None
            try:
                level = "fine" if fine is True else "coarse"
                changed = self._paint(annotation, axis, indices[axis], path, label, level)
            except ValueError as error:
                return {**result, "message": f"Stroke ignored: {error}.", "show_message": True}
        if changed.size:
            result["state"] = annotation.to_state()
            result["slices"] = self.overlay_patches(annotation, changed, indices)
            result["show_message"] = False
        return result

    def _paint(
        self, annotation: Annotation, axis: int, index, path, label, level: str
    ) -> np.ndarray:
        known = {0} | {lb.value for lb in self.labels}
        if not isinstance(label, int) or label not in known:
            raise ValueError(f"unknown label {label!r}")
        if not isinstance(index, int) or not 0 <= index < self.volume.data.shape[axis]:
            raise ValueError(f"slice index {index!r} is outside the volume")
        xy = parse_stroke_path(path)
        if len(xy) > MAX_STROKE_VERTICES:
            raise ValueError("stroke has too many points")
        geometry = self._view_geometry(axis)
        rows = (xy[:, 1] - geometry["y0"]) / geometry["dy"]
        cols = (xy[:, 0] - geometry["x0"]) / geometry["dx"]
        return annotation.paint(axis, index, np.column_stack([rows, cols]), label, level)

    def overlay_patches(
        self, annotation: Annotation, changed: np.ndarray, shown: Sequence
    ) -> list[dash.Patch]:
        """For each view, a Patch of the slices the changed superpixels reach.

        The slice a view shows (``shown[axis]``) is rendered now; the other touched slices
        are marked :data:`STALE` and rendered when a view shows them.
        """
        patches = []
        touched = touched_slices(self.superpixels.extents, changed, self.volume.data.shape)
        for axis, indices in enumerate(touched):
            patch = dash.Patch()
            for index in indices.tolist():
                on_screen = index == shown[axis]
                patch[index] = self.overlay_uri(annotation, axis, index) if on_screen else STALE
            patches.append(patch)
        return patches

    def _stale_callback(self, axis: int):
        def render_stale(request, state):
            index = request[0] if isinstance(request, list) and request else None
            if not isinstance(index, int) or not 0 <= index < self.volume.data.shape[axis]:
                raise dash.exceptions.PreventUpdate
            try:
                annotation = self.annotation_from(state)
            except AnnotationStateError:
                raise dash.exceptions.PreventUpdate from None
            patch = dash.Patch()
            patch[index] = self.overlay_uri(annotation, axis, index)
            return patch

        return render_stale

    def overlay_uri(self, annotation: Annotation, axis: int, index: int) -> str | None:
        """The annotation overlay of one slice as a PNG data URI (``None`` when empty)."""
        sp_section = section(self.superpixels.labels, axis, index)
        return label_section_uri(annotation.superpixel_labels, sp_section, self._palette)

    def stroke_color(self, label):
        """Draw new strokes in the colour of the selected label."""
        colors = {lb.value: lb.color for lb in self.labels}
        patch = dash.Patch()
        patch["layout"]["newshape"]["line"]["color"] = colors.get(label, "#ffffff")
        return [patch] * 3

    def _boundary_callback(self, axis: int):
        def boundary_slice(state, show, current):
            if not show or not isinstance(state, dict):
                raise dash.exceptions.PreventUpdate
            index = state.get("index")
            if not isinstance(index, int) or not 0 <= index < self.volume.data.shape[axis]:
                raise dash.exceptions.PreventUpdate
            if isinstance(current, dict) and current.get("index") == index:
                raise dash.exceptions.PreventUpdate
            uri = boundary_section_uri(section(self.superpixels.labels, axis, index))
            return {"index": index, "uri": uri}

        return boundary_slice

    def download(self, _n_clicks, state):
        """Send the annotation as ``<name>_segmentation.nii.gz``."""
        try:
            annotation = self.annotation_from(state)
        except AnnotationStateError as error:
            return dash.no_update, f"Annotation state refused: {error}.", True
        if not annotation.superpixel_labels.any():
            return dash.no_update, "Nothing to download yet: the annotation is empty.", True
        filename = f"{self.volume.name}_segmentation.nii.gz"
        with tempfile.TemporaryDirectory() as folder:
            path = Path(folder) / filename
            save_segmentation(self.volume, annotation.label_volume(), path)
            content = path.read_bytes()
        return dcc.send_bytes(content, filename), dash.no_update, False

    @cached_property
    def _outline_trace(self) -> dict:
        return outline_mesh(self.superpixels.labels > 0, self.volume.spacing)

    def statistics(self, state) -> list[dict]:
        """Per-label volume, voxel and superpixel counts and mean intensity of a state."""
        annotation = self.annotation_from(state)
        return label_statistics(annotation, {"intensity": self.volume.data}, self.volume.spacing)

    def statistics_view(self, state, show):
        """The statistics panel: a table and a bar chart of the volume of each label."""
        if not show:
            return False, dash.no_update, dash.no_update
        try:
            rows = self.statistics(state)
        except AnnotationStateError:
            raise dash.exceptions.PreventUpdate from None
        labels = {lb.value: lb for lb in self.labels}
        header = ["Label", "Volume (mL)", "Volume (mm³)", "Voxels", "Superpixels", "Mean"]
        body = [
            html.Tr(
                [
                    html.Td(labels[row["label"]].name if row["label"] in labels else row["label"]),
                    html.Td(f"{row['volume_ml']:.2f}"),
                    html.Td(f"{row['volume_mm3']:.0f}"),
                    html.Td(row["voxels"]),
                    html.Td(row["superpixels"]),
                    html.Td(f"{row['mean_intensity']:.3g}"),
                ]
            )
            for row in rows
        ]
        table = dbc.Table(
            [html.Thead(html.Tr([html.Th(h) for h in header])), html.Tbody(body)],
            size="sm",
            className="mb-0 small",
        )
        known = [row for row in rows if row["label"] in labels]
        chart = go.Figure(
            go.Bar(
                x=[labels[row["label"]].name for row in known],
                y=[row["volume_ml"] for row in known],
                marker_color=[labels[row["label"]].color for row in known],
            ),
            layout={"margin": {"l": 40, "r": 10, "t": 10, "b": 30}, "yaxis_title": "mL"},
        )
        return True, table if rows else "No labels yet.", chart

    def statistics_download(self, _n_clicks, state):
        """Send the statistics as ``<name>_statistics.csv``."""
        try:
            rows = self.statistics(state)
        except AnnotationStateError:
            raise dash.exceptions.PreventUpdate from None
        return dcc.send_string(statistics_csv(rows), f"{self.volume.name}_statistics.csv")

    def figure_3d(self, state, show):
        """The 3D view: one mesh per label inside a faint outline of the head."""
        if not show:
            return go.Figure()
        try:
            annotation = self.annotation_from(state)
        except AnnotationStateError:
            raise dash.exceptions.PreventUpdate from None
        traces = [self._outline_trace]
        if annotation.superpixel_labels.any():
            traces += label_meshes(
                annotation.label_volume(),
                self.volume.spacing,
                {lb.value: lb.color for lb in self.labels},
                label_names={lb.value: lb.name for lb in self.labels},
            )
        figure = go.Figure(data=traces)
        figure.update_layout(
            scene=scene_layout(self.volume.data.shape, self.volume.spacing),
            margin={"l": 0, "r": 0, "t": 0, "b": 0},
            uirevision=True,
            showlegend=False,
        )
        return figure


def _default_window(data: np.ndarray, mask: np.ndarray) -> tuple[float, float]:
    """An intensity window from the 0.5th to 99.5th percentile inside the head."""
    values = data[mask] if mask.any() else data.ravel()
    low, high = np.percentile(values, [0.5, 99.5])
    if high <= low:
        high = low + 1.0
    return float(low), float(high)
