"""Filling superpixels like the labelled ones: graph, statistics and seeded region growing.

The superpixel graph joins supervoxels that share a voxel face; each node carries the voxel
count and the intensity sum of every modality. Region growing starts from the superpixels the
user labelled and takes touching superpixels whose mean intensities are clearly more frequent
among a label's seeds than in the head as a whole (a density ratio, so a tumour with dark and
bright parts is one label). Superpixels the user erased or labelled are never taken, so they
also stop the growth. Pockets the labels enclose (a necrotic core inside its rim) are filled
whatever their intensity.

Chosen by measurement (``benchmarks/simulated_annotator.py``, two BraTS 2013 FLAIR cases): a
Gaussian model of the seeds (distance to their mean within 2 spreads) leaked over the whole
brain in the case whose tumour holds dark necrosis and bright oedema (Dice 0.10 after one
stroke and 0.14 after ten), where the density ratio gave 0.73 and 0.76. Filling enclosed
pockets raised the median Dice after ten strokes with Fill from 0.849 to 0.854 over the two
cases mirrored along each axis (8 runs), and lowered none of the runs by more than 0.005.
"""

from __future__ import annotations

import heapq
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass

import numba
import numpy as np
from scipy import sparse
from scipy.sparse.csgraph import connected_components

from .regions import mean_densities, superpixel_adjacency
from .superpixels import Superpixels

DEFAULT_ENRICHMENT = 3.0
_CACHE_SIZE = 4
_cache: OrderedDict[tuple[int, ...], tuple[list, SuperpixelGraph]] = OrderedDict()


@dataclass(frozen=True, eq=False)
class SuperpixelGraph:
    """Adjacency and per-superpixel statistics of one partition and its intensities.

    Attributes
    ----------
    pairs : ndarray of int64, shape (n_pairs, 2)
        The touching pairs ``(a, b)``, ``a < b`` (see :func:`superpixel_adjacency`).
    neighbours : list of ndarray
        ``neighbours[k]``: ids of the superpixels touching ``k`` (empty for 0).
    on_border : ndarray of bool, shape (count + 1,)
        Superpixels touching the outside of the head or the edge of the volume.
    counts : ndarray of int64, shape (count + 1,)
        Voxels per superpixel (row 0, the background, is 0).
    sums : ndarray of float64, shape (count + 1, n_modalities)
        Sum of each modality's intensities per superpixel (row 0 is 0).
    centres, scales : ndarray of float64, shape (n_modalities,)
        Mean and standard deviation of each modality's intensities inside the head (the
        scale is 1 for a constant modality).
    """

    pairs: np.ndarray
    neighbours: list[np.ndarray]
    on_border: np.ndarray
    counts: np.ndarray
    sums: np.ndarray
    centres: np.ndarray
    scales: np.ndarray

    @property
    def means(self) -> np.ndarray:
        """Mean intensity per superpixel and modality, shape (count + 1, n_modalities)."""
        return self.sums / np.maximum(self.counts, 1)[:, None]

    @property
    def features(self) -> np.ndarray:
        """The means standardized with the head's centres and scales."""
        return (self.means - self.centres) / self.scales


def superpixel_graph(
    superpixels: Superpixels, intensities: Sequence[np.ndarray]
) -> SuperpixelGraph:
    """The graph and statistics of ``superpixels`` for these intensity volumes, cached.

    The last few results are kept, keyed by the identity of the label and intensity arrays,
    so repeated calls with the same (unchanged) arrays cost nothing.

    Parameters
    ----------
    superpixels : Superpixels
        The partition.
    intensities : sequence of ndarray
        One volume per modality, each of the labels' shape.

    Returns
    -------
    SuperpixelGraph
    """
    arrays = [superpixels.labels, *intensities]
    key = tuple(id(array) for array in arrays)
    if key in _cache:
        _cache.move_to_end(key)
        return _cache[key][1]
    graph = _build_graph(superpixels, intensities)
    _cache[key] = (arrays, graph)  # holding the arrays keeps their ids from being reused
    while len(_cache) > _CACHE_SIZE:
        _cache.popitem(last=False)
    return graph


def _build_graph(superpixels: Superpixels, intensities: Sequence[np.ndarray]) -> SuperpixelGraph:
    labels = superpixels.labels
    if not intensities or any(np.shape(a) != labels.shape for a in intensities):
        raise ValueError(f"expected one or more intensity volumes of shape {labels.shape}")
    size = superpixels.count + 1
    counts, on_border = _counts_and_border(labels, size)
    sums = np.column_stack([_sums(labels, np.asarray(a), size) for a in intensities])
    inside = labels > 0
    centres = np.array([a[inside].mean() if inside.any() else 0.0 for a in intensities])
    scales = np.array([a[inside].std() if inside.any() else 0.0 for a in intensities])
    scales[scales == 0] = 1.0
    pairs = superpixel_adjacency(labels)
    both = np.concatenate([pairs, pairs[:, ::-1]])
    both = both[np.argsort(both[:, 0], kind="stable")]
    bounds = np.searchsorted(both[:, 0], np.arange(size + 1))
    neighbours = [both[bounds[k] : bounds[k + 1], 1] for k in range(size)]
    return SuperpixelGraph(pairs, neighbours, on_border, counts, sums, centres, scales)


