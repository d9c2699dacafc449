"""Time the 3D view's meshes on a BraTS case (when present) and on the bundled phantom.

Run ``python benchmarks/bench_meshes.py``. For each case it prints a Markdown table
of median times over 5 runs, triangle counts and JSON sizes for:

* the baseline: ``skimage.measure.marching_cubes`` on the whole, uncropped label
  volume at full resolution (JSON of its raw output as a ``mesh3d`` trace),
* ``label_meshes`` of the whole lesion as one label (labels > 0),
* ``label_meshes`` of the lesion's sub-labels,
* ``outline_mesh`` of the head (or brain) mask.
"""

from __future__ import annotations

import json
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from skimage.measure import marching_cubes

from superpixel_annotator.core.meshes import label_meshes, outline_mesh
from superpixel_annotator.core.volume import load_volume

REPO = Path(__file__).resolve().parents[1]
BRATS_DIR = Path(__file__).resolve().parents[1].parent / "shared/data/brats2013"
BRATS_CASE = BRATS_DIR / "brats_2013_pat0005_1"
SAMPLE_DIR = REPO / "sample_data"
RUNS = 5
COLORS = {1: "#e6194b", 2: "#ffe119", 3: "#4363d8", 4: "#3cb44b"}


def median_ms(func: Callable[[], object], runs: int = RUNS) -> tuple[float, object]:
    """Median wall time of ``func`` in ms over ``runs`` calls, and its last result."""
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        result = func()
        times.append(time.perf_counter() - start)
    return 1000.0 * statistics.median(times), result


def traces_size(traces: list[dict]) -> tuple[int, int]:
    """Total triangle count and JSON bytes of some traces."""
    return sum(len(trace["i"]) for trace in traces), len(json.dumps(traces))


def bench_case(
    name: str, labels: np.ndarray, spacing: tuple[float, float, float], head: np.ndarray
) -> list[tuple]:
    """Rows ``(case, what, ms, triangles, json bytes)`` for one volume."""
    labels = labels.astype(np.uint8)
    whole = (labels > 0).astype(np.uint8)
    present = [int(v) for v in np.unique(labels) if v > 0]
    rows = []

    dense = whole.astype(np.float32)
    ms, (verts, faces, _, _) = median_ms(lambda: marching_cubes(dense, 0.5, spacing=spacing))
    raw = {"type": "mesh3d", **dict(zip("xyz", verts.T.tolist(), strict=True))}
    raw.update(dict(zip("ijk", faces.T.tolist(), strict=True)))
    baseline = "baseline: marching_cubes, full volume"
    rows.append((name, baseline, ms, len(faces), len(json.dumps(raw))))

    ms, traces = median_ms(lambda: label_meshes(whole, spacing, COLORS))
    rows.append((name, "label_meshes, whole lesion (1 label)", ms, *traces_size(traces)))
    ms, traces = median_ms(lambda: label_meshes(labels, spacing, COLORS))
    what = f"label_meshes, sub-labels {present}"
    rows.append((name, what, ms, *traces_size(traces)))
    ms, trace = median_ms(lambda: outline_mesh(head, spacing))
    rows.append((name, "outline_mesh", ms, *traces_size([trace])))
    return rows


def brats_rows() -> list[tuple]:
    """Rows for the BraTS case, or none (with a message) when it is absent."""
    labels_path = BRATS_CASE / "OTMultiClass.nii.gz"
    if not labels_path.exists():
        print(f"BraTS case not found at {BRATS_CASE}; skipping it.")
        return []
    labels = load_volume(labels_path)
    mask_path = BRATS_CASE / "brainmask.nii.gz"
    if mask_path.exists():
        head = load_volume(mask_path).data > 0
    else:
        flair = load_volume(BRATS_CASE / "Flair_subtrMeanDivStd.nii.gz").data
        head = flair != flair[0, 0, 0]
    name = f"BraTS {BRATS_CASE.name} {labels.data.shape}"
    return bench_case(name, labels.data, labels.spacing, head)


def phantom_rows() -> list[tuple]:
    """Rows for the bundled phantom, or none (with a message) when it is not generated."""
    image_path = SAMPLE_DIR / "head_phantom.nii.gz"
    lesion_path = SAMPLE_DIR / "head_phantom_lesion.nii.gz"
    if not (image_path.exists() and lesion_path.exists()):
        print("Phantom not found; run python sample_data/make_phantom.py first.")
        return []
    image = load_volume(image_path)
    lesion = load_volume(lesion_path)
    name = f"phantom {lesion.data.shape}"
    return bench_case(name, lesion.data, lesion.spacing, image.data > 20)


def main() -> None:
    """Run the benchmark and print one Markdown table."""
    rows = brats_rows() + phantom_rows()
    print(f"\nMedian of {RUNS} runs.\n")
    print("| case | what | median ms | triangles | JSON kB |")
    print("|---|---|---:|---:|---:|")
    for case, what, ms, triangles, size in rows:
        print(f"| {case} | {what} | {ms:.1f} | {triangles} | {size / 1024:.0f} |")


if __name__ == "__main__":
    main()
