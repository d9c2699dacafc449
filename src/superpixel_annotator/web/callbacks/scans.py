"""Scans: opening uploads, another superpixel size or what this browser showed last (a
background callback, since superpixels take seconds), and pointing the views at the case
or modality the session shows."""

from __future__ import annotations

from collections.abc import Sequence

import dash
from dash import Input, Output, State, ctx

from ...core.annotation import Annotation, AnnotationStateError
from ...core.cases import Case, CaseNotFoundError, is_case_key, open_case
from ...core.dicom_upload import is_dicom_upload, read_dicom_upload
from ...core.geometry import axis_ranges, view_geometry
from ...core.image_files import VolumeError, decode_data_url
from ...core.superpixels import DEFAULT_PARAMS
from ...core.volume import Volume, check_modalities, read_volume_bytes
from ..context import (
    CASE_GONE,
    AnnotatorContext,
    case_data,
    message,
    message_outputs,
    no_message,
    one_line,
    shown_name,
    size_option,
    valid_modality,
)
from ..jobs import QUEUED, JobRefused, superpixel_progress
from ..layout import contrast_range, modality_options, modality_style
from ..slicer import SessionSlicer, is_window
from .dataset import carried_dataset, open_requested
from .pacs import open_series


def register(
    app: dash.Dash, context: AnnotatorContext, slicers: Sequence[SessionSlicer], manager
) -> None:
    """Register opening scans (on the background callback ``manager``) and showing them."""
    ids = context.ids
    app.callback(
        output={"case": Output(ids["case"], "data", allow_duplicate=True), **message_outputs(ids)},
        inputs={
            "contents": Input(ids["upload"], "contents"),
            "size": Input(ids["size"], "value"),
            "saved": Input(ids["saved"], "data"),
            "dataset_open": Input(ids["dataset-open"], "data"),
            **({"pacs_open": Input(ids["pacs-open"], "data")} if context.pacs else {}),
            "filenames": State(ids["upload"], "filename"),
            "state": State(ids["annotation"], "data"),
            "case": State(ids["case"], "data"),
            "session": State(ids["session"], "data"),
        },
        background=True,
        manager=manager,
        interval=500,
        running=[
            (Output(ids["progress"], "style"), {"minWidth": "12em"}, {"display": "none"}),
            (Output(ids["upload"], "disabled"), True, False),
            (Output(ids["size"], "disabled"), True, False),
        ],
        progress=[Output(ids["progress"], "value"), Output(ids["progress"], "label")],
        prevent_initial_call=True,
    )(lambda set_progress, **inputs: open_scan(context, set_progress, ctx.triggered_id, inputs))
    app.callback(
        output=_view_outputs(ids, slicers),
        inputs={
            "case_data": Input(ids["case"], "data"),
            "modality": Input(ids["modality"], "value"),
        },
        prevent_initial_call=True,
    )(
        lambda case_data, modality: show_case(
            context, slicers, ctx.triggered_id, case_data, modality
        )
    )
    app.callback(
        [Output(slicer.clim.id, "data") for slicer in slicers],
        Input(ids["contrast"], "value"),
        prevent_initial_call=True,
    )(lambda window: [tuple(window)] * 3 if is_window(window) else [dash.no_update] * 3)


