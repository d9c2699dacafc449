"""Smooth outlines of labels made of whole superpixels."""

import subprocess
import sys

import numpy as np
import pytest
from scipy import ndimage as ndi

from superpixel_annotator.core import outlines
from superpixel_annotator.core.contacts import superpixel_contacts
from superpixel_annotator.core.outlines import (
    MAX_LOST_FRACTION,
    ball,
    packed_morphology,
    smooth_outlines,
    superpixel_segmentation,
)
from superpixel_annotator.core.superpixels import Superpixels

SHAPE = (30, 30, 30)
INSIDE = np.ones(SHAPE, bool)


def sphere(radius: float, centre=(15, 15, 15)) -> np.ndarray:
    grid = np.indices(SHAPE)
    return sum((axis - c) ** 2 for axis, c in zip(grid, centre, strict=True)) <= radius**2


def smoothed(labels: np.ndarray, spacing=(1.0, 1.0, 1.0), inside=INSIDE) -> np.ndarray:
    """The smooth outlines of voxel ``labels`` (2 mm ball) by :func:`superpixel_segmentation`,
    with each voxel a superpixel of its own, those outside ``inside`` erased."""
    ids = np.arange(1, labels.size + 1, dtype=np.int32).reshape(labels.shape)
    superpixels = Superpixels.from_labels(ids, {"outline_smoothing": 2.0}, spacing=spacing)
    superpixel_labels = np.concatenate([[0], labels.ravel()]).astype(np.uint8)
    erased = np.concatenate([[False], ~inside.ravel()])
    return superpixel_segmentation(superpixels, superpixel_labels, erased)


