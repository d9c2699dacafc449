"""Per-label measurements of an annotation: volumes and mean intensities, and their CSV;
and the label most of each superpixel's voxels have."""

from __future__ import annotations

import csv
import io
from collections.abc import Mapping, Sequence

import numpy as np

from .palette import MAX_LABEL
from .superpixels import Superpixels

BASE_COLUMNS = ("label", "voxels", "volume_mm3", "volume_ml", "superpixels")
VOTE_SLAB_VOXELS = 1 << 20
"""Voxels :func:`majority_labels` counts at once."""


def label_statistics(
    labels: np.ndarray,
    superpixel_labels: np.ndarray,
    volumes: Mapping[str, np.ndarray],
    spacing: Sequence[float],
) -> list[dict]:
    """Volume, voxel and superpixel counts and mean intensities of each label present.

    Parameters
    ----------
    labels : ndarray of uint8, 3D
        The label volume as shown and saved (:meth:`Annotation.label_volume`).
    superpixel_labels : ndarray of uint8, shape (count + 1,)
        The label of each superpixel, for counting superpixels.
    volumes : mapping of str to ndarray
        Intensity volumes by modality name, each of the labels' shape (may be empty).
    spacing : sequence of 3 float
        Voxel size in mm.

    Returns
    -------
    list of dict
        One row per label present, in increasing label order, with keys ``label``,
        ``voxels``, ``volume_mm3``, ``volume_ml``, ``superpixels`` and ``mean_<name>`` for
        each modality.
    """
    flat = labels.ravel()
    counts = np.bincount(flat, minlength=MAX_LABEL + 1)
    sums = {
        name: np.bincount(flat, volume.ravel(), MAX_LABEL + 1) for name, volume in volumes.items()
    }
    superpixels = np.bincount(superpixel_labels[1:], minlength=MAX_LABEL + 1)
    voxel_mm3 = float(np.prod(spacing))
    rows = []
    for label in np.flatnonzero(counts[1:]) + 1:
        voxels = int(counts[label])
        row = {
            "label": int(label),
            "voxels": voxels,
            "volume_mm3": voxels * voxel_mm3,
            "volume_ml": voxels * voxel_mm3 / 1000,
            "superpixels": int(superpixels[label]),
        }
        for name, total in sums.items():
            row[f"mean_{name}"] = float(total[label] / voxels)
        rows.append(row)
    return rows


def statistics_csv(rows: Sequence[Mapping[str, object]]) -> str:
    """The rows of :func:`label_statistics` as CSV text with a header line.

    Parameters
    ----------
    rows : sequence of mapping
        Rows with the same keys (the columns, in the first row's order).

    Returns
    -------
    str
        CSV text, floats with 6 significant digits; only the header of
        :data:`BASE_COLUMNS` when there are no rows.
    """
    columns = list(rows[0]) if rows else list(BASE_COLUMNS)
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(columns)
    for row in rows:
        writer.writerow([f"{row[c]:.6g}" if isinstance(row[c], float) else row[c] for c in columns])
    return buffer.getvalue()


def majority_labels(superpixels: Superpixels, labels: np.ndarray) -> np.ndarray:
    """The most common label of each superpixel's voxels.

    Parameters
    ----------
    superpixels : Superpixels
        The partition that votes.
    labels : ndarray of uint8, shape of the superpixels
        The label of each voxel.

    Returns
    -------
    ndarray of uint8, shape (count + 1,)
        The winning label of each superpixel (ties go to the smaller label); 0 for id 0.
    """
    present = np.flatnonzero(np.bincount(labels.ravel(), minlength=MAX_LABEL + 1))
    column = np.zeros(MAX_LABEL + 1, np.int64)
    column[present] = np.arange(present.size)
    rows = superpixels.count + 1
    votes = np.zeros(rows * present.size, np.int64)
    # Slabs of slices bound the int64 vote indices to a few MB whatever the volume size.
    slab = max(1, VOTE_SLAB_VOXELS // max(1, labels[0].size))
    for start in range(0, labels.shape[0], slab):
        ids = superpixels.labels[start : start + slab].ravel().astype(np.int64)
        index = ids * present.size + column[labels[start : start + slab].ravel()]
        votes += np.bincount(index, minlength=votes.size)
    votes = votes.reshape(rows, present.size)
    winner = votes.argmax(axis=1)
    superpixel_labels = present[winner].astype(np.uint8)
    superpixel_labels[0] = 0
    return superpixel_labels
