"""Results: the 3D view, the statistics panel and its CSV, the segmentation download (NIfTI,
or DICOM SEG for a scan read from DICOM), and the help. The panels get the annotation only
while shown (``keepAnnotation`` in ``js/annotator.js``)."""

from __future__ import annotations

import tempfile
from pathlib import Path

import dash
import dash_bootstrap_components as dbc
import plotly.graph_objects as go
from dash import Input, Output, State, dcc, html

from ...core.annotation import AnnotationStateError
from ...core.cases import CaseNotFoundError
from ...core.editing import EditSession
from ...core.meshes import box_label_meshes, scene_layout
from ...core.segmentation_io import save_segmentation
from ...core.statistics import label_statistics, statistics_csv
from ..context import CASE_GONE, AnnotatorContext, one_line, shown_name
from ..layout import HIDDEN_3D_FIGURE, dicom_seg_style, help_card


def register(app: dash.Dash, context: AnnotatorContext) -> None:
    """Register the panels, the downloads and the help with ``app``."""
    ids = context.ids
    case = State(ids["case"], "data")
    app.callback(
        Output(ids["view-3d"], "figure"),
        Input(ids["annotation-3d"], "data"),
        Input(ids["show-3d"], "value"),
        case,
        prevent_initial_call=True,
    )(lambda state, show, case_data: figure_3d(context, state, show, case_data))
    app.callback(
        Output(ids["statistics"], "is_open"),
        Output(ids["statistics-table"], "children"),
        Output(ids["statistics-chart"], "figure"),
        Input(ids["annotation-statistics"], "data"),
        Input(ids["show-statistics"], "value"),
        case,
        prevent_initial_call=True,
    )(lambda state, show, case_data: statistics_view(context, state, show, case_data))
    app.callback(
        Output(ids["statistics-download"], "data"),
        Input(ids["statistics-csv"], "n_clicks"),
        State(ids["annotation"], "data"),
        case,
        prevent_initial_call=True,
    )(lambda _, state, case_data: statistics_download(context, state, case_data))
    app.callback(
        Output(ids["download"], "data"),
        Output(ids["message"], "children", allow_duplicate=True),
        Output(ids["message"], "is_open", allow_duplicate=True),
        Input(ids["download-button"], "n_clicks"),
        Input(ids["download-seg-button"], "n_clicks"),
        State(ids["annotation"], "data"),
        case,
        prevent_initial_call=True,
    )(
        lambda _, __, state, case_data: download(
            context, state, case_data, dicom=dash.ctx.triggered_id == ids["download-seg-button"]
        )
    )
    app.callback(
        Output(ids["download-seg-button"], "style"),
        Input(ids["case"], "data"),
        prevent_initial_call=True,
    )(lambda case_data: seg_button_style(context, case_data))
    app.callback(
        Output(ids["help"], "is_open"),
        Output(ids["help"], "children"),
        Input(ids["help-button"], "n_clicks"),
        State(ids["help"], "is_open"),
        prevent_initial_call=True,
    )(lambda _, is_open: toggle_help(context, is_open))


def toggle_help(context: AnnotatorContext, is_open: bool) -> tuple:
    """Show the help with its text, or hide it (is_open, children)."""
    if is_open:
        return False, dash.no_update
    return True, help_card(context.workspace is not None, context.pacs is not None)


def download(context: AnnotatorContext, state, case_data, dicom: bool = False) -> tuple:
    """Send the annotation as ``<name>_segmentation.nii.gz`` or, with ``dicom``, as the DICOM
    SEG ``<name>_segmentation.dcm`` with the label table's names and colours, named by the
    dataset case or else the scan (download, message, shown)."""
    try:
        session = EditSession(context.case_of(case_data), state, context.label_values)
    except CaseNotFoundError:
        return dash.no_update, CASE_GONE, True
    except AnnotationStateError as error:
        return dash.no_update, f"Nothing to download: {one_line(error)}.", True
    case = session.case
    labels = context.segmentations.get(case, session.annotation.marks())
    if not labels.any():
        return dash.no_update, "Nothing to download yet: the annotation is empty.", True
    if dicom and not case.volume.dicom_headers:
        return dash.no_update, "No DICOM SEG: this scan was not read from DICOM.", True
    suffix = ".dcm" if dicom else ".nii.gz"
    filename = f"{shown_name(case, case_data)}_segmentation{suffix}"
    marks = session.annotation.marked_labels()
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / filename
        save_segmentation(case.volume, labels, path, marks, label_classes=context.labels)
        content = path.read_bytes()
    return dcc.send_bytes(content, filename), dash.no_update, False


def seg_button_style(context: AnnotatorContext, case_data) -> dict:
    """Download DICOM SEG shows for a scan read from DICOM."""
    try:
        return dicom_seg_style(context.case_of(case_data))
    except CaseNotFoundError:
        return {"display": "none"}


def statistics(context: AnnotatorContext, state, case_data) -> list[dict]:
    """Per-label volume, voxel and superpixel counts and mean intensity per modality."""
    session = context.edit_session(case_data, state)
    case, annotation = session.case, session.annotation
    # Nothing outside the labelled box is labelled: the box's voxels give the same numbers.
    box, labels = context.segmentations.boxed(case, annotation.marks())
    box = box or (slice(0, 0),) * 3
    return label_statistics(
        labels,
        annotation.superpixel_labels,
        {volume.name: volume.data[box] for volume in case.volumes},
        case.volume.spacing,
    )


def statistics_view(context: AnnotatorContext, state, show, case_data) -> tuple:
    """The statistics panel: open, a table and a bar chart of the volume of each label."""
    if not show:
        return False, dash.no_update, dash.no_update
    rows = statistics(context, state, case_data)
    labels = {label.value: label for label in context.labels}
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


def statistics_download(context: AnnotatorContext, state, case_data) -> dict:
    """Send the statistics as ``<name>_statistics.csv``."""
    name = context.shown_case(case_data).volume.name
    rows = statistics(context, state, case_data)
    return dcc.send_string(statistics_csv(rows), f"{name}_statistics.csv")


def figure_3d(context: AnnotatorContext, state, show, case_data) -> dict:
    """The 3D view: one mesh per label inside a faint outline of the head."""
    if not show:
        return HIDDEN_3D_FIGURE
    session = context.edit_session(case_data, state)
    case, annotation = session.case, session.annotation
    traces = [case.outline]
    box, labels = context.segmentations.boxed(case, annotation.marks())
    if box is not None:
        traces += box_label_meshes(
            box,
            labels,
            case.shape,
            case.volume.spacing,
            {label.value: label.color for label in context.labels},
            label_names={label.value: label.name for label in context.labels},
        )
    layout = {
        "scene": scene_layout(case.shape, case.volume.spacing),
        "margin": {"l": 0, "r": 0, "t": 0, "b": 0},
        "uirevision": case.key,
        "showlegend": False,
    }
    return {"data": traces, "layout": layout}
