"""Simulate an annotator drawing straight strokes on axial slices of BraTS scans.

Run ``python benchmarks/simulated_annotator.py [--data DIR] [--cases N] [--strokes 20]
[--skip-sample-app] [--flips] [--classes]``. ``--classes`` measures the sub-regions (oedema,
core, enhancing) instead: see ``simulated_classes.py``. Without it, the script prints a
Markdown table of the whole-tumour Dice (ground-truth labels > 0) after 1, 3, 5, 10 and 20
strokes, per case and as medians, and writes the Dice curves to
``benchmarks/results/simulated_annotator.png``. ``--flips`` adds each case mirrored along each
axis (plot: ``simulated_annotator_flips.png``): the same anatomy falls on other supervoxel
grids, which shows how much a result owes to where the grid happens to fall on these two
cases.

``--data`` (default ``../shared/data/brats2013``) is searched, folders included, for the
cases of any BraTS release (see :func:`_simulation.find_cases`); ``--cases N`` takes the first
N by name.

A second table describes each case: its tumour volume, how well FLAIR tells the tumour from
the tissue around it (:func:`separability`), and the Dice of the best segmentation made of
whole supervoxels and of whole coarse regions (achievable segmentation accuracy, ASA).

At each step the simulated annotator takes the axial slice with the most erroneous voxels
(tumour not labelled, or labelled voxels outside the tumour), the largest connected erroneous
region in it, and draws one straight stroke along the region's principal axis through its
centroid, clipped to the longest straight run inside the region: label 1 over missed tumour,
the eraser (label 0) over wrongly labelled voxels. A pipeline without an eraser only ever
targets missed tumour. A stroke that changes nothing is counted, and its region is not
targeted again. Where both selection levels exist, each stroke is drawn at the level whose
result is better (coarse regions to cover, the fine level when a coarse stroke would take
too much), as a user watching the superpixel overlay would toggle *Fine strokes*.

Pipelines, all on FLAIR unless named otherwise:

- ``sample app``: the original sample app's scikit-image SLIC (300 segments, compactness 0.1,
  on the volume rescaled to 8 bits), one label, no eraser, and labels that follow the
  superpixels exactly (no ``outline_smoothing``).
- ``ours, fine level only``: :func:`compute_superpixels` with its defaults (smooth outlines
  included: the Dice is that of :meth:`Annotation.label_volume`, as the app shows and saves
  it), every stroke at the fine level.
- ``ours``: the same, strokes at either level.
- ``ours + autofill``: the same, with :meth:`Annotation.autofill` after each stroke.
- ``ours + autofill (FLAIR, T1c)``: superpixels from both modalities
  (``compute_superpixels([flair, t1c])``) and autofill on both modalities' intensities.
"""

from __future__ import annotations

import argparse
import statistics
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import simulated_classes
from _simulation import (
    DATA_DIR,
    RESULTS_DIR,
    Run,
    dice,
    find_cases,
    largest_region,
    load_runs,
    paint_best_level,
    plot_curves,
    principal_stroke,
)
from scipy import ndimage as ndi
from skimage.segmentation import slic
from skimage.util import img_as_ubyte

from superpixel_annotator import Annotation, compute_superpixels
from superpixel_annotator.core.annotation import LEVELS
from superpixel_annotator.core.superpixels import Superpixels, achievable_segmentation_accuracy
from superpixel_annotator.core.volume import Volume

CHECKPOINTS = (1, 3, 5, 10, 20)
# Supervoxels within this many voxels of the tumour are its surroundings for the separability.
_SURROUNDINGS = 5


def next_stroke(
    labelled: np.ndarray, truth: np.ndarray, ignored: np.ndarray, can_erase: bool
) -> tuple[int, np.ndarray, int, np.ndarray] | None:
    """The simulated annotator's next axial stroke.

    Parameters
    ----------
    labelled, truth, ignored : ndarray of bool, 3D
        The current annotation, the ground truth, and voxels no longer targeted.
    can_erase : bool
        Whether wrongly labelled voxels are targeted (with the eraser).

    Returns
    -------
    tuple or None
        ``(slice index, points, label, region)`` with the region as a 2D mask, or None when
        no error is left.
    """
    missed = truth & ~labelled & ~ignored
    wrong = labelled & ~truth & ~ignored if can_erase else np.zeros_like(missed)
    per_slice = (missed | wrong).sum(axis=(1, 2))
    if per_slice.max() == 0:
        return None
    index = int(np.argmax(per_slice))
    regions = [(label, largest_region(error[index])) for label, error in ((1, missed), (0, wrong))]
    label, region = max(
        ((label, region) for label, region in regions if region is not None),
        key=lambda item: item[1].sum(),
    )
    return index, principal_stroke(region), label, region


