"""Malformed stroke requests at the Dash endpoint, as an attacker or a broken client sends them.

``tests/test_annotator_callbacks.py`` calls the edit callback as a Python function with
malformed strings and numbers. These requests go through ``/_dash-update-component`` of the
standalone app instead: JSON types that no widget sends (objects, arrays, booleans, floats,
null), a 10 MB path, and a wrong value in every input and state of the callback, read from
the app's own ``/_dash-dependencies``. None may answer 500, show a traceback, or change the
annotation.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest
from dash_requests import (
    DEPENDENCIES_PATH,
    LAYOUT_PATH,
    NO_STATE,
    UPDATE_PATH,
    EditCallback,
)

from superpixel_annotator.core.annotation import Annotation
from superpixel_annotator.core.superpixels import Superpixels, load_or_compute_superpixels
from superpixel_annotator.core.volume import Volume, load_volume
from superpixel_annotator.web.app import create_app, sample_path

TEN_MB = 10 * 1024 * 1024


@dataclass
class Endpoint:
    """The standalone app's Flask test client and its edit callback."""

    client: Any
    edit: EditCallback
    volume: Volume
    superpixels: Superpixels

    def post(self, body: dict) -> Any:
        """Post a callback request; the annotation state it sends back, or ``NO_STATE``.

        Fails on a server error or a traceback in the response.
        """
        response = self.client.post(UPDATE_PATH, json=body)
        text = response.get_data(as_text=True)
        assert response.status_code < 500, text[:500]
        assert "Traceback" not in text and 'File "' not in text, text[:500]
        reply = response.get_json(silent=True)
        return self.edit.new_state(reply) if isinstance(reply, dict) else NO_STATE

    def stroke_path(self, row_fraction: float) -> str:
        """A path across the head on the axial view, along the row at ``row_fraction``."""
        _, rows, cols = self.volume.data.shape
        _, dy, dx = self.volume.spacing
        y = row_fraction * rows * dy
        return f"M{0.35 * cols * dx},{y}L{0.5 * cols * dx},{y + 3}L{0.65 * cols * dx},{y}"

    @property
    def axial_index(self) -> int:
        """The slice the axial view opens on."""
        return self.edit.props[self.edit.slider(0)]["value"]

    def labels_of(self, state: str) -> tuple[np.ndarray, bool, bool]:
        """The superpixel labels of a state and whether it can undo and redo."""
        annotation = Annotation.from_state(self.superpixels, state)
        return annotation.superpixel_labels, annotation.can_undo, annotation.can_redo


@pytest.fixture(scope="module")
def endpoint(tmp_path_factory) -> Endpoint:
    cache_dir = tmp_path_factory.mktemp("superpixel-cache")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("SUPERPIXEL_ANNOTATOR_CACHE", str(cache_dir))
        client = create_app().server.test_client()
    edit = EditCallback.find(
        client.get(LAYOUT_PATH).get_json(), client.get(DEPENDENCIES_PATH).get_json()
    )
    volume = load_volume(sample_path())
    return Endpoint(client, edit, volume, load_or_compute_superpixels(volume, cache_dir))


@pytest.fixture(scope="module")
def labelled(endpoint) -> str:
    """A state with one stroke of label 1, anterior to where the tested strokes go."""
    body = endpoint.edit.stroke(None, 0, endpoint.axial_index, endpoint.stroke_path(0.3), 1)
    state = endpoint.post(body)
    assert isinstance(state, str)
    return state


def good_stroke(endpoint, state: Any) -> dict:
    """A stroke of label 2 across the middle of the head: it changes ``labelled``."""
    return endpoint.edit.stroke(state, 0, endpoint.axial_index, endpoint.stroke_path(0.5), 2)


def assert_unchanged(returned: Any, sent: str) -> None:
    assert returned is NO_STATE or returned == sent, "the annotation changed"


def test_a_good_stroke_changes_the_annotation(endpoint, labelled):
    returned = endpoint.post(good_stroke(endpoint, labelled))
    before, _, _ = endpoint.labels_of(labelled)
    after, can_undo, _ = endpoint.labels_of(returned)
    assert (before == 1).any() and (after == 2).any() and (after == 1).any() and can_undo


def test_undo_through_the_endpoint_takes_the_stroke_back(endpoint, labelled):
    stroked = endpoint.post(good_stroke(endpoint, labelled))
    undone = endpoint.post(endpoint.edit.button("undo", stroked, 1))
    np.testing.assert_array_equal(endpoint.labels_of(undone)[0], endpoint.labels_of(labelled)[0])
    assert endpoint.labels_of(undone)[2], "nothing to redo after an undo"


