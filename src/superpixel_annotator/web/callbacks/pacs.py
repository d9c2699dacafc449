"""The PACS browser: searching a DICOMweb server's studies, listing a study's series,
opening one (retrieved once per server into the cache folder, then read as any DICOM
series), and storing the labels back as a DICOM Segmentation ("Save to PACS").

What the callbacks do is in plain functions here, tested against a real Orthanc without a
browser; opening a series runs in :func:`.scans.open_scan`'s background callback, since
retrieval and superpixels take seconds.
"""

from __future__ import annotations

import datetime
import tempfile
from pathlib import Path

import dash
from dash import ALL, Input, Output, State, ctx

from ...core.annotation import Annotation, AnnotationStateError
from ...core.cases import CaseNotFoundError, open_case
from ...core.dicom import load_dicom_series
from ...core.image_files import VolumeError
from ...core.segmentation_io import save_segmentation
from ...pacs.dicomweb import PacsError
from ...pacs.series_cache import retrieved_series
from ..context import (
    CASE_GONE,
    AnnotatorContext,
    case_data,
    message,
    message_outputs,
    no_message,
    one_line,
)
from ..jobs import superpixel_progress
from ..pacs_panel import series_list, study_list


def register(app: dash.Dash, context: AnnotatorContext) -> None:
    """Register the study search, the series list, the open request and Save to PACS."""
    ids = context.ids
    app.callback(
        output={"studies": Output(ids["pacs-studies"], "children"), **message_outputs(ids)},
        inputs={
            "_": Input(ids["pacs-search"], "n_clicks"),
            "_patient": Input(ids["pacs-patient"], "value"),
            "patient": State(ids["pacs-patient"], "value"),
            "since": State(ids["pacs-since"], "value"),
            "until": State(ids["pacs-until"], "value"),
        },
        prevent_initial_call=True,
    )(lambda patient, since, until, **_: search_studies(context, patient, since, until))
    app.callback(
        Output(ids["pacs-series"], "children"),
        Input({"type": ids["pacs-study"], "uid": ALL}, "n_clicks"),
        prevent_initial_call=True,
    )(lambda _: study_series(context, _clicked(ctx)))
    app.callback(
        Output(ids["pacs-open"], "data"),
        Input({"type": ids["pacs-series-item"], "study": ALL, "uid": ALL}, "n_clicks"),
        prevent_initial_call=True,
    )(lambda _: open_request(_clicked(ctx)))
    app.callback(
        output=message_outputs(ids),
        inputs={
            "_": Input(ids["pacs-save"], "n_clicks"),
            "state": State(ids["annotation"], "data"),
            "case": State(ids["case"], "data"),
        },
        running=[(Output(ids["pacs-save"], "disabled"), True, False)],
        prevent_initial_call=True,
    )(lambda state, case, **_: save_to_pacs(context, case, state))


def _clicked(callback_context) -> dict | None:
    """The pattern id of the list item clicked; ``None`` when the callback ran because
    items were added (their ``n_clicks`` is then empty)."""
    if not callback_context.triggered or not callback_context.triggered[0]["value"]:
        return None
    trigger = callback_context.triggered_id
    return trigger if isinstance(trigger, dict) else None


def search_studies(context: AnnotatorContext, patient, since, until) -> dict:
    """The study list for a patient ID and dates (``YYYY-MM-DD`` text, either empty), and
    the message bar: why nothing was searched, or what went wrong."""
    patient = patient.strip() if isinstance(patient, str) else ""
    dates = [_date(text) for text in (since, until)]
    if not patient and not any(dates):
        return {"studies": dash.no_update, **message("Give a patient ID or a date.", "warning")}
    try:
        studies = context.pacs.studies(patient_id=patient or None, since=dates[0], until=dates[1])
    except PacsError as error:
        return {"studies": dash.no_update, **message(one_line(error), "warning")}
    return {"studies": study_list(context.ids, studies), **no_message()}


def study_series(context: AnnotatorContext, clicked: dict | None):
    """The series list of the study clicked."""
    if clicked is None or not isinstance(clicked.get("uid"), str):
        return dash.no_update
    try:
        return series_list(context.ids, context.pacs.series(clicked["uid"]))
    except PacsError as error:
        return one_line(error)


def open_request(clicked: dict | None):
    """The open request of the series clicked: ``{"study", "series"}``."""
    if clicked is None or not all(isinstance(clicked.get(k), str) for k in ("study", "uid")):
        return dash.no_update
    return {"study": clicked["study"], "series": clicked["uid"]}


def open_series(context: AnnotatorContext, request, size: float, set_progress) -> dict:
    """Open the series an open request names, with superpixels of ``size`` mm: retrieved
    into the cache folder unless already there, read, and its superpixels computed.

    Returns the case store's data and the message bar's outputs."""
    if not isinstance(request, dict) or not all(
        isinstance(request.get(key), str) for key in ("study", "series")
    ):
        return {}
    set_progress((10, "Retrieving the series…"))
    try:
        folder = retrieved_series(
            context.pacs, request["study"], request["series"], context.cache_dir
        )
        volume = load_dicom_series(folder, series_uid=request["series"], limits=context.limits)
    except VolumeError as error:  # a PacsError is one too
        return message(one_line(error), "warning")
    set_progress((40, "Computing superpixels…"))
    case = open_case(
        [volume], context.cache_dir, progress=superpixel_progress(set_progress, 40), size=size
    )
    set_progress((100, "Done"))
    superpixels = case.superpixels
    text = (
        f"Opened {volume.name} {case.shape} from the PACS: {superpixels.count:,} superpixels "
        f"of {superpixels.params['size']:g} mm. {' '.join(volume.notes)}"
    )
    return {"case": case_data(case, restore=True), **message(text.strip())}


def save_to_pacs(context: AnnotatorContext, case_store, state) -> dict:
    """Store the session's labels in the PACS as a DICOM Segmentation of the scan's series;
    the message bar says what happened."""
    try:
        case = context.case_of(case_store)
        annotation = Annotation.from_state(
            case.superpixels, state, labels=context.label_values, history=False
        )
    except CaseNotFoundError:
        return message(CASE_GONE, "warning")
    except AnnotationStateError as error:
        return message(one_line(error), "warning")
    if not case.volume.dicom_headers:
        return message("Not saved: this scan was not read from DICOM.", "warning")
    labels = context.segmentations.get(case, annotation.marks())
    if not labels.any():
        return message("Nothing to save: label something first.", "warning")
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / f"{case.volume.name}_segmentation.dcm"
        try:
            marks = annotation.marked_labels()
            save_segmentation(case.volume, labels, path, marks, label_classes=context.labels)
            context.pacs.store(path)
        except VolumeError as error:
            return message(f"Not saved: {one_line(error)}", "warning")
    return message(f"Saved to the PACS: a DICOM Segmentation of {case.volume.name}.", "success")


def _date(text) -> datetime.date | None:
    try:
        return datetime.date.fromisoformat(text) if isinstance(text, str) and text else None
    except ValueError:
        return None
