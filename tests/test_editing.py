"""Editing a user's annotation without Dash: strokes, undo and redo, Fill, opening a
segmentation, the slices an edit changes, and states saved by earlier versions."""

import dataclasses
import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
from scipy import ndimage

from superpixel_annotator.core import marks
from superpixel_annotator.core.annotation import Annotation, AnnotationStateError
from superpixel_annotator.core.cases import CaseStore, open_case
from superpixel_annotator.core.editing import (
    MAX_STROKE_VERTICES,
    PREVIEW_VALUE,
    EditSession,
    Segmentations,
    parse_stroke_path,
    proposal_arrays,
    shown_labels,
)
from superpixel_annotator.core.geometry import section, view_geometry
from superpixel_annotator.core.image_files import Limits, VolumeError
from superpixel_annotator.core.marks import Marks, marked_box
from superpixel_annotator.core.outlines import placed, superpixel_segmentation
from superpixel_annotator.core.palette import DEFAULT_LABELS
from superpixel_annotator.core.refinement import segmentation_box
from superpixel_annotator.core.segmentation_io import save_segmentation
from superpixel_annotator.core.superpixels import load_or_compute_superpixels
from superpixel_annotator.core.volume import load_volume
from superpixel_blocks import block_superpixels

REPO = Path(__file__).resolve().parents[1]
LABELS = frozenset(label.value for label in DEFAULT_LABELS)
STATE_V0_1_0 = Path(__file__).resolve().parent / "data" / "state_v0_1_0.json"


@dataclasses.dataclass
class Editing:
    """A case and the label volumes of its annotations, as the web layer holds them."""

    case: object
    segmentations: Segmentations

    def session(self, state=None, preview=None) -> EditSession:
        """The annotation a browser sent (state string and Fill preview) opened again."""
        return EditSession(self.case, state, LABELS, preview)

    def render(self, marks: Marks) -> np.ndarray:
        """The label volume of marks, rendered from scratch: smooth outlines, refined
        borders and voxel marks."""
        return placed(
            *marked_box(self.case.superpixels, marks, self.case.appearance), self.case.shape
        )


def editing_of(volume, superpixels, cache_dir) -> Editing:
    case = open_case([volume], cache_dir, superpixels)
    return Editing(case, Segmentations(CaseStore(cache_dir, pinned=[case])))


@pytest.fixture
def editing(small_case, tmp_path) -> Editing:
    volume, superpixels = small_case
    return editing_of(volume, superpixels, tmp_path)


@pytest.fixture(params=["superpixel outlines", "smooth outlines"])
def any_editing(request, small_case, tmp_path) -> Editing:
    """Editing a case whose labels follow the superpixels, or are smoothed."""
    volume, superpixels = small_case
    if request.param == "smooth outlines":
        superpixels = dataclasses.replace(
            superpixels, params={"outline_smoothing": 2.0}, spacing=volume.spacing
        )
    return editing_of(volume, superpixels, tmp_path)


def stroke_path(case, axis, rows_cols) -> str:
    """An SVG path in a view's mm coordinates for (row, col) voxel positions."""
    geometry = view_geometry(case.volume.spacing, axis)
    points = [f"{c * geometry['dx']},{r * geometry['dy']}" for r, c in rows_cols]
    return "M" + "L".join(points)


def middle(case, axis: int) -> int:
    return case.shape[axis] // 2


def paint(editing: Editing, state, axis, rows_cols, label=1, *, index=None, fine=False) -> str:
    """The state after a stroke along ``rows_cols`` on the middle slice (or ``index``)."""
    session = editing.session(state)
    shown = middle(editing.case, axis) if index is None else index
    path = stroke_path(editing.case, axis, rows_cols)
    changed = session.stroke(axis, shown, path, label, "fine" if fine else "coarse")
    assert changed.size, "the stroke changed nothing"
    return session.annotation.to_state()


