"""Voxel marks: labels a label volume keeps where the superpixels cannot make it, and those
the brush paints; carried in the state with their history, bounded, and dropped by the
strokes over them."""

import base64
import dataclasses
import io
import zlib

import numpy as np
import pytest

from superpixel_annotator.core import annotation as annotation_module
from superpixel_annotator.core import marks as marks_module
from superpixel_annotator.core.annotation import Annotation, AnnotationStateError
from superpixel_annotator.core.client_state import Change, read_state, write_state
from superpixel_annotator.core.marks import MAX_VOXEL_MARKS, NO_VOXEL_MARK, VoxelMarks
from superpixel_blocks import block_superpixels

PALETTE = frozenset({1, 2, 3})


@pytest.fixture
def superpixels():
    return block_superpixels(shape=(4, 12, 12), block=3)


def off_the_blocks(shape) -> np.ndarray:
    """Labels 1 in a box that cuts through the 3-voxel blocks, and a voxel of 2 in it."""
    labels = np.zeros(shape, np.uint8)
    labels[1:3, 2:8, 4:9] = 1
    labels[2, 5, 5] = 2
    return labels


def opened(superpixels) -> Annotation:
    annotation = Annotation(superpixels)
    annotation.load_label_volume(off_the_blocks(superpixels.labels.shape))
    return annotation


def members(state: str) -> dict[str, np.ndarray]:
    raw = zlib.decompress(base64.b64decode(state))
    with np.load(io.BytesIO(raw)) as archive:
        return {name: archive[name] for name in archive.files}


def state_of(arrays: dict[str, np.ndarray]) -> str:
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return base64.b64encode(zlib.compress(buffer.getvalue())).decode("ascii")


def test_marks_are_looked_up_changed_and_painted_over_a_box():
    marks = VoxelMarks(np.array([3, 7, 20]), np.array([1, 0, 2], np.uint8))
    np.testing.assert_array_equal(marks.at(np.array([7, 8, 20, 3])), [0, NO_VOXEL_MARK, 2, 1])
    changed = marks.changed(np.array([7, 9]), np.array([NO_VOXEL_MARK, 3], np.int16))
    np.testing.assert_array_equal(changed.indices, [3, 9, 20])
    np.testing.assert_array_equal(changed.labels, [1, 3, 2])

    shape = (2, 3, 4)  # flat 3 is (0, 0, 3), 9 is (0, 2, 1), 20 is (1, 2, 0)
    box = (slice(0, 1), slice(0, 2), slice(1, 3))
    labels = np.full((1, 2, 2), 5, np.uint8)
    new_box, new_labels = changed.painted(box, labels, shape)
    whole = np.zeros(shape, np.uint8)
    whole[box] = 5
    whole.flat[[3, 9, 20]] = [1, 3, 2]
    expected = np.zeros(shape, np.uint8)
    expected[new_box] = new_labels
    np.testing.assert_array_equal(expected, whole)
    assert new_box == (slice(0, 2), slice(0, 3), slice(0, 4))
    assert (labels == 5).all()  # not changed in place


def test_an_opened_volume_comes_back_from_the_state_with_its_history(superpixels):
    labels = off_the_blocks(superpixels.labels.shape)
    annotation = opened(superpixels)
    assert len(annotation.voxel_marks)
    np.testing.assert_array_equal(annotation.label_volume(), labels)
    inside = superpixels.labels[2, 5, 5]
    annotation.paint(0, 2, [(5, 5)], 3, level="fine")  # drops the marks in that superpixel
    assert not annotation.voxel_marks.inside(superpixels.labels, [inside]).size

    restored = Annotation.from_state(superpixels, annotation.to_state(), labels=PALETTE)
    np.testing.assert_array_equal(restored.voxel_marks.indices, annotation.voxel_marks.indices)
    np.testing.assert_array_equal(restored.label_volume(), annotation.label_volume())
    restored.undo()
    np.testing.assert_array_equal(restored.label_volume(), labels)
    restored.undo()
    assert not len(restored.voxel_marks) and not restored.label_volume().any()
    restored.redo()
    np.testing.assert_array_equal(restored.label_volume(), labels)


