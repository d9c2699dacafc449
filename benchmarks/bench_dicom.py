"""Benchmark reading a CT-sized DICOM series from a folder, against SimpleITK on the same files.

Run ``python benchmarks/bench_dicom.py [--slices 300] [--repeats 3]``. Writes a 512x512xN
series of single-frame CT files (int16, rescaled, shuffled file names) with the tests' own
writer (``tests/dicom_series.py``) into a temporary folder, then times, alternately and in
the same run: ``core.dicom.load_dicom_series`` (headers, ordering, pixel data, a ``Volume``
in display order) and SimpleITK's ``ImageSeriesReader`` (``GetGDCMSeriesFileNames`` and
``Execute``), which is the baseline. The first reading of each is left out (file cache).
Prints a Markdown table of medians and the ratio; goal: at most 1.5 times SimpleITK.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import _bench_common as common
import numpy as np
import SimpleITK as sitk
from dicom_series import write_series

from superpixel_annotator.core.dicom import load_dicom_series
from superpixel_annotator.core.image_files import Limits

GOAL_RATIO = 1.5


def simpleitk_read(folder: Path) -> np.ndarray:
    """The series as SimpleITK reads it."""
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(reader.GetGDCMSeriesFileNames(str(folder)))
    return sitk.GetArrayViewFromImage(reader.Execute())


def ct_like(slices: int) -> np.ndarray:
    """A body-like CT volume in HU: air, a soft-tissue ellipse, bone, noise."""
    rng = np.random.default_rng(0)
    x, y = np.mgrid[-1:1:512j, -1:1:512j]
    body = (x / 0.8) ** 2 + (y / 0.6) ** 2 < 1
    bone = (x**2 + (y + 0.3) ** 2) < 0.01
    plane = np.where(body, 40.0, -1000.0) + np.where(bone, 700.0, 0.0)
    volume = np.repeat(plane[:, :, None], slices, axis=2)
    return volume + rng.normal(0, 10, volume.shape)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--slices", type=int, default=300)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    affine = np.diag([0.7, 0.7, 1.0, 1.0])
    with tempfile.TemporaryDirectory() as folder:
        folder = Path(folder) / "ct"
        write_series(folder, ct_like(args.slices), affine, modality="CT", intercept=-1024.0)
        limits = Limits(max_voxels=512 * 512 * args.slices)
        times = {"SimpleITK ImageSeriesReader (baseline)": [], "load_dicom_series": []}
        readers = (lambda: simpleitk_read(folder), lambda: load_dicom_series(folder, limits=limits))
        for repeat in range(args.repeats + 1):
            for values, read in zip(times.values(), readers, strict=True):
                start = time.perf_counter()
                read()
                if repeat:
                    values.append(time.perf_counter() - start)
    print(common.machine_header(f"DICOM: a 512x512x{args.slices} CT series from a folder"))
    baseline = statistics.median(times["SimpleITK ImageSeriesReader (baseline)"])
    print("| reader | median s | ratio to SimpleITK |\n|---|---:|---:|")
    for name, values in times.items():
        median = statistics.median(values)
        print(f"| {name} | {median:.2f} | {median / baseline:.2f} |")
    print(f"\ngoal: at most {GOAL_RATIO:g} times SimpleITK")


if __name__ == "__main__":
    sys.exit(main())
