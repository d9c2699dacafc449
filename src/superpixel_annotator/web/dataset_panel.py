"""The case list of an annotator of a dataset: cases with their status, navigation, the
saved versions and the export (see :mod:`.callbacks.dataset`)."""

from __future__ import annotations

import dash_bootstrap_components as dbc
from dash import dcc, html

from .ids import AnnotatorIds

STATUS_FILTERS = {"All cases": "", "New": "new", "In progress": "in progress", "Done": "done"}
"""The case list's filter: its label and the status it keeps (none: every case)."""
REFRESH_SECONDS = 30
"""How often the case list shows what the rest of the team saved."""
CASE_COLUMNS = (
    ("case", "Case"),
    ("status", "Status"),
    ("user", "Last saved by"),
    ("saved", "Saved"),
    ("ml", "Labelled (mL)"),
)
DATASET_HELP = (
    (
        "Cases",
        "a click on a row of the case list opens that case; Next unfinished (key N) and "
        "Previous (key P) move through the list. Your changes are saved on the server a "
        "moment after each stroke, as a new version; Mark as done saves the final one.",
    ),
    (
        "Versions",
        "the menu lists who saved each version and when; Restore opens one, saved as the "
        "newest. When someone else saved the case meanwhile, your save is refused and kept "
        "here: Save mine as a new version keeps both.",
    ),
)
"""The help of the case list, shown with the annotator's help for a dataset."""
_STATUS_ROWS = {"done": "table-success", "in progress": "table-warning"}
PAGE_ROWS = 8
"""Cases per page of the list."""


def dataset_panel(ids: AnnotatorIds) -> dbc.Card:
    """The case list card: filter, progress, navigation, save status, versions, export."""
    return dbc.Card(
        dbc.CardBody(
            [
                _bar(ids),
                html.Div(id=ids["case-table"]),
                dbc.Pagination(
                    id=ids["case-pages"],
                    max_value=1,
                    active_page=1,
                    size="sm",
                    fully_expanded=False,
                ),
                dcc.Interval(id=ids["case-refresh"], interval=REFRESH_SECONDS * 1000),
                dcc.Download(id=ids["export-download"]),
            ],
            className="p-2",
        ),
        id=ids["cases"],
        className="mb-2",
    )


def _bar(ids: AnnotatorIds) -> dbc.Row:
    filter_menu = dbc.Select(
        id=ids["case-filter"],
        options=[{"label": label, "value": value} for label, value in STATUS_FILTERS.items()],
        value="",
        size="sm",
        style={"width": "9em"},
    )
    navigation = dbc.ButtonGroup(
        [
            dbc.Button(
                "Previous",
                id=ids["case-previous"],
                size="sm",
                color="secondary",
                title="The case before this one (P)",
            ),
            dbc.Button(
                "Next unfinished",
                id=ids["case-next"],
                size="sm",
                color="secondary",
                title="The next case not done (N)",
            ),
        ]
    )
    done = dbc.Button(
        "Mark as done",
        id=ids["case-done"],
        size="sm",
        color="success",
        title="Save this annotation as the case's final version",
    )
    keep_mine = dbc.Button(
        "Save mine as a new version",
        id=ids["keep-mine"],
        size="sm",
        color="warning",
        style={"display": "none"},
        title="Keep the other version in the history and save this one after it",
    )
    versions = dbc.Select(id=ids["versions"], options=[], size="sm", style={"width": "22em"})
    restore = dbc.Button(
        "Restore",
        id=ids["version-restore"],
        size="sm",
        color="secondary",
        outline=True,
        title="Open this version; it is saved as the newest",
    )
    export = dbc.Button(
        "Export done cases",
        id=ids["export"],
        size="sm",
        color="primary",
        outline=True,
        title="A zip of the done segmentations and their statistics",
    )
    return dbc.Row(
        [
            dbc.Col(item, width="auto")
            for item in (
                html.Span(id=ids["case-progress"], className="small fw-semibold"),
                filter_menu,
                navigation,
                done,
                html.Span(id=ids["save-status"], className="small text-muted"),
                keep_mine,
                versions,
                restore,
                export,
            )
        ],
        className="g-2 align-items-center mb-2",
    )


def case_table(rows: list[dict], shown: str | None) -> dbc.Table:
    """The case list's rows (see :func:`~.callbacks.dataset.case_row`); a click on a row opens
    its case (``installCaseList`` in ``js/dataset.js``), ``shown`` is highlighted."""
    header = html.Thead(html.Tr([html.Th(name) for _, name in CASE_COLUMNS]))
    body = html.Tbody(
        [
            html.Tr(
                [html.Td(row[key]) for key, _ in CASE_COLUMNS],
                className="table-primary"
                if row["case"] == shown
                else _STATUS_ROWS.get(row["status"]),
                style={"cursor": "pointer"},
                **{"data-dataset-case": row["case"]},
            )
            for row in rows
        ]
    )
    return dbc.Table([header, body], size="sm", hover=True, className="mb-1 small")
