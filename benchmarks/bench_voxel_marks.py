"""Benchmark voxel marks: a segmentation that does not follow the superpixels, opened as it is,
and strokes on it.

Run ``python benchmarks/bench_voxel_marks.py [--strokes 20] [--rounds 3]``. BraTS 2013 pat0005
FLAIR as the app opens it (default superpixels, a case prepared for strokes), and its ground
truth (labels 1-4, all in the default palette) opened as a segmentation
(``Annotation.load_label_volume``, as Open segmentation does once the file is read). Prints
one Markdown table: how many voxels the superpixels do not follow (kept as voxel marks), the
state's length, the time to open it (median of 5), the mean Dice over labels 1-4 of the
superpixels' labels alone (what opening gave before voxel marks) and of the label volume now;
then the server's edit per stroke (``bench_strokes``' strokes through the edit callback),
from an empty annotation and from the opened one, in alternating rounds, medians.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time

import _bench_common as common
import ct_volumes
import dash
import numpy as np
from bench_strokes import operations, stroke_sizes

from superpixel_annotator.core.annotation import Annotation
from superpixel_annotator.core.cases import open_case, prepare_strokes
from superpixel_annotator.core.volume import load_volume
from superpixel_annotator.web.annotator import VolumeAnnotator

LABELS = (1, 2, 3, 4)


def mean_dice(labels: np.ndarray, truth: np.ndarray) -> float:
    """The mean over :data:`LABELS` of the Dice of ``labels`` against ``truth``."""
    scores = []
    for label in LABELS:
        a, b = labels == label, truth == label
        scores.append(2 * np.count_nonzero(a & b) / max(a.sum() + b.sum(), 1))
    return float(np.mean(scores))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--strokes", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    if not common.TRUTH.is_file():
        sys.exit(f"BraTS data not found at {common.DATA_DIR}")
    print(common.machine_header("Voxel marks: a segmentation opened as it is, strokes on it"))
    volume, mask = ct_volumes.GRIDS["brats"]()
    truth = np.asarray(load_volume(common.TRUTH).data).astype(np.uint8)
    with tempfile.TemporaryDirectory() as cache:
        case = open_case([volume], cache)
        annotator = VolumeAnnotator(
            dash.Dash(__name__), volume, "annotator", superpixels=case.superpixels, cache_dir=cache
        )
        case = annotator.initial_case
        prepare_strokes(case)
        opens = []
        for _ in range(5):
            annotation = Annotation(case.superpixels, case.appearance)
            start = time.perf_counter()
            annotation.load_label_volume(truth)
            opens.append(1000 * (time.perf_counter() - start))
        alone = Annotation(case.superpixels, case.appearance)
        alone.superpixel_labels[:], alone.erased[:] = (
            annotation.superpixel_labels,
            annotation.erased,
        )
        states = {
            "an empty annotation": None,
            "the file's superpixel labels alone": alone.to_state(),
            "the file opened as it is": annotation.to_state(),
        }
        rows = {
            "labelled voxels in the file": f"{np.count_nonzero(truth):,}",
            "voxels the superpixels do not follow (voxel marks)": (
                f"{len(annotation.voxel_marks):,}"
            ),
            "state (characters), superpixel labels alone": f"{len(alone.to_state()):,}",
            "state (characters), opened as it is": f"{len(annotation.to_state()):,}",
            "opening, median of 5 (ms)": f"{statistics.median(opens):.0f}",
            "mean Dice of labels 1-4, superpixel labels alone (before)": (
                f"{mean_dice(alone.label_volume(), truth):.3f}"
            ),
            "mean Dice of labels 1-4, opened as it is": (
                f"{mean_dice(annotation.label_volume(), truth):.3f}"
            ),
        }
        ops = operations(annotator, mask, args.strokes)
        edits: dict[str, list[float]] = {name: [] for name in states}
        for _ in range(args.rounds):
            for name, state in states.items():
                edits[name] += [s["edit_ms"] for s in stroke_sizes(annotator, ops, state)]
    for name, values in edits.items():
        rows[f"server edit per stroke from {name}, median (ms)"] = (
            f"{statistics.median(values):.1f}"
        )
    print("| | pat0005 |\n|---|---:|")
    print("\n".join(f"| {name} | {value} |" for name, value in rows.items()))


if __name__ == "__main__":
    main()
