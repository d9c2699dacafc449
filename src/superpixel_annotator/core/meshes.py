"""Surface meshes for the 3D view, as plotly ``mesh3d`` trace dicts.

Scene coordinates
-----------------
Physical millimetres in a right-handed, RAS-like frame whose origin is the centre
of the most left, posterior and inferior voxel (display index ``(n0-1, n1-1, n2-1)``):

* ``x`` increases toward the patient's **right**,
* ``y`` increases toward **anterior**,
* ``z`` increases toward **superior** (the head is upright).

Display-order voxel ``(i0, i1, i2)`` (axis 0 superior->inferior, axis 1
anterior->posterior, axis 2 right->left) has its centre at::

    x = (n2 - 1 - i2) * s2,   y = (n1 - 1 - i1) * s1,   z = (n0 - 1 - i0) * s0

so voxel centres span ``[0, (n - 1) * s]`` on every axis. Surfaces are drawn
half-way between labelled and unlabelled voxel centres, so a label of ``m``
voxels along an axis is ``m * s`` mm long. The map reverses all three axes and
swaps two of them, which keeps the orientation of triangles: they are
counter-clockwise seen from outside (outward normals) in the scene frame too.

Traces are plain dicts of lists (no numpy) with coordinates rounded to 0.1 mm,
ready to be serialised as JSON.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numba
import numpy as np
from scipy import ndimage
from skimage.measure import marching_cubes

from .geometry import bounding_box
from .slic import label_extents

COORD_DECIMALS = 1
DEFAULT_MAX_TRIANGLES = 20_000
OUTLINE_CELLS = 20
MAX_DROPPED_FRACTION = 0.05
OUTLINE_COLOR = "#9a9a9a"
OUTLINE_OPACITY = 0.12
FALLBACK_COLOR = "#bbbbbb"

_LIGHTING = {"ambient": 0.45, "diffuse": 0.8, "specular": 0.15, "roughness": 0.6, "fresnel": 0.1}
_AXIS_TITLES = ("x: patient right (mm)", "y: anterior (mm)", "z: superior (mm)")


def index_to_scene(
    points: np.ndarray, shape: Sequence[int], spacing: Sequence[float]
) -> np.ndarray:
    """Map display-order voxel coordinates to scene millimetres.

    Parameters
    ----------
    points : array_like, shape (n, 3)
        Voxel coordinates ``(i0, i1, i2)`` in display order; fractional values allowed.
    shape : sequence of int
        Shape of the volume in display order.
    spacing : sequence of float
        Voxel size in mm along the display axes.

    Returns
    -------
    ndarray of float64, shape (n, 3)
        Columns ``x`` (toward patient right), ``y`` (anterior), ``z`` (superior), in mm.
    """
    points = np.asarray(points, dtype=np.float64).reshape(-1, 3)
    last = np.asarray(shape, dtype=np.float64) - 1.0
    mm = (last - points) * np.asarray(spacing, dtype=np.float64)
    return mm[:, ::-1]


def label_meshes(
    labels: np.ndarray,
    spacing: tuple[float, float, float],
    label_colors: Mapping[int, str],
    *,
    label_names: Mapping[int, str] | None = None,
    max_triangles: int = DEFAULT_MAX_TRIANGLES,
) -> list[dict]:
    """Build one plotly ``mesh3d`` trace per label value present in a label map.

    Each label is meshed inside its own bounding box (plus one voxel of padding).
    Labels with a large surface are block-averaged by an integer factor first so
    that each trace stays near ``max_triangles``, unless that would lose more than
    ``MAX_DROPPED_FRACTION`` of the label's voxels in small scattered pieces away
    from the coarse surface: those labels are meshed at a finer factor.

    Parameters
    ----------
    labels : ndarray of int, shape (n0, n1, n2)
        Label map in display order; values <= 0 are background.
    spacing : tuple of float
        Voxel size in mm along the display axes.
    label_colors : mapping of int to str
        CSS colour of each label value; missing values are drawn in light grey.
    label_names : mapping of int to str, optional
        Trace name of each label value; defaults to ``"Label <value>"``.
    max_triangles : int, optional
        Approximate triangle budget per label above which the label is downsampled.

    Returns
    -------
    list of dict
        ``mesh3d`` traces in increasing label order, in scene millimetres (see the
        module docstring), with JSON-serialisable lists. Absent labels get no trace.
    """
    labels = np.asarray(labels)
    if labels.ndim != 3:
        raise ValueError(f"expected a 3D label map, got shape {labels.shape}")
    box = bounding_box(labels > 0)
    if box is None:
        return []
    return box_label_meshes(
        box,
        labels[box],
        labels.shape,
        spacing,
        label_colors,
        label_names=label_names,
        max_triangles=max_triangles,
    )


def box_label_meshes(
    box: tuple[slice, ...],
    labels: np.ndarray,
    shape: Sequence[int],
    spacing: tuple[float, float, float],
    label_colors: Mapping[int, str],
    *,
    label_names: Mapping[int, str] | None = None,
    max_triangles: int = DEFAULT_MAX_TRIANGLES,
) -> list[dict]:
    """:func:`label_meshes` of a label map of ``shape`` that is 0 outside ``box``, from the
    ``labels`` within ``box`` alone (as :meth:`.Segmentations.boxed` keeps them).

    Parameters
    ----------
    box : tuple of slice
        Where ``labels`` lie in the label map, start and stop given on every axis.
    labels : ndarray of int, the box's shape
        The label map within ``box``; values <= 0 are background.
    shape : sequence of int
        Shape of the whole label map, in display order.
    spacing, label_colors, label_names, max_triangles
        As for :func:`label_meshes`.

    Returns
    -------
    list of dict
        The traces :func:`label_meshes` gives for the whole label map.
    """
    # The compiled pass finding each label's box is several times faster on contiguous data.
    crop = np.ascontiguousarray(labels)
    if not np.issubdtype(crop.dtype, np.integer) or crop.dtype.itemsize > 4:
        crop = crop.astype(np.int32)
    if np.issubdtype(crop.dtype, np.signedinteger):
        crop = np.where(crop > 0, crop, 0)
    origin = np.array([axis.start for axis in box], dtype=np.float64)

    traces = []
    for value, region in _label_boxes(crop):
        mask = crop[region] == value
        corner = origin + [axis.start for axis in region]
        verts, faces = _surface(mask, _step_for(mask, max_triangles), corner)
        if len(faces) == 0:
            continue
        name = (label_names or {}).get(value, f"Label {value}")
        trace = _mesh_trace(index_to_scene(verts, shape, spacing), faces)
        trace.update(
            name=name,
            uid=f"label-{value}",
            color=label_colors.get(value, FALLBACK_COLOR),
            opacity=1.0,
            flatshading=False,
            lighting=_LIGHTING,
            hoverinfo="name",
            showlegend=True,
        )
        traces.append(trace)
    return traces


def outline_mesh(mask: np.ndarray, spacing: tuple[float, float, float]) -> dict:
    """Build a coarse, faint ``mesh3d`` trace of the head outline.

    The mask is block-averaged to about ``OUTLINE_CELLS`` cells along the longest
    physical side of its bounding box, smoothed, hole-filled and meshed, giving a few thousand
    triangles at most. Compute it once per volume.

    Parameters
    ----------
    mask : ndarray of bool, shape (n0, n1, n2)
        Head (foreground) mask in display order.
    spacing : tuple of float
        Voxel size in mm along the display axes.

    Returns
    -------
    dict
        A grey, low-opacity ``mesh3d`` trace in scene millimetres, without hover
        or legend entry; it has empty coordinate lists when the mask is empty.
    """
    mask = np.asarray(mask, dtype=bool)
    if mask.ndim != 3:
        raise ValueError(f"expected a 3D mask, got shape {mask.shape}")
    box = bounding_box(mask)
    verts = np.empty((0, 3))
    faces = np.empty((0, 3), dtype=np.int64)
    if box is not None:
        sizes = np.array([axis.stop - axis.start for axis in box])
        cell_mm = float(np.max(sizes * np.asarray(spacing))) / OUTLINE_CELLS
        factors = tuple(max(1, round(cell_mm / s)) for s in spacing)
        coarse = _block_mean(mask[box], factors)
        solid = ndimage.binary_fill_holes(coarse > 0.5)
        smooth = ndimage.gaussian_filter(solid.astype(np.float32), sigma=0.8)
        if smooth.max() > 0.5:
            corner = np.array([axis.start for axis in box], dtype=np.float64)
            verts, faces = _mesh_grid(smooth, factors, corner)
    trace = _mesh_trace(index_to_scene(verts, mask.shape, spacing), faces)
    trace.update(
        name="outline",
        uid="outline",
        color=OUTLINE_COLOR,
        opacity=OUTLINE_OPACITY,
        flatshading=False,
        hoverinfo="skip",
        showlegend=False,
    )
    return trace


def scene_layout(shape: Sequence[int], spacing: Sequence[float]) -> dict:
    """Build ``layout.scene`` settings for the 3D view of a volume.

    Axis ranges are fixed to the volume's extent and the aspect ratio is the true
    physical one (the "data" aspect, but stable while meshes change). The camera
    looks at the face from the front, slightly from the right and above.

    Parameters
    ----------
    shape : sequence of int
        Shape of the volume in display order.
    spacing : sequence of float
        Voxel size in mm along the display axes.

    Returns
    -------
    dict
        Settings for plotly's ``layout.scene``.
    """
    low = -0.5 * np.asarray(spacing, dtype=np.float64)
    high = (np.asarray(shape) - 0.5) * np.asarray(spacing, dtype=np.float64)
    low, high = low[::-1], high[::-1]  # display axes (0, 1, 2) -> scene (z, y, x)
    extent = high - low
    ratio = extent / extent.max()

    def axis(number: int) -> dict:
        return {
            "title": {"text": _AXIS_TITLES[number]},
            "range": [round(float(low[number]), 2), round(float(high[number]), 2)],
            "autorange": False,
            "showbackground": False,
            "showspikes": False,
            "zeroline": False,
        }

    return {
        "xaxis": axis(0),
        "yaxis": axis(1),
        "zaxis": axis(2),
        "aspectmode": "manual",
        "aspectratio": {key: round(float(r), 4) for key, r in zip("xyz", ratio, strict=True)},
        "camera": {
            "eye": {"x": 0.45, "y": 1.65, "z": 0.35},
            "center": {"x": 0.0, "y": 0.0, "z": 0.0},
            "up": {"x": 0.0, "y": 0.0, "z": 1.0},
            "projection": {"type": "perspective"},
        },
        "dragmode": "orbit",
    }


def _step_for(mask: np.ndarray, max_triangles: int) -> int:
    """Downsampling factor that brings the expected triangle count under the budget.

    Marching cubes gives about two triangles per exposed voxel face; a factor
    ``f`` divides the face count by about ``f**2``.
    """
    faces = _exposed_faces(mask.view(np.uint8))
    return max(1, math.ceil(math.sqrt(2.0 * faces / max(max_triangles, 1))))


@numba.njit(cache=True)
def _exposed_faces(mask):
    """How many faces of the ``uint8`` mask's voxels meet a voxel off the mask or its
    outside: six per voxel, less two per pair of neighbours on the mask."""
    n0, n1, n2 = mask.shape
    voxels = 0
    pairs = 0
    for z in range(n0):
        for y in range(n1):
            for x in range(n2):
                voxels += mask[z, y, x]
            for x in range(n2 - 1):
                pairs += mask[z, y, x] & mask[z, y, x + 1]
            if y + 1 < n1:
                for x in range(n2):
                    pairs += mask[z, y, x] & mask[z, y + 1, x]
            if z + 1 < n0:
                for x in range(n2):
                    pairs += mask[z, y, x] & mask[z + 1, y, x]
    return 6 * voxels - 2 * pairs


def _surface(mask: np.ndarray, step: int, corner: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mesh a boolean mask whose voxel (0, 0, 0) sits at ``corner`` (display indices).

    The mask is block-averaged by ``step``, or by the largest smaller factor that
    drops at most ``MAX_DROPPED_FRACTION`` of its voxels: those in blocks that are
    neither inside the coarse surface nor next to a block that is.
    """
    total = np.count_nonzero(mask)
    for factor in range(step, 1, -1):
        grid = _block_mean(mask, (factor,) * 3)
        near = ndimage.binary_dilation(grid > 0.5, structure=np.ones((3, 3, 3), dtype=bool))
        dropped = float(grid[~near].sum()) * factor**3
        if dropped <= MAX_DROPPED_FRACTION * total:
            return _mesh_grid(grid, (factor,) * 3, corner)
    return _mesh_grid(mask.astype(np.float32), (1, 1, 1), corner)


