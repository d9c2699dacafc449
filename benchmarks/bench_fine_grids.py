"""Benchmark the server on grids finer and larger than BraTS: superpixels, the server's
edit per stroke, and memory.

Run ``python benchmarks/bench_fine_grids.py [--strokes 12] [--level coarse]``. Prints one
Markdown table whose columns are the grids (see ``ct_volumes.py``):

- BraTS 2013 pat0005 FLAIR as it is, 240x240x155 at 1 mm: the baseline, in the same run;
- the same resampled twice per axis, 480x480x310 at 0.5 mm;
- the head phantom on a CT-sized grid, 512x512x400 at 0.7x0.7x1 mm, with strokes across its
  small lesion, and again with strokes across the whole head (large regions, as strokes on
  a large organ label).

Each grid runs in a process of its own, so that its peak RSS (``ru_maxrss``) is its own:
the superpixels computed as a server does (``open_case``, default parameters, written to a
temporary cache), then strokes across the tumour (or the phantom's lesion) on all three
views with undos and redos (``bench_strokes.operations``), each through the edit callback
(``web.callbacks.editing.edit``: paint, smoothed labels, overlay patches of the slices
shown), at the level ``--level``, once the case is prepared for strokes (as a server
prepares it in the background after opening it, see ``prepare_strokes``). The table gives
the median of the strokes' edits, and its ratio to BraTS, the median time Dash then takes
to encode the edit's response (JSON), the time to prepare a case, and the time to build
the superpixel graph that the first Fill or grow stroke of a case in a server process
builds (``superpixel_graph``).
Goals (issue 16): the edit at most 50 ms on BraTS, 150 ms on the CT size, and 4 times
BraTS on the 0.5 mm grid; superpixels of 100 M voxels within 10 s and 2.5 GB.
"""

from __future__ import annotations

import argparse
import multiprocessing
import resource
import statistics
import sys
import tempfile
import time

import _bench_common as common
import ct_volumes
import dash
import numpy as np
from bench_strokes import operations, stroke_sizes

from superpixel_annotator.core.annotation import LEVELS
from superpixel_annotator.core.autofill import superpixel_graph
from superpixel_annotator.core.cases import open_case, prepare_strokes
from superpixel_annotator.core.image_files import Limits
from superpixel_annotator.core.superpixels import Superpixels
from superpixel_annotator.web.annotator import VolumeAnnotator


def measure(grid: str, n_strokes: int, level: str) -> dict:
    """Superpixels, the superpixel graph, edits at ``level`` and peak RSS of one grid (run in
    a process of its own)."""
    volume, mask = ct_volumes.GRIDS[grid]()
    with tempfile.TemporaryDirectory() as cache:
        start = time.perf_counter()
        case = open_case([volume], cache)
        superpixel_s = time.perf_counter() - start
        superpixel_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
        start = time.perf_counter()
        prepare_strokes(case)
        prepare_s = time.perf_counter() - start
        tiny = Superpixels.from_labels(np.ones((2, 2, 2), np.int32), params={})
        superpixel_graph(tiny, [np.zeros((2, 2, 2), np.float32)])  # compiles its kernels
        start = time.perf_counter()
        superpixel_graph(case.superpixels, case.intensities)
        graph_s = time.perf_counter() - start
        annotator = VolumeAnnotator(
            dash.Dash(__name__),
            volume,
            "annotator",
            superpixels=case.superpixels,
            cache_dir=cache,
            limits=Limits(max_voxels=2**28),
        )
        prepare_strokes(annotator.initial_case)  # as a server has, a second after opening
        strokes = stroke_sizes(annotator, operations(annotator, mask, n_strokes), level=level)
        edits = [sizes["edit_ms"] for sizes in strokes]
        encodings = [sizes["json_ms"] for sizes in strokes]
    return {
        "voxels": volume.data.size,
        "superpixels": case.superpixels.count,
        "superpixel_s": superpixel_s,
        "superpixel_rss_gb": superpixel_rss,
        "graph_s": graph_s,
        "prepare_s": prepare_s,
        "edit_ms": statistics.median(edits),
        "edit_max_ms": max(edits),
        "json_ms": statistics.median(encodings),
        "peak_rss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--strokes", type=int, default=12)
    parser.add_argument("--level", choices=LEVELS, default="coarse", help="of the strokes")
    args = parser.parse_args()
    if not common.DATA_DIR.is_dir():
        sys.exit(f"BraTS data not found at {common.DATA_DIR}")
    print(common.machine_header("Fine and CT-sized grids: superpixels, edits, memory"))
    context = multiprocessing.get_context("spawn")
    results = {}
    for grid in ct_volumes.GRIDS:
        with context.Pool(1) as pool:
            results[grid] = pool.apply(measure, (grid, args.strokes, args.level))
    base = results["brats"]["edit_ms"]
    rows = (
        ("voxels (M)", lambda r: f"{r['voxels'] / 1e6:.1f}"),
        ("superpixels", lambda r: f"{r['superpixels']:,}"),
        ("superpixels computed (s)", lambda r: f"{r['superpixel_s']:.1f}"),
        ("peak RSS after superpixels (GB)", lambda r: f"{r['superpixel_rss_gb']:.2f}"),
        ("prepared for strokes, in the background (s)", lambda r: f"{r['prepare_s']:.2f}"),
        ("superpixel graph, first Fill or grow stroke (s)", lambda r: f"{r['graph_s']:.2f}"),
        (
            f"server edit per {args.level} stroke, median of {args.strokes} (ms)",
            lambda r: f"{r['edit_ms']:.0f}",
        ),
        ("slowest stroke (ms)", lambda r: f"{r['edit_max_ms']:.0f}"),
        ("its response encoded as Dash does, median (ms)", lambda r: f"{r['json_ms']:.1f}"),
        ("ratio to BraTS (median)", lambda r: f"{r['edit_ms'] / base:.1f}"),
        ("peak RSS in all (GB)", lambda r: f"{r['peak_rss_gb']:.2f}"),
    )
    print("| | " + " | ".join(ct_volumes.GRID_TITLES.values()) + " |")
    print("|---|" + "---:|" * len(results))
    for name, cell in rows:
        print(f"| {name} | " + " | ".join(cell(result) for result in results.values()) + " |")


if __name__ == "__main__":
    main()