def test_a_state_without_voxel_marks_keeps_the_members_earlier_versions_wrote(superpixels):
    annotation = Annotation(superpixels)
    annotation.paint(0, 1, [(4, 4)], 1)
    fields = ("sizes", "filled", "ids", "before", "after")
    stacks = {f"{stack}_{field}" for stack in ("undo", "redo") for field in fields}
    assert set(members(annotation.to_state())) == {"labels", "erased"} | stacks


def test_changing_the_superpixels_keeps_the_label_volume(superpixels):
    annotation = opened(superpixels)
    other = block_superpixels(shape=(4, 12, 12), block=4)
    remapped = annotation.remapped(other)
    np.testing.assert_array_equal(remapped.label_volume(), annotation.label_volume())
    assert len(remapped.voxel_marks)


def test_the_history_keeps_a_bounded_number_of_voxel_marks(superpixels, monkeypatch):
    annotation = opened(superpixels)
    first = len(annotation.voxel_marks)
    monkeypatch.setattr(annotation_module, "MAX_HISTORY_VOXEL_MARKS", first + 1)
    annotation.paint(0, 2, [(5, 5)], 3, level="fine")  # within the bound with the first step
    assert annotation.can_undo
    annotation.load_label_volume(np.zeros(superpixels.labels.shape, np.uint8))
    kept = annotation._undo
    assert sum(step.voxels.size for step in kept) <= first + 1
    assert len(kept) < 3  # the oldest steps went


def beyond_the_volume(arrays):
    arrays["undo_voxels"][:] = 10**6


def named_twice(arrays):
    arrays["undo_voxels"][1] = 0  # indices are kept as gaps: a gap of 0 repeats a voxel


def without_history_voxels(arrays):
    del arrays["undo_voxels"]


def one_voxel(index: int, label: int = 1, labels: int = 1):
    def change(arrays):
        arrays["voxels"] = np.array([index], np.int32)
        arrays["voxel_labels"] = np.full(labels, label, np.uint8)

    return change


def gaps(*values: int):
    def change(arrays):
        arrays["voxels"] = np.array(values, np.int32)
        arrays["voxel_labels"] = np.ones(len(values), np.uint8)

    return change


def member(name: str, value: np.ndarray):
    def change(arrays):
        arrays[name] = value

    return change


@pytest.mark.parametrize(
    ("change", "match"),
    [
        (one_voxel(10**6), "outside the volume"),
        (gaps(8, 2**31 - 1, 2**31 - 1), "outside the volume"),
        (one_voxel(-1), "not sorted"),
        (gaps(9, -1), "not sorted"),
        (gaps(8, 0), "not sorted"),
        (one_voxel(8, label=7), "not allowed"),
        (one_voxel(8, labels=2), "disagree"),
        (member("undo_voxel_sizes", np.array([10**6])), "disagree"),
        (member("undo_voxel_sizes", np.array([-1])), "disagree"),
        (beyond_the_volume, "outside the volume"),
        (named_twice, "not sorted"),
        (without_history_voxels, "disagree"),
        (member("voxels", np.zeros(MAX_VOXEL_MARKS + 1, np.int32)), "too large"),
    ],
    ids=[
        "beyond",
        "overflow",
        "negative",
        "unsorted",
        "repeated",
        "palette",
        "lengths",
        "sizes",
        "negative-size",
        "history-beyond",
        "history-twice",
        "history-missing",
        "too-many",
    ],
)
def test_malformed_voxel_marks_are_refused(superpixels, change, match):
    arrays = members(opened(superpixels).to_state())
    change(arrays)
    with pytest.raises(AnnotationStateError, match=match):
        Annotation.from_state(superpixels, state_of(arrays), labels=PALETTE)


def brushed(superpixels, row: int, label: int = 2, intensities=()) -> Annotation:
    annotation = Annotation(superpixels)
    points = np.array([[row, 3.0], [row, 8.0]])
    assert annotation.paint(0, 2, points, label, level="brush", intensities=intensities).size
    return annotation


