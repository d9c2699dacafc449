"""Borders between labels refined to voxels by the labels' intensity models."""

import itertools

import numpy as np
import pytest

from superpixel_annotator.core.annotation import Annotation
from superpixel_annotator.core.outlines import placed
from superpixel_annotator.core.refinement import (
    Appearance,
    refine_borders,
    segmentation_box,
)
from superpixel_annotator.core.superpixels import Superpixels
from superpixel_blocks import block_superpixels

SPACING = (1.0, 0.75, 0.6)


def models_by_definition(superpixels, superpixel_labels, intensities, classes):
    """Each class's mean and covariance over its superpixels' voxels, with the ridge of
    ``Appearance.models`` (a thousandth of the labelled voxels' variances)."""
    features = np.stack(intensities, axis=-1).astype(np.float64)
    voxel_classes = superpixel_labels[superpixels.labels]
    pooled = features[np.isin(voxel_classes, classes)].var(axis=0)
    models = []
    for label in classes:
        values = features[voxel_classes == label]
        covariance = np.atleast_2d(np.cov(values.T, bias=True))
        covariance = covariance + np.diag(np.maximum(1e-3 * pooled, 1e-6))
        models.append((values.mean(axis=0), covariance))
    return models


def touching_pairs(ids):
    """Every ordered pair of different superpixels with 26-neighbouring voxels."""
    padded = np.pad(ids, 1)
    core = padded[1:-1, 1:-1, 1:-1]
    pairs = set()
    for offset in itertools.product((-1, 0, 1), repeat=3):
        shifted = padded[tuple(slice(1 + o, padded.shape[i] - 1 + o) for i, o in enumerate(offset))]
        touching = (core > 0) & (shifted > 0) & (core != shifted)
        pairs |= set(zip(core[touching].tolist(), shifted[touching].tolist(), strict=True))
    return pairs


def refined_by_definition(superpixels, superpixel_labels, labels, intensities):
    """The refinement as its docstring defines it, with numpy and Python loops: the labels
    after the voxel-by-voxel choice, and after the majority pass."""
    classes = [c for c in np.unique(superpixel_labels) if c > 0]
    allowed = {}
    for first, second in touching_pairs(superpixels.labels):
        own, other = superpixel_labels[first], superpixel_labels[second]
        if own and other:
            allowed.setdefault(first, {own}).add(other)
    fitted = models_by_definition(superpixels, superpixel_labels, intensities, classes)
    models = dict(zip(classes, fitted, strict=True))
    features = np.stack(intensities, axis=-1).astype(np.float64)
    chosen = labels.copy()
    border = []
    for index in zip(*np.nonzero(labels), strict=True):
        choices = allowed.get(superpixels.labels[index], set())
        if len(choices) < 2:
            continue
        border.append((index, choices))
        scores = {}
        for label in choices:
            mean, covariance = models[label]
            difference = features[index] - mean
            distance = difference @ np.linalg.inv(covariance) @ difference
            scores[label] = -0.5 * (distance + np.linalg.slogdet(covariance)[1])
        chosen[index] = max(scores, key=scores.get)
    result = chosen.copy()
    for index, choices in border:
        around = chosen[tuple(slice(max(i - 1, 0), i + 2) for i in index)]
        votes = {label: int((around == label).sum()) for label in sorted(choices)}
        most = max(votes, key=votes.get)  # the smallest label on a tie
        if votes[most] > votes[chosen[index]]:
            result[index] = most
    return chosen, result


@pytest.fixture
def three_labels():
    """Block superpixels on an anisotropic grid, three labels side by side in the middle and
    nothing at the edges (so the labelled box is not the volume), and two modalities whose
    intensities vary within the superpixels."""
    blocks = block_superpixels(shape=(16, 20, 24), block=4)
    superpixels = Superpixels.from_labels(blocks.labels, params={}, spacing=SPACING)
    rng = np.random.default_rng(4)
    superpixel_labels = np.zeros(superpixels.count + 1, np.uint8)
    centres = np.array([extent.mean(axis=1) for extent in superpixels.extents[1:]])
    middle = np.all(np.abs(centres - [8, 10, 12]) < [6, 7, 9], axis=1)
    superpixel_labels[1:][middle] = 1 + (centres[middle, 2] > 12) + (centres[middle, 1] > 12)
    grid = np.indices(superpixels.labels.shape)
    intensities = [
        (grid[2] * 3.0 + rng.normal(0, 2, grid[0].shape)).astype(np.float32),
        (grid[1] * 2.0 + grid[0] + rng.normal(0, 2, grid[0].shape)).astype(np.float32),
    ]
    return superpixels, superpixel_labels, intensities


