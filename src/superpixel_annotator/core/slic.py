"""The numba kernels of masked 3D SLIC: cluster centres, assignment to the nearest of the
eight closest centres, and connected supervoxels (see :func:`.superpixels.compute_superpixels`)."""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import numba
import numpy as np

from .threads import WORKERS, slabs

# Supervoxel fragments smaller than this fraction of a grid cell are merged into a neighbour.
MIN_FRAGMENT_FRACTION = 0.25
MIN_SUPERPIXEL_VOXELS = 8
"""The fewest voxels in a cell of the SLIC grid, whatever the voxel size (see
:func:`grid_steps`)."""


def grid_steps(spacing: tuple[float, float, float], size: float) -> list[float]:
    """The SLIC grid's step along each axis, in voxels.

    A step is ``size`` mm, at least 1 voxel. When a grid cell would then hold fewer than
    :data:`MIN_SUPERPIXEL_VOXELS` voxels (voxels larger than about ``size / 2`` mm), every
    step grows by the same factor until it holds that many. The grid then has at most about
    voxels / 8 cells, and as SLIC may split a cell's cluster into pieces, of which those
    under a quarter cell are merged, an image of coarse voxels has at most about voxels / 4
    supervoxels (noise at 5 mm: one per 4 voxels of the head, against one per voxel without
    the minimum). Scans whose cells already hold as many voxels are unchanged: 1 mm (4.5
    voxels per step at the default size of 4.5 mm), 2 mm isotropic (2.25), and the bundled
    phantom (1.5x1.5x3 mm: 13.5 voxels per cell).

    Parameters
    ----------
    spacing : tuple of 3 float
        Voxel size in mm.
    size : float
        Grid spacing in mm.

    Returns
    -------
    list of 3 float
    """
    steps = _size_steps(spacing, size)
    cell = math.prod(steps)
    if cell < MIN_SUPERPIXEL_VOXELS:
        steps = [step * (MIN_SUPERPIXEL_VOXELS / cell) ** (1 / 3) for step in steps]
    return steps


def grid_is_enlarged(spacing: tuple[float, float, float], size: float) -> bool:
    """Whether :func:`grid_steps` enlarges the grid of these voxels to reach
    :data:`MIN_SUPERPIXEL_VOXELS` (scans of voxels larger than about ``size / 2`` mm)."""
    return math.prod(_size_steps(spacing, size)) < MIN_SUPERPIXEL_VOXELS


def _size_steps(spacing: tuple[float, float, float], size: float) -> list[float]:
    """Steps of ``size`` mm in voxels, at least 1 voxel each."""
    return [max(1.0, size / s) for s in spacing]


def slic(
    channels: np.ndarray,
    mask: np.ndarray,
    spacing: tuple[float, float, float],
    size: float,
    compactness: float,
    iterations: int,
    progress: Callable[[float], None] = lambda done: None,
) -> np.ndarray:
    """Connected SLIC supervoxels of the voxels in ``mask``, numbered 1..n in raster order.

    ``channels`` (float32, shape ``(n_channels, *mask.shape)``) are the smoothed intensities
    in the units of ``compactness``. ``progress`` is told the fraction of the iterations
    done after each.
    """
    shape = mask.shape
    steps = grid_steps(spacing, size)
    positions = [(np.arange(n) + 0.5) / step for n, step in zip(shape, steps, strict=True)]
    cells = tuple(p.astype(np.int64) for p in positions)
    upper_half = tuple((p % 1 >= 0.5).astype(np.int64) for p in positions)
    grid_shape = tuple(int(c[-1]) + 1 for c in cells)
    clusters = np.ravel_multi_index(np.ix_(*cells), grid_shape).astype(np.int64)
    clusters = np.broadcast_to(clusters, shape).copy()
    spatial_weight = (compactness / size) ** 2
    mm_per_voxel = np.asarray(spacing, np.float64)

    def assign(centres: np.ndarray, planes: tuple[int, int]) -> None:
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
            *planes,
        )

    with ThreadPoolExecutor(WORKERS) as pool:
        for iteration in range(iterations):
            progress(iteration / iterations)
            centres = _cluster_centres(channels, mask, clusters, int(np.prod(grid_shape)))
            list(pool.map(functools.partial(assign, centres), slabs(shape[0])))
    min_size = int(MIN_FRAGMENT_FRACTION * np.prod(steps))
    return _connected_labels(clusters, mask, max(min_size, 1))


@numba.njit(cache=True, nogil=True)
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


@numba.njit(cache=True, nogil=True)
def _assign_clusters(
    channels, mask, cells, upper_half, grid_shape, centres, spacing, weight, out, start, stop
):
    """Give each masked voxel of planes ``start`` to ``stop`` the nearest of the 2x2x2
    closest cells' cluster centres.

    The intensity part of the distance is the mean over channels of squared differences.
    """
    gz, gy, gx = grid_shape
    n_channels = channels.shape[0]
    count = 3 + n_channels
    for z in range(start, stop):
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


@numba.njit(cache=True, nogil=True)
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


@numba.njit(cache=True, nogil=True)
def label_extents(labels):
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