def open_scan(context: AnnotatorContext, set_progress, trigger, inputs: dict) -> dict:
    """Open uploaded scan files, the current scan with another superpixel size, what this
    browser showed last, or a case of the dataset, as ``trigger`` (the upload, size menu,
    saved or dataset-open store's id) says.

    Uploaded files are parsed in memory and checked against the limits; several files are
    co-registered modalities of one scan. A new size keeps the annotation, mapped onto the
    new superpixels by majority; undo goes back to the previous ones. The saved store holds
    what this browser showed last, asked for when a page loads (see ``restoreCase`` in
    ``js/annotator.js``): ``{"case": key, "size": size}``, either optional. The saved case
    is opened when this server knows it, else the message says it is gone and the saved size
    is opened; either way the annotation saved in the browser for the case opened wins.
    Malformed values are ignored.
    """
    result = {"case": dash.no_update, **no_message()}
    opening = [context.ids["dataset-open"]] + ([context.ids["pacs-open"]] if context.pacs else [])
    if trigger in opening:
        size = size_option(inputs["size"]) or DEFAULT_PARAMS["size"]
        try:
            with context.jobs.turn(inputs.get("session"), lambda: set_progress((0, QUEUED))):
                return {**result, **_open_requested(context, trigger, inputs, size, set_progress)}
        except JobRefused as error:
            return {**result, **message(one_line(error), "warning")}
    restoring = trigger == context.ids["saved"]
    if restoring:
        saved = inputs["saved"] if isinstance(inputs["saved"], dict) else {}
        if is_case_key(saved.get("case")):
            try:
                restored = context.cases.get(saved["case"])
            except CaseNotFoundError:
                result.update(message(CASE_GONE, "warning"))
            else:
                return {**result, "case": case_data(restored, restore=True)}
        size = size_option(saved.get("size"))
        if size is None:
            return result
    else:
        size = size_option(inputs["size"]) or DEFAULT_PARAMS["size"]
    uploading = trigger == context.ids["upload"]
    try:
        if uploading:
            check_upload(context, inputs["contents"], inputs["filenames"])
        with context.jobs.turn(inputs.get("session"), lambda: set_progress((0, QUEUED))):
            opened = _compute(context, set_progress, inputs, size, uploading, restoring)
    except (VolumeError, JobRefused) as error:
        return {**result, **message(one_line(error), "warning")}
    return {**result, **opened}


def _open_requested(context: AnnotatorContext, trigger, inputs: dict, size, set_progress) -> dict:
    """What :func:`open_scan` shows for a request to open a dataset case or a PACS series."""
    if trigger != context.ids["dataset-open"]:
        return open_series(context, inputs["pacs_open"], size, set_progress)
    if context.workspace is None:
        return {}
    set_progress((30, "Opening the case…"))
    return open_requested(context, inputs["dataset_open"], size)


def _compute(
    context: AnnotatorContext, set_progress, inputs: dict, size, uploading: bool, restoring: bool
) -> dict:
    """What :func:`open_scan` shows after reading the uploads, or the session's case, and
    computing their superpixels of ``size``."""
    set_progress((10, "Reading…"))
    try:
        if uploading:
            volumes = read_uploads(context, inputs["contents"], inputs["filenames"])
            current, annotation = None, None
        else:
            current = context.case_of(inputs["case"])
            if current.superpixels.params.get("size") == size:
                return {}
            annotation = Annotation.from_state(
                current.superpixels,
                inputs["state"],
                labels=context.label_values,
                appearance=current.appearance,
            )
            volumes = list(current.volumes)
    except CaseNotFoundError:
        return message(CASE_GONE, "warning")
    except (VolumeError, AnnotationStateError) as error:
        return message(one_line(error), "warning")
    set_progress((30, "Computing superpixels…"))
    opened = open_case(
        volumes, context.cache_dir, progress=superpixel_progress(set_progress, 30), size=size
    )
    set_progress((100, "Done"))
    if current is None:
        return _opened_uploads(opened, volumes)
    mapped = annotation.remapped(opened.superpixels, opened.appearance)
    if restoring:
        return {"case": case_data(opened, state=mapped.to_state(), restore=True)}
    changed = int((mapped.label_volume() != annotation.label_volume()).sum())
    kept = len(mapped.voxel_marks)
    mapping = f"{changed:,} voxels changed" if changed else f"{kept:,} voxels kept finer"
    text = (
        f"Superpixels recomputed: {_count(opened)}. The annotation was mapped onto them "
        f"({mapping}); Undo brings back the previous superpixels."
    )
    dataset = inputs["case"].get("dataset")
    previous = case_data(current, state=inputs["state"], dataset=dataset)
    opened_data = case_data(
        opened,
        state=mapped.to_state(),
        previous=previous,
        dataset=carried_dataset(context, dataset, current, opened),
    )
    return {"case": opened_data, **message(text)}


def _count(case: Case) -> str:
    size = case.superpixels.params["size"]
    return f"{case.superpixels.count:,} superpixels of {size:g} mm"


def _opened_uploads(opened: Case, volumes: Sequence[Volume]) -> dict:
    notes = " ".join(note for volume in volumes for note in volume.notes)
    names = ", ".join(volume.name for volume in volumes)
    text = f"Opened {names} {opened.shape}: {_count(opened)}. {notes}".strip()
    return {"case": case_data(opened, restore=True), **message(text)}


