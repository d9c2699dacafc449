"""The annotator's components and their arrangement: scan bar, toolbar, help, display
controls, the three slice views and the 3D view, statistics, and the session's stores."""

from __future__ import annotations

from collections.abc import Sequence

import dash_bootstrap_components as dbc
from dash import dcc, html

from ..core.cases import Case
from ..core.geometry import view_geometry
from ..core.palette import LabelClass
from ..core.superpixels import DEFAULT_PARAMS
from .context import SIZE_OPTIONS, case_data, size_choice
from .dataset_panel import DATASET_HELP, dataset_panel
from .ids import AnnotatorIds
from .pacs_panel import PACS_HELP, pacs_panel
from .slicer import SessionSlicer

VIEW_NAMES = ("Axial", "Coronal", "Sagittal")
_SWATCH_STYLE = {
    "display": "inline-block",
    "width": "0.8em",
    "height": "0.8em",
    "borderRadius": "2px",
    "marginRight": "0.3em",
    "verticalAlign": "middle",
}
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
HELP_ITEMS = (
    (
        "Draw",
        "on any slice view with the mouse: every region the stroke touches gets the "
        "selected label, in all three views at once. A region is a group of neighbouring "
        "superpixels of similar intensity; with Fine strokes (key S) only the superpixels "
        "crossed are labelled, for corrections. With Grow strokes (key G) the label also "
        "spreads from the superpixels crossed through the touching ones that look like that "
        "label's, in 3D: one stroke takes most of a region of one kind, such as oedema or an "
        "enhancing rim; other labels and erased superpixels stop it. The message says how "
        "much it labelled, also beyond the slices on screen. Where it spreads too far (a "
        "necrotic core into the ventricles, which look alike), Undo and use Fine strokes. "
        "The Brush (key B) paints voxels, not superpixels: those within 1.5 mm of the stroke "
        "on its slice that look like the voxels under it, for the last corrections; a stroke "
        "on the superpixels later repaints them.",
    ),
    (
        "Labels",
        "keys 1-9 pick a label; the Eraser (key E or 0) removes labels. Where two labels "
        "meet, the border between them follows the scan's intensities voxel by voxel, not "
        "the superpixels: label a rim and the core next to it with coarse or grow strokes, "
        "and the border settles between them.",
    ),
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
    (
        "Download segmentation",
        "saves the labels as NIfTI with the scan's geometry; for a scan read from DICOM, "
        "Download DICOM SEG saves them as a DICOM Segmentation of its series.",
    ),
)


def modality_options(case: Case) -> list[dict]:
    """The modality switch's options: one per volume of the case."""
    return [{"label": volume.name, "value": i} for i, volume in enumerate(case.volumes)]


def dicom_seg_style(case: Case) -> dict:
    """Download DICOM SEG shows only for a scan read from DICOM."""
    return {} if case.volume.dicom_headers else {"display": "none"}


def modality_style(case: Case) -> dict:
    """The modality switch shows only when there is a choice."""
    return {} if len(case.volumes) > 1 else {"display": "none"}


def contrast_range(case: Case, modality: int) -> dict:
    """The contrast slider's bounds and window for one modality of the case."""
    data = case.volumes[modality].data
    window = case.windows[modality]
    return {"min": float(data.min()), "max": float(data.max()), "value": list(window)}


