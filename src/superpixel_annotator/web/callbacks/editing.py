"""Editing: strokes, undo and redo, Fill (propose, accept, discard) and opening a
segmentation. One callback, since all of them write the annotation; the work is done by
:class:`~...core.editing.EditSession`, and only the changed overlay slices are sent."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import dash
import numpy as np
from dash import Input, Output, State, ctx

from ...core.annotation import AnnotationStateError
from ...core.cases import CaseNotFoundError
from ...core.editing import EditSession
from ...core.image_files import VolumeError, decode_data_url
from ..context import CASE_GONE, AnnotatorContext, message, message_outputs, no_message, one_line
from ..ids import STROKE_LEVELS
from ..slicer import SessionSlicer
from .overlays import overlay_patches


def register(app: dash.Dash, context: AnnotatorContext, slicers: Sequence[SessionSlicer]) -> None:
    """Register the editing callback with ``app``."""
    ids = context.ids
    app.callback(
        output={
            "state": Output(ids["annotation"], "data", allow_duplicate=True),
            "slices": [
                Output(slices, "data", allow_duplicate=True)
                for slices in ids.views("annotation-slices")
            ],
            "case": Output(ids["case"], "data", allow_duplicate=True),
            "preview": Output(ids["fill-preview"], "data"),
            "fill_bar": Output(ids["fill-bar"], "is_open"),
            "fill_text": Output(ids["fill-text"], "children"),
            **message_outputs(ids),
        },
        inputs={
            "strokes": [Input(stroke, "data") for stroke in ids.views("stroke")],
            **{name.replace("-", "_"): Input(ids[name], "n_clicks") for name in _BUTTONS},
            "segmentation": Input(ids["open-segmentation"], "contents"),
            "segmentation_name": State(ids["open-segmentation"], "filename"),
            **{name: State(ids[name], "value") for name in STROKE_LEVELS},
            "indices": [State(slicer.slider.id, "value") for slicer in slicers],
            "label": State(ids["label"], "value"),
            "state": State(ids["annotation"], "data"),
            "preview": State(ids["fill-preview"], "data"),
            "case": State(ids["case"], "data"),
        },
        prevent_initial_call=True,
    )(lambda **inputs: edit(context, _action(context, ctx.triggered_id), inputs))


def edit(context: AnnotatorContext, action: tuple[str, int | None] | None, inputs: dict) -> dict:
    """Apply ``action`` to the session's annotation; send back the new state and the changed
    slices only.

    ``action`` is a button's part name (``"undo"``, ``"fill-accept"``...) or
    ``"open-segmentation"`` with ``None``, or ``"stroke"`` with the view's axis; ``inputs``
    are the callback's inputs and states by name.

    A stroke arrives in a view's ``stroke`` store as ``{"path": "M x,y L x,y ...", "index":
    slice}`` in the view's mm (see ``js/strokes.js``). Fill first shows what it would label
    (the ``fill-preview`` store holds the proposal); accepting applies it as one undoable
    step, and any other action discards it. Undo with nothing left to undo goes back to the
    superpixels used before a change of size, if any.
    """
    preview = inputs["preview"]
    result = {
        "state": dash.no_update,
        "slices": [dash.no_update] * 3,
        "case": dash.no_update,
        "preview": None if preview else dash.no_update,
        "fill_bar": False if preview else dash.no_update,
        "fill_text": dash.no_update,
        **no_message(),
    }
    if action is None:
        raise dash.exceptions.PreventUpdate
    try:
        session = EditSession(
            context.case_of(inputs["case"]), inputs["state"], context.label_values, preview
        )
    except CaseNotFoundError:
        return {**result, **message(CASE_GONE, "warning")}
    except AnnotationStateError as error:
        return {**result, **message(f"Annotation state refused: {error}.", "warning")}
    name, axis = action
    if name == "undo" and not session.annotation.can_undo:
        previous = inputs["case"].get("previous")
        if isinstance(previous, dict):
            return {**result, "case": previous}
    if name == "fill":
        return {**result, **_propose_fill(context, session, inputs["indices"])}
    try:
        changed, text = _ACTIONS[name](context, session, axis, inputs)
    except VolumeError as error:
        return {**result, **message(one_line(error), "warning")}
    except ValueError as error:
        return {**result, **message(f"Stroke ignored: {error}.", "warning")}
    if text:
        result.update(message(text))
    if changed.size:
        result["state"] = session.annotation.to_state()
        if not text:
            result["show_message"] = False
    after = session.shown_after()
    if after != session.shown_before:
        result["slices"] = overlay_patches(context, session, after, inputs["indices"])
    return result


_BUTTONS = ("undo", "redo", "fill", "fill-accept", "fill-discard")


def _action(context: AnnotatorContext, trigger) -> tuple[str, int | None] | None:
    """The action a triggered component id names (see :func:`edit`); ``None`` for any other."""
    ids = context.ids
    actions = {ids[name]: (name, None) for name in (*_BUTTONS, "open-segmentation")}
    actions.update({ids.view("stroke", axis): ("stroke", axis) for axis in range(3)})
    return actions.get(trigger)


def _stroke(context, session: EditSession, axis: int, inputs: dict):
    stroke = inputs["strokes"][axis]
    stroke = stroke if isinstance(stroke, dict) else {}
    # One switch is on at a time in the browser; otherwise the last level's wins.
    level = next((name for name in STROKE_LEVELS[::-1] if inputs[name] is True), "coarse")
    label = inputs["label"]
    changed = session.stroke(axis, stroke.get("index"), stroke.get("path"), label, level)
    grown = level == "grow" and label != 0 and changed.size
    return changed, session.grown_text(changed) if grown else None


def _open_segmentation(context: AnnotatorContext, session: EditSession, axis, inputs: dict):
    name = inputs["segmentation_name"]
    name = name if isinstance(name, str) else "segmentation"
    content = decode_data_url(inputs["segmentation"], name, context.limits)
    return session.open_segmentation(content, name, context.limits)


def _propose_fill(context: AnnotatorContext, session: EditSession, shown) -> dict:
    """Show what Fill would label, for the user to accept or discard."""
    proposal = session.propose_fill()
    if proposal is None:
        return message("Fill found no similar superpixels touching your labels.")
    return {
        "preview": proposal.to_preview(),
        "fill_bar": True,
        "fill_text": proposal.text,
        "slices": overlay_patches(context, session, session.shown_after(proposal), shown),
        "show_message": False,
    }


# Each action changes the session's annotation; it returns the superpixels whose marked label
# changed and a message for the user, if any.
_Action = Callable[
    [AnnotatorContext, EditSession, "int | None", dict], tuple[np.ndarray, "str | None"]
]
_ACTIONS: dict[str, _Action] = {
    "undo": lambda context, session, axis, inputs: (session.annotation.undo(), None),
    "redo": lambda context, session, axis, inputs: (session.annotation.redo(), None),
    "fill-accept": lambda context, session, axis, inputs: (session.accept_fill(), None),
    "fill-discard": lambda context, session, axis, inputs: (np.zeros(0, np.int64), None),
    "open-segmentation": _open_segmentation,
    "stroke": _stroke,
}
