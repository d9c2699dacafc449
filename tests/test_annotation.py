import base64
import io
import zlib

import numpy as np
import pytest

from superpixel_annotator.core.annotation import ERASED, Annotation, AnnotationStateError
from superpixel_annotator.core.geometry import polyline_voxels
from superpixel_annotator.core.superpixels import Superpixels
from superpixel_blocks import block_superpixels


def test_polyline_passes_through_all_voxels_between_vertices():
    voxels = polyline_voxels([(1, 1), (1, 8)], (10, 10))
    assert {tuple(v) for v in voxels} == {(1, c) for c in range(1, 9)}
    diagonal = polyline_voxels([(0, 0), (5, 5)], (10, 10))
    assert {(i, i) for i in range(6)} <= {tuple(v) for v in diagonal}


def test_polyline_clips_far_away_vertices_without_blowing_up():
    voxels = polyline_voxels([(-1e12, 3), (1e12, 3)], (10, 10))
    assert {tuple(v) for v in voxels} == {(r, 3) for r in range(10)}


def test_stroke_selects_superpixels_between_its_vertices():
    superpixels = block_superpixels()
    annotation = Annotation(superpixels)
    # Only the two end vertices are given; the blocks in between must be selected too.
    changed = annotation.paint(axis=0, index=2, points=[(4, 1), (4, 10)], label=1)
    row_ids = np.unique(superpixels.labels[2, 4, 1:11])
    np.testing.assert_array_equal(np.sort(changed), row_ids[row_ids > 0])
    volume = annotation.label_volume()
    assert volume.dtype == np.uint8
    # Painting reaches every slice of the touched superpixels, not only the drawn one.
    np.testing.assert_array_equal(volume[0] == 1, np.isin(superpixels.labels[0], changed))
    assert not volume[superpixels.labels == 0].any()


def test_stroke_on_other_axes_uses_that_slice():
    superpixels = block_superpixels()
    annotation = Annotation(superpixels)
    # Sagittal slice x=4 holds rows (z, y): a vertical stroke at y=4 over all z.
    changed = annotation.paint(axis=2, index=4, points=[(0, 4), (3, 4)], label=3)
    assert set(changed) == {superpixels.labels[0, 4, 4]}


def test_erase_undo_redo():
    superpixels = block_superpixels()
    annotation = Annotation(superpixels)
    annotation.paint(0, 1, [(4, 1), (4, 10)], 1)
    after_paint = annotation.label_volume()
    annotation.paint(0, 1, [(4, 4), (4, 5)], 2)
    annotation.paint(0, 1, [(4, 4)], 0)
    assert not annotation.label_volume()[1, 4, 4]

    annotation.undo()
    assert annotation.label_volume()[1, 4, 4] == 2
    annotation.undo()
    np.testing.assert_array_equal(annotation.label_volume(), after_paint)
    annotation.undo()
    assert not annotation.label_volume().any()
    assert annotation.undo().size == 0  # nothing left: no error

    annotation.redo()
    np.testing.assert_array_equal(annotation.label_volume(), after_paint)
    annotation.paint(0, 1, [(7, 7)], 4)  # a new stroke clears the redo stack
    assert not annotation.can_redo
    assert annotation.redo().size == 0


def test_repainting_same_label_records_no_step():
    annotation = Annotation(block_superpixels())
    annotation.paint(0, 0, [(4, 4)], 1)
    assert annotation.paint(0, 0, [(4, 4)], 1).size == 0
    annotation.undo()
    assert not annotation.can_undo


def test_erasing_marks_unlabelled_superpixels_once_and_undo_clears_the_mark():
    annotation = Annotation(block_superpixels())
    one = annotation.superpixels.labels[0, 4, 4]
    np.testing.assert_array_equal(annotation.paint(0, 0, [(4, 4)], 0), [one])
    assert annotation.erased[one] and annotation.marked_labels()[one] == ERASED
    assert annotation.paint(0, 0, [(4, 4)], 0).size == 0  # already erased: no step
    annotation.paint(0, 0, [(4, 4)], 2)  # labelling clears the mark
    assert annotation.marked_labels()[one] == 2 and not annotation.erased.any()
    annotation.undo()
    assert annotation.erased[one]
    annotation.undo()
    assert not annotation.erased.any() and not annotation.can_undo


def test_stroke_in_background_changes_nothing():
    annotation = Annotation(block_superpixels())
    assert annotation.paint(0, 0, [(0, 0), (0, 11)], 1).size == 0
    assert not annotation.can_undo


@pytest.mark.parametrize(
    ("axis", "index", "label"), [(3, 0, 1), (0, 99, 1), (0, -1, 1), (0, 0, 256)]
)
def test_invalid_arguments_are_refused(axis, index, label):
    annotation = Annotation(block_superpixels())
    with pytest.raises(ValueError):
        annotation.paint(axis, index, [(4, 4)], label)
    assert not annotation.superpixel_labels.any()