def test_changed_slices_bring_a_view_to_the_full_render_after_strokes_undos_and_fills(
    any_editing,
):
    """A client that redraws only the slices :meth:`Segmentations.changed_slices` names,
    with :meth:`Segmentations.section`, shows after every step what rendering the whole
    annotation from scratch shows; also where opened label volumes left voxel marks that
    strokes then drop."""
    editing = any_editing
    case, segmentations = editing.case, editing.segmentations
    shape = case.shape
    empty = editing.render(Annotation(case.superpixels).marks())
    client = [[section(empty, axis, i).copy() for i in range(shape[axis])] for axis in range(3)]
    state = preview = None
    changes = 0
    rng = np.random.default_rng(7)
    actions = ["stroke", "stroke", "undo", "redo", "fill", "fill-accept", "fill-discard", "open"]
    voxel_marks = 0
    for step in range(40):
        action = rng.choice(actions)
        session = editing.session(state, preview)
        proposal = None
        if action == "stroke":
            axis = int(rng.integers(3))
            rows, cols = (shape[a] for a in range(3) if a != axis)
            points = rng.uniform(0, [rows, cols], size=(int(rng.integers(1, 4)), 2))
            changed = session.stroke(
                axis,
                middle(case, axis),
                stroke_path(case, axis, points),
                int(rng.choice([0, 1, 2, 3])),
                "fine" if rng.integers(2) else "coarse",
            )
        elif action in ("undo", "redo"):
            changed = getattr(session.annotation, action)()
        elif action == "fill":
            proposal = session.propose_fill()
            changed = np.zeros(0, np.int64)
        elif action == "fill-accept":
            changed = session.accept_fill()
        elif action == "open":  # a box of one label, across superpixels
            labels = session.annotation.label_volume()
            corner = rng.integers(0, shape)
            box = tuple(slice(c, c + int(rng.integers(2, 6))) for c in corner)
            labels[box] = rng.choice([0, 1, 2])
            changed, differing = session.annotation.load_label_volume(labels)
            assert differing == 0
            voxel_marks += len(session.annotation.voxel_marks)
        else:  # a discarded proposal changes nothing
            changed = np.zeros(0, np.int64)
        changes += changed.size
        after = session.shown_after(proposal)
        state = session.annotation.to_state()
        preview = proposal.to_preview() if proposal is not None else None
        expected = editing.render(after)
        new = segmentations.get(case, after)
        np.testing.assert_array_equal(new, expected, err_msg=str((step, action)))
        box, labels = segmentations.boxed(case, after)
        outside = expected.copy()
        if box is not None:
            np.testing.assert_array_equal(labels, expected[box])
            outside[box] = 0
        assert not outside.any(), (step, action)
        for axis, indices in enumerate(
            segmentations.changed_slices(case, session.shown_before, after)
        ):
            for index in indices:
                client[axis][index] = segmentations.section(case, after, axis, index)
        for axis in range(3):
            for index in range(shape[axis]):
                np.testing.assert_array_equal(
                    client[axis][index],
                    section(expected, axis, index),
                    err_msg=str((step, action, axis, index)),
                )
    assert changes > 0 and voxel_marks > 0


def test_a_stroke_changes_only_the_slices_of_the_superpixels_it_touches(editing):
    # A stroke in the first block row: those superpixels end at slice 3 of 6 along axis 0.
    case = editing.case
    session = editing.session()
    session.stroke(0, 1, stroke_path(case, 0, [(1, 1), (1, 16)]), 1)
    after = session.shown_after()
    changed = editing.segmentations.changed_slices(case, session.shown_before, after)
    assert changed[0] == [0, 1, 2]
    differs = editing.render(session.shown_before) != editing.render(after)
    for axis in (1, 2):
        others = tuple(a for a in range(3) if a != axis)
        assert changed[axis] == np.flatnonzero(differs.any(axis=others)).tolist()
        assert changed[axis]


