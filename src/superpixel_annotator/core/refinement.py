"""Voxel-accurate borders where two labels meet.

A superpixel is about 4.5 mm across, and a tumour's sub-regions are often thinner: the
enhancing rim is 2-4 mm thick. Where superpixels of two labels touch, the border between
them follows the superpixels, not the anatomy. :func:`refine_borders` moves it: each
labelled voxel of a superpixel that touches a superpixel of another label takes, among the
labels of the two sides, the one whose intensity model gives it the highest likelihood. A
label's model is a Gaussian over the modalities, fitted on the superpixels the user gave
that label, so it is the same wherever the border is. One pass of a 3x3x3 majority then
removes the speckle that voxel-by-voxel choices leave where the models overlap. Only
labelled voxels change, and only to another label: what is labelled, and what is not, stays
as it was.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence

import numba
import numpy as np

from . import outlines
from .contacts import superpixel_contacts
from .outlines import boxed_segmentation
from .superpixels import COMPACT_DTYPES, Superpixels

_REGULARIZATION = 1e-3
"""Added to each model's covariance, as a fraction of the labelled voxels' variances."""


class Appearance:
    """A scan's intensities as the refinement models them.

    Each superpixel's voxel count and the sums of its intensities, and of their products,
    are found the first time a label's model needs them, and then kept: a model is then a
    sum over the label's superpixels, whatever their size.

    Parameters
    ----------
    superpixels : Superpixels
        The partition.
    intensities : sequence of ndarray of float32
        The modalities, each of the superpixels' shape (held, not copied).
    """

    def __init__(self, superpixels: Superpixels, intensities: Sequence[np.ndarray]) -> None:
        if not intensities or any(i.shape != superpixels.labels.shape for i in intensities):
            raise ValueError("the intensities must be of the superpixels' shape")
        self.superpixels = superpixels
        self.intensities = tuple(np.ascontiguousarray(i, np.float32) for i in intensities)
        modalities = len(self.intensities)
        self._sums = np.full((superpixels.count + 1, 1 + modalities + modalities**2), np.nan)
        self._lock = threading.Lock()

    def sums(self, ids: np.ndarray) -> np.ndarray:
        """Per superpixel of ``ids``: the voxel count, the sum of each modality, and the sum
        of each product of two modalities (row-major, every ordered pair).

        Returns
        -------
        ndarray of float64, shape (len(ids), 1 + m + m * m) for m modalities
        """
        ids = np.asarray(ids, np.int64)
        with self._lock:
            new = np.unique(ids[np.isnan(self._sums[ids, 0])])
            if new.size:
                self._sums[new] = self._new_sums(new)
            return self._sums[ids]

    def _new_sums(self, ids: np.ndarray) -> np.ndarray:
        modalities = len(self.intensities)
        sums = np.empty((ids.size, self._sums.shape[1]))
        labels, extents = self.superpixels.compact_labels, self.superpixels.extents
        for first in range(modalities):
            for second in range(first, modalities):
                counts, totals, products = _sums_of_products(
                    labels, extents, ids, self.intensities[first], self.intensities[second]
                )
                sums[:, 0] = counts
                sums[:, 1 + first] = totals
                for row, column in ((first, second), (second, first)):
                    sums[:, 1 + modalities + row * modalities + column] = products
        return sums

    def models(self, superpixel_labels: np.ndarray, classes: np.ndarray) -> tuple[np.ndarray, ...]:
        """The Gaussian model of each label of ``classes``, fitted on the voxels of the
        superpixels ``superpixel_labels`` gives it.

        Returns
        -------
        means : ndarray, shape (len(classes), m)
        precisions : ndarray, shape (len(classes), m, m)
            The inverse covariances, regularized (see :data:`_REGULARIZATION`).
        log_determinants : ndarray, shape (len(classes),)
            Of the regularized covariances.
        """
        modalities = len(self.intensities)
        per_class = np.empty((len(classes), self._sums.shape[1]))
        for row, label in enumerate(classes):
            per_class[row] = self.sums(np.flatnonzero(superpixel_labels == label)).sum(axis=0)
        counts = per_class[:, :1]
        means = per_class[:, 1 : 1 + modalities] / counts
        products = per_class[:, 1 + modalities :].reshape(-1, modalities, modalities)
        covariances = products / counts[:, :, None] - means[:, :, None] * means[:, None, :]
        pooled = per_class.sum(axis=0)
        pooled_mean = pooled[1 : 1 + modalities] / pooled[0]
        pooled_variance = np.diag(pooled[1 + modalities :].reshape(modalities, modalities))
        pooled_variance = pooled_variance / pooled[0] - pooled_mean**2
        ridge = np.diag(np.maximum(_REGULARIZATION * pooled_variance, 1e-6))
        covariances = covariances + ridge
        return means, np.linalg.inv(covariances), np.linalg.slogdet(covariances)[1]


def refine_borders(
    box: tuple[slice, ...],
    labels: np.ndarray,
    superpixel_labels: np.ndarray,
    appearance: Appearance,
) -> None:
    """Move the borders between the labels of ``labels`` (the labels of ``box``, nothing
    labelled outside it; changed in place) to where the labels' intensity models meet.

    A *border superpixel* is one ``superpixel_labels`` labels that touches (26 neighbours)
    a superpixel of another label (not 0). Each labelled voxel of a border superpixel
    takes, among its superpixel's label and those of the labelled superpixels it touches,
    the label whose model (see :meth:`Appearance.models`) gives its intensities the highest
    likelihood. Then each of these voxels takes, among the same labels, the one most voxels
    of its 3x3x3 neighbourhood (itself included) have after that choice, if more of them
    have it than its own. Other voxels keep their label.
    """
    superpixels = appearance.superpixels
    ids = np.flatnonzero(superpixel_labels[1:]) + 1
    classes = np.unique(superpixel_labels[ids])
    if classes.size < 2:
        return
    _, (first, second) = superpixel_contacts(superpixels, ids)
    touching = (superpixel_labels[first] > 0) & (superpixel_labels[second] > 0)
    first, second = first[touching], second[touching]
    differ = superpixel_labels[first] != superpixel_labels[second]
    border = np.unique(first[differ]).astype(np.int64)
    if not border.size:
        return
    rows = np.searchsorted(classes, superpixel_labels)
    allowed = np.zeros((border.size, classes.size), bool)
    allowed[np.arange(border.size), rows[border]] = True
    at_border = np.isin(first, border)
    allowed[np.searchsorted(border, first[at_border]), rows[second[at_border]]] = True
    origin = np.array([part.start for part in box], np.int64)
    models = appearance.models(superpixel_labels, classes)
    _relabel(
        labels,
        origin,
        superpixels.compact_labels,
        superpixels.extents,
        border,
        allowed,
        appearance.intensities,
        classes.astype(np.uint8),
        *models,
    )


@numba.njit(cache=True)
def _relabel(
    labels,
    origin,
    ids,
    extents,
    border,
    allowed,
    intensities,
    classes,
    means,
    precisions,
    log_dets,
):
    """Give each labelled voxel (in ``labels``, the box at ``origin``) of each ``border``
    superpixel the class, among those ``allowed`` for its superpixel, whose model gives its
    ``intensities`` (a tuple of volumes) the highest Gaussian log-likelihood; then, in a
    second pass, the class among those that most voxels of its 3x3x3 neighbourhood have
    after the first, if more have it than its own."""
    values = np.empty(means.shape[1])
    counts = np.zeros(256, np.int64)
    for stage in range(2):
        moves = []
        for row in range(len(border)):
            target = border[row]
            extent = extents[target]
            for z in range(extent[0, 0], extent[0, 1]):
                for y in range(extent[1, 0], extent[1, 1]):
                    for x in range(extent[2, 0], extent[2, 1]):
                        if ids[z, y, x] != target:
                            continue
                        z0, y0, x0 = z - origin[0], y - origin[1], x - origin[2]
                        own = labels[z0, y0, x0]
                        if not own:
                            continue
                        if stage == 0:  # this choice reads no label: written at once
                            for k in range(len(values)):
                                values[k] = intensities[k][z, y, x]
                            model = _most_likely(values, allowed[row], means, precisions, log_dets)
                            labels[z0, y0, x0] = classes[model]
                            continue
                        best = _neighbours_majority(
                            labels, z0, y0, x0, own, allowed[row], classes, counts
                        )
                        if best != own:
                            moves.append((z0, y0, x0, best))
        for z0, y0, x0, label in moves:
            labels[z0, y0, x0] = label


@numba.njit(cache=True, inline="always")
def _most_likely(values, allowed, means, precisions, log_dets):
    """The row of the model, among those ``allowed``, giving ``values`` the highest Gaussian
    log-likelihood."""
    m = len(values)
    best, best_score = 0, -np.inf
    for model in range(len(means)):
        if not allowed[model]:
            continue
        distance = 0.0
        for i in range(m):
            for j in range(m):
                distance += (
                    (values[i] - means[model, i])
                    * precisions[model, i, j]
                    * (values[j] - means[model, j])
                )
        score = -0.5 * (distance + log_dets[model])
        if score > best_score:
            best, best_score = model, score
    return best


@numba.njit(cache=True, inline="always")
def _neighbours_majority(labels, z, y, x, own, allowed, classes, counts):
    """The class, among those ``allowed``, that most voxels of the 3x3x3 neighbourhood of
    (z, y, x) in ``labels`` have, if more have it than ``own``; otherwise ``own``.
    ``counts`` is scratch space, one entry per label value."""
    shape = labels.shape
    for label in classes:
        counts[label] = 0
    for k in range(max(z - 1, 0), min(z + 2, shape[0])):
        for j in range(max(y - 1, 0), min(y + 2, shape[1])):
            for i in range(max(x - 1, 0), min(x + 2, shape[2])):
                counts[labels[k, j, i]] += 1
    best = own
    for model in range(len(classes)):
        if allowed[model] and counts[classes[model]] > counts[best]:
            best = classes[model]
    return best


@numba.njit(cache=True, nogil=True)
def _sums_of_products(labels, extents, ids, first, second):
    """For each of ``ids``, within its extents: its voxel count, the sum of ``first`` and
    the sum of ``first * second`` over its voxels."""
    counts = np.zeros(len(ids))
    totals = np.zeros(len(ids))
    products = np.zeros(len(ids))
    for row in range(len(ids)):
        target = ids[row]
        box = extents[target]
        for z in range(box[0, 0], box[0, 1]):
            for y in range(box[1, 0], box[1, 1]):
                for x in range(box[2, 0], box[2, 1]):
                    if labels[z, y, x] == target:
                        value = np.float64(first[z, y, x])
                        counts[row] += 1.0
                        totals[row] += value
                        products[row] += value * second[z, y, x]
    return counts, totals, products


def segmentation_box(
    superpixels: Superpixels,
    superpixel_labels: np.ndarray,
    erased: np.ndarray | None = None,
    appearance: Appearance | None = None,
) -> tuple[tuple[slice, ...] | None, np.ndarray]:
    """The labelled box and its labels, as the app shows an annotation: smooth outlines
    (:func:`~.outlines.boxed_segmentation`), then, given the scan's ``appearance``, the
    borders between labels refined (:func:`refine_borders`)."""
    box, labels = boxed_segmentation(superpixels, superpixel_labels, erased)
    if box is not None and appearance is not None:
        refine_borders(box, labels, superpixel_labels, appearance)
    return box, labels


def load_kernels(modalities: int) -> None:
    """Compile, or load from numba's cache, the kernels a stroke runs on a scan of
    ``modalities`` modalities (see :func:`~.outlines.load_kernels`), refinement included,
    for each dtype of :attr:`~.Superpixels.compact_labels`: 0.45 s, 20 s with an empty
    cache (2 cores)."""
    outlines.load_kernels()
    intensities = (np.zeros((1, 1, 1), np.float32),) * modalities
    models = (np.zeros((1, modalities)), np.zeros((1, modalities, modalities)), np.zeros(1))
    labels = np.ones((1, 1, 1), np.uint8)
    one = np.ones(1, np.int64)
    extents = np.zeros((2, 3, 2), np.int32)
    for dtype in COMPACT_DTYPES:
        ids = np.ones((1, 1, 1), dtype)
        for first in intensities:
            _sums_of_products(ids, extents, one, first, first)
        origin = np.zeros(3, np.int64)
        allowed = np.ones((1, 1), bool)
        _relabel(labels, origin, ids, extents, one, allowed, intensities, labels[0, 0], *models)