def test_appearance_models_are_the_mean_and_covariance_of_each_labels_voxels(three_labels):
    superpixels, superpixel_labels, intensities = three_labels
    appearance = Appearance(superpixels, intensities)
    classes = np.array([1, 2, 3])
    means, precisions, log_determinants = appearance.models(superpixel_labels, classes)
    expected = models_by_definition(superpixels, superpixel_labels, intensities, classes)
    for row, (mean, covariance) in enumerate(expected):
        np.testing.assert_allclose(means[row], mean, rtol=1e-9)
        np.testing.assert_allclose(np.linalg.inv(precisions[row]), covariance, rtol=1e-6)
        np.testing.assert_allclose(log_determinants[row], np.linalg.slogdet(covariance)[1])


def test_refine_borders_are_those_of_the_definition(three_labels):
    superpixels, superpixel_labels, intensities = three_labels
    appearance = Appearance(superpixels, intensities)
    box, labels = segmentation_box(superpixels, superpixel_labels)
    assert box != tuple(slice(0, size) for size in superpixels.labels.shape)
    whole = placed(box, labels, superpixels.labels.shape)
    refined = labels.copy()
    refine_borders(box, refined, superpixel_labels, appearance)
    chosen, expected = refined_by_definition(superpixels, superpixel_labels, whole, intensities)
    assert (chosen != whole).sum() > 50  # the intensities move the borders
    assert (expected != chosen).sum() > 10  # and the majority removes speckle
    np.testing.assert_array_equal(placed(box, refined, whole.shape), expected)
    # Only labelled voxels change, and only to another label: what is labelled stays.
    np.testing.assert_array_equal(refined > 0, labels > 0)


def test_a_single_label_is_left_as_it_is(three_labels):
    superpixels, superpixel_labels, intensities = three_labels
    one_label = np.minimum(superpixel_labels, 1)
    box, labels = segmentation_box(superpixels, one_label)
    refined = labels.copy()
    refine_borders(box, refined, one_label, Appearance(superpixels, intensities))
    np.testing.assert_array_equal(refined, labels)


def test_a_border_cutting_through_superpixels_follows_the_intensities():
    """Two tissues meet inside a row of superpixels, the user labels those superpixels as
    the tissue on their left: refined, the labels meet where the intensities change."""
    superpixels = Superpixels.from_labels(block_superpixels((8, 8, 24), 4).labels, params={})
    rng = np.random.default_rng(0)
    tissue = np.indices(superpixels.labels.shape)[2] >= 10  # the blocks change at 8 and 12
    intensity = np.where(tissue, 200.0, 100.0) + rng.uniform(-5, 5, tissue.shape)
    superpixel_labels = np.zeros(superpixels.count + 1, np.uint8)
    for ids, label in ((superpixels.labels[:, :, :10], 1), (superpixels.labels[:, :, 12:], 2)):
        superpixel_labels[np.unique(ids)] = label
    superpixel_labels[0] = 0
    annotation = Annotation(superpixels, Appearance(superpixels, [intensity.astype(np.float32)]))
    annotation.superpixel_labels[:] = superpixel_labels
    plain = Annotation(superpixels)
    plain.superpixel_labels[:] = superpixel_labels
    truth = np.where(superpixels.labels > 0, np.where(tissue, 2, 1), 0)
    assert (plain.label_volume() != truth).sum() == 8 * 6 * 2  # slices, rows, columns
    np.testing.assert_array_equal(annotation.label_volume(), truth)


def test_intensities_of_another_shape_are_refused(three_labels):
    superpixels, _, intensities = three_labels
    with pytest.raises(ValueError, match="shape"):
        Appearance(superpixels, [intensities[0][1:]])