def test_state_round_trip_keeps_labels_and_history():
    superpixels = block_superpixels()
    annotation = Annotation(superpixels)
    annotation.paint(0, 1, [(4, 1), (4, 10)], 1)
    annotation.paint(0, 1, [(7, 1), (7, 10)], 2)
    annotation.undo()
    restored = Annotation.from_state(superpixels, annotation.to_state())
    np.testing.assert_array_equal(restored.superpixel_labels, annotation.superpixel_labels)
    restored.redo()
    annotation.redo()
    np.testing.assert_array_equal(restored.label_volume(), annotation.label_volume())
    restored.undo()
    restored.undo()
    assert not restored.label_volume().any()


@pytest.mark.parametrize(
    "state", ["", "not base64!", "aGVsbG8=", "x" * 100_000], ids=["empty", "text", "hello", "long"]
)
def test_bad_states_are_refused(state):
    with pytest.raises(AnnotationStateError):
        Annotation.from_state(block_superpixels(), state)


def test_state_of_other_superpixels_is_refused():
    state = Annotation(block_superpixels()).to_state()
    with pytest.raises(AnnotationStateError):
        Annotation.from_state(block_superpixels(shape=(4, 15, 15)), state)


def test_paint_selects_coarse_regions_by_default_and_fine_superpixels_on_request():
    fine = block_superpixels()
    # Coarse regions: pairs of horizontally neighbouring blocks (ids 1-2, 3-4, ...).
    coarse = np.concatenate([[0], (np.arange(fine.count) // 2) + 1])
    superpixels = Superpixels.from_labels(fine.labels, params={}, coarse=coarse)
    annotation = Annotation(superpixels)
    one = superpixels.labels[0, 4, 4]
    pair = np.flatnonzero(coarse == coarse[one])
    np.testing.assert_array_equal(np.sort(annotation.paint(0, 0, [(4, 4)], 1)), pair)
    annotation.undo()
    np.testing.assert_array_equal(annotation.paint(0, 0, [(4, 4)], 1, level="fine"), [one])
    with pytest.raises(ValueError, match="level"):
        annotation.paint(0, 0, [(4, 4)], 1, level="medium")


def test_state_round_trip_keeps_erased_marks():
    annotation = Annotation(block_superpixels())
    annotation.paint(0, 0, [(4, 4)], 0)
    annotation.paint(0, 0, [(7, 7)], 1)
    restored = Annotation.from_state(annotation.superpixels, annotation.to_state())
    np.testing.assert_array_equal(restored.marked_labels(), annotation.marked_labels())
    restored.undo()
    restored.undo()
    assert not restored.erased.any()


def test_state_without_erased_marks_takes_them_from_the_history():
    annotation = Annotation(block_superpixels())
    annotation.paint(0, 0, [(4, 4), (4, 7)], 1, level="fine")
    annotation.paint(0, 0, [(4, 4)], 0, level="fine")
    raw = zlib.decompress(base64.b64decode(annotation.to_state()))
    with np.load(io.BytesIO(raw)) as stored:
        arrays = {k: stored[k] for k in stored.files if k != "erased"}
    # Such states kept the history in uint8, 0 for erased.
    for name in ("undo_before", "undo_after"):
        arrays[name] = np.maximum(arrays[name], 0).astype(np.uint8)
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    old = base64.b64encode(zlib.compress(buffer.getvalue())).decode("ascii")
    for history in (True, False):
        restored = Annotation.from_state(annotation.superpixels, old, history=history)
        np.testing.assert_array_equal(restored.erased, annotation.erased)
        assert restored.erased.sum() == 1


def test_state_read_without_history_keeps_the_marks_and_cannot_undo():
    annotation = Annotation(block_superpixels())
    annotation.paint(0, 0, [(4, 4)], 0)
    annotation.paint(0, 0, [(7, 7)], 2)
    restored = Annotation.from_state(annotation.superpixels, annotation.to_state(), history=False)
    np.testing.assert_array_equal(restored.marked_labels(), annotation.marked_labels())
    assert not restored.can_undo
    with pytest.raises(AnnotationStateError, match="not allowed"):
        Annotation.from_state(
            annotation.superpixels, annotation.to_state(), labels=[1], history=False
        )


def test_state_without_fill_flags_is_read_as_user_steps():
    annotation = Annotation(block_superpixels())
    annotation.paint(0, 0, [(4, 4)], 1)
    raw = zlib.decompress(base64.b64decode(annotation.to_state()))
    with np.load(io.BytesIO(raw)) as stored:
        arrays = {k: stored[k] for k in stored.files if not k.endswith("_filled")}
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    old = base64.b64encode(zlib.compress(buffer.getvalue())).decode("ascii")
    restored = Annotation.from_state(annotation.superpixels, old)
    np.testing.assert_array_equal(restored.superpixel_labels, annotation.superpixel_labels)
    labelled, _ = restored.user_marks()
    np.testing.assert_array_equal(labelled, annotation.superpixel_labels > 0)
