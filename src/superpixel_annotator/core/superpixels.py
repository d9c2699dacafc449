"""Supervoxels: a masked 3D SLIC inside the head (kernels in :mod:`.slic`), coarse regions
(:mod:`.regions`), and their files in the disk cache (:mod:`.cache`).

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
import inspect
import json
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np
from scipy import ndimage as ndi
from skimage.filters import threshold_otsu

from .cache import (
    CacheArchive,
    CacheFileError,
    cache_directory,
    mark_cache_file_used,
    savez_fast,
    trim_cache,
    write_npz_atomically,
)
from .geometry import bounding_box
from .regions import merge_regions
from .slic import MIN_SUPERPIXEL_VOXELS, grid_is_enlarged, label_extents, slic
from .volume import Volume

_CACHE_VERSION = 4
COMPACT_DTYPES = (np.uint16, np.int32)
"""The dtypes :attr:`Superpixels.compact_labels` can have, for compiling kernels ahead."""
# A minimum value covering this fraction of the image is a constant background (skull-stripped
# data, zero-filled air, CT padding) rather than the darkest tissue.
_CONSTANT_BACKGROUND_FRACTION = 0.05
# Otsu effectiveness (between-class over total variance) above which the non-background values
# still contain air, as in CT with padding outside the field of view.
_AIR_SEPARATION = 0.85
# Head components smaller than this fraction of the largest are dropped as noise.
_MIN_COMPONENT_FRACTION = 0.1


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
        return cls(labels, params, label_extents(labels), coarse, tuple(map(float, spacing)))

    @property
    def count(self) -> int:
        """The number of supervoxels."""
        return len(self.extents) - 1

    @cached_property
    def compact_labels(self) -> np.ndarray:
        """:attr:`labels` as ``uint16`` when every id fits (fewer than 65,536 supervoxels),
        else :attr:`labels` itself: the compiled passes over the volume's voxels read it,
        and their time goes in reading memory (smoothing the strokes of a 512x512x400 CT
        head, 33,630 supervoxels, takes 15-20% less time)."""
        if self.count < 2**16:
            return self.labels.astype(np.uint16)
        return self.labels

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
    box = bounding_box(mask)
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


Progress = Callable[[float, str], None]
"""Told how far a long computation is (a fraction from 0 to 1) and what it does now."""


def no_progress(done: float, text: str) -> None:
    """A :data:`Progress` that tells no one."""


def compute_superpixels(
    volumes: Volume | Sequence[Volume],
    progress: Progress = no_progress,
    *,
    size: float = 4.5,
    compactness: float = 0.7,
    sigma: float = 1.0,
    iterations: int = 3,
    coarse_similarity: float = 0.4,
    coarse_span: float = 0.8,
    coarse_volume: float = 2000.0,
    coarse_rarity: float = 6.0,
    outline_smoothing: float = 2.0,
) -> Superpixels:
    """Partition the head into compact supervoxels that follow intensity edges.

    SLIC (k-means on intensity and position, each voxel comparing the 8 nearest cluster
    centres) restricted to the :func:`head_mask` of the first volume, on a grid spaced in mm,
    followed by merging fragments smaller than a quarter cell so every supervoxel is
    connected. With several co-registered volumes (modalities), the intensity distance is
    the mean over modalities of the squared differences, each modality scaled to the first
    one's robust intensity range inside the head (see :func:`modality_channels`). The coarse
    level merges adjacent supervoxels into regions (see :func:`.regions.merge_regions`).
    Intensity standard deviations below are those of the first volume inside the head.

    Parameters
    ----------
    volumes : Volume or sequence of Volume
        The scan, or co-registered scans of one head (same shape and spacing).
    progress : Progress, optional
        Told how far the computation is (not a parameter of the superpixels).
    size : float
        Grid spacing in mm, about the supervoxel diameter, but a grid cell holds at least
        :data:`.slic.MIN_SUPERPIXEL_VOXELS` voxels (see :func:`.slic.grid_steps`).
    compactness : float
        Weight of distance against intensity, in intensity standard deviations per ``size``.
    sigma : float
        Width in mm of the Gaussian smoothing before clustering (0: none).
    iterations : int
        SLIC iterations.
    coarse_similarity : float
        Largest difference of the mean intensities of two merged coarse regions, in
        intensity standard deviations.
    coarse_span : float
        Largest range of the supervoxel means in a coarse region, likewise.
    coarse_volume : float
        Largest coarse region of the head's most frequent intensity, in mm3; regions of
        rarer intensities may be up to 20 times larger.
    coarse_rarity : float
        Largest ratio of how frequent in the head the most and the least frequent mean
        intensity in a coarse region are.
    outline_smoothing : float
        Radius in mm of the ball that smooths the outlines of labels made of these
        supervoxels (see :func:`.outlines.smooth_outlines`; 0 for none); it does not change
        the supervoxels.

    Returns
    -------
    Superpixels

    Raises
    ------
    ValueError
        If there is no volume, or the volumes differ in shape or spacing.
    """
    params = dict(locals())
    volumes = _co_registered(params.pop("volumes"))
    params = complete_params({k: v for k, v in params.items() if k != "progress"})
    progress(0.0, "Finding the head…")
    mask = head_mask(volumes[0].data)
    box = bounding_box(mask)
    labels = np.zeros(mask.shape, np.int32)
    extents, coarse = np.zeros((1, 3, 2), np.int32), np.zeros(1, np.int32)
    if box is not None:
        cropped = [volume.data[box] for volume in volumes]
        spacing = volumes[0].spacing
        labels[box], extents, coarse = _partition(cropped, mask[box], spacing, params, progress)
        extents[1:] += np.array([s.start for s in box], np.int32)[:, None]
    spacing = tuple(map(float, volumes[0].spacing))
    return Superpixels(labels, params, extents, coarse, spacing)


DEFAULT_PARAMS = {
    name: parameter.default
    for name, parameter in inspect.signature(compute_superpixels).parameters.items()
    if parameter.kind is parameter.KEYWORD_ONLY
}
"""The parameters of :func:`compute_superpixels` and their defaults."""


def _partition(
    cropped: Sequence[np.ndarray],
    mask: np.ndarray,
    spacing: Sequence[float],
    params: dict,
    progress: Progress,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Supervoxel ids, extents and coarse regions of the volumes cropped to the head's box."""
    mask = np.ascontiguousarray(mask)
    sigmas = [params["sigma"] / s for s in spacing]
    smoothed = [
        ndi.gaussian_filter(data, sigmas, truncate=2.0) if params["sigma"] > 0 else data
        for data in cropped
    ]
    labels = slic(
        modality_channels(smoothed, mask).astype(np.float32),
        mask,
        spacing,
        *(params[name] for name in ("size", "compactness", "iterations")),
        lambda done: progress(0.2 + 0.5 * done, "Clustering supervoxels…"),
    )
    progress(0.8, "Merging coarse regions…")
    coarse = merge_regions(
        labels,
        modality_channels(cropped, mask),
        params["coarse_similarity"],
        params["coarse_span"],
        params["coarse_volume"] / float(np.prod(spacing)),
        params["coarse_rarity"],
    )
    return labels, label_extents(labels), coarse


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