def test_undo_and_redo_carry_over_in_the_state(editing):
    case = editing.case
    first = paint(editing, None, 0, [(7, 7)])
    second = paint(editing, first, 1, [(1, 3), (4, 14)], label=2)
    labels = [editing.session(s).annotation.superpixel_labels for s in (None, first, second)]
    session = editing.session(second)
    assert session.annotation.can_undo and not session.annotation.can_redo
    undone = session.annotation.undo()
    assert undone.size
    np.testing.assert_array_equal(session.annotation.superpixel_labels, labels[1])
    session = editing.session(session.annotation.to_state())
    assert session.annotation.can_redo
    session.annotation.undo()
    np.testing.assert_array_equal(session.annotation.superpixel_labels, labels[0])
    assert not session.annotation.can_undo
    assert session.annotation.undo().size == 0  # nothing left: nothing changes
    session = editing.session(session.annotation.to_state())
    session.annotation.redo()
    session.annotation.redo()
    np.testing.assert_array_equal(session.annotation.superpixel_labels, labels[2])
    assert not session.annotation.can_redo
    assert case.superpixels.count == labels[2].size - 1


def test_fill_proposes_then_accept_applies_and_discard_keeps(editing):
    case = editing.case
    state = paint(editing, None, 0, [(7, 7)])
    before = Annotation.from_state(case.superpixels, state)
    session = editing.session(state)
    proposal = session.propose_fill()
    assert proposal is not None and proposal.ids.size and "Accept" in proposal.text
    # Proposing changes nothing; the proposal is shown in the preview colour.
    np.testing.assert_array_equal(session.annotation.superpixel_labels, before.superpixel_labels)
    shown = session.shown_after(proposal)
    added = proposal.ids[proposal.labels > 0]
    assert added.size and (shown.superpixels[added] == PREVIEW_VALUE).all()
    assert shown != session.shown_before
    preview = proposal.to_preview()
    assert preview == {"ids": proposal.ids.tolist(), "labels": proposal.labels.tolist()}
    assert json.loads(json.dumps(preview)) == preview  # the browser keeps it as JSON

    # Discarding: the next request comes without the preview, and the annotation is as before.
    discarded = editing.session(state)
    assert discarded.shown_after() == before.marks()
    assert discarded.accept_fill().size == 0
    np.testing.assert_array_equal(discarded.annotation.superpixel_labels, before.superpixel_labels)

    accepting = editing.session(state, preview)
    assert accepting.shown_before == shown
    assert accepting.accept_fill().size
    after = Annotation.from_state(case.superpixels, accepting.annotation.to_state())
    expected = before.superpixel_labels.copy()
    expected[preview["ids"]] = preview["labels"]
    np.testing.assert_array_equal(after.superpixel_labels, expected)
    np.testing.assert_array_equal(after.superpixel_labels, before.autofill_labels(case.intensities))
    after.undo()
    np.testing.assert_array_equal(after.superpixel_labels, before.superpixel_labels)


def test_fill_without_labels_proposes_nothing(editing):
    assert editing.session().propose_fill() is None


@pytest.mark.parametrize(
    "preview",
    [
        {"ids": [10**9], "labels": [1]},
        {"ids": "x"},
        {"ids": [1, 2], "labels": [1]},
        [1],
        {"ids": [0], "labels": [1]},
        {"ids": [1], "labels": [-1]},
        {"ids": [1], "labels": [10**6]},
        {"ids": [[1]], "labels": [[1]]},
    ],
    ids=["id", "text", "lengths", "list", "id-0", "label-negative", "label-huge", "2d"],
)
def test_malformed_preview_is_ignored(editing, preview):
    state = paint(editing, None, 0, [(7, 7)])
    ids, labels = proposal_arrays(preview, editing.case.superpixels.count)
    assert ids.size == labels.size == 0
    session = editing.session(state, preview)
    assert session.accept_fill().size == 0
    assert session.annotation.to_state() == state
    assert session.shown_before == session.annotation.marks()