class LayoutBuilder:
    """Builds the layout of one annotator instance (see :meth:`build`).

    Parameters
    ----------
    ids : AnnotatorIds
        The instance's component ids.
    labels : sequence of LabelClass
        The label palette.
    case : Case
        The case the page starts on.
    slicers : sequence of SessionSlicer
        The three views' slicers, axial first.
    stroke_configs : sequence of dict
        Each view's stroke configuration (see ``js/strokes.js``).
    browser_config : dict
        The instance's configuration of the browser code (see ``js/annotator.js``).
    dataset : dict, optional
        For an annotator of a dataset, the dataset data of the case the page starts on
        (see :func:`~.callbacks.dataset.pending_dataset`); the case list is shown then.
    pacs : str, optional
        For an annotator of a PACS, the server's DICOMweb URL; the PACS browser is shown.
    """

    def __init__(
        self,
        ids: AnnotatorIds,
        labels: Sequence[LabelClass],
        case: Case,
        slicers: Sequence[SessionSlicer],
        stroke_configs: Sequence[dict],
        browser_config: dict,
        *,
        dataset: dict | None = None,
        pacs: str | None = None,
    ) -> None:
        self.ids = ids
        self.labels = tuple(labels)
        self.case = case
        self.slicers = slicers
        self.stroke_configs = stroke_configs
        self.browser_config = browser_config
        self.dataset = dataset
        self.pacs = pacs

    def build(self) -> html.Div:
        """The annotator's layout, whose root carries the instance id for the shortcuts."""
        views = [self._view(axis) for axis in range(3)]
        views.append(self._view_3d())
        return html.Div(
            [
                self._scan_bar(),
                *([dataset_panel(self.ids)] if self.dataset else []),
                *([pacs_panel(self.ids, self.pacs)] if self.pacs else []),
                self._toolbar(),
                self._help(),
                self._display_controls(),
                self._fill_bar(),
                dbc.Alert(
                    id=self.ids["message"],
                    is_open=False,
                    dismissable=True,
                    color="warning",
                    className="py-1",
                ),
                dbc.Row(views, className="g-2"),
                self._statistics_panel(),
                *self._stores(),
            ],
            id=self.ids["root"],
            className="superpixel-annotator",
            **{"data-annotator": self.ids.prefix},
        )

    def _button(self, text: str, name: str, color: str, title: str | None = None) -> dbc.Button:
        return dbc.Button(text, id=self.ids[name], size="sm", color=color, title=title)

    def _panel_header(self, panel: str, label: str) -> dbc.CardHeader:
        """A card header whose switch shows the panel (see ``callbacks/panels.py``)."""
        switch = dbc.Switch(
            id=self.ids[f"show-{panel}"], label=label, value=False, className="mb-0"
        )
        return dbc.CardHeader(switch, className="py-1 small")

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
            id=self.ids[name],
            multiple=multiple,
            style=style,
            style_active={**style, "borderColor": "#0d6efd"},
            className="small",
        )

    def _button_choice(self, name: str, options: list, value, **props) -> dbc.RadioItems:
        """Radio items shown as a row of small toggle buttons."""
        return dbc.RadioItems(
            id=self.ids[name],
            options=options,
            value=value,
            inline=True,
            inputClassName="btn-check",
            labelClassName="btn btn-outline-secondary btn-sm",
            labelCheckedClassName="active",
            **props,
        )

    def _scan_bar(self) -> html.Div:
        """The scan's name, and the controls to open a scan or a segmentation and to choose
        the superpixel size."""
        size_menu = dbc.Select(
            id=self.ids["size"],
            options=[
                {"label": f"{name} ({size:g} mm)", "value": str(size)}
                for name, size in SIZE_OPTIONS.items()
            ],
            value=size_choice(self.case) or str(DEFAULT_PARAMS["size"]),
            size="sm",
            style={"width": "auto"},
        )
        progress = dbc.Progress(
            id=self.ids["progress"],
            value=0,
            striped=True,
            animated=True,
            style={"display": "none", "minWidth": "12em"},
        )
        upload = self._drop_zone(
            "upload",
            ["Open scan… ", html.Span("or drop files", className="text-muted")],
            "A .nii, .nii.gz, .mgz or .mgh file; several files are co-registered "
            "modalities of one scan. Or the .dcm files of one DICOM series, or a .zip of them",
            multiple=True,
        )
        segmentation = self._drop_zone(
            "open-segmentation",
            "Open segmentation…",
            "Labels of this scan from a NIfTI file or, for a DICOM scan, a DICOM SEG "
            "(e.g. a downloaded one)",
        )
        name = html.Span(self.case.volume.name, id=self.ids["name"], className="fw-semibold")
        items = [name, upload, segmentation, html.Span("Superpixels", className="small")]
        return _row([*items, size_menu, progress])

    def _toolbar(self) -> html.Div:
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
        edit_buttons = dbc.ButtonGroup(
            [
                self._button("Undo", "undo", "secondary", "Ctrl+Z"),
                self._button("Redo", "redo", "secondary", "Ctrl+Y"),
                self._button("Fill", "fill", "success", "Label similar touching superpixels (F)"),
            ]
        )
        levels = html.Div(
            [
                dbc.Switch(id=self.ids[name], label=label, value=False, className="mb-0 small")
                for name, label in (
                    ("fine", "Fine strokes (S)"),
                    ("grow", "Grow strokes (G)"),
                    ("brush", "Brush (B)"),
                )
            ]
        )
        return _row(
            [
                self._button_choice(
                    "label", label_options, self.labels[0].value, className="btn-group-sm"
                ),
                edit_buttons,
                levels,
                self._button("Download segmentation", "download-button", "primary"),
                dbc.Button(
                    "Download DICOM SEG",
                    id=self.ids["download-seg-button"],
                    size="sm",
                    color="primary",
                    title="The labels as a DICOM Segmentation of the scan's series",
                    style=dicom_seg_style(self.case),
                ),
                dbc.Button("Help", id=self.ids["help-button"], size="sm", color="link"),
            ]
        )

    def _help(self) -> dbc.Collapse:
        """The help, empty until it is first shown (see :func:`help_card`)."""
        return dbc.Collapse(id=self.ids["help"], is_open=False)

    def _display_controls(self) -> html.Div:
        opacity = dcc.Slider(
            id=self.ids["opacity"],
            min=0,
            max=1,
            step=0.05,
            value=0.6,
            marks=None,
            tooltip={"placement": "bottom"},
        )
        contrast = dcc.RangeSlider(
            id=self.ids["contrast"],
            **contrast_range(self.case, 0),
            marks=None,
            updatemode="mouseup",
        )
        modality = self._button_choice(
            "modality", modality_options(self.case), 0, style=modality_style(self.case)
        )
        return _row(
            [
                dbc.Switch(id=self.ids["show-boundaries"], label="Superpixels", value=False),
                dbc.Switch(id=self.ids["show-annotation"], label="Annotation", value=True),
                html.Span("Opacity", className="small"),
                html.Div(opacity, style={"width": "16%"}),
                html.Span("Contrast", className="small"),
                html.Div(contrast, style={"width": "25%"}),
                modality,
            ]
        )

    def _fill_bar(self) -> dbc.Collapse:
        alert = dbc.Alert(
            [
                html.Span(id=self.ids["fill-text"], className="me-2"),
                self._button("Accept", "fill-accept", "success", "Enter"),
                self._button("Discard", "fill-discard", "secondary", "Esc"),
            ],
            color="light",
            className="py-1 d-flex align-items-center gap-2",
        )
        return dbc.Collapse(alert, id=self.ids["fill-bar"], is_open=False)

    def _view(self, axis: int) -> dbc.Col:
        """One slice view: dash-slicer's graph and slider, and the view's stores."""
        slicer = self.slicers[axis]
        view = self.ids.view
        stores = [
            dcc.Store(id=view("annotation-slices", axis), data=[None] * slicer.nslices),
            *(
                dcc.Store(id=view(name, axis))
                for name in (
                    "boundary-slice",
                    "stale-request",
                    "stroke",
                    "ids-request",
                    "ids",
                    "thumbnail-request",
                    "boundary-request",
                )
            ),
            dcc.Store(id=view("stroke-config", axis), data=self.stroke_configs[axis]),
            dcc.Store(
                id=view("geometry", axis), data=view_geometry(self.case.volume.spacing, axis)
            ),
        ]
        card = dbc.Card(
            [
                dbc.CardHeader(VIEW_NAMES[axis], className="py-1 small"),
                slicer.graph,
                html.Div(slicer.slider, className="px-2"),
                *slicer.stores,
                *stores,
            ],
            id=view("view", axis),
            className="h-100",
        )
        return dbc.Col(card, lg=6, className="mb-2")

    def _view_3d(self) -> dbc.Col:
        graph = dcc.Graph(
            id=self.ids["view-3d"],
            figure=HIDDEN_3D_FIGURE,
            style={"height": "46vh"},
            config={"displaylogo": False},
        )
        card = dbc.Card(
            [self._panel_header("3d", "3D view"), dcc.Loading(graph)], className="h-100"
        )
        return dbc.Col(card, lg=6, className="mb-2")

    def _statistics_panel(self) -> dbc.Card:
        chart = dcc.Graph(
            id=self.ids["statistics-chart"],
            style={"height": "160px"},
            config={"displayModeBar": False},
        )
        body = dbc.Row(
            [
                dbc.Col(html.Div(id=self.ids["statistics-table"]), lg=8),
                dbc.Col([chart, self._button("Download CSV", "statistics-csv", "secondary")], lg=4),
            ]
        )
        return dbc.Card(
            [
                self._panel_header("statistics", "Statistics"),
                dbc.Collapse(dbc.CardBody(body), id=self.ids["statistics"], is_open=False),
            ],
            className="mb-2",
        )

    def _stores(self) -> list:
        ids = self.ids
        initial = case_data(self.case, restore=True, initial=True, dataset=self.dataset)
        return [
            dcc.Store(id=ids["annotation"], storage_type="memory"),
            dcc.Store(id=ids["fill-preview"]),
            dcc.Store(id=ids["case"], data=initial),
            dcc.Store(id=ids["storage-prefix"], data=f"superpixel-annotator:{ids.prefix}:"),
            dcc.Store(id=ids["saved"]),
            dcc.Store(id=ids["session"], storage_type="local"),
            dcc.Store(id=ids["annotation-3d"], storage_type="memory"),
            dcc.Store(id=ids["browser-config"], data=self.browser_config),
            dcc.Store(id=ids["shortcuts"]),
            dcc.Download(id=ids["download"]),
            dcc.Download(id=ids["statistics-download"]),
            dcc.Store(id=ids["annotation-statistics"], storage_type="memory"),
            dcc.Store(id=ids["dataset-case"]),
            dcc.Store(id=ids["dataset-open"]),
            dcc.Store(id=ids["read-only"], data=False),
        ]


def _row(components: list) -> html.Div:
    """Components side by side, each as wide as it needs, in one flex box: every component
    of a page costs Dash's renderer work on each update, so no wrapper per component."""
    return html.Div(components, className="d-flex flex-wrap gap-2 align-items-center mb-2")


def help_card(dataset: bool, pacs: bool) -> dbc.Card:
    """The help's text, with the dataset's and the PACS's items where the app has them.

    Sent each time the help is opened rather than laid out with the page: its 19
    components would otherwise cost every page load and stroke some of Dash's work.
    """
    shown = HELP_ITEMS + (DATASET_HELP if dataset else ()) + (PACS_HELP if pacs else ())
    items = [html.Li([html.B(name), " ", text]) for name, text in shown]
    return dbc.Card(dbc.CardBody(html.Ul(items, className="mb-0 small")), className="mb-2")