def simulate(
    annotation: Annotation,
    truth: np.ndarray,
    strokes: int,
    can_erase: bool = True,
    levels: tuple[str, ...] = ("coarse", "fine"),
    intensities: list[np.ndarray] | None = None,
    fill: bool = False,
) -> list[float]:
    """Dice against ``truth`` after each of ``strokes`` simulated strokes.

    With more than one selection level, the annotator draws the stroke at the level whose
    result is best (as a user looking at the superpixel overlay would switch Fine or Grow
    strokes on). ``intensities`` are the scan's, for the grow level and Fill; with ``fill``,
    :meth:`Annotation.autofill` runs after every stroke that changed something.
    """

    def score(labels: np.ndarray) -> float:
        return dice(labels > 0, truth)

    ignored = np.zeros_like(truth)
    scores = []
    for _ in range(strokes):
        stroke = next_stroke(annotation.label_volume() > 0, truth, ignored, can_erase)
        if stroke is not None:
            index, points, label, region = stroke
            drawn = paint_best_level(
                annotation, index, points, label, levels, score, intensities or ()
            )
            if drawn is None:
                ignored[index] |= region
            elif fill:
                annotation.autofill(intensities)
        scores.append(score(annotation.label_volume()))
    return scores


def sample_app_superpixels(volume: Volume) -> Superpixels:
    """scikit-image SLIC as the original Plotly sample app called it."""
    data = volume.data
    image = img_as_ubyte((data - data.min()) / (data.max() - data.min()))
    labels = slic(image, n_segments=300, compactness=0.1, channel_axis=None, start_label=1)
    return Superpixels.from_labels(labels, params={"n_segments": 300, "compactness": 0.1})


def separability(superpixels: Superpixels, image: np.ndarray, truth: np.ndarray) -> float:
    """How well the mean intensities of supervoxels tell the tumour from the tissue around it.

    The area under the ROC curve of supervoxel means, weighted by voxel count, for the
    supervoxels mostly within ``_SURROUNDINGS`` voxels of the tumour: tumour supervoxels
    (mostly in ``truth``) against the others. 1 when the tumour is brighter than all its
    surroundings, 0.5 when intensity tells nothing.
    """
    labels = superpixels.labels.ravel()
    size = superpixels.count + 1
    counts = np.bincount(labels, minlength=size)
    means = np.bincount(labels, image.ravel(), minlength=size) / np.maximum(counts, 1)
    in_tumour = np.bincount(labels, truth.ravel(), minlength=size) * 2 > counts
    near = ndi.binary_dilation(truth, iterations=_SURROUNDINGS).ravel()
    around = np.bincount(labels, near, minlength=size) * 2 > counts
    around[0] = False
    order = np.argsort(means[around], kind="stable")
    tumour, weights = in_tumour[around][order], counts[around][order]
    darker_others = np.cumsum(np.where(tumour, 0, weights))
    pairs = weights[tumour].sum() * weights[~tumour].sum()
    return float((weights * tumour * darker_others).sum() / pairs) if pairs else float("nan")


def markdown_table(curves: dict[str, list[list[float]]], case_names: list[str]) -> str:
    """Rows per pipeline and case plus medians; columns Dice after each checkpoint stroke."""
    strokes = [n for n in CHECKPOINTS if n <= len(next(iter(curves.values()))[0])]
    lines = [
        "| pipeline | case | " + " | ".join(f"{n} strokes" for n in strokes) + " |",
        "|---|---|" + "---:|" * len(strokes),
    ]
    for name, cases in curves.items():
        rows = [*zip(case_names, cases, strict=True)]
        rows.append(("**median**", [statistics.median(c) for c in zip(*cases, strict=True)]))
        for case_name, scores in rows:
            cells = " | ".join(f"{scores[n - 1]:.3f}" for n in strokes)
            lines.append(f"| {name} | {case_name} | {cells} |")
    return "\n".join(lines)