def test_a_proposal_is_shown_in_the_preview_colour_and_clears_in_none(editing):
    state = paint(editing, None, 0, [(7, 7)])
    annotation = editing.session(state).annotation
    marks = annotation.marked_labels()
    labelled = np.flatnonzero(marks > 0)
    unlabelled = np.flatnonzero(marks[1:] == 0) + 1
    ids = np.array([labelled[0], unlabelled[0]])
    shown = shown_labels(annotation, (ids, np.array([0, 2], np.uint8)))
    expected = marks.copy()
    expected[ids] = [0, PREVIEW_VALUE]
    np.testing.assert_array_equal(shown.superpixels, expected)
    np.testing.assert_array_equal(annotation.marked_labels(), marks)  # only shown


@pytest.mark.parametrize(
    ("index", "path", "label"),
    [
        (3, "not a path", 1),
        (3, "M1,2L3", 1),
        (3, "M" + "1," * 200_000, 1),
        (3, "M1e400,2L3,4", 1),
        (3, "M" + "L".join(["1,2"] * (MAX_STROKE_VERTICES + 1)), 1),
        (3, "M1,2L3,4", 99),
        (3, "M1,2L3,4", "1"),
        (3, "M1,2L3,4", True),
        (3, "M1,2L3,4", None),
        (10_000, "M1,2L3,4", 1),
        (-1, "M1,2L3,4", 1),
        ("3", "M1,2L3,4", 1),
        (3.0, "M1,2L3,4", 1),
        (None, "M1,2L3,4", 1),
        (3, ["M1,2L3,4"], 1),
        (3, None, 1),
        (None, None, 1),
    ],
    ids=[
        "text",
        "odd",
        "huge",
        "overflow",
        "too-many-vertices",
        "label",
        "label-str",
        "label-bool",
        "label-none",
        "index",
        "index-negative",
        "index-str",
        "index-float",
        "no-index",
        "path-list",
        "no-path",
        "none",
    ],
)
def test_malformed_strokes_are_refused_without_touching_the_annotation(editing, index, path, label):
    state = paint(editing, None, 0, [(7, 7)])
    session = editing.session(state)
    marks = session.annotation.marked_labels()
    with pytest.raises(ValueError):
        session.stroke(0, index, path, label)
    np.testing.assert_array_equal(session.annotation.marked_labels(), marks)
    assert session.annotation.to_state() == state


def test_a_label_outside_the_palette_is_refused(editing):
    session = EditSession(editing.case, None, {1}, None)
    path = stroke_path(editing.case, 0, [(7, 7)])
    with pytest.raises(ValueError, match="unknown label"):
        session.stroke(0, 3, path, 2)
    assert session.stroke(0, 3, path, 1).size  # the palette's label is painted


def test_far_away_coordinates_are_clipped_not_expanded(editing):
    case = editing.case
    row_mm = 7 * view_geometry(case.volume.spacing, 0)["dy"]
    session = editing.session()
    changed = session.stroke(0, middle(case, 0), f"M-1e300,{row_mm}L1e300,{row_mm}", 1)
    assert changed.size and session.annotation.superpixel_labels.any()
    # The stroke reaches both sides of the slice (inside its background ring), at row 7.
    labelled = editing.render(session.annotation.marks())[middle(case, 0)]
    assert labelled[7, 1] == labelled[7, -2] == 1


@pytest.mark.parametrize(
    "state",
    ["garbage", "x" * 1_000_000, 12, "eJw=", "aGVsbG8="],
    ids=["text", "huge", "int", "truncated-zlib", "not-zlib"],
)
def test_malformed_state_is_refused(editing, state):
    with pytest.raises(AnnotationStateError):
        editing.session(state)


def test_a_state_of_other_superpixels_is_refused(editing):
    other = Annotation(block_superpixels(shape=(6, 15, 18), block=5))
    other.set_superpixel_labels(np.ones(other.superpixels.count + 1, np.uint8))
    with pytest.raises(AnnotationStateError):
        editing.session(other.to_state())