@numba.njit(cache=True)
def _counts_and_border(labels, size):
    """Voxels per superpixel, and the superpixels with a voxel whose face touches the
    background or the edge of the volume; in one pass (row 0, the background, is 0)."""
    nz, ny, nx = labels.shape
    counts = np.zeros(size, np.int64)
    on_border = np.zeros(size, np.bool_)
    for z in range(nz):
        for y in range(ny):
            for x in range(nx):
                k = labels[z, y, x]
                if k == 0:
                    continue
                counts[k] += 1
                if not on_border[k] and (
                    z == 0
                    or y == 0
                    or x == 0
                    or z == nz - 1
                    or y == ny - 1
                    or x == nx - 1
                    or labels[z - 1, y, x] == 0
                    or labels[z + 1, y, x] == 0
                    or labels[z, y - 1, x] == 0
                    or labels[z, y + 1, x] == 0
                    or labels[z, y, x - 1] == 0
                    or labels[z, y, x + 1] == 0
                ):
                    on_border[k] = True
    return counts, on_border


@numba.njit(cache=True)
def _sums(labels, image, size):
    """The sum of ``image`` over each superpixel, added in float64 in raster order (row 0 is
    0)."""
    sums = np.zeros(size, np.float64)
    nz, ny, nx = labels.shape
    for z in range(nz):
        for y in range(ny):
            for x in range(nx):
                k = labels[z, y, x]
                if k != 0:
                    sums[k] += image[z, y, x]
    return sums


def grow_labels(
    graph: SuperpixelGraph,
    seeds: np.ndarray,
    blocked: np.ndarray,
    enrichment: float = DEFAULT_ENRICHMENT,
) -> np.ndarray:
    """Seeded region growing of labels over the superpixel graph, then filling enclosed pockets.

    A superpixel is like a label's seeds when its mean intensities are at least
    ``enrichment`` times more frequent among the seeds than in the whole head (smoothed
    histograms of superpixel means, weighted by voxel count). Growth goes from the seeds to
    touching superpixels that are like them, the most enriched first. Then each pocket of
    unlabelled superpixels that the labels enclose is filled (see :func:`fill_pockets`).

    Parameters
    ----------
    graph : SuperpixelGraph
        Adjacency and statistics.
    seeds : ndarray of uint8, shape (count + 1,)
        Label of each seed superpixel, 0 elsewhere.
    blocked : ndarray of bool, shape (count + 1,)
        Superpixels that are never taken and that growth does not cross (negative seeds).
    enrichment : float
        Smallest ratio of a label's density to the head's density to take the label.

    Returns
    -------
    ndarray of uint8, shape (count + 1,)
        The seeds' labels plus the grown superpixels' labels; 0 elsewhere.
    """
    result = np.asarray(seeds, np.uint8).copy()
    result[0] = 0
    labels = [int(label) for label in np.unique(result[result > 0])]
    if not labels:
        return result
    features = graph.features
    head = graph.counts > 0
    head[0] = False
    groups = [head, *(result == label for label in labels)]
    density_head, *density_labels = mean_densities(features, graph.counts, groups)
    ratios = {}
    for label, density in zip(labels, density_labels, strict=True):
        ratio = density / np.maximum(density_head, np.finfo(float).tiny)
        ratio[ratio < enrichment] = 0
        ratios[label] = ratio
    taken = blocked | (result > 0)
    taken[0] = True
    heap: list[tuple[float, int, int]] = []

    def push_neighbours(k: int, label: int) -> None:
        for n in graph.neighbours[k]:
            if not taken[n] and ratios[label][n] > 0:
                heapq.heappush(heap, (-ratios[label][n], int(n), label))

    for k in np.flatnonzero(result):
        push_neighbours(k, int(result[k]))
    while heap:
        _, k, label = heapq.heappop(heap)
        if taken[k]:
            continue
        taken[k] = True
        result[k] = label
        push_neighbours(k, label)
    fill_pockets(graph, result, blocked)
    return result


def fill_pockets(graph: SuperpixelGraph, labels: np.ndarray, blocked: np.ndarray) -> None:
    """Give every pocket of unlabelled superpixels enclosed by labels the label around it.

    A pocket is a connected set of unlabelled superpixels that touches neither the outside
    of the head nor a blocked superpixel; it takes the label most of its labelled
    neighbours have (counted per touching pair).

    Parameters
    ----------
    graph : SuperpixelGraph
        Adjacency and the superpixels on the border of the head.
    labels : ndarray of uint8, shape (count + 1,)
        Label of each superpixel, 0 for unlabelled; pockets are filled in place.
    blocked : ndarray of bool, shape (count + 1,)
        Superpixels that are never filled; a pocket holding one is not filled either.
    """
    unlabelled = labels == 0
    unlabelled[0] = False
    first, second = graph.pairs.T
    inside = graph.pairs[unlabelled[first] & unlabelled[second]]
    size = labels.size
    links = sparse.coo_matrix((np.ones(len(inside)), (inside[:, 0], inside[:, 1])), (size, size))
    _, pocket = connected_components(links, directed=False)
    open_pocket = np.zeros(pocket.max() + 1, bool)
    open_pocket[pocket[unlabelled & (graph.on_border | blocked)]] = True
    edge = np.concatenate([graph.pairs, graph.pairs[:, ::-1]])
    edge = edge[unlabelled[edge[:, 0]] & (labels[edge[:, 1]] > 0)]
    votes, counts = np.unique(pocket[edge[:, 0]] * 256 + labels[edge[:, 1]], return_counts=True)
    order = np.lexsort((-counts, votes // 256))
    voters, first = np.unique(votes[order] // 256, return_index=True)
    surrounding = np.zeros(len(open_pocket), np.uint8)
    surrounding[voters] = votes[order][first] % 256
    surrounding[open_pocket] = 0
    fill = unlabelled & (surrounding[pocket] > 0)
    labels[fill] = surrounding[pocket[fill]]