@pytest.mark.parametrize(
    "path",
    [
        "Q Z",
        42,
        ["M60,104L112,104"],
        {"path": "M60,104L112,104"},
        "M-5000,-5000L-4000,-6000",  # far outside the image: clipped to a corner in the air
        "M1e300,1e300L2e300,1e300",
        "M" + "1,2L" * (TEN_MB // 4),
    ],
    ids=["letters", "number", "array", "object", "outside-before", "outside-after", "10MB"],
)
def test_a_path_that_is_not_a_stroke_changes_nothing(endpoint, labelled, path):
    body = endpoint.edit.stroke(labelled, 0, endpoint.axial_index, path, 2)
    assert_unchanged(endpoint.post(body), labelled)


@pytest.mark.parametrize("label", [7, 256, -1, 2.5, 2.0, "2", None, [2], {"value": 2}], ids=str)
def test_a_label_that_does_not_exist_changes_nothing(endpoint, labelled, label):
    body = endpoint.edit.stroke(labelled, 0, endpoint.axial_index, endpoint.stroke_path(0.5), label)
    assert_unchanged(endpoint.post(body), labelled)


@pytest.mark.parametrize("index", [39.5, 39.0, "39", None, [39], {"index": 39}, -1], ids=str)
def test_a_slice_index_that_is_not_an_integer_changes_nothing(endpoint, labelled, index):
    body = endpoint.edit.stroke(labelled, 0, index, endpoint.stroke_path(0.5), 2)
    assert_unchanged(endpoint.post(body), labelled)


@pytest.mark.parametrize(
    ("label", "row_fraction"),
    [(True, 0.5), (False, 0.3)],  # false where label 1 is: read as the eraser, it would erase
    ids=["true", "false"],
)
def test_a_json_boolean_is_not_a_label(endpoint, labelled, label, row_fraction):
    path = endpoint.stroke_path(row_fraction)
    body = endpoint.edit.stroke(labelled, 0, endpoint.axial_index, path, label)
    assert_unchanged(endpoint.post(body), labelled)


def other_superpixels_state() -> str:
    """A real state, of a partition with another number of superpixels."""
    annotation = Annotation(Superpixels.from_labels(np.arange(8).reshape(2, 2, 2), params={}))
    annotation.paint(0, 0, [(0, 0)], 1)
    return annotation.to_state()


@pytest.mark.parametrize(
    "state",
    ["aGVsbG8=", "", {"labels": [1, 2]}, [1, 2], 3.5, True, other_superpixels_state()],
    ids=["base64-text", "empty", "object", "array", "float", "true", "other-superpixels"],
)
def test_a_bogus_annotation_state_is_refused(endpoint, state):
    assert endpoint.post(good_stroke(endpoint, state)) is NO_STATE


@pytest.mark.parametrize("trigger", ["annotator-annotation.data", "elsewhere.n_clicks"])
def test_a_trigger_that_is_not_an_input_changes_nothing(endpoint, labelled, trigger):
    body = {**good_stroke(endpoint, labelled), "changedPropIds": [trigger]}
    assert_unchanged(endpoint.post(body), labelled)


WRONG_VALUES = [None, 3.5, -7, "x" * 100, [], [1, 2], {}, {"path": "x"}, True]


def test_a_wrong_value_in_any_input_is_refused_or_ignored(endpoint, labelled):
    # Refused: no new state. Ignored (an input this stroke does not read): the good stroke's
    # result. Anything else means the value was misread.
    good = endpoint.labels_of(endpoint.post(good_stroke(endpoint, labelled)))
    body = good_stroke(endpoint, labelled)
    misread = []
    for kind in ("inputs", "state"):
        for position, entry in enumerate(body[kind]):
            for value in WRONG_VALUES:
                if value is None and (entry["id"], entry["property"]) == endpoint.edit.state:
                    continue  # null is the empty annotation
                if isinstance(value, bool) and isinstance(entry.get("value"), bool):
                    continue  # a switch's other position is no wrong value
                wrong = {**body, kind: list(body[kind])}
                wrong[kind][position] = {**entry, "value": value}
                returned = endpoint.post(wrong)
                if returned is NO_STATE or returned == labelled:
                    continue
                result = endpoint.labels_of(returned)
                if not (np.array_equal(result[0], good[0]) and result[1:] == good[1:]):
                    misread.append((entry["id"], entry["property"], value))
    assert len(body["inputs"]) + len(body["state"]) >= 6, "fewer inputs than the callback has"
    assert not misread
