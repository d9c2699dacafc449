"""Datasets: the case list, opening its cases, saving every change as a version on the
server (without a click, and "Mark as done"), restoring a version, and exporting the done
cases.

Saves go through a JSON route rather than a callback: the browser (``js/dataset.js``)
keeps one save in flight per case, each naming the version it started from, and acts on
each answer (a conflict, a lock) as it comes. What the route and the callbacks do is in
plain functions here, tested without a browser.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import dash
import flask
from dash import Input, Output, State, ctx, dcc

from ...core.annotation import Annotation, AnnotationStateError
from ...core.cases import Case, CaseNotFoundError, is_case_key, is_json_int
from ...core.image_files import VolumeError
from ...store import CaseLocked, CaseSummary, StoreError, Version, VersionConflict
from ...store.workspace import OpenedCase, saved_when
from ..auth import current_user
from ..context import CASE_GONE, AnnotatorContext, case_data, message, one_line
from ..dataset_panel import PAGE_ROWS, case_table
from ..scripts import browser_function

SAVE_ROUTE = "_superpixel_annotator/{id}/save"
"""The path, under the app's routes prefix, where an annotator's browser code saves."""
MAX_VERSIONS_LISTED = 50


def save_url(app: dash.Dash, annotator_id: str) -> str:
    """The URL the browser posts saves to (under the app's requests prefix)."""
    return app.get_relative_path("/" + SAVE_ROUTE.format(id=annotator_id))


def register(app: dash.Dash, context: AnnotatorContext, manager) -> None:
    """Register the dataset feature: the save route, navigation, the case list, versions
    and export."""
    ids = context.ids
    route = app.config.routes_pathname_prefix + SAVE_ROUTE.format(id=ids.prefix)
    app.server.add_url_rule(
        route,
        f"superpixel_annotator_save_{ids.prefix}",
        lambda: _answer(*save_answer(context, flask.request.get_json(silent=True), current_user())),
        methods=["POST"],
    )
    _register_browser(app, ids)
    app.callback(
        Output(ids["dataset-open"], "data", allow_duplicate=True),
        Input(ids["case-previous"], "n_clicks"),
        Input(ids["case-next"], "n_clicks"),
        Input(ids["version-restore"], "n_clicks"),
        State(ids["dataset-case"], "data"),
        State(ids["versions"], "value"),
        prevent_initial_call=True,
    )(lambda _p, _n, _r, shown, version: requested_case(context, ctx.triggered_id, shown, version))
    app.callback(
        Output(ids["case-table"], "children"),
        Output(ids["case-pages"], "max_value"),
        Output(ids["case-pages"], "active_page"),
        Output(ids["case-progress"], "children"),
        Input(ids["dataset-case"], "data"),
        Input(ids["case-refresh"], "n_intervals"),
        Input(ids["case-filter"], "value"),
        Input(ids["case-pages"], "active_page"),
    )(lambda shown, _n, status, page: case_list(context, shown, status, page, ctx.triggered_id))
    app.callback(
        Output(ids["versions"], "options"),
        Output(ids["versions"], "value"),
        Output(ids["save-status"], "children", allow_duplicate=True),
        Output(ids["read-only"], "data"),
        Input(ids["dataset-case"], "data"),
        Input(ids["case-refresh"], "n_intervals"),
        prevent_initial_call=True,
    )(lambda shown, _n: versions_view(context, shown, current_user()))
    app.callback(
        Output(ids["export-download"], "data"),
        Input(ids["export"], "n_clicks"),
        background=True,
        manager=manager,
        running=[(Output(ids["export"], "disabled"), True, False)],
        prevent_initial_call=True,
    )(lambda _: export(context))


def _register_browser(app: dash.Dash, ids) -> None:
    config = State(ids["browser-config"], "data")
    app.clientside_callback(
        browser_function("autosave"),
        Input(ids["annotation"], "data"),
        State(ids["case"], "data"),
        State(ids["storage-prefix"], "data"),
        config,
    )
    app.clientside_callback(
        browser_function("installCaseList"),
        Output(ids["cases"], "className"),
        Input(ids["browser-config"], "data"),
    )
    app.clientside_callback(
        browser_function("startDataset"),
        Output(ids["dataset-open"], "data"),
        Input(ids["storage-prefix"], "data"),
        State(ids["case"], "data"),
    )
    for button, function in (("case-done", "markDone"), ("keep-mine", "keepMine")):
        app.clientside_callback(
            browser_function(function),
            Output(ids[button], "n_clicks"),
            Input(ids[button], "n_clicks"),
            State(ids["annotation"], "data"),
            config,
            prevent_initial_call=True,
        )


def _answer(body: dict, status: int) -> flask.Response:
    response = flask.jsonify(body)
    response.status_code = status
    return response


def save_answer(context: AnnotatorContext, request, user: str) -> tuple[dict, int]:
    """Save an annotation posted by the browser as a new version of its dataset case.

    ``request`` is the posted JSON: ``name`` (the dataset case), ``key`` (the case opened
    for it) and its ``token`` (see :meth:`DatasetWorkspace.case_token`), ``base`` (the
    version it started from, or null), ``state`` (the annotation) and ``done``. Returns the
    JSON answer and its HTTP status: the new version, or why nothing was saved (a conflict
    with a newer version, a lock, a malformed request).
    """
    if not _is_save_request(context, request):
        return _refused("Not saved: malformed request."), 400
    name, key, base = request["name"], request["key"], request["base"]
    if not context.workspace.is_case_token(name, key, request.get("token")):
        return _refused(f"Not saved: the scan shown is not case {name}."), 400
    kept = "Your changes are kept in this browser."
    try:
        case = context.cases.get(key)
        annotation = Annotation.from_state(
            case.superpixels, request["state"], labels=context.label_values, history=False
        )
        marks = annotation.marked_labels()
        labels = context.segmentations.get(case, annotation.marks())
        version = context.workspace.save(
            name, case, marks, labels, user=user, base_version=base, done=request["done"]
        )
    except CaseNotFoundError:
        return _refused(f"Not saved: {CASE_GONE}"), 409
    except AnnotationStateError as error:
        return _refused(f"Not saved: {one_line(error)}."), 400
    except VersionConflict as conflict:
        return _conflict(conflict.latest, base), 409
    except CaseLocked as locked:
        until = f"{locked.lock.expires_at.astimezone():%H:%M}"
        return _refused(
            f"Not saved: {locked.lock.user} is editing {name} until {until}. {kept}"
        ), 423
    except StoreError as error:
        return _refused(f"Not saved: {one_line(error)}. {kept}"), 503
    return {"ok": True, "version": version.number, "status": saved_text(version)}, 200


def _is_save_request(context: AnnotatorContext, request) -> bool:
    return (
        context.workspace is not None
        and isinstance(request, dict)
        and isinstance(request.get("name"), str)
        and request["name"] in context.workspace.names
        and is_case_key(request.get("key"))
        and (request.get("base") is None or is_json_int(request["base"]))
        and isinstance(request.get("state"), str)
        and isinstance(request.get("done"), bool)
    )


def _refused(text: str) -> dict:
    return {"ok": False, "message": text}


def _conflict(latest: Version, base: int | None) -> dict:
    started = f"version {base}" if base else "no saved version"
    text = (
        f"Not saved: {latest.user} saved version {latest.number} of {latest.case} "
        f"{saved_when(latest)}, after the {started} this annotation started from. Yours stays "
        "here: Save mine as a new version keeps it after theirs, or Restore theirs from the "
        "versions menu."
    )
    return {"ok": False, "conflict": True, "version": latest.number, "message": text}


def saved_text(version: Version) -> str:
    """The save status of ``version`` for the user."""
    done = ", done" if version.done else ""
    return f"Saved as version {version.number}{done} {saved_when(version)}"


def dataset_data(context: AnnotatorContext, opened: OpenedCase, base: int | None) -> dict:
    """What a session's case store says of the dataset case it shows: its ``name``, the
    saved ``version`` its annotation is, ``base``, the latest version when opened (a
    restored earlier version differs from it, and is saved as the newest), and the
    ``token`` its saves carry."""
    token = context.workspace.case_token(opened.name, opened.case.key)
    return {"name": opened.name, "version": opened.version, "base": base, "token": token}


def restored(dataset: dict) -> dict:
    """The dataset data of a version the user chose to restore: shown as it was saved,
    whatever this browser kept of the case."""
    return {**dataset, "restored": True}


def carried_dataset(context: AnnotatorContext, dataset, current: Case, opened: Case) -> dict | None:
    """The dataset data of ``opened``, the case ``current`` (whose case store held
    ``dataset``) with another superpixel size; ``None`` unless ``dataset`` names the dataset
    case ``current`` was opened for."""
    workspace = context.workspace
    if workspace is None or not isinstance(dataset, dict) or dataset.get("pending"):
        return None
    name = dataset.get("name")
    if name not in workspace.names or not workspace.is_case_token(
        name, current.key, dataset.get("token")
    ):
        return None
    return {**dataset, "token": workspace.case_token(name, opened.key)}


def pending_dataset(name: str) -> dict:
    """The dataset data of the case a page starts on, until the browser asks for its own."""
    return {"name": name, "version": None, "base": None, "pending": True}


def open_requested(context: AnnotatorContext, request, size: float) -> dict:
    """Open the dataset case ``request`` names (``{"name", "version"}``, either optional:
    the first unfinished case, the latest version), with superpixels of ``size`` mm."""
    workspace = context.workspace
    request = request if isinstance(request, dict) else {}
    name = request.get("name")
    version = request.get("version") if is_json_int(request.get("version")) else None
    if name not in workspace.names:
        name, version = workspace.first_unfinished(), None
    try:
        opened = workspace.open(name, context.cache_dir, size=size, version=version)
    except KeyError:
        return message(f"{name} has no version {version}.", "warning")
    except VolumeError as error:
        return message(f"Case {name} cannot be opened: {one_line(error)}", "warning")
    latest = workspace.store.latest(name)
    dataset = dataset_data(context, opened, latest.number if latest else None)
    data = case_data(
        opened.case, state=opened.state, dataset=restored(dataset) if version else dataset
    )
    return {"case": data, **message(opened.note)}


def requested_case(context: AnnotatorContext, trigger, shown, version) -> dict:
    """The open request of the navigation: the case before the one ``shown``, the next
    unfinished one, or a ``version`` of it to restore."""
    workspace, ids = context.workspace, context.ids
    current = shown.get("name") if isinstance(shown, dict) else None
    if current not in workspace.names:
        return dash.no_update
    if trigger == ids["version-restore"]:
        number = int(version) if isinstance(version, str) and version.isdigit() else None
        return {"name": current, "version": number} if number else dash.no_update
    if trigger == ids["case-previous"]:
        return {"name": workspace.neighbour(current, -1)}
    following = workspace.next_unfinished(current)
    return {"name": following} if following else dash.no_update


def case_row(summary: CaseSummary) -> dict:
    """A row of the case list."""
    return {
        "case": summary.name,
        "status": summary.status,
        "user": summary.user or "",
        "saved": f"{summary.saved_at.astimezone():%Y-%m-%d %H:%M}" if summary.saved_at else "",
        "ml": f"{summary.labelled_ml:.2f}" if summary.labelled_ml is not None else "",
    }


def case_list(context: AnnotatorContext, shown, status, page, trigger) -> tuple:
    """The case list: the page of rows of the cases with ``status`` ("": all) that holds
    the case ``shown`` when it changed, else page ``page``; the page count, the page, and
    the count of done cases."""
    summaries = context.workspace.summaries()
    done = sum(summary.status == "done" for summary in summaries)
    kept = [s for s in summaries if not status or s.status == status]
    name = shown.get("name") if isinstance(shown, dict) else None
    names = [s.name for s in kept]
    pages = max(1, -(-len(kept) // PAGE_ROWS))
    if trigger == context.ids["dataset-case"] and name in names:
        page = names.index(name) // PAGE_ROWS + 1
    page = min(max(page, 1), pages) if is_json_int(page) else 1
    rows = [case_row(s) for s in kept[(page - 1) * PAGE_ROWS : page * PAGE_ROWS]]
    return case_table(rows, name), pages, page, f"{done} / {len(summaries)} done"


def versions_view(context: AnnotatorContext, shown, user: str) -> tuple:
    """The versions menu of the case shown (newest first) and its value, the save status,
    and whether the case is read-only here: another user is editing it. The user's locks
    on other cases are released: they left them."""
    name = shown.get("name") if isinstance(shown, dict) else None
    if name not in context.workspace.names:
        return [], None, "", False
    store = context.workspace.store
    store.unlock_others(user, name)
    versions = store.versions(name)[:MAX_VERSIONS_LISTED]
    options = [
        {
            "label": f"Version {v.number} · {v.user} · {v.saved_at.astimezone():%Y-%m-%d %H:%M}"
            + (" · done" if v.done else ""),
            "value": str(v.number),
        }
        for v in versions
    ]
    holder = store.holder(name)
    read_only = holder is not None and holder.user != user
    if read_only:
        until = f"{holder.expires_at.astimezone():%H:%M}"
        status = f"{holder.user} is editing this case until {until}: read-only here"
    elif versions:
        status = saved_text(versions[0])
    else:
        status = "Not saved yet"
    return options, options[0]["value"] if options else None, status, read_only


def export(context: AnnotatorContext) -> dict:
    """The zip of the done cases' segmentations and statistics, as a download."""
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "segmentations.zip"
        context.workspace.export_zip(path)
        return dcc.send_bytes(path.read_bytes(), "segmentations.zip")
