"""Slices of a volume and the geometry of the three views.

A view along ``axis`` shows the slices ``volume[..., index, ...]``; its image rows run along
the lower of the other two axes and its columns along the higher one. Views place voxel
``(row, col)`` at ``(col * dx, row * dy)`` mm, so strokes arrive in mm and are turned back
into voxels here.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

SAMPLES_PER_VOXEL = 4
"""How many points per voxel a stroke's polyline is sampled at; the browser uses the same."""


def section(volume: np.ndarray, axis: int, index: int) -> np.ndarray:
    """The 2D slice ``index`` along ``axis`` of a 3D array, as a view (no copy)."""
    return volume[(slice(None),) * axis + (index,)]


def other_axes(axis: int) -> tuple[int, int]:
    """The axes of a view's rows and columns: the two axes other than ``axis``, in order."""
    rows_axis, cols_axis = (other for other in range(3) if other != axis)
    return rows_axis, cols_axis


def view_geometry(spacing: Sequence[float], axis: int) -> dict:
    """Where a view's image traces sit: origin and pixel size in mm (Plotly's ``x0``, ``y0``,
    ``dx``, ``dy``)."""
    rows_axis, cols_axis = other_axes(axis)
    return {"x0": 0, "y0": 0, "dx": spacing[cols_axis], "dy": spacing[rows_axis]}


def axis_ranges(shape: Sequence[int], spacing: Sequence[float], axis: int) -> dict:
    """A view's x and y axis ranges in mm, showing the whole slice with row 0 on top."""
    rows_axis, cols_axis = other_axes(axis)
    height, width = shape[rows_axis], shape[cols_axis]
    dy, dx = spacing[rows_axis], spacing[cols_axis]
    return {"x": [-0.5 * dx, (width - 0.5) * dx], "y": [(height - 0.5) * dy, -0.5 * dy]}


def view_to_voxels(xy: np.ndarray, geometry: dict) -> np.ndarray:
    """Points ``(x, y)`` in a view's mm (see :func:`view_geometry`) as ``(row, col)`` in voxels.

    Parameters
    ----------
    xy : ndarray, shape (n, 2)
        Points in the view's coordinates.
    geometry : dict
        The view's ``x0``, ``y0``, ``dx``, ``dy``.

    Returns
    -------
    ndarray of float, shape (n, 2)
    """
    rows = (xy[:, 1] - geometry["y0"]) / geometry["dy"]
    cols = (xy[:, 0] - geometry["x0"]) / geometry["dx"]
    return np.column_stack([rows, cols])


def clip_to_slice(points: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Points as an (n, 2) float array of (row, col), those outside a slice of ``shape``
    moved to its border."""
    upper = np.asarray(shape) - 1
    return np.clip(np.asarray(points, dtype=np.float64).reshape(-1, 2), 0, upper)


def polyline_length(points: np.ndarray, shape: tuple[int, int]) -> float:
    """The length in voxels of a polyline of (row, col) vertices once clipped to a slice of
    ``shape`` (see :func:`clip_to_slice`)."""
    steps = np.diff(clip_to_slice(points, shape), axis=0)
    return float(np.hypot(steps[:, 0], steps[:, 1]).sum())


def polyline_voxels(points: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """The (row, col) voxels of a 2D image that a polyline passes through.

    The work is linear in the polyline's length once clipped (see :func:`polyline_length`)
    plus its number of vertices.

    Parameters
    ----------
    points : array-like, shape (n, 2)
        Vertices as (row, col) in voxel coordinates; a single vertex is a click.
        Vertices outside the slice are moved to its border.
    shape : tuple of int
        The slice shape.

    Returns
    -------
    ndarray of int, shape (m, 2)
        Unique voxel coordinates along the polyline, sampled :data:`SAMPLES_PER_VOXEL` times
        per voxel, sorted by row then column.
    """
    points = clip_to_slice(points, shape)
    deltas = np.diff(points, axis=0)
    steps = np.ceil(np.abs(deltas).max(axis=1) * SAMPLES_PER_VOXEL).astype(np.int64)
    steps = np.maximum(steps, 1)
    segment = np.repeat(np.arange(steps.size), steps)
    first = np.repeat(np.cumsum(steps) - steps, steps)
    fractions = (np.arange(segment.size) - first + 1) / steps[segment]
    samples = points[segment] + fractions[:, None] * deltas[segment]
    rows, cols = np.rint(np.concatenate([points[:1], samples])).astype(np.int64).T
    width = int(shape[1])
    return np.column_stack(np.divmod(np.unique(rows * width + cols), width))


def bounding_box(mask: np.ndarray) -> tuple[slice, ...] | None:
    """Slices of the smallest box holding all True voxels, or None when there are none."""
    box = [slice(None)] * mask.ndim
    for axis in range(mask.ndim):
        others = tuple(a for a in range(mask.ndim) if a != axis)
        # Project the part already narrowed down on earlier axes: later passes read less.
        hits = np.flatnonzero(mask[tuple(box)].any(axis=others))
        if hits.size == 0:
            return None
        box[axis] = slice(int(hits[0]), int(hits[-1]) + 1)
    return tuple(box)