def complete_params(params: dict) -> dict:
    """The defaults updated with ``params``, as JSON-able numbers; unknown names are an error."""
    unknown = set(params) - set(DEFAULT_PARAMS)
    if unknown:
        raise TypeError(f"unknown superpixel parameters: {sorted(unknown)}")
    params = {**DEFAULT_PARAMS, **params}
    return {name: type(DEFAULT_PARAMS[name])(value) for name, value in params.items()}


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


def load_or_compute_superpixels(
    volumes: Volume | Sequence[Volume],
    cache_dir: str | Path | None = None,
    progress: Progress = no_progress,
    **params,
) -> Superpixels:
    """Supervoxels from the disk cache, computing and storing them when missing or unreadable.

    Parameters
    ----------
    volumes : Volume or sequence of Volume
        As for :func:`compute_superpixels`; the cache key is every volume's
        ``content_hash`` and the parameters.
    cache_dir : str or Path, optional
        See :func:`cache_directory`.
    progress : Progress, optional
        Told how far the computation is, when the cache does not hold them.
    **params
        As for :func:`compute_superpixels`.

    Returns
    -------
    Superpixels
    """
    volumes = _co_registered(volumes)
    params = complete_params(params)
    cache_dir = cache_directory(cache_dir)
    hashes = [volume.content_hash for volume in volumes]
    key_parts = [_CACHE_VERSION, params, hashes[1:]]
    # Files of scans the minimum cell leaves alone keep the names earlier versions gave them.
    if grid_is_enlarged(volumes[0].spacing, params["size"]):
        key_parts.append({"min_superpixel_voxels": MIN_SUPERPIXEL_VOXELS})
    key = json.dumps(key_parts, sort_keys=True).encode()
    path = Path(cache_dir) / f"{hashes[0]}-{hashlib.sha256(key).hexdigest()[:16]}.npz"
    cached = _read_cache(path, volumes[0], params)
    if cached is not None:
        return cached
    superpixels = compute_superpixels(volumes, progress, **params)
    progress(0.9, "Saving the superpixels…")
    _write_cache(path, superpixels)
    return superpixels


def _write_cache(path: Path, superpixels: Superpixels) -> None:
    arrays = {
        "labels": superpixels.labels,
        "extents": superpixels.extents,
        "coarse": superpixels.coarse,
    }
    try:
        write_npz_atomically(path, arrays, savez_fast)
    except OSError as error:
        warnings.warn(f"could not cache superpixels in {path}: {error}", stacklevel=3)
        return
    trim_cache(path.parent, path)


def _read_cache(path: Path, volume: Volume, params: dict) -> Superpixels | None:
    """The cached supervoxels of ``volume`` at ``path``, or None if absent, damaged or not
    fitting; each array's size is checked before it is read."""
    int32 = np.dtype(np.int32)
    try:
        with CacheArchive(path) as stored:
            labels = stored.array("labels", volume.data.size * int32.itemsize)
            if labels.shape != volume.data.shape or labels.dtype != int32 or labels.min() < 0:
                return None
            rows = int(labels.max()) + 1
            extents = stored.array("extents", rows * 6 * int32.itemsize)
            coarse = stored.array("coarse", rows * int32.itemsize)
    except (OSError, CacheFileError):  # missing, or truncated or foreign: recompute
        return None
    if extents.shape != (rows, 3, 2) or extents.dtype != int32:
        return None
    if coarse.shape != (rows,) or coarse.dtype != int32:
        return None
    mark_cache_file_used(path)
    return Superpixels(labels, params, extents, coarse, tuple(map(float, volume.spacing)))
