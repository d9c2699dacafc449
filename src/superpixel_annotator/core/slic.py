"""The numba kernels of masked 3D SLIC: cluster centres, assignment to the nearest of the
eight closest centres, and connected supervoxels (see :func:`.superpixels.compute_superpixels`)."""

from __future__ import annotations

import numba
import numpy as np

# Supervoxel fragments smaller than this fraction of a grid cell are merged into a neighbour.
MIN_FRAGMENT_FRACTION = 0.25


def slic(
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
    min_size = int(MIN_FRAGMENT_FRACTION * np.prod(steps))
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
