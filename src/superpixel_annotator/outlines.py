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

import numpy as np
from scipy import ndimage as ndi

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
        Where labels may be (the head).
    spacing : sequence of 3 float
        Voxel size in mm.
    radius_mm : float
        Radius of the ball.

    Returns
    -------
    ndarray of uint8, the shape of ``labels``
    """
    region = labels > 0
    if not region.any():
        return np.zeros_like(labels)
    structure = ball(radius_mm, spacing)
    # Pad with unlabelled voxels so that the closing is not cut off at the array's border.
    margin = [(half + 1, half + 1) for half in np.array(structure.shape) // 2]
    padded = np.pad(region, margin)
    smoothed = ndi.binary_opening(ndi.binary_closing(padded, structure), structure)
    smoothed = smoothed[tuple(slice(before, -after) for before, after in margin)]
    regions, count = ndi.label(region, np.ones((3, 3, 3), bool))
    lost = np.bincount(regions[region & ~smoothed], minlength=count + 1)
    small = lost > MAX_LOST_FRACTION * np.bincount(regions.ravel(), minlength=count + 1)
    small[0] = False
    smoothed |= small[regions]
    smoothed &= inside
    # Voxels the closing adds lie within the ball's reach of labelled ones: grow the labels
    # that far, one step to the neighbours within the ball's extent at a time.
    half = np.array(structure.shape) // 2
    step = np.ones(np.minimum(half, 1) * 2 + 1, bool)
    grown = np.where(region, labels, 0).astype(labels.dtype)
    for _ in range(half.max()):
        grown = np.where(grown > 0, grown, ndi.maximum_filter(grown, footprint=step))
    return np.where(smoothed, grown, 0).astype(labels.dtype)


def superpixel_segmentation(superpixels: Superpixels, superpixel_labels: np.ndarray) -> np.ndarray:
    """The label volume of one label per superpixel, with outlines smoothed by a ball of the
    superpixels' ``outline_smoothing`` parameter (mm; none when absent or 0).

    Parameters
    ----------
    superpixels : Superpixels
        The partition, with the voxel size of its volume.
    superpixel_labels : ndarray of uint8, shape (count + 1,)
        The label of each superpixel id (id 0, the air, is never labelled).

    Returns
    -------
    ndarray of uint8, the superpixels' shape
    """
    radius_mm = superpixels.params.get("outline_smoothing", 0.0)
    if radius_mm <= 0:
        return superpixel_labels[superpixels.labels]
    result = np.zeros(superpixels.labels.shape, np.uint8)
    labelled = np.flatnonzero(superpixel_labels[1:]) + 1
    if labelled.size:
        # Smoothing stays within the labelled voxels' bounding box (a closing by a ball
        # stays within their convex hull), so only that box is computed.
        extents = superpixels.extents[labelled]
        box = tuple(map(slice, extents[:, :, 0].min(axis=0), extents[:, :, 1].max(axis=0)))
        ids = superpixels.labels[box]
        result[box] = smooth_outlines(
            superpixel_labels[ids], ids > 0, superpixels.spacing, radius_mm
        )
    return result