def whole_tumour(
    runs: Iterator[Run], strokes: int, sample_app: bool, with_t1c: bool, plot_path: Path
) -> None:
    """Print the whole-tumour tables of ``runs`` and plot their Dice curves; ``with_t1c`` adds
    the pipeline on FLAIR and T1c."""
    curves: dict[str, list[list[float]]] = {}
    case_names = []
    case_rows = []
    for run in runs:
        case_names.append(run.name)
        flair, truth = run.flair, run.truth.data > 0
        if sample_app:
            annotation = Annotation(sample_app_superpixels(flair))
            scores = simulate(annotation, truth, strokes, can_erase=False, levels=("fine",))
            curves.setdefault("sample app", []).append(scores)
        flair_superpixels = compute_superpixels(flair)
        coarse_labels = flair_superpixels.coarse[flair_superpixels.labels]
        case_rows.append(
            f"| {run.name} | {truth.sum() * np.prod(flair.spacing) / 1000:.1f} | "
            f"{separability(flair_superpixels, flair.data, truth):.2f} | "
            f"{achievable_segmentation_accuracy(flair_superpixels.labels, truth):.3f} | "
            f"{achievable_segmentation_accuracy(coarse_labels, truth):.3f} |"
        )
        levels, on_flair = ("coarse", "fine"), (flair_superpixels, [flair.data])
        pipelines = {
            "ours, fine level only": (*on_flair, ("fine",), False),
            "ours": (*on_flair, levels, False),
            "ours, all levels (Grow strokes too)": (*on_flair, LEVELS, False),
            "ours + autofill": (*on_flair, levels, True),
        }
        if with_t1c:
            pipelines["ours + autofill (FLAIR, T1c)"] = (
                compute_superpixels([flair, run.t1c]),
                [flair.data, run.t1c.data],
                levels,
                True,
            )
        for name, (superpixels, intensities, levels, fill) in pipelines.items():
            annotation = Annotation(superpixels)
            scores = simulate(annotation, truth, strokes, True, levels, intensities, fill)
            curves.setdefault(name, []).append(scores)
    if not case_names:
        return
    print(markdown_table(curves, case_names))
    print(
        "\n| case | tumour (mL) | FLAIR separability (AUC) | ASA supervoxels | ASA coarse |"
        "\n|---|---:|---:|---:|---:|"
    )
    print("\n".join(case_rows))
    plot_curves(curves, plot_path, "Whole-tumour Dice per stroke", CHECKPOINTS)
    print(f"\nPlot: {plot_path}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DATA_DIR, help="folder holding BraTS cases")
    parser.add_argument("--cases", type=int, help="run only the first N cases by name")
    parser.add_argument(
        "--strokes", type=int, help="strokes per run (default 20, 30 with --classes)"
    )
    parser.add_argument(
        "--classes", action="store_true", help="sub-regions: oedema, core and enhancing"
    )
    parser.add_argument(
        "--skip-sample-app", action="store_true", help="skip the sample app (~30 s per case)"
    )
    parser.add_argument(
        "--flips", action="store_true", help="also run each case mirrored along each axis (4x)"
    )
    parser.add_argument("--plot", type=Path, help="where to write the PNG (default: results/)")
    args = parser.parse_args()
    cases = find_cases(args.data)[: args.cases]
    if not cases:
        print(f"No BraTS cases in {args.data}; skipping.")
        return
    runs = load_runs(cases, [None, 0, 1, 2] if args.flips else [None])
    stem = "simulated_classes" if args.classes else "simulated_annotator"
    plot_path = args.plot or RESULTS_DIR / f"{stem}{'_flips' if args.flips else ''}.png"
    if args.classes:
        simulated_classes.report(
            runs, args.strokes or max(simulated_classes.CHECKPOINTS), plot_path
        )
    else:
        with_t1c = all(case.t1c is not None for case in cases)
        strokes = args.strokes or max(CHECKPOINTS)
        whole_tumour(runs, strokes, not args.skip_sample_app, with_t1c, plot_path)


if __name__ == "__main__":
    main()
