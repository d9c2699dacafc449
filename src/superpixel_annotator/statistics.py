"""Per-label measurements of an annotation: volumes and mean intensities, and their CSV."""

from __future__ import annotations

import csv
import io
from collections.abc import Mapping, Sequence

import numpy as np

from .annotation import Annotation
from .autofill import superpixel_graph

BASE_COLUMNS = ("label", "voxels", "volume_mm3", "volume_ml", "superpixels")


def label_statistics(
    annotation: Annotation,
    volumes: Mapping[str, np.ndarray],
    spacing: Sequence[float],
) -> list[dict]:
    """Volume, voxel and superpixel counts and mean intensities of each label present.

    Uses the cached per-superpixel statistics of :func:`~.autofill.superpixel_graph`, so after
    the first call it costs only sums over the superpixels.

    Parameters
    ----------
    annotation : Annotation
        The labels.
    volumes : mapping of str to ndarray
        Intensity volumes by modality name, each of the superpixels' shape (may be empty).
    spacing : sequence of 3 float
        Voxel size in mm.

    Returns
    -------
    list of dict
        One row per label present, in increasing label order, with keys ``label``,
        ``voxels``, ``volume_mm3``, ``volume_ml``, ``superpixels`` and ``mean_<name>`` for
        each modality.
    """
    labels = annotation.superpixel_labels
    if volumes:
        graph = superpixel_graph(annotation.superpixels, list(volumes.values()))
        counts, sums = graph.counts, graph.sums
    else:
        counts = np.bincount(annotation.superpixels.labels.ravel(), minlength=labels.size)
        sums = np.zeros((labels.size, 0))
    voxel_mm3 = float(np.prod(spacing))
    present = np.unique(labels[1:])
    rows = []
    for label in present[present > 0]:
        members = labels == label
        members[0] = False
        voxels = int(counts[members].sum())
        row = {
            "label": int(label),
            "voxels": voxels,
            "volume_mm3": voxels * voxel_mm3,
            "volume_ml": voxels * voxel_mm3 / 1000,
            "superpixels": int(members.sum()),
        }
        for name, total in zip(volumes, sums[members].sum(axis=0), strict=True):
            row[f"mean_{name}"] = float(total / voxels) if voxels else float("nan")
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
