"""Supervoxels: a masked 3D SLIC (numba) inside the head, with a disk cache.

Chosen by measurement on two BraTS 2013 FLAIR volumes (240x240x155, 2 cores): 0.5-0.7 s, 13-18k
supervoxels of ~80 mm3, whole-tumour ASA 0.917/0.954; skimage SLIC (300) 26-31 s, ASA 0.60/0.90;
compact watershed on the gradient 3-7 s and ASA <= 0.89 on the first case.

The coarse level (touching supervoxels merged by mean intensity, < 0.1 s) exists because strokes
on ~80 mm3 supervoxels cover a tumour slowly: in ``benchmarks/simulated_annotator.py`` the median
whole-tumour Dice after 10 strokes is 0.18 on supervoxels alone and 0.83 with coarse regions.
Capping coarse regions by a volume of common-intensity tissue rather than by a plain volume
(8000 mm3) raised that from 0.81 to 0.83, and from 0.79 to 0.83 averaged over the volumes
flipped along each axis (other SLIC grids); smaller, larger or compact regions, boundary
contrast and neighbourhood intensity as merge criteria all stayed at or below 0.82. Keeping
intensities of very different frequency in the head apart (a factor 6 at most within a
region) raised the case with the lowest Dice from 0.778 to 0.793 averaged over its four
grids, and left the other case unchanged.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import tempfile
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numba
import numpy as np
from scipy import ndimage as ndi
from skimage.filters import threshold_otsu

from .volume import Volume

DEFAULT_PARAMS = {
    "size": 4.5,
    "compactness": 0.7,
    "sigma": 1.0,
    "iterations": 3,
    "coarse_similarity": 0.4,
    "coarse_span": 0.8,
    "coarse_volume": 2000.0,
    "coarse_rarity": 6.0,
    "outline_smoothing": 2.0,
}
_CACHE_VERSION = 4
# Smoothed histograms of superpixel means: Gaussian smoothing width and half range, in
# standard deviations of the head's intensities, and the largest number of bins over all
# channels.
DENSITY_BANDWIDTH = 0.15
DENSITY_RANGE = 6.0
DENSITY_MAX_BINS = 2_000_000
# Coarse regions count an intensity as at least this frequent relative to the most frequent
# one, so that regions of rare intensities stay at most 1 / _RARE_FLOOR times larger.
_RARE_FLOOR = 0.05
# A minimum value covering this fraction of the image is a constant background (skull-stripped
# data, zero-filled air, CT padding) rather than the darkest tissue.
_CONSTANT_BACKGROUND_FRACTION = 0.05
# Otsu effectiveness (between-class over total variance) above which the non-background values
# still contain air, as in CT with padding outside the field of view.
_AIR_SEPARATION = 0.85
# Head components smaller than this fraction of the largest are dropped as noise.
_MIN_COMPONENT_FRACTION = 0.1
# Supervoxel fragments smaller than this fraction of a grid cell are merged into a neighbour.
_MIN_FRAGMENT_FRACTION = 0.25


@dataclass(frozen=True, eq=False)
class Superpixels:
    """A partition of a volume's head into supervoxels.

    Attributes
    ----------
    labels : ndarray of int32, shape of the volume
        Supervoxel id of each voxel: 0 outside the head, ids ``1..count`` inside.
    params : dict
        The parameters used, defaults included.
    extents : ndarray of int32, shape (count + 1, 3, 2)
        For id ``k``, ``[start, stop)`` of its bounding box along each axis; row 0 is unused.
    coarse : ndarray of int32, shape (count + 1,), optional
        The coarse level: the id (``1..coarse_count``) of the coarse region each supervoxel
        belongs to, 0 for id 0. Each coarse region is a connected union of supervoxels.
        None when there is no coarse level; it then equals the fine one.
    spacing : tuple of 3 float
        Voxel size in mm of the volume partitioned.
    """

    labels: np.ndarray
    params: dict
    extents: np.ndarray
    coarse: np.ndarray | None = None
    spacing: tuple[float, float, float] = (1.0, 1.0, 1.0)

    @classmethod
    def from_labels(
        cls,
        labels: np.ndarray,
        params: dict,
        coarse: np.ndarray | None = None,
        spacing: tuple[float, float, float] = (1.0, 1.0, 1.0),
    ) -> Superpixels:
        """Wrap a label volume (0 background, ids ``1..count``), computing the extents.

        ``coarse``, when given, is the coarse region id of each supervoxel (see the class).
        """
        labels = np.ascontiguousarray(labels, dtype=np.int32)
        if coarse is not None:
            coarse = np.asarray(coarse, dtype=np.int32)
        return cls(labels, params, _extents(labels), coarse, tuple(map(float, spacing)))

    @property
    def count(self) -> int:
        """The number of supervoxels."""
        return len(self.extents) - 1

    def members(self, ids: np.ndarray) -> np.ndarray:
        """The supervoxel ids of the coarse regions holding ``ids`` (``ids`` themselves if none).

        Parameters
        ----------
        ids : array-like of int
            Supervoxel ids (0 is ignored).

        Returns
        -------
        ndarray of int
            Sorted unique non-zero supervoxel ids.
        """
        ids = np.asarray(ids, dtype=np.int64)
        ids = np.unique(ids[ids > 0])
        if self.coarse is None or ids.size == 0:
            return ids
        members = np.flatnonzero(np.isin(self.coarse, self.coarse[ids]))
        return members[members > 0]


def head_mask(data: np.ndarray) -> np.ndarray:
    """Find the head (or brain, when skull-stripped), excluding the air around it.

    A minimum value that covers much of the image is taken as a constant background
    (skull-stripped data); otherwise, or when the remaining values still hold air, air is
    whatever is darker than Otsu's threshold. Small components are dropped and holes filled.

    Parameters
    ----------
    data : ndarray, 3D
        Intensities.

    Returns
    -------
    ndarray of bool
        True inside the head; all False for a constant image.
    """
    low = data.min()
    if low == data.max():
        return np.zeros(data.shape, bool)
    background = data == low
    if background.mean() >= _CONSTANT_BACKGROUND_FRACTION:
        mask = ~background
        values = data[mask]
        threshold = threshold_otsu(values)
        if _otsu_effectiveness(values, threshold) > _AIR_SEPARATION:
            mask &= data > threshold
    else:
        mask = data > threshold_otsu(data)
    box = _bounding_box(mask)
    if box is None:
        return mask
    components, n = ndi.label(mask[box])
    sizes = np.bincount(components.ravel(), minlength=n + 1)
    sizes[0] = 0
    keep = sizes >= _MIN_COMPONENT_FRACTION * sizes.max()
    mask = np.zeros(data.shape, bool)
    mask[box] = ndi.binary_fill_holes(keep[components])
    return mask


def _otsu_effectiveness(values: np.ndarray, threshold: float) -> float:
    """Between-class variance over total variance for a two-class split at ``threshold``."""
    above = values > threshold
    fraction = above.mean()
    if values.var() == 0 or fraction in (0, 1):
        return 0.0
    gap = values[above].mean() - values[~above].mean()
    return float(fraction * (1 - fraction) * gap**2 / values.var())


def _bounding_box(mask: np.ndarray) -> tuple[slice, ...] | None:
    """The smallest box holding all True voxels, or None when there are none."""
    box = []
    for axis in range(mask.ndim):
        present = np.flatnonzero(mask.any(axis=tuple(a for a in range(mask.ndim) if a != axis)))
        if present.size == 0:
            return None
        box.append(slice(present[0], present[-1] + 1))
    return tuple(box)


def compute_superpixels(volumes: Volume | Sequence[Volume], **params) -> Superpixels:
    """Partition the head into compact supervoxels that follow intensity edges.

    SLIC (k-means on intensity and position, each voxel comparing the 8 nearest cluster
    centres) restricted to the :func:`head_mask` of the first volume, on a grid spaced in mm,
    followed by merging fragments smaller than a quarter cell so every supervoxel is
    connected. With several co-registered volumes (modalities), the intensity distance is
    the mean over modalities of the squared differences, each modality scaled to the first
    one's robust intensity range inside the head (see :func:`modality_channels`).

    The coarse level merges adjacent supervoxels into regions (see :func:`merge_regions`).

    Parameters
    ----------
    volumes : Volume or sequence of Volume
        The scan, or co-registered scans of one head (same shape and spacing).
    **params
        ``size`` (mm, grid spacing, about the supervoxel diameter; default 4.5),
        ``compactness`` (weight of distance against intensity, in intensity standard
        deviations per ``size``; default 0.7), ``sigma`` (mm, Gaussian smoothing before
        clustering; default 1.0), ``iterations`` (default 3), and for the coarse level
        ``coarse_similarity`` (largest difference of mean intensities of two merged regions,
        in intensity standard deviations; default 0.4), ``coarse_span`` (largest range of
        the supervoxel means in a coarse region, likewise; default 0.8) and
        ``coarse_volume`` (mm3, largest coarse region of the head's most frequent intensity;
        regions of rarer intensities may be up to 20 times larger; default 2000) and
        ``coarse_rarity`` (largest ratio of how frequent in the head the most and the least
        frequent mean intensity in a region are; default 6; see :func:`merge_regions`).
        Intensity standard deviations are those of the first volume inside the head.
        ``outline_smoothing`` (mm, radius of the ball that smooths the outlines of labels
        made of these supervoxels, see :func:`~superpixel_annotator.outlines.smooth_outlines`;
        0 for none; default 2) does not change the supervoxels.

    Returns
    -------
    Superpixels

    Raises
    ------
    ValueError
        If there is no volume, or the volumes differ in shape or spacing.
    """
    volumes = _co_registered(volumes)
    params = _complete_params(params)
    first = volumes[0]
    mask = head_mask(first.data)
    labels = np.zeros(first.data.shape, np.int32)
    extents = np.zeros((1, 3, 2), np.int32)
    coarse = np.zeros(1, np.int32)
    box = _bounding_box(mask)
    if box is not None:
        cropped_mask = np.ascontiguousarray(mask[box])
        cropped = [volume.data[box] for volume in volumes]
        sigmas = [params["sigma"] / s for s in first.spacing]
        smoothed = [
            ndi.gaussian_filter(data, sigmas, truncate=2.0) if params["sigma"] > 0 else data
            for data in cropped
        ]
        cropped_labels = _slic(
            modality_channels(smoothed, cropped_mask).astype(np.float32),
            cropped_mask,
            first.spacing,
            *(params[name] for name in ("size", "compactness", "iterations")),
        )
        labels[box] = cropped_labels
        extents = _extents(cropped_labels)
        extents[1:] += np.array([s.start for s in box], np.int32)[:, None]
        coarse = merge_regions(
            cropped_labels,
            modality_channels(cropped, cropped_mask),
            params["coarse_similarity"],
            params["coarse_span"],
            params["coarse_volume"] / float(np.prod(first.spacing)),
            params["coarse_rarity"],
        )
    spacing = tuple(map(float, first.spacing))
    return Superpixels(labels, params, extents, coarse, spacing)


def modality_channels(images: Sequence[np.ndarray], mask: np.ndarray) -> np.ndarray:
    """Stack intensity volumes as channels on a common scale: the first one's standard deviation.

    The first image is divided by its standard deviation inside ``mask``. Every other image is
    first scaled so that its robust range inside ``mask`` (1st to 99th percentile) equals the
    first's, so that each modality weighs the same in intensity distances.

    Parameters
    ----------
    images : sequence of ndarray
        Co-registered intensities, all of ``mask``'s shape.
    mask : ndarray of bool
        The head.

    Returns
    -------
    ndarray of float64, shape ``(len(images), *mask.shape)``
        The scaled images; a constant first image is left unscaled.
    """
    first = images[0][mask]
    scale = first.std() if first.size else 0.0
    scale = scale if scale > 0 else 1.0
    channels = np.empty((len(images), *mask.shape))
    channels[0] = images[0] / scale
    if len(images) > 1:
        reference = _robust_range(first)
        for channel, image in zip(channels[1:], images[1:], strict=True):
            spread = _robust_range(image[mask])
            channel[:] = image / scale * (reference / spread if spread > 0 else 1.0)
    return channels


def _robust_range(values: np.ndarray) -> float:
    """The distance from the 1st to the 99th percentile of ``values`` (0 when empty)."""
    if values.size == 0:
        return 0.0
    low, high = np.percentile(values, [1, 99])
    return float(high - low)


def _co_registered(volumes: Volume | Sequence[Volume]) -> list[Volume]:
    """``volumes`` as a list, checked to share one shape and spacing."""
    volumes = [volumes] if isinstance(volumes, Volume) else list(volumes)
    if not volumes:
        raise ValueError("expected at least one volume")
    first = volumes[0]
    for volume in volumes[1:]:
        if volume.data.shape != first.data.shape:
            raise ValueError(
                f"{volume.name}: shape {volume.data.shape} differs from {first.name}'s "
                f"{first.data.shape}; modalities must be co-registered"
            )
        if not np.allclose(volume.spacing, first.spacing):
            raise ValueError(
                f"{volume.name}: spacing {volume.spacing} mm differs from {first.name}'s "
                f"{first.spacing} mm; modalities must be co-registered"
            )
    return volumes


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


@numba.njit(cache=True)
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
    frequencies = np.maximum(_relative_frequencies(means, counts), _RARE_FLOOR)
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


@numba.njit(cache=True)
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


@numba.njit(cache=True)
def _root(parent, k):
    """The root of ``k``, halving the path on the way."""
    while parent[k] != k:
        parent[k] = parent[parent[k]]
        k = parent[k]
    return k


def _complete_params(params: dict) -> dict:
    """The defaults updated with ``params``, as JSON-able numbers; unknown names are an error."""
    unknown = set(params) - set(DEFAULT_PARAMS)
    if unknown:
        raise TypeError(f"unknown superpixel parameters: {sorted(unknown)}")
    params = {**DEFAULT_PARAMS, **params}
    return {name: type(DEFAULT_PARAMS[name])(value) for name, value in params.items()}


def _slic(
    channels: np.ndarray,
    mask: np.ndarray,
    spacing: tuple[float, float, float],
    size: float,
    compactness: float,
    iterations: int,
) -> np.ndarray:
    """Connected SLIC supervoxels of the voxels in ``mask``, numbered 1..n in raster order.

    ``channels`` (float32, shape ``(n_channels, *mask.shape)``) are the smoothed intensities
    in the units of ``compactness``.
    """
    shape = mask.shape
    steps = [max(1.0, size / s) for s in spacing]
    positions = [(np.arange(n) + 0.5) / step for n, step in zip(shape, steps, strict=True)]
    cells = tuple(p.astype(np.int64) for p in positions)
    upper_half = tuple((p % 1 >= 0.5).astype(np.int64) for p in positions)
    grid_shape = tuple(int(c[-1]) + 1 for c in cells)
    clusters = np.ravel_multi_index(np.ix_(*cells), grid_shape).astype(np.int64)
    clusters = np.broadcast_to(clusters, shape).copy()
    spatial_weight = (compactness / size) ** 2
    mm_per_voxel = np.asarray(spacing, np.float64)
    for _ in range(iterations):
        centres = _cluster_centres(channels, mask, clusters, int(np.prod(grid_shape)))
        _assign_clusters(
            channels,
            mask,
            cells,
            upper_half,
            grid_shape,
            centres,
            mm_per_voxel,
            spatial_weight,
            clusters,
        )
    min_size = int(_MIN_FRAGMENT_FRACTION * np.prod(steps))
    return _connected_labels(clusters, mask, max(min_size, 1))


@numba.njit(cache=True)
def _cluster_centres(channels, mask, clusters, n):
    """Mean (z, y, x, channels...) and voxel count (last column) of each cluster."""
    n_channels = channels.shape[0]
    count = 3 + n_channels
    sums = np.zeros((n, count + 1))
    for z in range(mask.shape[0]):
        for y in range(mask.shape[1]):
            for x in range(mask.shape[2]):
                if mask[z, y, x]:
                    k = clusters[z, y, x]
                    sums[k, 0] += z
                    sums[k, 1] += y
                    sums[k, 2] += x
                    for c in range(n_channels):
                        sums[k, 3 + c] += channels[c, z, y, x]
                    sums[k, count] += 1
    for k in range(n):
        if sums[k, count] > 0:
            sums[k, :count] /= sums[k, count]
    return sums


@numba.njit(cache=True)
def _assign_clusters(channels, mask, cells, upper_half, grid_shape, centres, spacing, weight, out):
    """Give each masked voxel the nearest of the 2x2x2 closest cells' cluster centres.

    The intensity part of the distance is the mean over channels of squared differences.
    """
    gz, gy, gx = grid_shape
    n_channels = channels.shape[0]
    count = 3 + n_channels
    for z in range(mask.shape[0]):
        z0 = max(cells[0][z] - 1 + upper_half[0][z], 0)
        for y in range(mask.shape[1]):
            y0 = max(cells[1][y] - 1 + upper_half[1][y], 0)
            for x in range(mask.shape[2]):
                if not mask[z, y, x]:
                    continue
                x0 = max(cells[2][x] - 1 + upper_half[2][x], 0)
                best = np.inf
                for a in range(z0, min(z0 + 2, gz)):
                    for b in range(y0, min(y0 + 2, gy)):
                        for c in range(x0, min(x0 + 2, gx)):
                            k = (a * gy + b) * gx + c
                            if centres[k, count] == 0:
                                continue
                            dz = (z - centres[k, 0]) * spacing[0]
                            dy = (y - centres[k, 1]) * spacing[1]
                            dx = (x - centres[k, 2]) * spacing[2]
                            colour = 0.0
                            for channel in range(n_channels):
                                di = channels[channel, z, y, x] - centres[k, 3 + channel]
                                colour += di * di
                            distance = colour / n_channels + weight * (dz * dz + dy * dy + dx * dx)
                            if distance < best:
                                best = distance
                                out[z, y, x] = k


@numba.njit(cache=True)
def _connected_labels(clusters, mask, min_size):
    """Number the 6-connected pieces of each cluster; merge pieces under ``min_size`` voxels.

    A small piece joins a neighbouring piece already numbered, when it touches one.
    """
    nz, ny, nx = clusters.shape
    labels = np.zeros(clusters.shape, np.int32)
    queue = np.empty((mask.sum(), 3), np.int64)
    steps = ((1, 0, 0), (-1, 0, 0), (0, 1, 0), (0, -1, 0), (0, 0, 1), (0, 0, -1))
    n = 0
    for z0 in range(nz):
        for y0 in range(ny):
            for x0 in range(nx):
                if not mask[z0, y0, x0] or labels[z0, y0, x0] != 0:
                    continue
                n += 1
                labels[z0, y0, x0] = n
                queue[0] = (z0, y0, x0)
                cluster = clusters[z0, y0, x0]
                head, tail, neighbour = 0, 1, 0
                while head < tail:
                    z, y, x = queue[head]
                    head += 1
                    for dz, dy, dx in steps:
                        zz, yy, xx = z + dz, y + dy, x + dx
                        if not (0 <= zz < nz and 0 <= yy < ny and 0 <= xx < nx):
                            continue
                        if not mask[zz, yy, xx]:
                            continue
                        if labels[zz, yy, xx] == 0 and clusters[zz, yy, xx] == cluster:
                            labels[zz, yy, xx] = n
                            queue[tail] = (zz, yy, xx)
                            tail += 1
                        elif labels[zz, yy, xx] != 0 and labels[zz, yy, xx] != n:
                            neighbour = labels[zz, yy, xx]
                if tail < min_size and neighbour != 0:
                    for i in range(tail):
                        labels[queue[i, 0], queue[i, 1], queue[i, 2]] = neighbour
                    n -= 1
    return labels


@numba.njit(cache=True)
def _extents(labels):
    """For each id ``k`` in ``labels``, ``[start, stop)`` along each axis in row ``k``."""
    extents = np.zeros((labels.max() + 1, 3, 2), np.int32)
    extents[1:, :, 0] = np.iinfo(np.int32).max
    for z in range(labels.shape[0]):
        for y in range(labels.shape[1]):
            for x in range(labels.shape[2]):
                k = labels[z, y, x]
                if k != 0:
                    for axis, i in enumerate((z, y, x)):
                        extents[k, axis, 0] = min(extents[k, axis, 0], i)
                        extents[k, axis, 1] = max(extents[k, axis, 1], i + 1)
    return extents


def achievable_segmentation_accuracy(labels: np.ndarray, truth: np.ndarray) -> float:
    """Dice of the best segmentation made of whole supervoxels.

    A supervoxel is in the segmentation when more than half of its voxels are in ``truth``;
    voxels labelled 0 are never in it.

    Parameters
    ----------
    labels : ndarray of int
        Supervoxel ids, 0 for background.
    truth : ndarray of bool, same shape
        The reference segmentation.

    Returns
    -------
    float
        Dice coefficient in [0, 1]; 1.0 when both the truth and the segmentation are empty.
    """
    labels = np.asarray(labels).ravel()
    truth = np.asarray(truth, bool).ravel()
    sizes = np.bincount(labels)
    inside = np.bincount(labels, weights=truth, minlength=sizes.size)
    chosen = 2 * inside > sizes
    chosen[0] = False
    total = sizes[chosen].sum() + truth.sum()
    return 1.0 if total == 0 else float(2 * inside[chosen].sum() / total)


def cache_directory(cache_dir: str | os.PathLike | None = None) -> Path:
    """The cache directory: ``cache_dir``, else ``$SUPERPIXEL_ANNOTATOR_CACHE``, else
    ``~/.cache/superpixel-annotator``."""
    if cache_dir is not None:
        return Path(cache_dir)
    default = Path.home() / ".cache" / "superpixel-annotator"
    return Path(os.environ.get("SUPERPIXEL_ANNOTATOR_CACHE", default))


CACHE_LIMIT_VARIABLE = "SUPERPIXEL_ANNOTATOR_CACHE_MAX_MB"
DEFAULT_CACHE_LIMIT_MB = 5000
# The files the limit applies to: superpixels at the cache's top, cases in cases/ (see
# cases.py). Nothing else is ever removed, whatever else the directory holds.
_CACHE_FILE_PATTERNS = ("*.npz", "cases/*.npz")
_CACHE_FILE_NAME = re.compile(r"[0-9a-f]{32}(-[0-9a-f]{16})?\.npz")


class CacheSettingError(ValueError):
    """A malformed cache setting in the environment."""


def cache_limit_bytes() -> int:
    """The most bytes the cache's files may take: ``$SUPERPIXEL_ANNOTATOR_CACHE_MAX_MB``
    megabytes (10^6 bytes), else 5 GB.

    Raises
    ------
    CacheSettingError
        When the variable is set but not a number of megabytes of at least 0.
    """
    text = os.environ.get(CACHE_LIMIT_VARIABLE, "").strip()
    if not text:
        return DEFAULT_CACHE_LIMIT_MB * 10**6
    try:
        megabytes = float(text)
    except ValueError:
        megabytes = math.nan
    if not (math.isfinite(megabytes) and megabytes >= 0):
        raise CacheSettingError(
            f"{CACHE_LIMIT_VARIABLE}={text!r}: not a number of megabytes of at least 0"
        )
    return round(megabytes * 10**6)


def mark_cache_file_used(path: Path) -> bool:
    """Count the cache file at ``path`` as used now: :func:`trim_cache` removes the least
    recently used files first, by modification time.

    Returns
    -------
    bool
        Whether the file exists.
    """
    try:
        os.utime(path)
    except FileNotFoundError:
        return False
    except OSError:  # e.g. a read-only cache: the file is still there to read
        pass
    return True


def trim_cache(cache_dir: Path, keep: Path) -> list[Path]:
    """Remove the least recently used superpixel and case files of the cache until they take
    at most :func:`cache_limit_bytes`, never ``keep`` (the file just written).

    Other processes may read, write and trim meanwhile: a file already gone is skipped, and
    a reader that has a removed file open still reads all of it.

    Parameters
    ----------
    cache_dir : Path
        The cache directory (see :func:`cache_directory`).
    keep : Path
        A file in it that stays even when it alone is over the limit.

    Returns
    -------
    list of Path
        The files removed, least recently used first.
    """
    max_bytes = cache_limit_bytes()
    files = []
    for pattern in _CACHE_FILE_PATTERNS:
        for path in cache_dir.glob(pattern):
            if not _CACHE_FILE_NAME.fullmatch(path.name):
                continue
            try:
                status = path.stat()
            except FileNotFoundError:
                continue
            files.append((status.st_mtime_ns, status.st_size, path))
    total = sum(size for _, size, _ in files)
    removed = []
    for _, size, path in sorted(files):
        if total <= max_bytes:
            break
        if path == keep:
            continue
        try:
            path.unlink(missing_ok=True)
        except OSError:  # not this process's to remove (another user's, read-only)
            continue
        total -= size
        removed.append(path)
    return removed


def load_or_compute_superpixels(
    volumes: Volume | Sequence[Volume], cache_dir: str | Path | None = None, **params
) -> Superpixels:
    """Supervoxels from the disk cache, computing and storing them when missing or unreadable.

    Parameters
    ----------
    volumes : Volume or sequence of Volume
        As for :func:`compute_superpixels`; the cache key is every volume's
        ``content_hash`` and the parameters.
    cache_dir : str or Path, optional
        See :func:`cache_directory`.
    **params
        As for :func:`compute_superpixels`.

    Returns
    -------
    Superpixels
    """
    volumes = _co_registered(volumes)
    params = _complete_params(params)
    cache_dir = cache_directory(cache_dir)
    hashes = [volume.content_hash for volume in volumes]
    key = json.dumps([_CACHE_VERSION, params, hashes[1:]], sort_keys=True).encode()
    path = Path(cache_dir) / f"{hashes[0]}-{hashlib.sha256(key).hexdigest()[:16]}.npz"
    cached = _read_cache(path, volumes[0], params)
    if cached is not None:
        return cached
    superpixels = compute_superpixels(volumes, **params)
    _write_cache(path, superpixels)
    return superpixels


def write_npz_atomically(path: Path, arrays: dict, save=np.savez) -> None:
    """Write ``arrays`` with ``save`` (``np.savez`` or ``np.savez_compressed``) to a temporary
    file beside ``path``, then rename it, so readers never see a partial file.

    Raises
    ------
    OSError
        When the file cannot be written (the temporary file is removed).
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor, temporary = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
    try:
        with os.fdopen(descriptor, "wb") as file:
            save(file, **arrays)
        os.replace(temporary, path)
    finally:
        Path(temporary).unlink(missing_ok=True)


def _write_cache(path: Path, superpixels: Superpixels) -> None:
    arrays = {
        "labels": superpixels.labels,
        "extents": superpixels.extents,
        "coarse": superpixels.coarse,
    }
    try:
        write_npz_atomically(path, arrays, np.savez_compressed)
    except OSError as error:
        warnings.warn(f"could not cache superpixels in {path}: {error}", stacklevel=3)
        return
    trim_cache(path.parent, path)


def _read_cache(path: Path, volume: Volume, params: dict) -> Superpixels | None:
    """The cached supervoxels of ``volume`` at ``path``, or None if absent, unreadable or not
    fitting."""
    try:
        with np.load(path) as stored:
            labels, extents, coarse = stored["labels"], stored["extents"], stored["coarse"]
    except Exception:  # a missing, truncated or foreign file: recompute
        return None
    if labels.shape != volume.data.shape or labels.dtype != np.int32 or extents.shape[1:] != (3, 2):
        return None
    if coarse.shape != (len(extents),) or coarse.dtype != np.int32:
        return None
    mark_cache_file_used(path)
    return Superpixels(labels, params, extents, coarse, tuple(map(float, volume.spacing)))