def test_parse_stroke_path():
    np.testing.assert_array_equal(parse_stroke_path("M1.5,2L3,-4e1"), [[1.5, 2], [3, -40]])
    np.testing.assert_array_equal(parse_stroke_path("M.5,+2"), [[0.5, 2]])
    for path in (None, "", "M1", "M1,2L3", "M1e400,2", 5):
        with pytest.raises(ValueError):
            parse_stroke_path(path)


def saved_segmentation(editing: Editing, state, tmp_path) -> tuple[str, bytes]:
    """A segmentation file as the annotator's download writes it: (name, bytes)."""
    case = editing.case
    marks = Annotation.from_state(case.superpixels, state).marks()
    path = tmp_path / f"{case.volume.name}_segmentation.nii.gz"
    labels = editing.segmentations.get(case, marks)
    save_segmentation(case.volume, labels, path, marks.superpixels)
    return path.name, path.read_bytes()


def test_a_saved_segmentation_opens_back_exactly(any_editing, tmp_path):
    editing = any_editing
    state = None
    for axis, label, rows_cols in [
        (0, 1, [(2, 2), (12, 15)]),
        (1, 2, [(1, 3), (4, 14)]),
        (0, 0, [(7, 8)]),  # erases superpixels inside the labels
        (2, 0, [(3, 7)]),
    ]:
        state = paint(editing, state, axis, rows_cols, label, fine=True)
    saved = Annotation.from_state(editing.case.superpixels, state)
    assert saved.erased.any()
    name, content = saved_segmentation(editing, state, tmp_path)

    session = editing.session()
    changed, text = session.open_segmentation(content, name, Limits())
    assert changed.size and "matches the superpixels exactly" in text and name in text
    opened = Annotation.from_state(editing.case.superpixels, session.annotation.to_state())
    np.testing.assert_array_equal(opened.marked_labels(), saved.marked_labels())
    np.testing.assert_array_equal(opened.label_volume(), saved.label_volume())
    opened.undo()  # opening is one undoable step
    assert not opened.superpixel_labels.any()


def shown_before_borders_were_refined(case, superpixel_labels, erased):
    return superpixel_segmentation(case.superpixels, superpixel_labels, erased)


def shown_with_other_borders(case, superpixel_labels, erased):
    """As this version shows the labels, with labels 1 and 2 swapped where they meet: the
    borders between labels as another version may have drawn them (such as the versions
    before the refined borders' majority pass)."""
    shown = placed(
        *segmentation_box(case.superpixels, superpixel_labels, erased, case.appearance), case.shape
    )
    near = [ndimage.maximum_filter(shown == label, size=3) for label in (1, 2)]
    meet = near[0] & near[1] & (shown > 0)
    shown[meet] = 3 - shown[meet]
    return shown


@pytest.mark.parametrize(
    "shown_then", [shown_before_borders_were_refined, shown_with_other_borders]
)
@pytest.mark.parametrize("outline_smoothing", [0.0, 2.0])
def test_a_segmentation_saved_by_an_earlier_version_opens_back_exactly(
    small_case, tmp_path, shown_then, outline_smoothing
):
    """A file an earlier version of this app wrote reopens with the marks saved with it,
    erased superpixels included, and the voxels this version shows otherwise as voxel
    marks: from before borders between labels were refined (smooth outlines alone), and
    with other borders between labels (as before the refined borders' majority pass)."""
    volume, superpixels = small_case
    noise = np.random.default_rng(3).normal(0, 4, volume.data.shape)
    volume = dataclasses.replace(volume, data=(volume.data + noise).astype(np.float32))
    params = {"outline_smoothing": outline_smoothing}
    superpixels = dataclasses.replace(superpixels, params=params, spacing=volume.spacing)
    editing = editing_of(volume, superpixels, tmp_path)
    case = editing.case
    state = None
    for axis, label, rows_cols in [(0, 1, [(2, 2), (12, 15)]), (0, 2, [(2, 9), (12, 9)])]:
        state = paint(editing, state, axis, rows_cols, label, fine=True)
    state = paint(editing, state, 2, [(3, 7)], 0, fine=True)
    saved = Annotation.from_state(case.superpixels, state)
    assert saved.erased.any()
    before = shown_then(case, saved.superpixel_labels, saved.erased)
    refined = Annotation.from_state(case.superpixels, state, appearance=case.appearance)
    moved = int((refined.label_volume() != before).sum())
    assert moved > 0
    path = tmp_path / "before.nii.gz"
    save_segmentation(case.volume, before, path, saved.marked_labels())

    session = editing.session()
    changed, text = session.open_segmentation(path.read_bytes(), path.name, Limits())
    assert f"as it is: {moved:,} voxels" in text
    np.testing.assert_array_equal(session.annotation.marked_labels(), saved.marked_labels())
    np.testing.assert_array_equal(session.annotation.label_volume(), before)
    assert len(session.annotation.voxel_marks) == moved


