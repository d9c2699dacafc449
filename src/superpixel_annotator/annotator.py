"""The embeddable annotator: three linked slice views, labels, undo/redo, 3D view and download.

Server-side, an annotator holds only read-only data per scan (a :class:`Case`: intensities,
superpixels), found by the key that the user's session names. The annotation itself travels
with the session in a ``dcc.Store`` as a compact string (see :class:`Annotation`), and is
saved in the browser's local storage under the annotator's id and the case key. So any
worker process can handle any request, each user can open a scan of their own, and a
reload or a server restart loses nothing.
"""

from __future__ import annotations

import base64
import binascii
import re
import tempfile
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path

import dash
import dash_bootstrap_components as dbc
import numpy as np
import plotly.graph_objects as go
from dash import Input, Output, State, ctx, dcc, html
from dash_slicer.utils import img_array_to_uri

from . import clientside, strokes_js
from .annotation import MAX_LABEL, Annotation, AnnotationStateError, split_marks
from .cases import Case, CaseNotFoundError, CaseStore, cache_directory, is_case_key, open_case
from .clientside import STALE
from .meshes import label_meshes, scene_layout
from .outlines import superpixel_segmentation
from .overlays import (
    boundary_section_uri,
    id_section_uri,
    indexed_png_uri,
    label_palette,
    section,
)
from .palette import DEFAULT_LABELS, LabelClass
from .slicer import THUMBNAIL_SIZE, SessionSlicer, axis_ranges, is_window, windowed
from .statistics import label_statistics, statistics_csv
from .superpixels import DEFAULT_PARAMS, Superpixels, cache_limit_bytes
from .volume import (
    Limits,
    Volume,
    VolumeError,
    check_modalities,
    read_segmentation_bytes,
    read_volume_bytes,
    save_segmentation,
)

