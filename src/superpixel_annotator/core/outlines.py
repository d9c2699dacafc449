"""Smooth outlines for label volumes made of whole superpixels.

A label volume built from whole supervoxels has staircase outlines: bumps and dents the size
of a supervoxel where the supervoxel grid, not the anatomy, decided. Manual outlines, and the
anatomy, are smooth. :func:`superpixel_segmentation` closes and then opens the labelled voxels
with a ball: the closing fills dents and gaps and the opening removes bumps and bridges narrower
than the ball, while a region the ball rolls freely inside and outside of keeps its shape and
size (a local smoothing by, say, a Gaussian would shrink every small region).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numba
import numpy as np
from scipy import ndimage as ndi
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from . import contacts
from .contacts import superpixel_contacts
from .superpixels import COMPACT_DTYPES, Superpixels

MAX_LOST_FRACTION = 0.1
"""A labelled region that smoothing would take more of its voxels from keeps them all."""


def ball(radius_mm: float, spacing: Sequence[float]) -> np.ndarray:
    """A boolean ball of ``radius_mm`` on a voxel grid of ``spacing`` (an ellipsoid in voxels)."""
    half = [int(radius_mm // step) for step in spacing]
    grid = np.ogrid[tuple(slice(-h, h + 1) for h in half)]
    return sum((axis * step) ** 2 for axis, step in zip(grid, spacing, strict=True)) <= (
        radius_mm**2 + 1e-9
    )


WORD_BITS = 64


def packed_morphology(
    words: np.ndarray, width: int, structure: np.ndarray, dilate: bool
) -> np.ndarray:
    """The dilation or erosion by ``structure`` of a boolean array of last-axis length
    ``width``, packed 64 voxels to a ``uint64`` word along its last axis (voxel ``k`` is
    bit ``k % 64`` of word ``k // 64``; the bits past the end, at least one, are 0), values
    outside the array counting as 0 (as ``scipy.ndimage.binary_dilation`` and
    ``binary_erosion``): whole 64-voxel words are combined at once, eight times less memory
    to go through than an array of booleans.

    ``structure`` must be symmetric, and convex along each axis, as a :func:`ball` is: each
    of its rows along the last axis is then a run of voxels around the centre, so that the
    result is the union (intersection) of the values dilated (eroded) along the last axis by
    each row's half-length and shifted by the row's offset along the other two axes.
    """
    half_lengths = np.where(structure.any(axis=2), structure.sum(axis=2) // 2, -1)
    return _morphology(np.ascontiguousarray(words), width, half_lengths.astype(np.int64), dilate)


@numba.njit(cache=True)
def _morphology(words, width, half_lengths, dilate):
    """:func:`packed_morphology` given each row's half-length (-1 where the structure has
    no row), a plane across the first axis at a time: the plane's runs along the last axis,
    then for each distance from the centre along the first axis the union (intersection) of
    the runs shifted along the second axis (kept for the planes within reach), then the
    result's plane from those. What a plane needs stays in the processor's caches."""
    nz, ny, n_words = words.shape
    rows, cols = half_lengths.shape
    centre0, centre1 = rows // 2, cols // 2
    reach = 2 * centre0 + 1
    by_run = np.empty((half_lengths.max() + 1, ny, n_words), np.uint64)
    runs = by_run.reshape(by_run.shape[0], ny * n_words)
    partial = np.empty((centre0 + 1, reach, ny * n_words), np.uint64)
    result = np.empty((nz, ny * n_words), np.uint64)
    for newest in range(nz + centre0):
        if newest < nz:
            _runs_along_last(words[newest], width, dilate, by_run)
            for distance in range(centre0 + 1):
                row = centre0 + distance
                plane = partial[distance, newest % reach]
                plane[:] = runs[half_lengths[row, centre1]]
                for col in range(cols):
                    if col != centre1 and half_lengths[row, col] >= 0:
                        shift = (col - centre1) * n_words
                        _combined_into(plane, runs[half_lengths[row, col]], shift, dilate)
        z = newest - centre0
        if z >= 0:
            plane = result[z]
            plane[:] = partial[0, z % reach]
            for distance in range(1, centre0 + 1):
                for other in (z + distance, z - distance):
                    if 0 <= other < nz:
                        _combined_into(plane, partial[distance, other % reach], 0, dilate)
                    elif not dilate:
                        plane[:] = 0
    return result.reshape(nz, ny, n_words)


@numba.njit(cache=True)
def _runs_along_last(words, width, dilate, by_run):
    """Into ``by_run[k]``: the packed rows ``words`` (2D) dilated or eroded by ``k`` voxels
    each way along the rows, one voxel more at each ``k``; the bits past a row's end are
    cleared."""
    rows, n_words = words.shape
    one, top = np.uint64(1), np.uint64(WORD_BITS - 1)
    in_last = (one << np.uint64(width - (n_words - 1) * WORD_BITS)) - one
    by_run[0] = words
    for step in range(1, by_run.shape[0]):
        previous, grown = by_run[step - 1], by_run[step]
        for y in range(rows):
            for w in range(n_words):
                word = previous[y, w]
                from_after = word >> one
                from_before = word << one
                if w + 1 < n_words:
                    from_after |= previous[y, w + 1] << top
                if w > 0:
                    from_before |= previous[y, w - 1] >> top
                if dilate:
                    word = word | from_after | from_before
                else:
                    word = word & from_after & from_before
                grown[y, w] = word & in_last if w == n_words - 1 else word


@numba.njit(cache=True)
def _combined_into(values, other, shift, dilate):
    """Combine ``other[j + shift]`` into ``values[j]`` (1D), in place: union for a dilation,
    intersection for an erosion, where values whose partner lies outside become 0."""
    start, stop = max(0, -shift), min(values.size, values.size - shift)
    # Slices first: indexing by j + shift would keep the loops from being vectorized.
    into, taken = values[start:stop], other[start + shift : stop + shift]
    if dilate:
        for j in range(into.size):
            into[j] |= taken[j]
    else:
        for j in range(into.size):
            into[j] &= taken[j]
        values[:start] = 0
        values[stop:] = 0


def smooth_outlines(
    labels: np.ndarray,
    inside: np.ndarray,
    spacing: Sequence[float],
    radius_mm: float,
) -> np.ndarray:
    """Labels whose outer outline is smoothed by a ball of ``radius_mm``, as
    :func:`superpixel_segmentation` smooths labels of whole superpixels.

    The labelled voxels (any label) are closed and then opened by the ball. A labelled
    region (26-connected) that would lose more than :data:`MAX_LOST_FRACTION` of its voxels
    keeps them all. Voxels that become labelled take the label of the closest labelled
    voxel, counted in steps between neighbours (the largest label on a tie); outlines
    between two labels are not moved. Nothing outside ``inside`` is labelled.

    Parameters
    ----------
    labels : ndarray of uint8, 3D
        Label values, 0 unlabelled; fewer than 2**31 voxels.
    inside : ndarray of bool, the shape of ``labels``
        Where labels may be (the head, less what the user erased).
    spacing : sequence of 3 float
        Voxel size in mm.
    radius_mm : float
        Radius of the ball.

    Returns
    -------
    ndarray of uint8, the shape of ``labels``
    """
    # Each voxel is a superpixel of its own, numbered from 1 in C order.
    voxels = np.arange(1, labels.size + 1, dtype=np.int32).reshape(labels.shape)
    regions, count = ndi.label(labels > 0, np.ones((3, 3, 3), bool))
    region_sizes = np.bincount(regions.ravel(), minlength=count + 1)

    def is_taken(lost_voxels: np.ndarray) -> np.ndarray:
        return _is_taken_from(regions.ravel()[lost_voxels - 1], region_sizes)

    result = _smoothed(
        voxels,
        np.concatenate([[0], labels.ravel()]).astype(np.uint8),
        np.concatenate([[False], inside.ravel()]),
        spacing,
        radius_mm,
        is_taken,
    )
    return np.where(inside, result, 0).astype(np.uint8)


def _smoothed(
    ids: np.ndarray,
    table: np.ndarray,
    allowed: np.ndarray,
    spacing: Sequence[float],
    radius_mm: float,
    is_taken: Callable[[np.ndarray], np.ndarray],
) -> np.ndarray:
    """The smoothed labels of the superpixels ``ids`` (a box holding every labelled one),
    labelled by ``table``; ``allowed`` says which superpixels smoothing may label, and
    ``is_taken`` whether it takes each voxel it would take, given its superpixel."""
    structure = ball(radius_mm, spacing)
    half = np.array(structure.shape) // 2
    # Padded with unlabelled voxels so that the closing is not cut off at the box's border.
    margin = half + 1
    width = ids.shape[2] + 2 * int(margin[2])
    labels, region = _labels_and_bits(ids, table, margin, width // WORD_BITS + 1)
    smoothed = region
    for dilate in (True, False, False, True):
        smoothed = packed_morphology(smoothed, width, structure, dilate)
    lost, lost_ids, added = _outline_changes(region, smoothed, margin, ids, allowed)
    grown = _grown_labels(labels, tuple(added), half)
    labels.ravel()[lost[is_taken(lost_ids)]] = 0
    labels[tuple(added)] = grown
    return labels


@numba.njit(cache=True)
def _labels_and_bits(ids, table, margin, n_words):
    """The label ``table`` gives each voxel of the superpixels ``ids``, and where it is not
    0 as the packed bits (see :func:`packed_morphology`) of ``ids`` padded by ``margin``
    voxels each side."""
    nz, ny, nx = ids.shape
    labels = np.empty(ids.shape, np.uint8)
    bits = np.zeros((nz + 2 * margin[0], ny + 2 * margin[1], n_words), np.uint64)
    one = np.uint64(1)
    for z in range(nz):
        for y in range(ny):
            row = bits[z + margin[0], y + margin[1]]
            for x in range(nx):
                value = table[ids[z, y, x]]
                labels[z, y, x] = value
                if value:
                    bit = x + margin[2]
                    row[bit >> 6] |= one << np.uint64(bit & 63)
    return labels, bits


_DE_BRUIJN = 0x03F79D71B4CB0A89
_LOWEST_BIT = np.zeros(WORD_BITS, np.int64)
"""The position of a word's only set bit, by its product with :data:`_DE_BRUIJN` (modulo
2**64) shifted right by 58: a table lookup instead of a loop over the bits."""
for _position in range(WORD_BITS):
    _LOWEST_BIT[((1 << _position) * _DE_BRUIJN % 2**WORD_BITS) >> 58] = _position


@numba.njit(cache=True)
def _bit_count(word):
    """The number of set bits of a ``uint64`` word."""
    word = word - ((word >> np.uint64(1)) & np.uint64(0x5555555555555555))
    word = (word & np.uint64(0x3333333333333333)) + (
        (word >> np.uint64(2)) & np.uint64(0x3333333333333333)
    )
    word = (word + (word >> np.uint64(4))) & np.uint64(0x0F0F0F0F0F0F0F0F)
    return (word * np.uint64(0x0101010101010101)) >> np.uint64(56)


@numba.njit(cache=True)
def _outline_changes(region, smoothed, margin, ids, allowed):
    """Where the packed bits ``smoothed`` differ from ``region`` (both padded by ``margin``)
    within the box of ``ids``: the flat indices and superpixels of the voxels smoothing
    takes, and the coordinates (3, n) of the voxels it adds in ``allowed`` superpixels."""
    nz, ny, nx = ids.shape
    n_lost = n_added = 0
    for i in range(region.shape[0]):
        for j in range(region.shape[1]):
            for w in range(region.shape[2]):
                differ = region[i, j, w] ^ smoothed[i, j, w]
                n_lost += _bit_count(differ & region[i, j, w])
                n_added += _bit_count(differ & ~region[i, j, w])
    lost = np.empty(n_lost, np.int64)
    lost_ids = np.empty(n_lost, ids.dtype)
    added = np.empty((3, n_added), np.int64)
    n_lost = n_added = 0
    for i in range(region.shape[0]):
        z = i - margin[0]
        for j in range(region.shape[1]):
            y = j - margin[1]
            for w in range(region.shape[2]):
                differ = region[i, j, w] ^ smoothed[i, j, w]
                while differ:
                    bit = differ & (~differ + np.uint64(1))
                    differ ^= bit
                    x = w * WORD_BITS + _LOWEST_BIT[(bit * np.uint64(_DE_BRUIJN)) >> np.uint64(58)]
                    x -= margin[2]
                    if not (0 <= z < nz and 0 <= y < ny and 0 <= x < nx):
                        continue
                    if region[i, j, w] & bit:
                        lost[n_lost] = (z * ny + y) * nx + x
                        lost_ids[n_lost] = ids[z, y, x]
                        n_lost += 1
                    elif allowed[ids[z, y, x]]:
                        added[:, n_added] = z, y, x
                        n_added += 1
    return lost[:n_lost], lost_ids[:n_lost], added[:, :n_added].copy()


def _is_taken(
    lost_ids: np.ndarray, superpixels: Superpixels, superpixel_labels: np.ndarray
) -> np.ndarray:
    """Whether smoothing takes each lost voxel, given its superpixel: not when its labelled
    region (labelled superpixels that touch, 26-connected) would lose more than
    :data:`MAX_LOST_FRACTION` of its voxels."""
    if not lost_ids.size:
        return np.zeros(0, bool)
    labelled = np.flatnonzero(superpixel_labels[1:]) + 1
    sizes, pairs = superpixel_contacts(superpixels, labelled)
    pairs = pairs[:, (superpixel_labels[pairs] > 0).all(axis=0)]
    position = np.zeros(len(superpixel_labels), np.int64)
    position[labelled] = np.arange(labelled.size)
    graph = coo_matrix(
        (np.ones(pairs.shape[1], bool), tuple(position[pairs])), (labelled.size,) * 2
    )
    _, region_of = connected_components(graph, directed=False)
    return _is_taken_from(region_of[position[lost_ids]], np.bincount(region_of, weights=sizes))


def _is_taken_from(lost_regions: np.ndarray, region_sizes: np.ndarray) -> np.ndarray:
    """Whether smoothing takes each lost voxel, given its region and the regions' voxel
    counts: not when the region would lose more than :data:`MAX_LOST_FRACTION` of them."""
    lost_count = np.bincount(lost_regions, minlength=len(region_sizes))
    return ~(lost_count > MAX_LOST_FRACTION * region_sizes)[lost_regions]


def _grown_labels(labels: np.ndarray, where: tuple[np.ndarray, ...], half: np.ndarray):
    """At voxels ``where`` (index arrays), the closest label (the largest on a tie) in
    ``labels`` (0 unlabelled), counted in steps to neighbours within ``half`` voxels along
    each axis, up to ``half.max()`` steps (0 beyond)."""
    return _closest_labels(labels, *where, np.minimum(half, 1), int(half.max()))


@numba.njit(cache=True)
def _closest_labels(labels, z, y, x, step, reach):
    """:func:`_grown_labels` with ``step`` (0 or 1 per axis) the reach of one step.

    Growing labels one step at a time gives a voxel the largest label among the labelled
    voxels fewest steps away (a step moves up to ``step`` along every axis at once), so the
    boxes of 1, 2... steps around each voxel are searched until one holds a label.
    """
    nz, ny, nx = labels.shape
    grown = np.zeros(z.size, labels.dtype)
    for i in range(z.size):
        for steps in range(1, reach + 1):
            dz, dy, dx = steps * step[0], steps * step[1], steps * step[2]
            best = 0
            for a in range(max(z[i] - dz, 0), min(z[i] + dz + 1, nz)):
                for b in range(max(y[i] - dy, 0), min(y[i] + dy + 1, ny)):
                    for c in range(max(x[i] - dx, 0), min(x[i] + dx + 1, nx)):
                        best = max(best, labels[a, b, c])
            if best > 0:
                grown[i] = best
                break
    return grown


def load_kernels() -> None:
    """Compile the smoothing's kernels for the types strokes give them, or load them from
    numba's cache: time that the first stroke of a server process would otherwise wait (see
    :func:`~.refinement.load_kernels`)."""
    index = np.zeros(1, np.intp)
    margin = np.ones(3, np.int64)
    for dtype in COMPACT_DTYPES:
        ids = np.ones((1, 1, 1), dtype)
        labels, bits = _labels_and_bits(ids, np.ones(2, np.uint8), margin, 1)
        _outline_changes(bits, bits, margin, ids, np.ones(2, bool))
    _morphology(bits, 1, np.zeros((1, 1), np.int64), True)
    _closest_labels(labels, index, index, index, margin, 1)
    contacts.load_kernels()


def labelled_box(
    superpixels: Superpixels, superpixel_labels: np.ndarray
) -> tuple[slice, ...] | None:
    """The bounding box (slices) of the superpixels with a label, or None when none has:
    nothing outside it is labelled, with or without smooth outlines (a closing by a ball
    stays within the convex hull of what it closes)."""
    labelled = np.flatnonzero(superpixel_labels[1:]) + 1
    if not labelled.size:
        return None
    extents = superpixels.extents[labelled]
    return tuple(map(slice, extents[:, :, 0].min(axis=0), extents[:, :, 1].max(axis=0)))


def superpixel_segmentation(
    superpixels: Superpixels,
    superpixel_labels: np.ndarray,
    erased: np.ndarray | None = None,
) -> np.ndarray:
    """The label volume of one label per superpixel, with outlines smoothed by a ball of the
    superpixels' ``outline_smoothing`` parameter (mm; none when absent or 0).

    The labelled voxels (any label) are closed and then opened by the ball. A labelled
    region (labelled superpixels that touch, 26-connected: with connected superpixels, a
    26-connected region of voxels) that would lose more than :data:`MAX_LOST_FRACTION` of
    its voxels keeps them all: a region little larger than the ball is left as the user
    labelled it rather than shrunk, and no label the user gave disappears. Voxels that
    become labelled take the label of the closest labelled voxel, counted in steps between
    neighbours (the largest label on a tie); outlines between two labels are not moved.
    Smoothing never labels the voxels of ``erased`` superpixels: what the user erased stays
    erased, even where a closing would fill it.

    Parameters
    ----------
    superpixels : Superpixels
        The partition, with the voxel size of its volume.
    superpixel_labels : ndarray of uint8, shape (count + 1,)
        The label of each superpixel id (id 0, the air, is never labelled).
    erased : ndarray of bool, shape (count + 1,), optional
        Unlabelled superpixels that smoothing must leave unlabelled.

    Returns
    -------
    ndarray of uint8, the superpixels' shape
    """
    box, labels = boxed_segmentation(superpixels, superpixel_labels, erased)
    return placed(box, labels, superpixels.labels.shape)


def boxed_segmentation(
    superpixels: Superpixels,
    superpixel_labels: np.ndarray,
    erased: np.ndarray | None = None,
) -> tuple[tuple[slice, ...] | None, np.ndarray]:
    """:func:`superpixel_segmentation` within :func:`labelled_box` (nothing outside it is
    labelled): the box (None when nothing is labelled) and the labels in it."""
    box = labelled_box(superpixels, superpixel_labels)
    if box is None:
        return None, np.zeros((0, 0, 0), np.uint8)
    radius_mm = superpixels.params.get("outline_smoothing", 0.0)
    if radius_mm <= 0:
        return box, superpixel_labels[superpixels.labels[box]]
    allowed = np.ones(len(superpixel_labels), bool) if erased is None else ~erased
    allowed[0] = False
    return box, _smoothed(
        # Copied, then passed over: half the time of passing over the view of the box.
        np.ascontiguousarray(superpixels.compact_labels[box]),
        superpixel_labels,
        allowed,
        superpixels.spacing,
        radius_mm,
        lambda lost_ids: _is_taken(lost_ids, superpixels, superpixel_labels),
    )


def placed(box: tuple[slice, ...] | None, labels: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """A label volume of ``shape`` holding ``labels`` at ``box`` (None: nothing labelled)
    and nothing elsewhere, as :func:`boxed_segmentation` gives them."""
    result = np.zeros(shape, np.uint8)
    if box is not None:
        result[box] = labels
    return result


def enclosing_box(boxes: Sequence[tuple[slice, ...]]) -> tuple[slice, ...]:
    """The smallest box holding every one of ``boxes`` (at least one)."""
    return tuple(
        slice(min(part.start for part in parts), max(part.stop for part in parts))
        for parts in zip(*boxes, strict=True)
    )


def within(
    box: tuple[slice, ...] | None, labels: np.ndarray, outer: tuple[slice, ...]
) -> np.ndarray:
    """The ``labels`` of ``box`` (None: nothing labelled) as those of ``outer``, a box
    holding it (``labels`` itself when the boxes are the same)."""
    if box == outer:
        return labels
    if box is not None:
        inner = zip(box, outer, strict=True)
        box = tuple(slice(b.start - o.start, b.stop - o.start) for b, o in inner)
    return placed(box, labels, tuple(part.stop - part.start for part in outer))
