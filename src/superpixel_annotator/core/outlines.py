"""Smooth outlines for label volumes made of whole superpixels.

A label volume built from whole supervoxels has staircase outlines: bumps and dents the size
of a supervoxel where the supervoxel grid, not the anatomy, decided. Manual outlines, and the
anatomy, are smooth. :func:`smooth_outlines` closes and then opens the labelled voxels with a
ball: the closing fills dents and gaps and the opening removes bumps and bridges narrower
than the ball, while a region the ball rolls freely inside and outside of keeps its shape and
size (a local smoothing by, say, a Gaussian would shrink every small region).
"""

from __future__ import annotations

from collections.abc import Sequence

import cc3d
import numba
import numpy as np

from .superpixels import Superpixels

MAX_LOST_FRACTION = 0.1
"""A labelled region that smoothing would take more of its voxels from keeps them all."""


def ball(radius_mm: float, spacing: Sequence[float]) -> np.ndarray:
    """A boolean ball of ``radius_mm`` on a voxel grid of ``spacing`` (an ellipsoid in voxels)."""
    half = [int(radius_mm // step) for step in spacing]
    grid = np.ogrid[tuple(slice(-h, h + 1) for h in half)]
    return sum((axis * step) ** 2 for axis, step in zip(grid, spacing, strict=True)) <= (
        radius_mm**2 + 1e-9
    )


def _pairs(size: int, offset: int) -> tuple[slice, slice, slice]:
    """Along one axis of ``size``: where ``out[p]`` meets ``values[p + offset]`` (the slices of
    ``out`` and of ``values``), and the slice of ``out`` whose partner lies outside."""
    if offset >= 0:
        return slice(0, size - offset), slice(offset, size), slice(size - offset, size)
    return slice(-offset, size), slice(0, size + offset), slice(0, -offset)


def _by_rows(values, structure, dilate, combine, along_last) -> np.ndarray:
    """The dilation or erosion of ``values`` by ``structure`` given ``combine`` (elementwise
    union or intersection) and ``along_last`` (one more voxel of it along the last axis).

    ``structure`` must be symmetric with runs centred on its last axis, as a :func:`ball`
    is. ``values`` is first dilated (eroded) along the last axis by runs of each half-length
    the structure has, one voxel at a time; then each of the structure's rows shifts its
    run's result into place: a few dozen whole-array operations.
    """
    runs = structure.sum(axis=2) // 2
    by_run = [values]
    for _ in range(runs.max()):
        by_run.append(along_last(by_run[-1]))
    centre = np.array(structure.shape) // 2
    result = by_run[runs[tuple(centre[:2])]].copy()
    for row, col in zip(*np.nonzero(structure.any(axis=2)), strict=True):
        if (row, col) == tuple(centre[:2]):
            continue
        out0, source0, outside0 = _pairs(values.shape[0], row - centre[0])
        out1, source1, outside1 = _pairs(values.shape[1], col - centre[1])
        shifted = by_run[runs[row, col]][source0, source1]
        combine(result[out0, out1], shifted, out=result[out0, out1])
        if not dilate:
            result[outside0] = 0
            result[:, outside1] = 0
    return result


_WORD_BITS = 64


def packed_morphology(
    words: np.ndarray, width: int, structure: np.ndarray, dilate: bool
) -> np.ndarray:
    """The dilation or erosion by ``structure`` of a boolean array of last-axis length
    ``width`` packed by :func:`pack_bits`, values outside the array counting as 0 (as
    ``scipy.ndimage.binary_dilation`` and ``binary_erosion``): whole 64-voxel words are
    combined at once, eight times less memory to go through than an array of booleans."""
    combine = np.bitwise_or if dilate else np.bitwise_and

    def along_last(previous: np.ndarray) -> np.ndarray:
        # Along the flattened words a voxel's neighbour across a row's end is a bit past the
        # row's end: always 0 there (pack_bits leaves at least one), and cleared after.
        flat = previous.reshape(-1)
        from_next = flat >> 1
        from_next[:-1] |= flat[1:] << (_WORD_BITS - 1)
        from_previous = flat << 1
        from_previous[1:] |= flat[:-1] >> (_WORD_BITS - 1)
        grown = combine(combine(flat, from_next), from_previous).reshape(previous.shape)
        used = width - (words.shape[2] - 1) * _WORD_BITS
        grown[..., -1] &= np.uint64((1 << used) - 1)
        return grown

    return _by_rows(words, structure, dilate, combine, along_last)


def pack_bits(mask: np.ndarray) -> np.ndarray:
    """A 3D boolean array as 64-bit words along its last axis: voxel ``k`` is bit ``k % 64``
    of word ``k // 64``, and the bits past the end (at least one) are 0."""
    n_words = mask.shape[2] // _WORD_BITS + 1
    packed = np.zeros((*mask.shape[:2], n_words * 8), np.uint8)
    packed[..., : -(-mask.shape[2] // 8)] = np.packbits(mask, axis=2, bitorder="little")
    return packed.view("<u8")


def unpack_bits(words: np.ndarray, width: int) -> np.ndarray:
    """The boolean array of last-axis length ``width`` that :func:`pack_bits` packed."""
    bits = np.unpackbits(words.view(np.uint8), axis=2, count=width, bitorder="little")
    return bits.view(bool)


def smooth_outlines(
    labels: np.ndarray,
    inside: np.ndarray,
    spacing: Sequence[float],
    radius_mm: float,
) -> np.ndarray:
    """Labels whose outer outline is smoothed by a ball of ``radius_mm``.

    The labelled voxels (any label) are closed and then opened by the ball. A labelled
    region (26-connected) that would lose more than :data:`MAX_LOST_FRACTION` of its voxels
    keeps them all: a region little larger than the ball is left as the user labelled it
    rather than shrunk, and no label the user gave disappears. Voxels that become labelled
    take the label of the closest labelled voxel, counted in steps between neighbours (the
    largest label on a tie); outlines between two labels are not moved. Nothing outside
    ``inside`` is labelled.

    Parameters
    ----------
    labels : ndarray of uint8, 3D
        Label values, 0 unlabelled.
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
    result = _smoothed(labels, lambda where: inside[where], spacing, radius_mm)
    return np.where(inside, result, 0).astype(labels.dtype)


def _smoothed(labels: np.ndarray, is_inside, spacing: Sequence[float], radius_mm: float):
    """:func:`smooth_outlines` of ``labels`` labelled only where they may be, where
    ``is_inside`` maps a tuple of index arrays to whether those voxels may be labelled:
    asked only of the few voxels the closing adds."""
    region = labels > 0
    if not region.any():
        return np.zeros_like(labels)
    structure = ball(radius_mm, spacing)
    smoothed = _closed_and_opened(region, structure)
    result = labels.copy()
    result.ravel()[_voxels_taken(np.flatnonzero(region & ~smoothed), region)] = 0
    added = np.unravel_index(np.flatnonzero(smoothed & ~region), labels.shape)
    added = tuple(index[is_inside(added)] for index in added)
    if added[0].size:
        result[added] = _grown_labels(labels, added, np.array(structure.shape) // 2)
    return result


def _closed_and_opened(region: np.ndarray, structure: np.ndarray) -> np.ndarray:
    """``region`` closed and then opened by ``structure``, with nothing outside it."""
    # Pad with unlabelled voxels so that the closing is not cut off at the array's border.
    margin = [(half + 1, half + 1) for half in np.array(structure.shape) // 2]
    padded = np.pad(region, margin)
    width = padded.shape[2]
    words = pack_bits(padded)
    for dilate in (True, False, False, True):
        words = packed_morphology(words, width, structure, dilate)
    return unpack_bits(words, width)[tuple(slice(a, -b) for a, b in margin)]


def _voxels_taken(lost: np.ndarray, region: np.ndarray) -> np.ndarray:
    """Of the flat indices ``lost`` of ``region``'s voxels, those smoothing takes: not in a
    region (26-connected) that would lose more than :data:`MAX_LOST_FRACTION` of them."""
    if not lost.size:
        return lost
    regions, count = cc3d.connected_components(
        region, connectivity=26, return_N=True, out_dtype=np.uint32
    )
    lost_regions = regions.ravel()[lost]
    lost_count = np.bincount(lost_regions, minlength=count + 1)
    small = lost_count > MAX_LOST_FRACTION * _voxel_counts(regions.ravel(), count)
    return lost[~small[lost_regions]]


@numba.njit(cache=True)
def _voxel_counts(values, count):
    """How many of ``values`` (flat, 0 to ``count``) hold each value: ``np.bincount`` without
    its copy of the values as 64-bit integers."""
    counts = np.zeros(count + 1, np.int64)
    for value in values:
        counts[value] += 1
    return counts


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
    numba's cache: time (about 0.4 s, 2 s with an empty cache) that the first stroke of a
    server process would otherwise wait."""
    index = np.zeros(1, np.intp)
    _closest_labels(np.ones((1, 1, 1), np.uint8), index, index, index, np.ones(3, np.int64), 1)
    _voxel_counts(np.zeros(1, np.uint32), 0)


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
    radius_mm = superpixels.params.get("outline_smoothing", 0.0)
    if radius_mm <= 0:
        return superpixel_labels[superpixels.labels]
    result = np.zeros(superpixels.labels.shape, np.uint8)
    box = labelled_box(superpixels, superpixel_labels)
    if box is not None:
        ids = superpixels.labels[box]
        allowed = np.ones(len(superpixel_labels), bool) if erased is None else ~erased
        allowed[0] = False
        result[box] = _smoothed(
            superpixel_labels[ids],
            lambda where: allowed[ids[where]],
            superpixels.spacing,
            radius_mm,
        )
    return result
