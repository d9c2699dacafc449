"""Benchmark a dataset's server side: saving a version after a stroke, and the case list.

Run ``python benchmarks/bench_datasets.py [--strokes 20] [--cases 1000]``. Prints two
Markdown tables.

a. Save per stroke, on the BraTS 2013 cases under ``../shared`` (labels written to a
   temporary folder, never under ``../shared``): strokes across the tumour (the same as
   ``bench_strokes.py``), each followed by the save the browser sends a moment later
   (``web.callbacks.dataset.save_answer``: the state read, the label volume, the NIfTI
   written, the version committed, the latest copy replaced), on SQLite. Its parts are
   timed apart: writing the NIfTI file (``save_segmentation``, the writer Download uses)
   and the store's own work (a version whose file is written by a trivial writer). The
   baseline, in the same run on the same states, is Download (``panels.download``), what a
   user had to click before; it writes the same file.
b. The case list of a dataset of ``--cases`` case folders (two empty modality files each:
   listing reads names only), a third of them with saved versions: finding the cases, the
   store's summaries, and the list's first page as the callback builds it; and the whole
   start-up of a workspace (``open_workspace``: listing, schema, start-up check).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace
from unittest import mock

import _bench_common as common
import dash
import nibabel as nib
import numpy as np
from bench_strokes import operations

from superpixel_annotator.core import segmentation_io
from superpixel_annotator.core.annotation import Annotation
from superpixel_annotator.core.datasets import find_dataset
from superpixel_annotator.core.editing import EditSession
from superpixel_annotator.core.image_files import Limits
from superpixel_annotator.core.label_tables import BRATS_LABELS
from superpixel_annotator.core.segmentation_io import save_segmentation
from superpixel_annotator.core.volume import load_volume
from superpixel_annotator.store.workspace import open_workspace
from superpixel_annotator.web.annotator import VolumeAnnotator
from superpixel_annotator.web.callbacks import panels
from superpixel_annotator.web.callbacks.dataset import case_list, open_requested, save_answer

SAVE_GOAL_MS = 20
LIST_GOAL_S = 1.0


def timed(function, *args, **kwargs) -> tuple[float, object]:
    start = time.perf_counter()
    result = function(*args, **kwargs)
    return 1000 * (time.perf_counter() - start), result


def stroke_states(annotator, case, n_strokes: int) -> list[str]:
    """The annotation after each stroke of ``bench_strokes.operations`` (its undos and
    redos left out)."""
    tumour = load_volume(common.TRUTH).data > 0
    state, states = None, []
    for _, axis, index, path, label in (
        op for op in operations(annotator, tumour, n_strokes) if op[0] == "stroke"
    ):
        session = EditSession(case, state, annotator.context.label_values)
        session.stroke(axis, index, path, label)
        state = session.annotation.to_state()
        states.append(state)
    return states


def save_rows(n_strokes: int) -> list[tuple[str, float, float]]:
    """(step, median ms, ratio to Download) of saving after each stroke on the first case."""
    with tempfile.TemporaryDirectory() as folder:
        folder = Path(folder)
        workspace, _ = open_workspace(
            common.DATA_DIR, labels=BRATS_LABELS, limits=Limits(), labels_dir=folder / "labels"
        )
        annotator = VolumeAnnotator(
            dash.Dash(__name__),
            workspace.start_volumes(),
            "annotator",
            labels=BRATS_LABELS,
            workspace=workspace,
            cache_dir=folder / "cache",
        )
        context = annotator.context
        name = workspace.names[0]
        data = open_requested(context, {"name": name}, 4.5)["case"]
        case = context.cases.get(data["key"])
        request = {"name": name, "key": case.key, "token": data["dataset"]["token"], "done": False}
        times = {
            "save (route)": [],
            "of which NIfTI written": [],
            "of which store": [],
            "NIfTI written by nibabel's zlib (before)": [],
        }
        baseline = []
        base = None
        for state in stroke_states(annotator, case, n_strokes):
            annotation = Annotation.from_state(case.superpixels, state)
            marks = annotation.marked_labels()
            context.segmentations.get(case, annotation.marks())  # as the stroke's edit left it
            ms, (answer, status) = timed(
                save_answer, context, {**request, "base": base, "state": state}, "bench"
            )
            assert status == 200, answer
            base = answer["version"]
            times["save (route)"].append(ms)
            labels = context.segmentations.get(case, annotation.marks())
            ms, _ = timed(save_segmentation, case.volume, labels, folder / "w.nii.gz", marks)
            times["of which NIfTI written"].append(ms)
            with mock.patch.object(segmentation_io, "save_label_image", nibabel_save):
                ms, _ = timed(save_segmentation, case.volume, labels, folder / "w.nii.gz", marks)
            times["NIfTI written by nibabel's zlib (before)"].append(ms)
            ms, _ = timed(
                workspace.store.save,
                "other",
                lambda path: path.write_bytes(b"x"),
                user="bench",
                base_version=base - 1 if base > 1 else None,
                labelled_voxels=1,
                labelled_ml=0.001,
            )
            times["of which store"].append(ms)
            ms, _ = timed(panels.download, context, state, data)
            baseline.append(ms)
        download = statistics.median(baseline)
        rows = [("Download (baseline)", download, 1.0)]
        rows += [
            (step, statistics.median(v), statistics.median(v) / download)
            for step, v in times.items()
        ]
        return rows


def nibabel_save(image, path) -> None:
    """How label maps were written before: a C-ordered copy in source order, written by
    nibabel's own gzip writer."""
    data = np.ascontiguousarray(np.asanyarray(image.dataobj))
    nib.save(nib.Nifti1Image(data, image.affine, image.header), str(path))


