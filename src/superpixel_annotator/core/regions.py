"""Coarse regions: touching supervoxels merged by mean intensity, span and rarity.

Strokes at the coarse level take whole regions (see :meth:`.annotation.Annotation.paint`);
the measurements behind the merge criteria are in :mod:`.superpixels`.
"""

from __future__ import annotations

import numba
import numpy as np
from scipy import ndimage as ndi

# Smoothed histograms of superpixel means: Gaussian smoothing width and half range, in
# standard deviations of the head's intensities, and the largest number of bins over all
# channels.
DENSITY_BANDWIDTH = 0.15
DENSITY_RANGE = 6.0
DENSITY_MAX_BINS = 2_000_000
# Coarse regions count an intensity as at least this frequent relative to the most frequent
# one, so that regions of rare intensities stay at most 1 / RARE_FLOOR times larger.
RARE_FLOOR = 0.05


def superpixel_adjacency(labels: np.ndarray) -> np.ndarray:
    """The pairs of supervoxels that touch (share a face of a voxel).

    Parameters
    ----------
    labels : ndarray of int, 3D
        Supervoxel ids, 0 for background (never part of a pair).

    Returns
    -------
    ndarray of int64, shape (n_pairs, 2)
        Unique pairs ``(a, b)`` with ``a < b``, sorted.
    """
    labels = np.ascontiguousarray(labels, dtype=np.int32)
    base = int(labels.max()) + 1
    codes = np.unique(_touching_codes(labels, base))
    return np.column_stack([codes // base, codes % base])


@numba.njit(cache=True, nogil=True)
def _touching_codes(labels, base):
    """``min * base + max`` of the ids of face-neighbouring voxels with different non-zero ids.

    Runs of the same code in raster order are written once; other repeats remain.
    """
    nz, ny, nx = labels.shape
    codes = np.empty(0, np.int64)
    for write in (False, True):
        n, last = 0, -1
        for z in range(nz):
            for y in range(ny):
                for x in range(nx):
                    k = labels[z, y, x]
                    if k == 0:
                        continue
                    # A clipped index points back at the voxel itself, which is skipped.
                    for other in (
                        labels[min(z + 1, nz - 1), y, x],
                        labels[z, min(y + 1, ny - 1), x],
                        labels[z, y, min(x + 1, nx - 1)],
                    ):
                        if other != 0 and other != k:
                            code = min(k, other) * base + max(k, other)
                            if code != last:
                                if write:
                                    codes[n] = code
                                n += 1
                                last = code
        if not write:
            codes = np.empty(n, np.int64)
    return codes


def merge_regions(
    labels: np.ndarray,
    image: np.ndarray,
    similarity: float,
    span: float,
    common_voxels: float,
    rarity: float,
) -> np.ndarray:
    """Merge touching supervoxels of similar mean intensity into coarse regions.

    The pairs of touching supervoxels are visited from the most to the least similar mean
    intensities; a pair's regions merge when the means of the regions differ by at most
    ``similarity``, the means of all their supervoxels lie within ``span`` of each other
    in every channel (so that gradual changes do not chain) and the merged region is not
    too large. With several channels, the difference of two means is the root mean square
    over channels of their differences.

    The size limit depends on how common a region's intensities are in the head: each
    supervoxel counts its voxels times the relative frequency of its mean intensity (1 for
    the most frequent, at least 0.05), and a region counts at most ``common_voxels``. A region
    of the commonest tissue thus stays small, as a stroke that touches it would take
    much of the head, while a region of rare intensities (a lesion) may be up to 20 times
    larger, as there is little else like it to leak into. For the same reason a region does
    not join intensities of very different frequencies: the relative frequencies of its
    supervoxels' means stay within a factor ``rarity`` of each other, so the rare bright
    rim of a lesion is not merged with the common tissue next to it.

    Parameters
    ----------
    labels : ndarray of int, 3D
        Supervoxel ids ``1..count``, 0 for background.
    image : ndarray of float, the labels' shape or ``(n_channels, *labels.shape)``
        Intensities, in the units of ``similarity``, about one standard deviation of the
        head's intensities (the unit of the frequencies' smoothing, 0.15).
    similarity : float
        Largest difference of two regions' mean intensities for them to merge.
    span : float
        Largest range of the supervoxel means within a region.
    common_voxels : float
        Largest coarse region of the most frequent intensity, in voxels.
    rarity : float
        Largest ratio of the relative frequencies of the supervoxel means within a region
        (20 or more: no limit, as frequencies count as at least 0.05).

    Returns
    -------
    ndarray of int32, shape (count + 1,)
        Coarse region id (``1..n``) of each supervoxel; 0 for id 0.
    """
    flat = labels.ravel()
    channels = np.reshape(image, (-1, flat.size))
    counts = np.bincount(flat).astype(np.float64)
    sums = np.column_stack(
        [np.bincount(flat, weights=channel, minlength=counts.size) for channel in channels]
    )
    pairs = superpixel_adjacency(labels)
    means = sums / np.maximum(counts, 1)[:, None]
    differences = means[pairs[:, 0]] - means[pairs[:, 1]]
    order = np.argsort(np.sqrt((differences**2).mean(axis=1)), kind="stable")
    frequencies = np.maximum(_relative_frequencies(means, counts), RARE_FLOOR)
    roots = _merge(
        pairs[order],
        sums,
        counts,
        counts * frequencies,
        means,
        np.log(frequencies),
        similarity,
        span,
        common_voxels,
        np.log(rarity),
    )
    roots[0] = 0
    return np.unique(roots, return_inverse=True)[1].astype(np.int32).ravel()


def _relative_frequencies(means: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """How frequent each supervoxel's mean intensity is in the head, 1 for the most frequent.

    ``means`` has a row per supervoxel (row 0, the background, gets 0) and a column per
    channel; frequencies are weighted by voxel count. With several channels, a supervoxel
    is as rare as its rarest channel.
    """
    frequencies = np.zeros(len(counts))
    if len(counts) > 1:
        inside = means[1:] - np.average(means[1:], axis=0, weights=counts[1:])
        frequencies[1:] = 1.0
        for column in inside.T:
            (density,) = mean_densities(column[:, None], counts[1:], [np.ones(len(column), bool)])
            frequencies[1:] = np.minimum(frequencies[1:], density / density.max())
    return frequencies


def mean_densities(
    features: np.ndarray, weights: np.ndarray, groups: list[np.ndarray]
) -> list[np.ndarray]:
    """Smoothed histogram densities of each group of superpixels, at every superpixel.

    Histograms span ``DENSITY_RANGE`` either side of 0 in every channel and are smoothed by
    a Gaussian of width ``DENSITY_BANDWIDTH``; values beyond the range count at its edge.

    Parameters
    ----------
    features : ndarray, shape (n, d)
        Mean intensities, centred and in standard deviations of the head's intensities.
    weights : ndarray, shape (n,)
        Voxel counts.
    groups : list of ndarray of bool, shape (n,)
        Each a subset of superpixels; its density is normalized to sum 1 over the bins.

    Returns
    -------
    list of ndarray, shape (n,)
        Per group, its density at each superpixel's features (zeros for an empty group).
    """
    d = features.shape[1]
    bins = max(4, min(int(DENSITY_RANGE * 2 / DENSITY_BANDWIDTH), int(DENSITY_MAX_BINS ** (1 / d))))
    width = 2 * DENSITY_RANGE / bins
    cells = np.clip(((features + DENSITY_RANGE) / width).astype(np.int64), 0, bins - 1)
    flat = np.ravel_multi_index(tuple(cells.T), (bins,) * d)
    result = []
    for group in groups:
        histogram = np.bincount(flat[group], weights[group], minlength=bins**d).reshape((bins,) * d)
        histogram = ndi.gaussian_filter(histogram, DENSITY_BANDWIDTH / width, mode="constant")
        total = histogram.sum()
        result.append(histogram.ravel()[flat] / total if total > 0 else np.zeros(len(flat)))
    return result


@numba.njit(cache=True, nogil=True)
def _merge(
    pairs, sums, counts, weights, means, log_frequencies, similarity, span, max_weight, log_rarity
):
    """Union-find merging of ``pairs`` in order; returns each id's root.

    ``sums`` and ``means`` have one column per channel; a region's ``weights`` add up to at
    most ``max_weight``, and its ``log_frequencies`` span at most ``log_rarity``.
    """
    parent = np.arange(counts.size)
    sums, counts, weights = sums.copy(), counts.copy(), weights.copy()
    low, high = means.copy(), means.copy()
    rarest, commonest = log_frequencies.copy(), log_frequencies.copy()
    n_channels = sums.shape[1]
    for i in range(pairs.shape[0]):
        a, b = _root(parent, pairs[i, 0]), _root(parent, pairs[i, 1])
        if a == b or weights[a] + weights[b] > max_weight:
            continue
        if max(commonest[a], commonest[b]) - min(rarest[a], rarest[b]) > log_rarity:
            continue
        squares, widest = 0.0, 0.0
        for c in range(n_channels):
            difference = sums[a, c] / counts[a] - sums[b, c] / counts[b]
            squares += difference * difference
            widest = max(widest, max(high[a, c], high[b, c]) - min(low[a, c], low[b, c]))
        if np.sqrt(squares / n_channels) > similarity or widest > span:
            continue
        if counts[a] < counts[b]:
            a, b = b, a
        parent[b] = a
        sums[a] += sums[b]
        counts[a] += counts[b]
        weights[a] += weights[b]
        rarest[a], commonest[a] = min(rarest[a], rarest[b]), max(commonest[a], commonest[b])
        for c in range(n_channels):
            low[a, c], high[a, c] = min(low[a, c], low[b, c]), max(high[a, c], high[b, c])
    for k in range(parent.size):
        parent[k] = _root(parent, k)
    return parent


@numba.njit(cache=True, nogil=True)
def _root(parent, k):
    """The root of ``k``, halving the path on the way."""
    while parent[k] != k:
        parent[k] = parent[parent[k]]
        k = parent[k]
    return k