def test_the_most_voxel_marks_scattered_are_compressed_cheaply_and_restore():
    """Level 6 would take about a second on such a state (``bench_hostile.py``): above 1 MiB
    the archive is deflated at level 1, which reads back the same."""
    rng = np.random.default_rng(3)
    voxel_count, count = 10**7, 20
    indices = np.sort(rng.choice(voxel_count, MAX_VOXEL_MARKS, replace=False))
    marks = VoxelMarks(indices, rng.integers(1, 4, MAX_VOXEL_MARKS).astype(np.uint8))
    step = Change(*(np.zeros(0, np.int16),) * 3, True, indices[::2], *(marks.labels[::2],) * 2)
    labels, erased = np.zeros(count + 1, np.uint8), np.zeros(count + 1, bool)
    state = write_state(labels, erased, [step], [], marks)
    assert base64.b64decode(state)[:2] == b"\x78\x01"  # zlib's header for level 1
    restored = read_state(state, count, PALETTE, voxel_count=voxel_count)
    np.testing.assert_array_equal(restored.voxels.indices, indices)
    np.testing.assert_array_equal(restored.voxels.labels, marks.labels)
    np.testing.assert_array_equal(restored.undo[0].voxels, indices[::2])
    small = write_state(labels, erased, [], [], VoxelMarks(indices[:10], marks.labels[:10]))
    assert base64.b64decode(small)[:2] == b"\x78\x9c"  # level 6 for the usual states


def test_the_brush_paints_near_its_path_on_its_slice(superpixels):
    annotation = brushed(superpixels, 5)
    painted = annotation.label_volume()
    assert painted[[0, 1, 3]].max() == 0  # its slice only
    rows, cols = np.nonzero(painted[2])
    assert set(rows.tolist()) == {4, 5, 6} and (cols.min(), cols.max()) == (2, 9)
    assert not annotation.superpixel_labels.any()

    finer = dataclasses.replace(superpixels, spacing=(1.0, 0.5, 1.0))
    rows, _ = np.nonzero(brushed(finer, 5).label_volume()[2])
    assert set(rows.tolist()) == {2, 3, 4, 5, 6, 7, 8}  # 1.5 mm is 3 rows of 0.5 mm


def test_the_brush_snaps_to_the_structure_under_its_path(superpixels):
    image = np.zeros(superpixels.labels.shape, np.float32)
    image[:, 6:] = 1.0  # an edge between rows 5 and 6
    rows, _ = np.nonzero(brushed(superpixels, 5, intensities=[image]).label_volume()[2])
    assert set(rows.tolist()) == {4, 5}
    rows, _ = np.nonzero(brushed(superpixels, 5).label_volume()[2])
    assert set(rows.tolist()) == {4, 5, 6}


def test_brush_strokes_undo_travel_in_the_state_and_give_way_to_strokes(superpixels):
    annotation = Annotation(superpixels)
    annotation.paint(0, 2, np.array([[5.0, 2.0], [5.0, 9.0]]), 1, level="fine")
    labelled = annotation.label_volume()
    annotation.paint(0, 2, np.array([[5.0, 4.0]]), 0, level="brush")  # erases a few voxels
    erased = annotation.label_volume()
    assert 0 < np.count_nonzero(labelled != erased) <= 9 and not erased[2, 5, 4]
    restored = Annotation.from_state(superpixels, annotation.to_state())
    np.testing.assert_array_equal(restored.label_volume(), erased)
    restored.undo()
    np.testing.assert_array_equal(restored.label_volume(), labelled)
    restored.redo()
    restored.paint(0, 2, np.array([[5.0, 4.0]]), 1, level="fine")  # the stroke decides
    np.testing.assert_array_equal(restored.label_volume(), labelled)
    stroked = superpixels.labels[2, 5, 4]
    assert not restored.voxel_marks.inside(superpixels.labels, [stroked]).size
    assert len(restored.voxel_marks)  # those in other superpixels stay


def test_the_brush_holds_a_bounded_number_of_voxels(superpixels, monkeypatch):
    monkeypatch.setattr(marks_module, "MAX_VOXEL_MARKS", 10)
    annotation = Annotation(superpixels)
    with pytest.raises(ValueError, match="at most 10 voxels"):
        annotation.paint(0, 2, np.array([[5.0, 2.0], [5.0, 9.0]]), 1, level="brush")
    assert not annotation.can_undo and not len(annotation.voxel_marks)
