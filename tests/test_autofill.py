import numpy as np
import pytest
from scipy import ndimage as ndi

from superpixel_annotator.core.annotation import Annotation
from superpixel_annotator.core.autofill import superpixel_graph
from superpixel_annotator.core.superpixels import Superpixels

# Blocks of 2x2 voxels in-plane through all 4 slices: an 8x8 grid of superpixels. Blob A
# (intensity 5) and blob B (intensity 10) touch; blob C has A's intensity but does not touch
# it; the rest is 0.
BLOBS = np.zeros((8, 8))
BLOBS[1:4, 1:4] = 5
BLOBS[1:4, 4:7] = 10
BLOBS[5:7, 1:3] = 5
A_BLOCKS = [(r, c) for r in range(1, 4) for c in range(1, 4)]


def block_id(row: int, col: int) -> int:
    return 1 + row * 8 + col


@pytest.fixture
def toy():
    _, y, x = np.indices((4, 16, 16))
    labels = 1 + (y // 2) * 8 + (x // 2)
    noise = np.random.default_rng(0).normal(0, 0.1, labels.shape)
    image = (BLOBS[y // 2, x // 2] + noise).astype(np.float32)
    return Annotation(Superpixels.from_labels(labels, params={})), image


def click(annotation: Annotation, row: int, col: int, label: int) -> None:
    annotation.paint(0, 1, [(2 * row, 2 * col)], label, level="fine")


def test_fills_the_seeded_blob_only(toy):
    annotation, image = toy
    click(annotation, 2, 2, 1)
    changed = annotation.autofill([image])
    expected = {block_id(r, c) for r, c in A_BLOCKS} - {block_id(2, 2)}
    assert set(changed.tolist()) == expected
    assert set(np.flatnonzero(annotation.superpixel_labels)) == expected | {block_id(2, 2)}


def test_autofill_is_one_step_that_undo_restores_exactly(toy):
    annotation, image = toy
    click(annotation, 2, 2, 1)
    before = annotation.superpixel_labels.copy()
    annotation.autofill([image])
    filled = annotation.superpixel_labels.copy()
    assert not np.array_equal(filled, before)
    annotation.undo()
    np.testing.assert_array_equal(annotation.superpixel_labels, before)
    annotation.redo()
    np.testing.assert_array_equal(annotation.superpixel_labels, filled)


def test_preview_changes_nothing_and_matches_the_fill(toy):
    annotation, image = toy
    click(annotation, 2, 2, 1)
    before = annotation.superpixel_labels.copy()
    preview = annotation.autofill_labels([image])
    np.testing.assert_array_equal(annotation.superpixel_labels, before)
    annotation.autofill([image])
    np.testing.assert_array_equal(annotation.superpixel_labels, preview)


def test_erased_superpixels_are_never_filled_and_stop_growth(toy):
    annotation, image = toy
    # Erase the middle column of blob A: the column beyond it is cut off from the seeds.
    for row in range(1, 4):
        click(annotation, row, 2, 1)
        click(annotation, row, 2, 0)
    click(annotation, 1, 1, 1)
    click(annotation, 3, 1, 1)
    annotation.autofill([image])
    labels = annotation.superpixel_labels
    assert labels[block_id(2, 1)] == 1
    assert not labels[[block_id(r, c) for r in range(1, 4) for c in (2, 3)]].any()


def test_user_labels_are_never_changed(toy):
    annotation, image = toy
    click(annotation, 2, 2, 1)
    click(annotation, 1, 1, 2)  # another label inside blob A
    click(annotation, 0, 0, 3)  # a label on the background
    user = annotation.superpixel_labels.copy()
    annotation.autofill([image])
    labelled = user > 0
    np.testing.assert_array_equal(annotation.superpixel_labels[labelled], user[labelled])


def test_fills_are_not_seeds_and_survive_a_state_round_trip(toy):
    annotation, image = toy
    click(annotation, 2, 2, 1)
    annotation.autofill([image])
    restored = Annotation.from_state(annotation.superpixels, annotation.to_state())
    labelled, erased = restored.user_marks()
    assert set(np.flatnonzero(labelled)) == {block_id(2, 2)}
    assert not erased.any()
    # Filling again from the same seeds changes nothing and records no step.
    assert restored.autofill([image]).size == 0


def test_several_modalities_and_cached_statistics(toy):
    annotation, image = toy
    second = np.ascontiguousarray(image[::-1])  # differs from the first modality
    graph = superpixel_graph(annotation.superpixels, [image, second])
    assert superpixel_graph(annotation.superpixels, [image, second]) is graph
    assert graph.sums.shape == (annotation.superpixels.count + 1, 2)
    np.testing.assert_array_equal(graph.counts[1:], 16)
    np.testing.assert_allclose(graph.means[block_id(2, 2), 0], image[:, 4:6, 4:6].mean())
    assert set(graph.neighbours[block_id(0, 0)].tolist()) == {block_id(0, 1), block_id(1, 0)}
    click(annotation, 2, 2, 1)
    assert annotation.autofill([image, second]).size > 0


def test_without_labels_nothing_is_filled(toy):
    annotation, image = toy
    assert annotation.autofill([image]).size == 0
    assert not annotation.can_undo


def test_intensities_must_match_the_superpixels(toy):
    annotation, image = toy
    click(annotation, 2, 2, 1)
    with pytest.raises(ValueError, match="shape"):
        annotation.autofill([image[:2]])


@pytest.fixture
def pocket():
    """A 5x5x5 grid of 2-voxel cubes: a shell of bright cubes around a dark centre cube.

    Returns the annotation, the image, the shell's ids with first the one above the centre
    (dark too, so that growth does not take it), and the centre's id.
    """
    z, y, x = np.indices((10, 10, 10)) // 2
    labels = 1 + (z * 5 + y) * 5 + x
    cube_intensity = np.zeros((5, 5, 5))
    cube_intensity[1:4, 1:4, 1:4] = 5
    cube_intensity[1:3, 2, 2] = -5
    image = cube_intensity[z, y, x].astype(np.float32)
    centre, above = labels[4, 4, 4], labels[2, 4, 4]
    shell = np.unique(labels[2:8, 2:8, 2:8])
    shell = np.concatenate([[above], shell[(shell != centre) & (shell != above)]])
    return Annotation(Superpixels.from_labels(labels, params={})), image, shell, centre


def label_cubes(annotation: Annotation, ids: np.ndarray, label: int) -> None:
    labels = annotation.superpixel_labels.copy()
    labels[ids] = label
    annotation.set_superpixel_labels(labels)


def test_an_enclosed_pocket_is_filled_whatever_its_intensity(pocket):
    annotation, image, shell, centre = pocket
    label_cubes(annotation, shell, 2)
    annotation.autofill([image])
    assert annotation.superpixel_labels[centre] == 2
    assert annotation.superpixel_labels.sum() == 2 * (len(shell) + 1)


def test_a_pocket_open_to_the_outside_or_holding_an_erased_superpixel_is_not_filled(pocket):
    annotation, image, shell, centre = pocket
    label_cubes(annotation, shell[1:], 2)  # the pocket opens through the cube above the centre
    annotation.autofill([image])
    assert annotation.superpixel_labels[centre] == 0
    label_cubes(annotation, shell[:1], 2)
    label_cubes(annotation, [centre], 2)
    label_cubes(annotation, [centre], 0)  # erased by the user
    annotation.autofill([image])
    assert annotation.superpixel_labels[centre] == 0


def grow(annotation: Annotation, image: np.ndarray, row: int, col: int, label: int) -> np.ndarray:
    return annotation.paint(0, 1, [(2 * row, 2 * col)], label, level="grow", intensities=[image])


def test_a_grow_stroke_takes_the_touching_look_alikes_in_one_users_step(toy):
    annotation, image = toy
    changed = grow(annotation, image, 2, 2, 1)
    blob_a = {block_id(r, c) for r, c in A_BLOCKS}
    assert set(changed.tolist()) == blob_a
    assert set(np.flatnonzero(annotation.superpixel_labels)) == blob_a
    labelled, _ = annotation.user_marks()
    assert set(np.flatnonzero(labelled)) == blob_a  # seeds of a later Fill
    annotation.undo()
    assert not annotation.superpixel_labels.any()


@pytest.mark.parametrize("wall_label", [0, 2])
def test_other_labels_and_erased_superpixels_stop_a_grow_stroke(toy, wall_label):
    annotation, image = toy
    wall = [block_id(r, 2) for r in range(1, 4)]
    for row in range(1, 4):
        click(annotation, row, 2, wall_label)
    grow(annotation, image, 2, 1, 1)
    assert set(np.flatnonzero(annotation.superpixel_labels == 1)) == {
        block_id(r, 1) for r in range(1, 4)
    }
    np.testing.assert_array_equal(annotation.superpixel_labels[wall], wall_label)
    assert annotation.erased[wall].all() == (wall_label == 0)


def test_the_eraser_at_the_grow_level_erases_the_superpixels_crossed(toy):
    annotation, image = toy
    grow(annotation, image, 2, 2, 1)
    assert list(grow(annotation, image, 2, 2, 0)) == [block_id(2, 2)]
    assert annotation.erased[block_id(2, 2)]


def test_a_grow_stroke_needs_the_intensities(toy):
    annotation, _ = toy
    with pytest.raises(ValueError, match="intensities"):
        annotation.paint(0, 1, [(4, 4)], 1, level="grow")
    assert not annotation.can_undo


def test_graph_statistics_follow_their_definition():
    rng = np.random.default_rng(3)
    labels = rng.integers(1, 40, (9, 11, 13)).astype(np.int32)
    labels[rng.random(labels.shape) < 0.2] = 0  # background, also inside and at the edges
    images = [rng.normal(0, 1, labels.shape).astype(np.float32) for _ in range(2)]
    graph = superpixel_graph(Superpixels.from_labels(labels, params={}), images)

    flat = labels.ravel()
    counts = np.bincount(flat, minlength=40)
    counts[0] = 0
    np.testing.assert_array_equal(graph.counts, counts)
    for column, image in enumerate(images):
        sums = np.bincount(flat, weights=image.ravel(), minlength=40)
        sums[0] = 0
        np.testing.assert_array_equal(graph.sums[:, column], sums)
    head = labels > 0
    on_border = np.zeros(40, bool)
    on_border[labels[head & ~ndi.binary_erosion(head)]] = True
    np.testing.assert_array_equal(graph.on_border, on_border)
