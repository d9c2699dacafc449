"""The voxel brush: the voxels a stroke paints on its slice, for corrections finer than
superpixels.

The brush takes the voxels within :data:`BRUSH_RADIUS_MM` of the stroke's path in the plane
of the slice. Given the scan's intensities, it snaps to the structure under the stroke: of
those voxels, it keeps the ones whose intensity in every modality lies within the range
found along the path itself, so that a brush stroke along a rim does not spill over its edge.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import ndimage

from .geometry import other_axes, polyline_voxels, section

BRUSH_RADIUS_MM = 1.5
"""How far from the stroke's path the brush paints, in the plane of the slice."""


def brush_voxels(
    shape: tuple[int, int, int],
    spacing: Sequence[float],
    axis: int,
    index: int,
    points: np.ndarray,
    intensities: Sequence[np.ndarray] = (),
) -> np.ndarray:
    """The flat indices (sorted) of the voxels a brush stroke paints.

    Parameters
    ----------
    shape : tuple of 3 int
        The volume's shape.
    spacing : sequence of 3 float
        Its voxel size in mm.
    axis, index : int
        The slice: its axis (0 axial, 1 coronal, 2 sagittal) and index along it.
    points : array-like, shape (n, 2)
        The stroke as (row, col) voxel coordinates within the slice.
    intensities : sequence of ndarray
        The scan's modalities, each of ``shape``; without them the brush does not snap.

    Returns
    -------
    ndarray of int64
    """
    rows_axis, cols_axis = other_axes(axis)
    plane = (shape[rows_axis], shape[cols_axis])
    path = polyline_voxels(points, plane)
    radii = np.array([BRUSH_RADIUS_MM / spacing[rows_axis], BRUSH_RADIUS_MM / spacing[cols_axis]])
    reach = np.floor(radii).astype(np.int64)
    rows, cols = np.ogrid[-reach[0] : reach[0] + 1, -reach[1] : reach[1] + 1]
    disc = (rows / radii[0]) ** 2 + (cols / radii[1]) ** 2 <= 1
    # Only the path's bounding box, grown by the brush, can be painted.
    low = np.maximum(path.min(axis=0) - reach, 0)
    high = np.minimum(path.max(axis=0) + reach + 1, plane)
    on_path = np.zeros(high - low, bool)
    on_path[tuple((path - low).T)] = True
    painted = ndimage.binary_dilation(on_path, disc)
    window = (slice(low[0], high[0]), slice(low[1], high[1]))
    for volume in intensities:
        image = section(volume, axis, index)[window]
        along = image[on_path]
        painted &= (image >= along.min()) & (image <= along.max())
    painted |= on_path
    in_rows, in_cols = np.nonzero(painted)
    voxels: list = [None] * 3
    voxels[axis], voxels[rows_axis], voxels[cols_axis] = (
        np.full(in_rows.size, index),
        in_rows + low[0],
        in_cols + low[1],
    )
    return np.sort(np.ravel_multi_index(voxels, shape)).astype(np.int64)