def off_the_superpixels(editing, tmp_path) -> tuple[np.ndarray, bytes]:
    """A label volume that cuts through superpixels, and its file."""
    labels = np.zeros(editing.case.shape, np.uint8)
    labels[:, 2:9, 3:10] = 1  # not along the 3-voxel blocks
    labels[2, 4, 5] = 2
    path = tmp_path / "rough.nii.gz"
    save_segmentation(editing.case.volume, labels, path)
    return labels, path.read_bytes()


def test_a_segmentation_off_the_superpixels_opens_as_it_is(editing, tmp_path):
    """The voxels the superpixels' labels do not give keep the file's labels, as voxel marks
    the state carries; a stroke drops those in the superpixels it selects, and Undo brings
    them back."""
    labels, content = off_the_superpixels(editing, tmp_path)
    session = editing.session()
    changed, text = session.open_segmentation(content, "rough.nii.gz", Limits())
    kept = len(session.annotation.voxel_marks)
    assert changed.size and kept and f"as it is: {kept:,} voxels" in text
    state = session.annotation.to_state()
    opened = Annotation.from_state(editing.case.superpixels, state)
    np.testing.assert_array_equal(opened.label_volume(), labels)

    stroke = editing.session(state)
    stroke.stroke(0, 2, stroke_path(editing.case, 0, [(4, 5)]), 3, "fine")
    after = stroke.annotation
    assert 0 < len(after.voxel_marks) < kept
    superpixel = editing.case.superpixels.labels[2, 4, 5]
    assert not after.voxel_marks.inside(editing.case.superpixels.labels, [superpixel]).size
    assert after.superpixel_labels[superpixel] == 3 and after.label_volume()[2, 4, 5] != 2
    after.undo()
    np.testing.assert_array_equal(after.label_volume(), labels)


def test_a_segmentation_too_far_off_the_superpixels_is_mapped_by_majority(
    editing, tmp_path, monkeypatch
):
    labels, content = off_the_superpixels(editing, tmp_path)
    session = editing.session()
    shown = Annotation(editing.case.superpixels)
    shown.load_label_volume(labels)
    monkeypatch.setattr(marks, "MAX_VOXEL_MARKS", len(shown.voxel_marks) - 1)
    changed, text = session.open_segmentation(content, "rough.nii.gz", Limits())
    assert changed.size and "by majority" in text and "voxels differ" in text
    assert not len(session.annotation.voxel_marks)


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        (b"", "rough.nii.gz"),
        (bytes(range(256)) * 4, "rough.nii.gz"),
        ("labels", "not in this annotator's palette"),
        ("grid", "rough.nii.gz"),
        ("big", "rough.nii.gz"),
    ],
    ids=["empty", "random", "labels", "grid", "too-big"],
)
def test_an_unusable_segmentation_is_refused_without_touching_the_annotation(
    editing, tmp_path, content, problem
):
    case = editing.case
    limits = Limits()
    if content == "labels":
        labels = np.zeros(case.shape, np.uint8)
        labels[:3] = 7
        save_segmentation(case.volume, labels, tmp_path / "x.nii.gz")
        content = (tmp_path / "x.nii.gz").read_bytes()
    elif content == "grid":
        import nibabel as nib

        nib.save(nib.Nifti1Image(np.zeros((4, 5, 6), np.uint8), np.eye(4)), tmp_path / "x.nii")
        content = (tmp_path / "x.nii").read_bytes()
    elif content == "big":
        limits = Limits(max_bytes=100)
        save_segmentation(case.volume, np.zeros(case.shape, np.uint8), tmp_path / "x.nii.gz")
        content = (tmp_path / "x.nii.gz").read_bytes()
    state = paint(editing, None, 0, [(7, 7)])
    session = editing.session(state)
    with pytest.raises(VolumeError, match=problem) as error:
        session.open_segmentation(content, "rough.nii.gz", limits)
    assert "\n" not in str(error.value)
    assert session.annotation.to_state() == state


