"""The PACS browser of an annotator given a DICOMweb server: a study search, the studies
found, the series of the study chosen, and Save to PACS (see :mod:`.callbacks.pacs`)."""

from __future__ import annotations

from collections.abc import Sequence

import dash_bootstrap_components as dbc
from dash import dcc, html

from ..pacs.dicomweb import Series, Study
from .ids import AnnotatorIds

PACS_HELP = (
    (
        "PACS",
        "Search finds the studies of a patient ID or of a range of dates; a click on a study "
        "lists its series, a click on a series opens it. Save to PACS stores the labels of "
        "a scan opened from DICOM in the PACS as a DICOM Segmentation of its series.",
    ),
)
"""The help of the PACS browser, shown with the annotator's help."""
MAX_LISTED = 200
"""The most studies listed at once: a search finding more says so."""


def pacs_panel(ids: AnnotatorIds, server: str) -> dbc.Card:
    """The PACS card: the search bar, then the studies and the series of the one chosen."""
    return dbc.Card(
        dbc.CardBody(
            [
                _search_bar(ids, server),
                dbc.Row(
                    [
                        dbc.Col(html.Div(id=ids["pacs-studies"]), md=7),
                        dbc.Col(html.Div(id=ids["pacs-series"]), md=5),
                    ],
                    className="g-2",
                ),
                dcc.Store(id=ids["pacs-open"]),
            ],
            className="p-2",
        ),
        className="mb-2",
    )


def _search_bar(ids: AnnotatorIds, server: str) -> dbc.Row:
    def date(name: str, title: str) -> html.Div:
        field = dbc.Input(id=ids[name], type="date", size="sm", style={"width": "10em"})
        return html.Div(field, title=title)

    items = [
        html.Span("PACS", className="fw-semibold small", title=server),
        dbc.Input(
            id=ids["pacs-patient"],
            placeholder="Patient ID",
            size="sm",
            debounce=True,
            style={"width": "12em"},
        ),
        date("pacs-since", "Studies on or after this date"),
        date("pacs-until", "Studies on or before this date"),
        dbc.Button("Search", id=ids["pacs-search"], size="sm", color="primary"),
        dbc.Button(
            "Save to PACS",
            id=ids["pacs-save"],
            size="sm",
            color="secondary",
            outline=True,
            title="Store the labels in the PACS as a DICOM Segmentation of the scan's series",
        ),
    ]
    return dbc.Row(
        [dbc.Col(item, width="auto") for item in items], className="g-2 align-items-center mb-2"
    )


def study_list(ids: AnnotatorIds, studies: Sequence[Study]) -> html.Div:
    """The studies found, each a button listing its series."""
    if not studies:
        return html.Div("No study found.", className="small text-muted")
    rows = [
        _item(
            {"type": ids["pacs-study"], "uid": study.uid},
            study.patient_id or "no patient ID",
            f"{study.date:%Y-%m-%d}" if study.date else "no date",
            study.description or "no description",
        )
        for study in studies[:MAX_LISTED]
    ]
    more = len(studies) - MAX_LISTED
    note = [html.Div(f"{more:,} more: narrow the search.", className="small")] if more > 0 else []
    return html.Div([dbc.ListGroup(rows, flush=True), *note])


def series_list(ids: AnnotatorIds, series: Sequence[Series]) -> html.Div:
    """The series of a study, each a button opening it."""
    if not series:
        return html.Div("This study has no series.", className="small text-muted")
    rows = [
        _item(
            {"type": ids["pacs-series-item"], "study": item.study_uid, "uid": item.uid},
            item.description or "no description",
            item.modality or "?",
            f"{item.instances} slices" if item.instances else "",
        )
        for item in series
    ]
    return dbc.ListGroup(rows, flush=True)


def _item(pattern_id: dict, title: str, detail: str, remark: str) -> dbc.ListGroupItem:
    """A clickable row of a list: its title in bold, a detail, a remark in grey."""
    return dbc.ListGroupItem(
        [
            html.Span(title, className="fw-semibold me-2"),
            html.Span(detail, className="me-2"),
            html.Span(remark, className="text-muted"),
        ],
        id=pattern_id,
        action=True,
        className="py-1 small",
    )