def _mesh_grid(
    grid: np.ndarray, factors: Sequence[int], corner: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Marching cubes at 0.5 on a zero-padded grid, vertices in full-resolution indices.

    Cell ``c`` of ``grid`` covers ``factors`` voxels from ``corner + c * factors``,
    so its centre is at ``corner + c * factors + (factors - 1) / 2``. Triangles are
    returned counter-clockwise seen from outside (marching cubes gives the reverse).
    """
    padded = np.pad(grid.astype(np.float32, copy=False), 1)
    verts, faces, _, _ = marching_cubes(padded, level=0.5)
    faces = faces[:, ::-1]
    factors_arr = np.asarray(factors, dtype=np.float64)
    verts = corner + (verts - 1.0) * factors_arr + (factors_arr - 1.0) / 2.0
    return verts, faces


def _block_mean(mask: np.ndarray, factors: Sequence[int]) -> np.ndarray:
    """Average a mask over blocks of ``factors`` voxels (the last blocks zero-padded), as
    float32."""
    counts = _block_counts(mask, *factors)
    # Counts of ones are exact in float32: the mean is the same as summing floats.
    return counts.astype(np.float32) / np.float32(np.prod(factors))


@numba.njit(cache=True)
def _block_counts(mask, f0, f1, f2):
    """How many voxels of the mask each block of ``f0 x f1 x f2`` voxels holds."""
    n0, n1, n2 = mask.shape
    counts = np.zeros((-(-n0 // f0), -(-n1 // f1), -(-n2 // f2)), np.uint32)
    # Whole rows are summed first: the loop along the last axis is the one that is fast.
    rows = np.zeros(n2, np.uint32)
    for b0 in range(counts.shape[0]):
        for b1 in range(counts.shape[1]):
            rows[:] = 0
            for z in range(b0 * f0, min(b0 * f0 + f0, n0)):
                for y in range(b1 * f1, min(b1 * f1 + f1, n1)):
                    for x in range(n2):
                        rows[x] += mask[z, y, x]
            for x in range(n2):
                counts[b0, b1, x // f2] += rows[x]
    return counts


def _label_boxes(labels: np.ndarray) -> list[tuple[int, tuple[slice, ...]]]:
    """Each label value > 0 present in ``labels`` with its bounding box, by value."""
    extents = label_extents(labels)
    present = np.flatnonzero(extents[:, 0, 0] < extents[:, 0, 1])
    return [(int(value), tuple(map(slice, *extents[value].T))) for value in present]


def _mesh_trace(xyz: np.ndarray, faces: np.ndarray) -> dict:
    """A bare ``mesh3d`` dict from scene coordinates and triangle indices."""
    xyz = np.round(np.asarray(xyz, dtype=np.float64), COORD_DECIMALS)
    faces = np.asarray(faces, dtype=np.int64)
    return {
        "type": "mesh3d",
        "x": xyz[:, 0].tolist(),
        "y": xyz[:, 1].tolist(),
        "z": xyz[:, 2].tolist(),
        "i": faces[:, 0].tolist(),
        "j": faces[:, 1].tolist(),
        "k": faces[:, 2].tolist(),
    }