VIEW_NAMES = ("Axial", "Coronal", "Sagittal")
MAX_STROKE_VERTICES = 5000
# The colour, and palette index, of what Fill proposes before the user accepts it.
PREVIEW_COLOR = "#ffffff"
PREVIEW_VALUE = 255
_SWATCH_STYLE = {
    "display": "inline-block",
    "width": "0.8em",
    "height": "0.8em",
    "borderRadius": "2px",
    "marginRight": "0.3em",
    "verticalAlign": "middle",
}
# What a user sees when the session's scan is gone from the server (its cache is bounded).
CASE_GONE = (
    "This scan is no longer on the server; open it again, and your annotation of it comes "
    "back from this browser."
)
# The 3D view while it is off: a hint instead of Plotly's empty axes.
HIDDEN_3D_FIGURE = {
    "data": [],
    "layout": {
        "xaxis": {"visible": False},
        "yaxis": {"visible": False},
        "annotations": [
            {
                "text": "Turn on 3D view to see the labels as meshes.",
                "showarrow": False,
                "xref": "paper",
                "yref": "paper",
                "x": 0.5,
                "y": 0.5,
            }
        ],
    },
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
        "(key F) shows in white the unlabelled superpixels that look like the ones you "
        "labelled and touch them; erased superpixels stop it. Accept (Enter) labels them, "
        "Discard (Esc) or any stroke drops the proposal; Undo takes an accepted fill back.",
    ),
    (
        "Open scan",
        "opens your own .nii, .nii.gz, .mgz or .mgh file (several files: modalities of one "
        "scan, switched next to Contrast); only you see it. Open segmentation loads labels "
        "of the scan, e.g. a downloaded file. Superpixels sets their size; your labels are "
        "kept, Undo brings back the previous size, and this browser keeps the choice.",
    ),
    (
        "Your work",
        "is kept in this browser for each scan: a reload, a new tab or a server restart brings "
        "back the scan you had open with your labels (if the server no longer has a scan you "
        "opened, open it again: your labels come back).",
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


SIZE_OPTIONS = {"Fine": 3.5, "Medium": DEFAULT_PARAMS["size"], "Coarse": 6.5}


def size_choice(case: Case) -> str | None:
    """The value of the superpixel size menu that ``case`` was computed with; ``None`` when
    its superpixels are of another size (precomputed ones)."""
    size = case.superpixels.params.get("size")
    return str(size) if size in SIZE_OPTIONS.values() else None


class VolumeAnnotator:
    """A superpixel annotator, to place in any Dash layout.

    Each user can open scans of their own (upload) and switch modality or superpixel size;
    the scan given here is what every session starts with.

    Parameters
    ----------
    app : dash.Dash
        The app to register this instance's callbacks with.
    volume : Volume or sequence of Volume
        The scan to start with: one volume, or co-registered modalities (the first shown).
    id : str
        Prefix of every component id of this instance; unique per page.
    superpixels : Superpixels, optional
        Precomputed superpixels; by default computed (or read from the disk cache).
    labels : sequence of LabelClass
        The label palette.
    cache_dir : str or Path, optional
        Where superpixels and opened scans are cached (see :func:`cache_directory`); worker
        processes serving one app must share it.
    limits : Limits, optional
        Maximum size of uploaded files; default ``Limits()``.
    background_manager : dash background callback manager, optional
        Runs superpixel computation for uploads; default a ``DiskcacheManager`` in the cache
        directory (no extra service). Pass a ``CeleryManager`` to use Celery workers.

    Attributes
    ----------
    layout : dash component
        The annotator's layout; place it anywhere in the app's layout.
    initial_case : Case
        The scan every session starts with.
    """

    def __init__(
        self,
        app: dash.Dash,
        volume: Volume | Sequence[Volume],
        id: str,
        *,
        superpixels: Superpixels | None = None,
        labels: Sequence[LabelClass] = DEFAULT_LABELS,
        cache_dir: str | Path | None = None,
        limits: Limits | None = None,
        background_manager=None,
    ) -> None:
        self.id = id
        volumes = [volume] if isinstance(volume, Volume) else list(volume)
        check_modalities(volumes)
        cache_limit_bytes()  # a malformed limit stops the start, not the first upload
        self.cache_dir = cache_directory(cache_dir)
        self.limits = limits or Limits()
        self.initial_case = open_case(volumes, self.cache_dir, superpixels)
        self.cases = CaseStore(self.cache_dir, pinned=[self.initial_case])
        self.labels = tuple(labels)
        self._palette = label_palette(
            (*self.labels, LabelClass(PREVIEW_VALUE, "Fill preview", PREVIEW_COLOR))
        )
        self._thumbnails = lru_cache(maxsize=16)(self._render_thumbnails)
        self._segmentations = lru_cache(maxsize=4)(self._render_segmentation)
        if background_manager is None:
            import diskcache

            background_manager = dash.DiskcacheManager(diskcache.Cache(self.cache_dir / "jobs"))
        self._background_manager = background_manager
        self.slicers = [SessionSlicer(app, self, axis) for axis in range(3)]
        self.layout = self._make_layout()
        self._register_callbacks(app)

    @property
    def volume(self) -> Volume:
        """The first modality of the scan every session starts with."""
        return self.initial_case.volume

    @property
    def superpixels(self) -> Superpixels:
        """The superpixels of the scan every session starts with."""
        return self.initial_case.superpixels

    def _part(self, name: str) -> str:
        return f"{self.id}-{name}"

    # -- cases --------------------------------------------------------------------------

    def case_data(
        self,
        case: Case,
        *,
        state: str | None = None,
        restore: bool = False,
        previous=None,
        initial: bool = False,
    ) -> dict:
        """What a session's case store holds to show ``case``.

        ``state`` is the annotation to start from; with ``restore`` the one saved in the
        browser for this case wins. ``previous`` is the case data an undo goes back to.
        ``size`` is the superpixel size menu's value for the case (see :func:`size_choice`).
        ``initial`` marks the case a page starts on, which the browser does not save as the
        case shown (see :data:`clientside.RESTORE_CASE`).
        """
        return {
            "key": case.key,
            "shape": list(case.shape),
            "size": size_choice(case),
            "state": state,
            "restore": restore,
            "previous": previous,
            "initial": initial,
        }

    def case_of(self, case_data) -> Case:
        """The case a session's case store names.

        Raises
        ------
        CaseNotFoundError
            When it names none this server knows.
        """
        key = case_data.get("key") if isinstance(case_data, dict) else None
        return self.cases.get(key)

    def _session(self, case_data, state) -> tuple[Case, Annotation]:
        """The case and annotation of a session; PreventUpdate when either is unusable."""
        try:
            case = self.case_of(case_data)
            return case, Annotation.from_state(case.superpixels, state)
        except (CaseNotFoundError, AnnotationStateError):
            raise dash.exceptions.PreventUpdate from None

    def _render_thumbnails(
        self, key: str, modality: int, axis: int, clim: tuple[float, float]
    ) -> list[str]:
        data = self.cases.get(key).volumes[modality].data
        return [
            img_array_to_uri(windowed(section(data, axis, index), clim), THUMBNAIL_SIZE)
            for index in range(data.shape[axis])
        ]

    def segmentation(self, case: Case, marks: np.ndarray) -> np.ndarray:
        """The label volume of ``case`` for the marked label of each superpixel (see
        :meth:`Annotation.marked_labels`), with smooth outlines (see
        :func:`~superpixel_annotator.outlines.superpixel_segmentation`); read-only.

        The last few are kept: a stroke compares the volume before it with the one after.
        """
        return self._segmentations(case.key, marks.astype(np.int16).tobytes())

    def _render_segmentation(self, key: str, marks: bytes) -> np.ndarray:
        superpixels = self.cases.get(key).superpixels
        volume = superpixel_segmentation(superpixels, *split_marks(np.frombuffer(marks, np.int16)))
        volume.setflags(write=False)
        return volume

    def _modality(self, case: Case, modality) -> int:
        valid = isinstance(modality, int) and 0 <= modality < len(case.volumes)
        return modality if valid else 0

    # -- layout -------------------------------------------------------------------------

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

    @staticmethod
    def view_geometry(case: Case, axis: int) -> dict:
        """Where a view's image traces sit: origin and pixel size in mm."""
        rows_axis, cols_axis = (a for a in range(3) if a != axis)
        spacing = case.volume.spacing
        return {"x0": 0, "y0": 0, "dx": spacing[cols_axis], "dy": spacing[rows_axis]}

    @staticmethod
    def _modality_options(case: Case) -> list[dict]:
        return [{"label": volume.name, "value": i} for i, volume in enumerate(case.volumes)]

    @staticmethod
    def _modality_style(case: Case) -> dict:
        """The modality switch shows only when there is a choice."""
        return {} if len(case.volumes) > 1 else {"display": "none"}

    @staticmethod
    def _contrast_range(case: Case, modality: int) -> dict:
        data = case.volumes[modality].data
        window = case.windows[modality]
        return {"min": float(data.min()), "max": float(data.max()), "value": list(window)}

    def _drop_zone(self, name: str, text, title: str, multiple: bool = False) -> dcc.Upload:
        """A file upload that takes a click or a drop."""
        style = {
            "cursor": "pointer",
            "border": "1px dashed #6c757d",
            "borderRadius": "4px",
            "padding": "2px 10px",
        }
        return dcc.Upload(
            html.Span(text, title=title),
            id=self._part(name),
            multiple=multiple,
            style=style,
            style_active={**style, "borderColor": "#0d6efd"},
            className="small",
        )

    def _button_choice(self, name: str, options: list, value, **props) -> dbc.RadioItems:
        """Radio items shown as a row of small toggle buttons."""
        return dbc.RadioItems(
            id=self._part(name),
            options=options,
            value=value,
            inline=True,
            inputClassName="btn-check",
            labelClassName="btn btn-outline-secondary btn-sm",
            labelCheckedClassName="active",
            **props,
        )

    def _scan_bar(self):
        """The scan's name, and the controls to open a scan or a segmentation and to choose
        the superpixel size."""
        return dbc.Row(
            [
                dbc.Col(
                    html.Span(self.volume.name, id=self._part("name"), className="fw-semibold"),
                    width="auto",
                ),
                dbc.Col(
                    self._drop_zone(
                        "upload",
                        ["Open scan… ", html.Span("or drop files", className="text-muted")],
                        "A .nii, .nii.gz, .mgz or .mgh file; several files are co-registered "
                        "modalities of one scan",
                        multiple=True,
                    ),
                    width="auto",
                ),
                dbc.Col(
                    self._drop_zone(
                        "open-segmentation",
                        "Open segmentation…",
                        "Labels of this scan from a NIfTI file (e.g. a downloaded one)",
                    ),
                    width="auto",
                ),
                dbc.Col(html.Span("Superpixels", className="small"), width="auto"),
                dbc.Col(
                    dbc.Select(
                        id=self._part("size"),
                        options=[
                            {"label": f"{name} ({size:g} mm)", "value": str(size)}
                            for name, size in SIZE_OPTIONS.items()
                        ],
                        value=size_choice(self.initial_case) or str(DEFAULT_PARAMS["size"]),
                        size="sm",
                    ),
                    width="auto",
                ),
                dbc.Col(
                    dbc.Progress(
                        id=self._part("progress"),
                        value=0,
                        striped=True,
                        animated=True,
                        style={"display": "none", "minWidth": "12em"},
                    ),
                    width="auto",
                ),
            ],
            className="g-2 align-items-center mb-2",
        )

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
                    self._button_choice(
                        "label", label_options, self.labels[0].value, className="btn-group-sm"
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
                        **self._contrast_range(self.initial_case, 0),
                        marks=None,
                        updatemode="mouseup",
                    ),
                    width=3,
                ),
                dbc.Col(
                    self._button_choice(
                        "modality",
                        self._modality_options(self.initial_case),
                        0,
                        style=self._modality_style(self.initial_case),
                    ),
                    width="auto",
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
                        dcc.Store(id=self._part(f"stroke-{axis}")),
                        dcc.Store(id=self._part(f"ids-request-{axis}")),
                        dcc.Store(id=self._part(f"ids-{axis}")),
                        dcc.Store(
                            id=self._part(f"stroke-config-{axis}"),
                            data=self._stroke_config(slicer),
                        ),
                        dcc.Store(
                            id=self._part(f"geometry-{axis}"),
                            data=self.view_geometry(self.initial_case, axis),
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
                                figure=HIDDEN_3D_FIGURE,
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
                self._scan_bar(),
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
                dbc.Collapse(
                    dbc.Alert(
                        [
                            html.Span(id=self._part("fill-text"), className="me-2"),
                            self._button("Accept", "fill-accept", "success", "Enter"),
                            self._button("Discard", "fill-discard", "secondary", "Esc"),
                        ],
                        color="light",
                        className="py-1 d-flex align-items-center gap-2",
                    ),
                    id=self._part("fill-bar"),
                    is_open=False,
                ),
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
                dcc.Store(id=self._part("fill-preview")),
                dcc.Store(
                    id=self._part("case"),
                    data=self.case_data(self.initial_case, restore=True, initial=True),
                ),
                dcc.Store(id=self._part("storage-prefix"), data=f"superpixel-annotator:{self.id}:"),
                dcc.Store(id=self._part("saved")),
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
        case = State(part("case"), "data")
        message = {
            "message": Output(part("message"), "children", allow_duplicate=True),
            "show_message": Output(part("message"), "is_open", allow_duplicate=True),
            "message_color": Output(part("message"), "color", allow_duplicate=True),
        }

        app.callback(
            output={
                "state": Output(part("annotation"), "data", allow_duplicate=True),
                "slices": [
                    Output(part(f"annotation-slices-{a}"), "data", allow_duplicate=True)
                    for a in range(3)
                ],
                "case": Output(part("case"), "data", allow_duplicate=True),
                "preview": Output(part("fill-preview"), "data"),
                "fill_bar": Output(part("fill-bar"), "is_open"),
                "fill_text": Output(part("fill-text"), "children"),
                **message,
            },
            inputs={
                "strokes": [Input(part(f"stroke-{a}"), "data") for a in range(3)],
                "undo": Input(part("undo"), "n_clicks"),
                "redo": Input(part("redo"), "n_clicks"),
                "fill": Input(part("fill"), "n_clicks"),
                "fill_accept": Input(part("fill-accept"), "n_clicks"),
                "fill_discard": Input(part("fill-discard"), "n_clicks"),
                "segmentation": Input(part("open-segmentation"), "contents"),
                "segmentation_name": State(part("open-segmentation"), "filename"),
                "fine": State(part("fine"), "value"),
                "indices": [State(slicer.slider.id, "value") for slicer in self.slicers],
                "label": State(part("label"), "value"),
                "state": State(part("annotation"), "data"),
                "preview": State(part("fill-preview"), "data"),
                "case": case,
            },
            prevent_initial_call=True,
        )(self.edit)

        app.callback(
            output={
                "case": Output(part("case"), "data", allow_duplicate=True),
                **message,
            },
            inputs={
                "contents": Input(part("upload"), "contents"),
                "size": Input(part("size"), "value"),
                "saved": Input(part("saved"), "data"),
                "filenames": State(part("upload"), "filename"),
                "state": State(part("annotation"), "data"),
                "case": case,
            },
            background=True,
            manager=self._background_manager,
            running=[
                (Output(part("progress"), "style"), {"minWidth": "12em"}, {"display": "none"}),
                (Output(part("upload"), "disabled"), True, False),
                (Output(part("size"), "disabled"), True, False),
            ],
            progress=[Output(part("progress"), "value"), Output(part("progress"), "label")],
            prevent_initial_call=True,
        )(self.open_scan)

        app.callback(
            output={
                "infos": [Output(slicer._info.id, "data") for slicer in self.slicers],
                "slider_max": [Output(slicer.slider.id, "max") for slicer in self.slicers],
                "slider_value": [
                    Output(slicer.slider.id, "value", allow_duplicate=True)
                    for slicer in self.slicers
                ],
                "figures": [Output(graph, "figure", allow_duplicate=True) for graph in graphs],
                "clims": [
                    Output(slicer.clim.id, "data", allow_duplicate=True) for slicer in self.slicers
                ],
                "geometries": [Output(part(f"geometry-{a}"), "data") for a in range(3)],
                "boundaries": [
                    Output(part(f"boundary-slice-{a}"), "data", allow_duplicate=True)
                    for a in range(3)
                ],
                "contrast": Output(part("contrast"), "min"),
                "contrast_max": Output(part("contrast"), "max"),
                "contrast_value": Output(part("contrast"), "value"),
                "modalities": Output(part("modality"), "options"),
                "modality_style": Output(part("modality"), "style"),
                "modality": Output(part("modality"), "value"),
                "name": Output(part("name"), "children"),
                "preview": Output(part("fill-preview"), "data", allow_duplicate=True),
                "fill_bar": Output(part("fill-bar"), "is_open", allow_duplicate=True),
            },
            inputs={
                "case_data": Input(part("case"), "data"),
                "modality": Input(part("modality"), "value"),
            },
            prevent_initial_call=True,
        )(self.show_case)

        app.clientside_callback(
            clientside.ENTER_CASE,
            Output(part("annotation"), "data"),
            [Output(part(f"annotation-slices-{a}"), "data") for a in range(3)],
            Output(part("size"), "value"),
            Input(part("case"), "data"),
            State(part("storage-prefix"), "data"),
            State(part("size"), "value"),
        )
        app.clientside_callback(
            clientside.RESTORE_CASE,
            Output(part("saved"), "data"),
            Input(part("storage-prefix"), "data"),
            case,
        )
        app.clientside_callback(
            clientside.SAVE_ANNOTATION,
            Input(part("annotation"), "data"),
            case,
            State(part("storage-prefix"), "data"),
        )

        for axis, slicer in enumerate(self.slicers):
            app.callback(
                Output(part(f"boundary-slice-{axis}"), "data"),
                Input(slicer.state.id, "data"),
                Input(part("show-boundaries"), "value"),
                State(part(f"boundary-slice-{axis}"), "data"),
                case,
                prevent_initial_call=True,
            )(self._boundary_callback(axis))
            app.clientside_callback(
                clientside.PUBLISH_STATE,
                Output(slicer.state.id, "data", allow_duplicate=True),
                Input(part(f"geometry-{axis}"), "data"),
                State(slicer.slider.id, "value"),
                State(slicer._info.id, "data"),
                prevent_initial_call="initial_duplicate",
            )
            config = State(part(f"stroke-config-{axis}"), "data")
            # Installers return nothing; their nominal output makes Dash call them when a
            # page of a multi-page app mounts the annotator, not only at the app's start.
            app.clientside_callback(
                strokes_js.INSTALL_STROKES,
                Output(part(f"stroke-config-{axis}"), "data"),
                Input(part(f"geometry-{axis}"), "data"),
                config,
            )
            app.clientside_callback(
                strokes_js.RECEIVE_IDS, Input(part(f"ids-{axis}"), "data"), config
            )
            app.clientside_callback(
                strokes_js.CLEAR_AFTER_REDRAW, Input(slicer.extra_traces.id, "data"), config
            )
            app.callback(
                Output(part(f"ids-{axis}"), "data"),
                Input(part(f"ids-request-{axis}"), "data"),
                case,
                prevent_initial_call=True,
            )(self._ids_callback(axis))
            app.clientside_callback(
                clientside.REQUEST_STALE,
                Output(part(f"stale-request-{axis}"), "data"),
                Input(slicer.slider.id, "value"),
                Input(part(f"annotation-slices-{axis}"), "data"),
            )
            app.callback(
                Output(part(f"annotation-slices-{axis}"), "data", allow_duplicate=True),
                Input(part(f"stale-request-{axis}"), "data"),
                State(part("annotation"), "data"),
                State(part("fill-preview"), "data"),
                case,
                prevent_initial_call=True,
            )(self._stale_callback(axis))
            app.clientside_callback(
                clientside.COMPOSE_OVERLAYS,
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
        )(lambda window: [tuple(window)] * 3 if is_window(window) else [dash.no_update] * 3)

        app.callback(
            Output(part("download"), "data"),
            Output(part("message"), "children", allow_duplicate=True),
            Output(part("message"), "is_open", allow_duplicate=True),
            Input(part("download-button"), "n_clicks"),
            State(part("annotation"), "data"),
            case,
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
            case,
            prevent_initial_call=True,
        )(self.statistics_download)

        app.callback(
            Output(part("help"), "is_open"),
            Input(part("help-button"), "n_clicks"),
            State(part("help"), "is_open"),
            prevent_initial_call=True,
        )(lambda _, is_open: not is_open)

        app.clientside_callback(
            clientside.INSTALL_SHORTCUTS,
            Output(part("shortcuts"), "data"),
            Input(part("shortcuts"), "data"),
        )

    def _register_panel(self, app: dash.Dash, panel: str, outputs, function) -> None:
        """Call ``function(state, shown, case)`` for a panel that gets the annotation while
        shown."""
        shown = Input(self._part(f"show-{panel}"), "value")
        app.clientside_callback(
            clientside.PASS_WHEN_SHOWN,
            Output(self._part(f"annotation-{panel}"), "data"),
            Input(self._part("annotation"), "data"),
            shown,
        )
        app.callback(
            outputs,
            Input(self._part(f"annotation-{panel}"), "data"),
            shown,
            State(self._part("case"), "data"),
        )(function)

    # -- opening scans ------------------------------------------------------------------

    def open_scan(self, set_progress, contents, size, saved, filenames, state, case) -> dict:
        """Open uploaded scan files, the current scan with another superpixel size, or what
        this browser showed last.

        Runs as a background callback: computing superpixels takes seconds. Uploaded files
        are parsed in memory and checked against :attr:`limits`; several files are
        co-registered modalities of one scan. A new size keeps the annotation, mapped onto
        the new superpixels by majority; undo goes back to the previous ones. ``saved`` is
        what this browser showed last, asked for when a page loads (see
        :data:`clientside.RESTORE_CASE`): ``{"case": key, "size": size}``, either optional.
        The saved case is opened when this server knows it, else the message says it is gone
        and the saved size is opened; either way the annotation saved in the browser for the
        case opened wins. Malformed values are ignored.
        """
        result = {"case": dash.no_update, "message": dash.no_update}
        result.update(show_message=dash.no_update, message_color=dash.no_update)
        restoring = ctx.triggered_id == self._part("saved")
        if restoring:
            saved = saved if isinstance(saved, dict) else {}
            if is_case_key(saved.get("case")):
                try:
                    restored = self.cases.get(saved["case"])
                except CaseNotFoundError:
                    result.update(self._message(CASE_GONE, "warning"))
                else:
                    return {**result, "case": self.case_data(restored, restore=True)}
            size = _size_option(saved.get("size"))
            if size is None:
                return result
        else:
            size = _size_option(size) or DEFAULT_PARAMS["size"]
        set_progress((10, "Reading…"))
        try:
            if ctx.triggered_id == self._part("upload"):
                volumes = self._read_uploads(contents, filenames)
                current, annotation = None, None
            else:
                current = self.case_of(case)
                if current.superpixels.params.get("size") == size:
                    return result
                annotation = Annotation.from_state(current.superpixels, state)
                volumes = list(current.volumes)
        except CaseNotFoundError:
            return {**result, **self._message(CASE_GONE, "warning")}
        except (VolumeError, AnnotationStateError) as error:
            return {**result, **self._message(_one_line(error), "warning")}
        set_progress((30, "Computing superpixels…"))
        opened = open_case(volumes, self.cache_dir, size=size)
        set_progress((100, "Done"))
        notes = " ".join(note for volume in volumes for note in getattr(volume, "notes", ()))
        count = f"{opened.superpixels.count:,} superpixels of {size:g} mm"
        if current is None:
            names = ", ".join(volume.name for volume in volumes)
            text = f"Opened {names} {opened.shape}: {count}. {notes}".strip()
            return {**result, "case": self.case_data(opened, restore=True), **self._message(text)}
        mapped = annotation.remapped(opened.superpixels)
        if restoring:
            return {**result, "case": self.case_data(opened, state=mapped.to_state(), restore=True)}
        changed = int((mapped.label_volume() != annotation.label_volume()).sum())
        previous = self.case_data(current, state=state)
        text = (
            f"Superpixels recomputed: {count}. The annotation was mapped onto them "
            f"({changed:,} voxels changed); Undo brings back the previous superpixels."
        )
        return {
            **result,
            "case": self.case_data(opened, state=mapped.to_state(), previous=previous),
            **self._message(text),
        }

    def _read_uploads(self, contents, filenames) -> list[Volume]:
        if not isinstance(contents, list) or not isinstance(filenames, list) or not contents:
            raise VolumeError("upload: no file received")
        volumes = [
            read_volume_bytes(_decode_upload(content, name, self.limits), name, limits=self.limits)
            for content, name in zip(contents, filenames, strict=False)
        ]
        check_modalities(volumes, filenames)
        return volumes

    @staticmethod
    def _message(text: str, color: str = "info") -> dict:
        return {"message": text, "show_message": True, "message_color": color}

    def show_case(self, case_data, modality) -> dict:
        """Point the views at the session's case, or at another modality of it."""
        try:
            case = self.case_of(case_data)
        except CaseNotFoundError:
            raise dash.exceptions.PreventUpdate from None
        new_case = ctx.triggered_id == self._part("case")
        modality = 0 if new_case else self._modality(case, modality)
        window = case.windows[modality]
        keep = [dash.no_update] * 3
        figures = []
        for axis in range(3):
            ranges = axis_ranges(case.shape, case.volume.spacing, axis)
            figure = dash.Patch()
            figure["layout"]["xaxis"]["range"] = ranges["x"]
            figure["layout"]["yaxis"]["range"] = ranges["y"]
            figure["layout"]["uirevision"] = case.key
            figures.append(figure)
        contrast = self._contrast_range(case, modality)
        return {
            "infos": [slicer.info_for(case) for slicer in self.slicers],
            "slider_max": [n - 1 for n in case.shape] if new_case else keep,
            "slider_value": [n // 2 for n in case.shape] if new_case else keep,
            "figures": figures if new_case else keep,
            "clims": [list(window)] * 3,
            "geometries": [self.view_geometry(case, axis) for axis in range(3)],
            "boundaries": [None] * 3 if new_case else keep,
            "contrast": contrast["min"],
            "contrast_max": contrast["max"],
            "contrast_value": contrast["value"],
            "modalities": self._modality_options(case) if new_case else dash.no_update,
            "modality_style": self._modality_style(case) if new_case else dash.no_update,
            "modality": modality,
            "name": case.volume.name,
            "preview": None if new_case else dash.no_update,
            "fill_bar": False if new_case else dash.no_update,
        }

    # -- editing ------------------------------------------------------------------------

    def edit(
        self,
        strokes,
        undo,
        redo,
        fill,
        fill_accept,
        fill_discard,
        segmentation,
        segmentation_name,
        fine,
        indices,
        label,
        state,
        preview,
        case,
    ) -> dict:
        """Apply a stroke, undo, redo, fill or opened segmentation; send back the new state
        and the changed slices only.

        A stroke arrives in a view's ``stroke-<axis>`` store as ``{"path": "M x,y L x,y ...",
        "index": slice}`` in the view's mm (see :mod:`.strokes_js`). Fill first shows what it
        would label in :data:`PREVIEW_COLOR` (``preview`` holds the proposal); accepting
        applies it as one undoable step, and any other action discards it. Undo with nothing
        left to undo goes back to the superpixels used before a change of size, if any.
        """
        result = {
            "state": dash.no_update,
            "slices": [dash.no_update] * 3,
            "case": dash.no_update,
            "preview": None if preview else dash.no_update,
            "fill_bar": False if preview else dash.no_update,
            "fill_text": dash.no_update,
            "message": dash.no_update,
            "show_message": dash.no_update,
            "message_color": dash.no_update,
        }
        try:
            current = self.case_of(case)
            annotation = Annotation.from_state(current.superpixels, state)
        except CaseNotFoundError:
            return {**result, **self._message(CASE_GONE, "warning")}
        except AnnotationStateError as error:
            return {**result, **self._message(f"Annotation state refused: {error}.", "warning")}
        proposal = _proposal_arrays(preview, current.superpixels.count)
        shown_before = shown_labels(annotation, proposal)
        trigger = ctx.triggered_id
        if trigger == self._part("undo"):
            if not annotation.can_undo and isinstance(case.get("previous"), dict):
                return {**result, "case": case["previous"]}
            changed = annotation.undo()
        elif trigger == self._part("redo"):
            changed = annotation.redo()
        elif trigger == self._part("fill"):
            return {**result, **self._propose_fill(current, annotation, indices, shown_before)}
        elif trigger == self._part("fill-accept"):
            labels = annotation.superpixel_labels.copy()
            labels[proposal[0]] = proposal[1]
            changed = annotation.set_superpixel_labels(labels, filled=True)
        elif trigger == self._part("fill-discard"):
            changed = np.zeros(0, np.int64)
        elif trigger == self._part("open-segmentation"):
            try:
                changed, text = self._open_segmentation(
                    current, annotation, segmentation, segmentation_name
                )
            except VolumeError as error:
                return {**result, **self._message(_one_line(error), "warning")}
            result.update(self._message(text))
        else:
            stroke_stores = [self._part(f"stroke-{a}") for a in range(3)]
            if trigger not in stroke_stores:
                raise dash.exceptions.PreventUpdate
            axis = stroke_stores.index(trigger)
            stroke = strokes[axis] if isinstance(strokes[axis], dict) else {}
            try:
                level = "fine" if fine is True else "coarse"
                changed = self._paint(
                    current, annotation, axis, stroke.get("index"), stroke.get("path"), label, level
                )
            except ValueError as error:
                return {**result, **self._message(f"Stroke ignored: {error}.", "warning")}
        if changed.size:
            result["state"] = annotation.to_state()
            if result["message"] is dash.no_update:
                result["show_message"] = False
        shown_after = annotation.marked_labels()
        if (shown_after != shown_before).any():
            result["slices"] = self.overlay_patches(current, shown_before, shown_after, indices)
        return result

    def _propose_fill(self, case: Case, annotation: Annotation, shown, shown_before) -> dict:
        """Show what Fill would label, for the user to accept or discard."""
        labels = annotation.autofill_labels(case.intensities)
        ids = np.flatnonzero(labels != annotation.superpixel_labels)
        ids = ids[ids > 0]
        if not ids.size:
            text = "Fill found no similar superpixels touching your labels."
            return self._message(text)
        shown_after = shown_labels(annotation, (ids, labels[ids]))
        added = labels[ids] > 0
        voxels = case.superpixel_sizes[ids[added]].sum()
        volume_ml = voxels * float(np.prod(case.volume.spacing)) / 1000
        text = (
            f"Fill proposes {int(added.sum()):,} superpixels ({volume_ml:.1f} mL), shown in "
            "white"
            + (f", and clears {int((~added).sum()):,}" if (~added).any() else "")
            + ". Accept (Enter) or discard (Esc)."
        )
        return {
            "preview": {"ids": ids.tolist(), "labels": labels[ids].tolist()},
            "fill_bar": True,
            "fill_text": text,
            "slices": self.overlay_patches(case, shown_before, shown_after, shown),
            "show_message": False,
        }

    def _open_segmentation(
        self, case: Case, annotation: Annotation, content, filename
    ) -> tuple[np.ndarray, str]:
        content = _decode_upload(content, filename, self.limits)
        segmentation = read_segmentation_bytes(content, filename, case.volume, limits=self.limits)
        labels = segmentation.labels
        unknown = sorted(set(np.unique(labels).tolist()) - {0} - self._label_values)
        if unknown:
            raise VolumeError(
                f"{filename}: labels {unknown} are not in this annotator's palette "
                f"{sorted(self._label_values)}"
            )
        changed, differing = annotation.load_label_volume(labels, segmentation.superpixel_marks)
        if differing == 0:
            return changed, f"Opened {filename}: it matches the superpixels exactly."
        return changed, (
            f"Opened {filename}: mapped onto the superpixels by majority, "
            f"{differing:,} voxels differ from the file."
        )

    @property
    def _label_values(self) -> set[int]:
        return {lb.value for lb in self.labels}

    def _paint(
        self, case: Case, annotation: Annotation, axis: int, index, path, label, level: str
    ) -> np.ndarray:
        if not _is_int(label) or label not in {0} | self._label_values:
            raise ValueError(f"unknown label {label!r}")
        if not case.has_slice(axis, index):
            raise ValueError(f"slice index {index!r} is outside the volume")
        xy = parse_stroke_path(path)
        if len(xy) > MAX_STROKE_VERTICES:
            raise ValueError("stroke has too many points")
        geometry = self.view_geometry(case, axis)
        rows = (xy[:, 1] - geometry["y0"]) / geometry["dy"]
        cols = (xy[:, 0] - geometry["x0"]) / geometry["dx"]
        return annotation.paint(axis, index, np.column_stack([rows, cols]), label, level)

    def overlay_patches(
        self, case: Case, before: np.ndarray, after: np.ndarray, shown: Sequence
    ) -> list[dash.Patch]:
        """For each view, a Patch of the slices whose overlay changes from ``before`` to
        ``after`` (the marked label of each superpixel as shown, see :func:`shown_labels`).

        The slice a view shows (``shown[axis]``) is rendered now; the other changed slices
        are marked :data:`STALE` and rendered when a view shows them.
        """
        new = self.segmentation(case, after)
        differs = self.segmentation(case, before) != new
        patches = []
        for axis in range(3):
            others = tuple(other for other in range(3) if other != axis)
            patch = dash.Patch()
            for index in np.flatnonzero(differs.any(axis=others)).tolist():
                if index == shown[axis]:
                    patch[index] = self.overlay_uri(new, axis, index)
                else:
                    patch[index] = STALE
            patches.append(patch)
        return patches

    def _stale_callback(self, axis: int):
        def render_stale(request, state, preview, case):
            current, annotation = self._session(case, state)
            index = request[0] if isinstance(request, list) and request else None
            if not current.has_slice(axis, index):
                raise dash.exceptions.PreventUpdate
            proposal = _proposal_arrays(preview, current.superpixels.count)
            labels = self.segmentation(current, shown_labels(annotation, proposal))
            patch = dash.Patch()
            patch[index] = self.overlay_uri(labels, axis, index)
            return patch

        return render_stale

    def overlay_uri(self, segmentation: np.ndarray, axis: int, index: int) -> str | None:
        """One slice of a label volume (see :meth:`segmentation`) as an overlay PNG data URI
        (``None`` when empty)."""
        return indexed_png_uri(section(segmentation, axis, index), self._palette)

    def _stroke_config(self, slicer: SessionSlicer) -> dict:
        """What a view's stroke handlers need to know (see :mod:`.strokes_js`)."""
        axis, part = slicer.axis, self._part
        return {
            "graph": slicer.graph.id,
            "slider": slicer.slider.id,
            "case": part("case"),
            "label": part("label"),
            "fine": part("fine"),
            "opacity": part("opacity"),
            "stroke": part(f"stroke-{axis}"),
            "idsRequest": part(f"ids-request-{axis}"),
            "colors": {str(lb.value): lb.color for lb in self.labels},
        }

    def _ids_callback(self, axis: int):
        def superpixel_ids(request, case_data):
            """The superpixel ids of a slice, and the coarse region of each id present."""
            if not isinstance(request, list) or len(request) != 2:
                raise dash.exceptions.PreventUpdate
            index, key = request
            try:
                case = self.case_of(case_data)
            except CaseNotFoundError:
                raise dash.exceptions.PreventUpdate from None
            if not case.has_slice(axis, index) or key != case.key:
                raise dash.exceptions.PreventUpdate
            ids_section = section(case.superpixels.labels, axis, index)
            present = np.unique(ids_section)
            present = present[present > 0]
            coarse = case.superpixels.coarse
            return {
                "key": case.key,
                "index": index,
                "uri": id_section_uri(ids_section),
                "ids": present.tolist(),
                "coarse": (coarse[present] if coarse is not None else present).tolist(),
            }

        return superpixel_ids

    def _boundary_callback(self, axis: int):
        def boundary_slice(state, show, current, case_data):
            if not show or not isinstance(state, dict):
                raise dash.exceptions.PreventUpdate
            try:
                case = self.case_of(case_data)
            except CaseNotFoundError:
                raise dash.exceptions.PreventUpdate from None
            index = state.get("index")
            if not case.has_slice(axis, index):
                raise dash.exceptions.PreventUpdate
            if isinstance(current, dict) and current.get("index") == index:
                raise dash.exceptions.PreventUpdate
            uri = boundary_section_uri(section(case.superpixels.labels, axis, index))
            return {"index": index, "uri": uri}

        return boundary_slice

    # -- results ------------------------------------------------------------------------

    def download(self, _n_clicks, state, case_data):
        """Send the annotation as ``<name>_segmentation.nii.gz``."""
        try:
            case = self.case_of(case_data)
            annotation = Annotation.from_state(case.superpixels, state)
        except CaseNotFoundError:
            return dash.no_update, CASE_GONE, True
        except AnnotationStateError as error:
            return dash.no_update, f"Nothing to download: {_one_line(error)}.", True
        if not annotation.superpixel_labels.any():
            return dash.no_update, "Nothing to download yet: the annotation is empty.", True
        filename = f"{case.volume.name}_segmentation.nii.gz"
        with tempfile.TemporaryDirectory() as folder:
            path = Path(folder) / filename
            marks = annotation.marked_labels()
            save_segmentation(case.volume, self.segmentation(case, marks), path, marks)
            content = path.read_bytes()
        return dcc.send_bytes(content, filename), dash.no_update, False

    def statistics(self, state, case_data) -> list[dict]:
        """Per-label volume, voxel and superpixel counts and mean intensity per modality."""
        case, annotation = self._session(case_data, state)
        intensities = {volume.name: volume.data for volume in case.volumes}
        return label_statistics(
            self.segmentation(case, annotation.marked_labels()),
            annotation.superpixel_labels,
            intensities,
            case.volume.spacing,
        )

    def statistics_view(self, state, show, case_data):
        """The statistics panel: a table and a bar chart of the volume of each label."""
        if not show:
            return False, dash.no_update, dash.no_update
        rows = self.statistics(state, case_data)
        labels = {lb.value: lb for lb in self.labels}
        means = [key for key in (rows[0] if rows else {}) if key.startswith("mean_")]
        header = ["Label", "Volume (mL)", "Volume (mm³)", "Voxels", "Superpixels"]
        header += [f"Mean {key.removeprefix('mean_')}" for key in means]
        body = [
            html.Tr(
                [
                    html.Td(labels[row["label"]].name if row["label"] in labels else row["label"]),
                    html.Td(f"{row['volume_ml']:.2f}"),
                    html.Td(f"{row['volume_mm3']:.0f}"),
                    html.Td(row["voxels"]),
                    html.Td(row["superpixels"]),
                    *[html.Td(f"{row[key]:.3g}") for key in means],
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

    def statistics_download(self, _n_clicks, state, case_data):
        """Send the statistics as ``<name>_statistics.csv``."""
        case = self._session(case_data, state)[0]
        rows = self.statistics(state, case_data)
        return dcc.send_string(statistics_csv(rows), f"{case.volume.name}_statistics.csv")

    def figure_3d(self, state, show, case_data) -> dict:
        """The 3D view: one mesh per label inside a faint outline of the head."""
        if not show:
            return HIDDEN_3D_FIGURE
        case, annotation = self._session(case_data, state)
        traces = [case.outline]
        if annotation.superpixel_labels.any():
            traces += label_meshes(
                self.segmentation(case, annotation.marked_labels()),
                case.volume.spacing,
                {lb.value: lb.color for lb in self.labels},
                label_names={lb.value: lb.name for lb in self.labels},
            )
        layout = {
            "scene": scene_layout(case.shape, case.volume.spacing),
            "margin": {"l": 0, "r": 0, "t": 0, "b": 0},
            "uirevision": case.key,
            "showlegend": False,
        }
        return {"data": traces, "layout": layout}


def _is_int(value) -> bool:
    """Whether a JSON value is an integer (``true`` and ``false`` are not)."""
    return isinstance(value, int) and not isinstance(value, bool)


def shown_labels(annotation: Annotation, proposal: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
    """The marked label of each superpixel as the overlay shows it (see
    :meth:`Annotation.marked_labels`): with a Fill ``proposal`` (ids, labels), the
    superpixels it would label in :data:`PREVIEW_VALUE` and those it would clear unlabelled."""
    marks = annotation.marked_labels()
    marks[proposal[0]] = np.where(proposal[1] > 0, PREVIEW_VALUE, 0)
    return marks


def _proposal_arrays(preview, count: int) -> tuple[np.ndarray, np.ndarray]:
    """The (ids, labels) of a Fill preview store; empty when there is none or it is malformed."""
    empty = (np.zeros(0, np.int64), np.zeros(0, np.uint8))
    if not isinstance(preview, dict):
        return empty
    try:
        ids = np.asarray(preview.get("ids"), dtype=np.int64)
        labels = np.asarray(preview.get("labels"), dtype=np.int64)
    except (TypeError, ValueError):
        return empty
    valid = ids.ndim == 1 and ids.shape == labels.shape
    if not valid or (ids.size and (ids.min() < 1 or ids.max() > count)):
        return empty
    if labels.size and (labels.min() < 0 or labels.max() > MAX_LABEL):
        return empty
    return ids, labels.astype(np.uint8)


def _size_option(value) -> float | None:
    """The superpixel size a size menu value names; ``None`` when it names none of
    :data:`SIZE_OPTIONS`."""
    try:
        size = float(value)
    except (TypeError, ValueError):
        return None
    return size if size in SIZE_OPTIONS.values() else None


def _one_line(error: Exception) -> str:
    text = str(error.args[0]) if error.args else type(error).__name__
    return text.splitlines()[0] if text else type(error).__name__


def _decode_upload(content, filename, limits: Limits) -> bytes:
    """The bytes of a ``dcc.Upload`` data URL, refused when over ``limits.max_bytes``."""
    name = filename if isinstance(filename, str) else "upload"
    if not isinstance(content, str) or "," not in content:
        raise VolumeError(f"{name}: the upload is not a file")
    encoded = content.split(",", 1)[1]
    limits.check_size(len(encoded) * 3 // 4, name)
    try:
        return base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        raise VolumeError(f"{name}: the upload is not valid base64") from None