def sha256(array: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(array).tobytes()).hexdigest()


def counts(array: np.ndarray, skip_zero: bool = False) -> dict:
    values, numbers = np.unique(array, return_counts=True)
    return {str(int(v)): int(n) for v, n in zip(values, numbers, strict=True) if v or not skip_zero}


def test_a_state_saved_by_version_0_1_0_restores_exactly(tmp_path):
    """``tests/data/state_v0_1_0.json``: a state the flat 0.1.0 package saved for the bundled
    phantom, with checksums of what it held (see its ``about``)."""
    saved = json.loads(STATE_V0_1_0.read_text())
    volume = load_volume(REPO / "sample_data" / "head_phantom.nii.gz")
    superpixels = load_or_compute_superpixels(volume, tmp_path)
    # The state belongs to these superpixels: when they change, states cannot carry over.
    assert superpixels.count == saved["superpixel_count"]
    assert str(superpixels.labels.dtype) == saved["superpixel_labels_dtype"]
    assert sha256(superpixels.labels) == saved["superpixel_labels_sha256"]

    annotation = Annotation.from_state(superpixels, saved["state"])
    marks = annotation.marked_labels()
    assert str(marks.dtype) == saved["marked_labels_dtype"]
    assert counts(marks) == saved["marked_labels_counts"]
    assert sha256(marks) == saved["marked_labels_sha256"]
    labels = annotation.label_volume()
    assert str(labels.dtype) == saved["label_volume_dtype"]
    assert list(labels.shape) == saved["label_volume_shape"]
    assert counts(labels, skip_zero=True) == saved["label_volume_voxels"]
    assert sha256(labels) == saved["label_volume_sha256"]
    assert (annotation.can_undo, annotation.can_redo) == (saved["can_undo"], saved["can_redo"])

    # The history came along: redo and undo do what they did in 0.1.0.
    redone = Annotation.from_state(superpixels, saved["state"])
    assert redone.redo().tolist() == saved["redo_ids"]
    assert sha256(redone.marked_labels()) == saved["after_redo_marked_labels_sha256"]
    undone = Annotation.from_state(superpixels, saved["state"])
    assert sha256(undone.undo().astype(np.int64)) == saved["undo_ids_sha256"]
    assert sha256(undone.marked_labels()) == saved["after_undo_marked_labels_sha256"]

    # Saved again by this version, it restores to the same annotation and history.
    again = Annotation.from_state(superpixels, annotation.to_state())
    np.testing.assert_array_equal(again.marked_labels(), marks)
    np.testing.assert_array_equal(again.superpixel_labels, annotation.superpixel_labels)
    assert again.to_state() == annotation.to_state()
    assert again.redo().tolist() == saved["redo_ids"]

    # And the same strokes painted by this version give the same annotation.
    replayed = Annotation(superpixels)
    for step in saved["recipe"]:
        if step[0] == "undo":
            replayed.undo()
        else:
            _, axis, index, points, label, level = step
            replayed.paint(axis, index, np.array(points, float), label, level)
    assert sha256(replayed.marked_labels()) == saved["marked_labels_sha256"]