def pack_bits(mask: np.ndarray) -> np.ndarray:
    """A 3D boolean array packed as :func:`packed_morphology` takes it."""
    n_words = mask.shape[2] // 64 + 1
    packed = np.zeros((*mask.shape[:2], n_words * 8), np.uint8)
    packed[..., : -(-mask.shape[2] // 8)] = np.packbits(mask, axis=2, bitorder="little")
    return packed.view("<u8")


def unpack_bits(words: np.ndarray, width: int) -> np.ndarray:
    """The boolean array of last-axis length ``width`` that :func:`pack_bits` packed."""
    bits = np.unpackbits(words.view(np.uint8), axis=2, count=width, bitorder="little")
    return bits.view(bool)


def test_ball_is_an_ellipsoid_in_voxels():
    assert ball(2.0, (1.0, 1.0, 1.0)).shape == (5, 5, 5)
    assert ball(2.0, (1.0, 1.0, 1.0)).sum() == 33
    flat = ball(2.0, (1.0, 1.0, 4.0))
    assert flat.shape == (5, 5, 1) and flat.sum() == 13


@pytest.mark.parametrize(
    "radius, spacing",
    [
        (2.0, (1, 1, 1)),
        (2.0, (1, 1, 3)),
        (2.0, (2.5, 1, 1)),
        (3.0, (1.2, 0.9, 0.7)),
        (2.0, (0.5,) * 3),
    ],
)
def test_morphology_by_a_ball_is_scipys(radius, spacing):
    rng = np.random.default_rng(0)
    mask = ndi.gaussian_filter(rng.random((23, 19, 17)), 2) > 0.5
    structure = ball(radius, spacing)
    words = pack_bits(mask)
    for dilate, scipy_morphology in ((True, ndi.binary_dilation), (False, ndi.binary_erosion)):
        result = unpack_bits(packed_morphology(words, 17, structure, dilate), 17)
        np.testing.assert_array_equal(result, scipy_morphology(mask, structure))


@pytest.mark.parametrize("width", [1, 63, 64, 65, 130])
def test_packed_morphology_is_scipys_at_any_width(width):
    rng = np.random.default_rng(width)
    mask = ndi.gaussian_filter(rng.random((9, 11, width)), 1.5) > 0.5
    mask[..., -1] = True  # the last voxel's neighbours past the end count as outside
    structure = ball(2.0, (1.0, 1.0, 1.0))
    words = pack_bits(mask)
    np.testing.assert_array_equal(unpack_bits(words, width), mask)
    for dilate, scipy_morphology in ((True, ndi.binary_dilation), (False, ndi.binary_erosion)):
        result = unpack_bits(packed_morphology(words, width, structure, dilate), width)
        np.testing.assert_array_equal(result, scipy_morphology(mask, structure))


def test_packed_morphology_takes_runs_longer_than_a_word():
    rng = np.random.default_rng(7)
    structure = np.ones((1, 3, 141), bool)  # runs of 70 voxels each way along the rows
    for dilate, scipy_morphology in ((True, ndi.binary_dilation), (False, ndi.binary_erosion)):
        # Few voxels to grow, or few gaps to grow into the rest.
        mask = (rng.random((3, 4, 300)) < 0.005) ^ (not dilate)
        result = unpack_bits(packed_morphology(pack_bits(mask), 300, structure, dilate), 300)
        expected = scipy_morphology(mask, structure)
        np.testing.assert_array_equal(result, expected)
        assert expected.any() and not expected.all()


def smooth_outlines_by_definition(labels, inside, spacing, radius):
    """:func:`smooth_outlines` as its docstring states it, in plain scipy."""
    region = labels > 0
    structure = ball(radius, spacing)
    pad = max(structure.shape)
    padded = np.pad(region, pad)
    closed = ndi.binary_erosion(ndi.binary_dilation(padded, structure), structure)
    opened = ndi.binary_dilation(ndi.binary_erosion(closed, structure), structure)
    smoothed = opened[pad:-pad, pad:-pad, pad:-pad]
    regions, count = ndi.label(region, np.ones((3, 3, 3), bool))
    for index in range(1, count + 1):
        voxels = regions == index
        if (voxels & ~smoothed).sum() > MAX_LOST_FRACTION * voxels.sum():
            smoothed |= voxels
    smoothed &= inside
    step = np.ones(np.minimum(np.array(structure.shape) // 2, 1) * 2 + 1, bool)
    grown = labels.copy()
    for _ in range(max(structure.shape) // 2):
        dilated = ndi.grey_dilation(grown, footprint=step, mode="constant", cval=0)
        grown = np.where(grown > 0, grown, dilated)
    return np.where(smoothed, grown, 0)


@pytest.mark.parametrize("smooth", [smoothed, smooth_outlines], ids=["superpixels", "voxels"])
@pytest.mark.parametrize(
    "spacing, n_labels",
    [((1.0, 1.0, 1.0), 1), ((1.0, 1.0, 1.0), 3), ((0.5, 0.7, 0.7), 2), ((3.0, 1.0, 0.9), 3)],
)
def test_smooth_outlines_follow_their_definition(smooth, spacing, n_labels):
    rng = np.random.default_rng(n_labels)
    blobs = ndi.gaussian_filter(rng.random((26, 31, 70)), 2)
    labels = np.where(blobs > 0.5, rng.integers(1, n_labels + 1, blobs.shape), 0)
    labels = ndi.grey_dilation(labels, size=(2, 2, 2)).astype(np.uint8)  # patches, not noise
    labels[3:5, 3:5, 3:5] = 1  # a region smaller than the ball
    inside = ndi.gaussian_filter(rng.random(blobs.shape), 2) > 0.45
    if smooth is smoothed:  # a labelled superpixel is never erased
        inside |= labels > 0
    arguments = (spacing, inside) if smooth is smoothed else (inside, spacing, 2.0)
    np.testing.assert_array_equal(
        smooth(labels, *arguments), smooth_outlines_by_definition(labels, inside, spacing, 2.0)
    )


def test_staircase_of_blocks_moves_towards_the_round_region_it_approximates():
    truth = sphere(9)
    blocks = np.kron(np.ones((6, 6, 6)), np.ones((5, 5, 5))).astype(bool)  # 5-voxel blocks
    centres = np.indices((6, 6, 6)) * 5 + 2
    inside_truth = truth[tuple(centres)]
    staircase = np.kron(inside_truth, np.ones((5, 5, 5), bool)) & blocks

    def dice(a, b):
        return 2 * (a & b).sum() / (a.sum() + b.sum())

    assert dice(smoothed(staircase) > 0, truth) > dice(staircase, truth) + 0.02


def test_round_region_keeps_its_shape_and_size():
    region = sphere(8)
    result = smoothed(region) > 0
    # Only the single-voxel tips of the digital sphere's flat faces go.
    assert not (result & ~region).any()
    assert result.sum() > 0.95 * region.sum()


def test_region_little_larger_than_the_ball_is_kept_as_it_is():
    labels = np.zeros(SHAPE, np.uint8)
    labels[sphere(4, centre=(7, 7, 7))] = 3  # smoothing would take more than a tenth of it
    labels[2:4, 20:22, 20:22] = 3  # smoothing would take all of it
    labels[sphere(8, centre=(20, 20, 20))] = 3  # a larger region of the same label: smoothed
    result = smoothed(labels)
    for small in (np.s_[2:13, 2:13, 2:13], np.s_[2:4, 20:22, 20:22]):
        np.testing.assert_array_equal(result[small], labels[small])
    assert labels[14, 15, 20] == 3 and result[14, 15, 20] == 0


def two_blocks(gap_axis: int) -> np.ndarray:
    """Two labelled blocks with a one-voxel gap between them across ``gap_axis``."""
    labels = np.zeros(SHAPE, np.uint8)
    labels[5:25, 5:25, 5:25] = 1
    labels[(slice(None),) * gap_axis + (15,)] = 0
    return labels


def test_gaps_and_dents_narrower_than_the_ball_are_filled_and_bumps_cut():
    labels = two_blocks(2)
    labels[10:20, 10, 8:12] = 0  # a slot one voxel wide and four deep
    labels[15, 15, 25:29] = 1  # a spike one voxel thin and four long
    result = smoothed(labels)
    assert result[6:24, 6:24, 15].all()
    assert result[10:20, 10, 10:12].all()
    assert not result[15, 15, 27:29].any()


def test_nothing_is_labelled_outside():
    inside = np.ones(SHAPE, bool)
    inside[:, :, 15] = False
    assert not smoothed(two_blocks(2), inside=inside)[:, :, 15].any()


def test_new_voxels_take_the_nearest_label_and_label_borders_stay():
    labels = two_blocks(2)
    labels[:, :, 16:] *= 2
    labels[10:20, 10, 8:12] = 0  # a slot in label 1, closer to it than to label 2
    labels[10:20, 10, 19:23] = 0  # a slot in label 2
    result = smoothed(labels)
    assert (result[10:20, 10, 8:12] == 1).all() and (result[10:20, 10, 19:23] == 2).all()
    assert (result[6:24, 6:24, 14] == 1).all() and (result[6:24, 6:24, 16] == 2).all()
    # The gap between them, as close to one as to the other, takes one of the two.
    assert np.isin(result[6:24, 6:24, 15], [1, 2]).all()


def test_new_voxels_take_the_label_nearest_in_mm():
    labels = np.zeros(SHAPE, np.uint8)
    labels[5:25, 5:25, 5:25] = 2
    labels[15] = np.where(labels[15], 1, 0)
    labels[15, 10:20, 15] = 0  # a slot 1 mm from label 1 in its plane, 4 mm from label 2
    result = smoothed(labels, spacing=(4.0, 1.0, 1.0))
    assert (result[15, 10:20, 15] == 1).all()


def test_outlines_move_less_far_along_coarse_axes():
    assert smoothed(two_blocks(0))[15, 6:24, 6:24].all()
    # With 4 mm voxels along axis 0 the 2 mm ball is one voxel thick: the gap stays.
    assert not smoothed(two_blocks(0), spacing=(4.0, 1.0, 1.0))[15].any()


@pytest.mark.parametrize("radius", [None, 0.0])
def test_superpixels_without_smoothing_give_one_label_per_superpixel(radius):
    labels = np.arange(SHAPE[0] * SHAPE[1] * SHAPE[2], dtype=np.int32).reshape(SHAPE) % 7
    params = {} if radius is None else {"outline_smoothing": radius}
    superpixels = Superpixels.from_labels(labels, params=params)
    superpixel_labels = np.array([0, 1, 1, 0, 2, 2, 0], np.uint8)
    result = superpixel_segmentation(superpixels, superpixel_labels)
    np.testing.assert_array_equal(result, superpixel_labels[labels])


def test_superpixel_segmentation_smooths_in_mm():
    grid = np.indices(SHAPE)
    labels = (1 + grid[0] // 5 * 36 + grid[1] // 5 * 6 + grid[2] // 5).astype(np.int32)
    superpixels = Superpixels.from_labels(
        labels, params={"outline_smoothing": 2.0}, spacing=(1.0, 1.0, 1.0)
    )
    superpixel_labels = np.zeros(superpixels.count + 1, np.uint8)
    superpixel_labels[np.unique(labels[sphere(9)])] = 1
    raw = superpixel_labels[labels]
    result = superpixel_segmentation(superpixels, superpixel_labels)
    np.testing.assert_array_equal(result, smoothed(raw))
    assert (result != raw).any()
    # The outline moves by at most the ball's diameter.
    assert not (result & ~ndi.binary_dilation(raw, ball(4.0, (1, 1, 1)))).any()


def test_superpixel_segmentation_follows_the_definition_with_erased_superpixels():
    grid = np.indices(SHAPE)
    labels = (1 + grid[0] // 3 * 100 + grid[1] // 3 * 10 + grid[2] // 3).astype(np.int32)
    labels[:, :, :2] = 0  # air
    superpixels = Superpixels.from_labels(labels, params={"outline_smoothing": 2.0})
    rng = np.random.default_rng(5)
    superpixel_labels = np.zeros(labels.max() + 1, np.uint8)
    chosen = np.unique(labels[sphere(10)])
    superpixel_labels[chosen] = rng.integers(0, 4, chosen.size)
    superpixel_labels[0] = 0
    erased = (superpixel_labels == 0) & (rng.random(superpixel_labels.size) < 0.3)
    inside = (labels > 0) & ~erased[labels]
    np.testing.assert_array_equal(
        superpixel_segmentation(superpixels, superpixel_labels, erased),
        smooth_outlines_by_definition(superpixel_labels[labels], inside, (1.0, 1.0, 1.0), 2.0),
    )


KERNELS_AFTER_LOADING = """
import numba, numpy as np
from superpixel_annotator.core import contacts, outlines, refinement
from superpixel_annotator.core.refinement import Appearance, segmentation_box
from superpixel_annotator.core.superpixels import Superpixels

refinement.load_kernels(2)
functions = [*vars(outlines).values(), *vars(contacts).values(), *vars(refinement).values()]
kernels = [k for k in functions if isinstance(k, numba.core.dispatcher.Dispatcher)]
loaded = [list(kernel.signatures) for kernel in kernels]
# A labelled box inside the volume, one reaching its far side, and as many superpixels as
# need int32 compact labels.
for size, centre in ((30, 15), (30, 29), (41, 20)):
    grid = np.indices((size,) * 3)
    ids = np.arange(1, size**3 + 1, dtype=np.int32).reshape(grid.shape[1:])
    superpixels = Superpixels.from_labels(ids, params={"outline_smoothing": 2.0})
    distance = sum((axis - centre) ** 2 for axis in grid)
    labels = (distance <= 81).astype(np.uint8) + (distance <= 25)
    table = np.concatenate([[0], labels.ravel()]).astype(np.uint8)
    intensities = [grid[0].astype(np.float32), np.sqrt(distance).astype(np.float32)]
    box, result = segmentation_box(superpixels, table, None, Appearance(superpixels, intensities))
    assert set(np.unique(result)) == {0, 1, 2}
print(len(kernels), [list(kernel.signatures) for kernel in kernels] == loaded)
"""


def test_loaded_kernels_are_those_a_segmentation_of_several_labels_runs():
    # In a process of its own: in this one, earlier tests have compiled kernels already.
    run = subprocess.run(
        [sys.executable, "-c", KERNELS_AFTER_LOADING], capture_output=True, text=True, check=True
    )
    count, same = run.stdout.split()
    assert int(count) >= 7 and same == "True"


def test_superpixel_contacts_are_the_26_neighbours_and_sizes():
    rng = np.random.default_rng(3)
    ids = ndi.zoom(rng.integers(0, 40, (6, 5, 7)), 4, order=0).astype(np.int32)
    superpixels = Superpixels.from_labels(ids, params={})
    for asked in (np.array([5, 1, 17]), np.array([39, 5, 2])):
        sizes, pairs = superpixel_contacts(superpixels, asked)
        for superpixel, size in zip(asked, sizes, strict=True):
            voxels = ids == superpixel
            around = np.unique(ids[ndi.binary_dilation(voxels, np.ones((3, 3, 3), bool))])
            assert size == voxels.sum()
            found = pairs[1, pairs[0] == superpixel]
            assert sorted(found) == [k for k in around if k not in (0, superpixel)]


def test_labels_and_their_bits_are_gathered_from_superpixels_with_a_margin():
    rng = np.random.default_rng(4)
    ids = rng.integers(0, 9, (7, 8, 70)).astype(np.int32)
    table = np.array([0, 1, 0, 2, 3, 0, 1, 0, 4], np.uint8)
    margin = np.array([1, 2, 3])
    width = 70 + 6
    labels, bits = outlines._labels_and_bits(ids, table, margin, width // 64 + 1)
    np.testing.assert_array_equal(labels, table[ids])
    padded = np.pad(table[ids] > 0, [(1, 1), (2, 2), (3, 3)])
    np.testing.assert_array_equal(unpack_bits(bits, width), padded)
    np.testing.assert_array_equal(bits, pack_bits(padded))