def write_cases(root: Path, count: int) -> None:
    for index in range(count):
        folder = root / f"case{index:05d}"
        folder.mkdir(parents=True)
        for modality in ("flair", "t1ce"):
            (folder / f"case{index:05d}_{modality}.nii.gz").touch()


def list_rows(count: int) -> list[tuple[str, float]]:
    """(step, median ms) of listing a dataset of ``count`` cases, a third with versions."""
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder) / "dataset"
        write_cases(root, count)
        workspace, _ = open_workspace(root, labels=BRATS_LABELS, limits=Limits())
        for name in workspace.names[::3]:
            workspace.store.save(
                name,
                lambda path: path.write_bytes(b"x"),
                user="bench",
                base_version=None,
                labelled_voxels=10,
                labelled_ml=0.01,
                done=name.endswith("0"),
            )
        context = SimpleNamespace(workspace=workspace, ids={"dataset-case": "x"})
        steps = {
            "find the cases (names only)": lambda: find_dataset(root, exclude=[root / "labels"]),
            "summaries (one query)": workspace.summaries,
            "the list's page (callback)": lambda: case_list(
                context, {"name": "case00500"}, "", 1, "x"
            ),
            "open_workspace (start-up, check included)": lambda: open_workspace(
                root, labels=BRATS_LABELS, limits=Limits()
            ),
        }
        return [
            (step, statistics.median(timed(function)[0] for _ in range(5)))
            for step, function in steps.items()
        ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--strokes", type=int, default=20)
    parser.add_argument("--cases", type=int, default=1000)
    args = parser.parse_args()
    if not common.DATA_DIR.is_dir():
        sys.exit(f"BraTS data not found at {common.DATA_DIR}")
    print(common.machine_header("Datasets: saves and the case list"))
    print(f"### a. Save per stroke ({args.strokes} strokes, BraTS pat0005, SQLite)\n")
    print("| step | median ms | ratio to Download |\n|---|---:|---:|")
    for step, ms, ratio in save_rows(args.strokes):
        print(f"| {step} | {ms:.1f} | {ratio:.2f} |")
    print(f"\ngoal: save ≤ {SAVE_GOAL_MS} ms median")
    print(f"\n### b. Case list of {args.cases:,} cases (median of 5)\n")
    print("| step | median ms |\n|---|---:|")
    rows = list_rows(args.cases)
    for step, ms in rows:
        print(f"| {step} | {ms:.1f} |")
    print(f"\ngoal: the case list ≤ {LIST_GOAL_S:g} s")


if __name__ == "__main__":
    main()
