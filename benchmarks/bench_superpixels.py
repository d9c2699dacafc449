"""Benchmark supervoxels against scikit-image SLIC on BraTS 2013 FLAIR volumes.

Run ``python benchmarks/bench_superpixels.py [--skip-slow]``; prints a Markdown table of the
median time, the ratio to baseline A, the supervoxel count and mean volume, and the achievable
segmentation accuracy (Dice) of the whole tumour (ground-truth labels > 0), for ours on FLAIR
alone and on FLAIR with T1c.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
from skimage.segmentation import slic
from skimage.util import img_as_ubyte

from superpixel_annotator.core.superpixels import (
    achievable_segmentation_accuracy,
    compute_superpixels,
    head_mask,
    load_or_compute_superpixels,
)
from superpixel_annotator.core.volume import Volume, load_volume

DATA_DIR = Path(__file__).resolve().parents[1].parent / "shared/data/brats2013"


def as_ubyte(data: np.ndarray) -> np.ndarray:
    """The volume rescaled to 8 bits, as the original Plotly sample app did."""
    return img_as_ubyte((data - data.min()) / (data.max() - data.min()))


def baseline_a(volumes: list[Volume]) -> np.ndarray:
    """SLIC as the original Plotly sample app called it, on the first volume."""
    image = as_ubyte(volumes[0].data)
    return slic(image, n_segments=300, compactness=0.1, channel_axis=None, start_label=1)


def baseline_b(volumes: list[Volume]) -> np.ndarray:
    """SLIC with 5000 segments inside the head mask, on the first volume."""
    image = as_ubyte(volumes[0].data)
    mask = head_mask(volumes[0].data)
    return slic(
        image, n_segments=5000, compactness=0.1, channel_axis=None, start_label=1, mask=mask
    )


def ours(volumes: list[Volume]) -> np.ndarray:
    return compute_superpixels(volumes).labels


def timed(function, volumes: list[Volume], repeat: int) -> tuple[float, np.ndarray]:
    """Median wall time over ``repeat`` calls of ``function(volumes)`` and the last result."""
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        result = function(volumes)
        times.append(time.perf_counter() - start)
    return statistics.median(times), result


def cached_reopen_time(case: Path) -> float:
    """Seconds for load_or_compute_superpixels on a freshly loaded scan already in the cache."""
    with tempfile.TemporaryDirectory() as cache_dir:
        load_or_compute_superpixels(load_volume(case), cache_dir)
        volume = load_volume(case)
        start = time.perf_counter()
        load_or_compute_superpixels(volume, cache_dir)
        return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--skip-slow", action="store_true", help="skip baseline B (~1 min/case)")
    parser.add_argument("--repeat", type=int, default=3, help="runs of ours per case (median)")
    args = parser.parse_args()
    cases = sorted(DATA_DIR.glob("*/Flair_subtrMeanDivStd.nii.gz"))
    if not cases:
        print(f"No BraTS cases found in {DATA_DIR}; nothing to benchmark.")
        return
    start = time.perf_counter()
    compute_superpixels(load_volume(cases[0]))  # compiles or loads the numba kernels
    print(
        f"First call in this process (numba compile or cache load): "
        f"{time.perf_counter() - start:.2f} s\n"
    )
    flair_only, both = ("Flair",), ("Flair", "T1c")
    methods = [("A: SLIC 300, uint8 (sample app)", baseline_a, 1, flair_only)]
    if not args.skip_slow:
        methods.append(("B: SLIC 5000, head mask", baseline_b, 1, flair_only))
    methods.append(("ours: compute_superpixels()", ours, args.repeat, flair_only))
    methods.append(("ours: FLAIR and T1c", ours, args.repeat, both))

    print("| method | case | median time (s) | ratio to A | count | mean size (mm³) | ASA |")
    print("|---|---|---:|---:|---:|---:|---:|")
    reopen = {}
    for case in cases:
        name = case.parent.name
        modalities = {m: load_volume(case.with_name(f"{m}_subtrMeanDivStd.nii.gz")) for m in both}
        truth = load_volume(case.parent / "OTMultiClass.nii.gz").data > 0
        voxel_mm3 = float(np.prod(modalities["Flair"].spacing))
        time_a = None
        for label, function, repeat, names in methods:
            volumes = [modalities[name] for name in names]
            seconds, labels = timed(function, volumes, repeat)
            time_a = time_a or seconds
            count = len(np.unique(labels[labels > 0]))
            mean_size = np.count_nonzero(labels) * voxel_mm3 / max(count, 1)
            asa = achievable_segmentation_accuracy(labels, truth)
            print(
                f"| {label} | {name} | {seconds:.2f} | {seconds / time_a:.3f} | {count} "
                f"| {mean_size:.0f} | {asa:.4f} |",
                flush=True,
            )
        reopen[name] = cached_reopen_time(case)
    print()
    for name, seconds in reopen.items():
        print(f"Cached reopen (load_or_compute_superpixels, second open) {name}: {seconds:.3f} s")


if __name__ == "__main__":
    main()