def read_uploads(context: AnnotatorContext, contents, filenames) -> list[Volume]:
    """The volumes of uploaded files (``dcc.Upload`` data URLs and names), checked to be
    co-registered modalities within the limits, or the one volume of an uploaded DICOM
    series (see :func:`~...core.dicom_upload.is_dicom_upload`).

    Raises
    ------
    VolumeError
        Naming the file and the problem.
    """
    check_upload(context, contents, filenames)
    limits = context.limits
    files = [
        (name, decode_data_url(content, name, limits))
        for content, name in zip(contents, filenames, strict=False)
    ]
    if is_dicom_upload(filenames):
        return [read_dicom_upload(files, limits)]
    volumes = [read_volume_bytes(content, name, limits=limits) for name, content in files]
    check_modalities(volumes, filenames)
    return volumes


def check_upload(context: AnnotatorContext, contents, filenames) -> None:
    """Refuse an upload that is not a list of files and names, or is over the limits of
    files and bytes per upload, before decoding any file.

    Raises
    ------
    VolumeError
        Saying which limit, and naming the file when one is to blame.
    """
    if not isinstance(contents, list) or not isinstance(filenames, list) or not contents:
        raise VolumeError("upload: no file received")
    context.server_limits.check_upload(contents, filenames, context.limits)


def _view_outputs(ids, slicers: Sequence[SessionSlicer]) -> dict:
    def each(targets: list[str], prop: str) -> list:
        return [Output(target, prop, allow_duplicate=True) for target in targets]

    return {
        "infos": [Output(slicer.info.id, "data") for slicer in slicers],
        "slider_max": [Output(slicer.slider.id, "max") for slicer in slicers],
        "slider_value": each([slicer.slider.id for slicer in slicers], "value"),
        "figures": each([slicer.graph.id for slicer in slicers], "figure"),
        "clims": each([slicer.clim.id for slicer in slicers], "data"),
        "geometries": [Output(geometry, "data") for geometry in ids.views("geometry")],
        "boundaries": each(ids.views("boundary-slice"), "data"),
        "contrast": Output(ids["contrast"], "min"),
        "contrast_max": Output(ids["contrast"], "max"),
        "contrast_value": Output(ids["contrast"], "value"),
        "modalities": Output(ids["modality"], "options"),
        "modality_style": Output(ids["modality"], "style"),
        "modality": Output(ids["modality"], "value"),
        "name": Output(ids["name"], "children"),
        "preview": Output(ids["fill-preview"], "data", allow_duplicate=True),
        "fill_bar": Output(ids["fill-bar"], "is_open", allow_duplicate=True),
    }


def show_case(
    context: AnnotatorContext, slicers: Sequence[SessionSlicer], trigger, case_value, modality
) -> dict:
    """Point the views at the session's case (when ``trigger`` is the case store) or at
    another modality of it."""
    case = context.shown_case(case_value)
    new_case = trigger == context.ids["case"]
    modality = 0 if new_case else valid_modality(case, modality)
    keep = [dash.no_update] * 3
    figures = []
    for axis in range(3):
        ranges = axis_ranges(case.shape, case.volume.spacing, axis)
        figure = dash.Patch()
        figure["layout"]["xaxis"]["range"] = ranges["x"]
        figure["layout"]["yaxis"]["range"] = ranges["y"]
        figure["layout"]["uirevision"] = case.key
        figures.append(figure)
    contrast = contrast_range(case, modality)
    kept = dash.no_update
    return {
        "infos": [slicer.info_for(case) for slicer in slicers],
        "slider_max": [n - 1 for n in case.shape] if new_case else keep,
        "slider_value": [n // 2 for n in case.shape] if new_case else keep,
        "figures": figures if new_case else keep,
        "clims": [list(case.windows[modality])] * 3,
        "geometries": [view_geometry(case.volume.spacing, axis) for axis in range(3)],
        "boundaries": [None] * 3 if new_case else keep,
        "contrast": contrast["min"],
        "contrast_max": contrast["max"],
        "contrast_value": contrast["value"],
        "modalities": modality_options(case) if new_case else kept,
        "modality_style": modality_style(case) if new_case else kept,
        "modality": modality,
        "name": shown_name(case, case_value),
        "preview": None if new_case else kept,
        "fill_bar": False if new_case else kept,
    }
