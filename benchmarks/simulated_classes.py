"""Simulate an annotator labelling the sub-regions of BraTS tumours: oedema, core, enhancing.

Run ``python benchmarks/simulated_annotator.py --classes [--flips] [--strokes 30]`` (the other
options of that script, ``--data``, ``--cases`` and ``--plot``, apply too). Prints a Markdown
table per case, with the median over cases, of the mean of the whole-tumour, tumour-core and
enhancing Dice (WT, TC, ET) after 5, 10, 20 and 30 strokes and of each region's Dice after
the last stroke, and writes the curves to ``benchmarks/results/simulated_classes.png``
(``simulated_classes_flips.png`` with ``--flips``).

The protocol of issue 15. Labels: 1 oedema (BraTS 2013 label 2), 2 necrotic or
non-enhancing core (1 and 3), 3 enhancing (4); other releases are mapped likewise (see
:class:`_simulation.BratsCase`). Regions: WT = 1|2|3, TC = 2|3, ET = 3. Superpixels come from
FLAIR and T1c (``compute_superpixels([flair, t1c])``, default parameters), and the labels are
scored as the app shows them (:meth:`Annotation.label_volume` with the scan's FLAIR and T1c
as its ``appearance``: smooth outlines, and borders between labels refined). At
each step, over every axial slice and every class c (0, background, is drawn with the
eraser), the annotator takes the (slice, class) with the most voxels that should be c and are
not, and draws one straight stroke with c through the largest such region in that slice,
clipped as in the whole-tumour protocol (:func:`_simulation.principal_stroke`). The stroke is
tried at every level of :data:`LEVELS` and drawn at the one whose result has the best mean of
WT, TC and ET Dice. A stroke that changes nothing is counted, and its region is not targeted
again with that class.

A second table bounds what whole superpixels allow: each supervoxel (fine level) or coarse
region takes the class most of its voxels have (the labelling of whole superpixels with the
most voxels right, not strictly the best Dice), and the table gives the Dice of that
labelling with the superpixels' raw outlines, with smoothed outlines
(:func:`superpixel_segmentation`) and as the app shows it (smoothed and refined,
:func:`segmentation_box`), then the Dice of the strokes' last labels raw and as shown. It
tells how much is lost to superpixel granularity, gained or lost by the smoothing and the
refinement, and lost to the strokes' choices. A third table counts the strokes per class
and per level, and the superpixels the strokes changed, changed again, and gave back a label
they had before.
"""

from __future__ import annotations

import dataclasses
import statistics
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
from _simulation import Run, dice, largest_region, paint_best_level, plot_curves, principal_stroke

from superpixel_annotator import Annotation, compute_superpixels
from superpixel_annotator.core.annotation import LEVELS
from superpixel_annotator.core.outlines import placed, superpixel_segmentation
from superpixel_annotator.core.refinement import Appearance, segmentation_box
from superpixel_annotator.core.superpixels import Superpixels

CHECKPOINTS = (5, 10, 20, 30)
NAMES = ("background", "oedema", "core", "enhancing")
CLASSES = len(NAMES)
# Each region is the voxels of this class or above: whole tumour, tumour core, enhancing.
REGIONS = {"WT": 1, "TC": 2, "ET": 3}
# The levels the simulated annotator may choose from: as before Grow strokes, and all.
PIPELINES = {"coarse and fine strokes": ("coarse", "fine"), "all levels": LEVELS}


def region_dice(labels: np.ndarray, truth: np.ndarray) -> list[float]:
    """The WT, TC and ET Dice of class volumes ``labels`` against ``truth``."""
    return [dice(labels >= lowest, truth >= lowest) for lowest in REGIONS.values()]


def next_class_stroke(
    labels: np.ndarray, truth: np.ndarray, ignored: np.ndarray
) -> tuple[int, np.ndarray, int, np.ndarray] | None:
    """The simulated annotator's next axial stroke, with its class.

    Parameters
    ----------
    labels, truth : ndarray of uint8, 3D
        The classes of the current annotation and of the ground truth.
    ignored : ndarray of bool, shape (CLASSES, *truth.shape)
        Per class, the voxels no longer targeted with it.

    Returns
    -------
    tuple or None
        ``(slice index, points, class, region)``, the region as a 2D mask and class 0 meaning
        the eraser; None when every voxel is right or ignored.
    """
    missing = np.stack([(truth == c) & (labels != c) for c in range(CLASSES)]) & ~ignored
    per_slice = missing.sum(axis=(2, 3))
    if per_slice.max() == 0:
        return None
    label, index = (int(i) for i in np.unravel_index(np.argmax(per_slice), per_slice.shape))
    region = largest_region(missing[label, index])
    return index, principal_stroke(region), label, region


@dataclasses.dataclass(frozen=True)
class ClassRun:
    """What :func:`simulate_classes` measured.

    Attributes
    ----------
    scores : ndarray of float, shape (strokes, 3)
        WT, TC and ET Dice after each stroke.
    drawn : list of (int, str or None)
        The class and level of each stroke drawn, the level None for a stroke that changed
        nothing (none once every voxel is right or ignored).
    history : ndarray of uint8, shape (len(drawn) + 1, superpixel count + 1)
        Each superpixel's label before the first stroke and after each stroke drawn.
    """

    scores: np.ndarray
    drawn: list[tuple[int, str | None]]
    history: np.ndarray


def simulate_classes(
    annotation: Annotation,
    truth: np.ndarray,
    strokes: int,
    intensities: Sequence[np.ndarray],
    levels: Sequence[str] = LEVELS,
) -> ClassRun:
    """Draw ``strokes`` strokes of the protocol on ``annotation`` against the classes ``truth``,
    each at the best of ``levels``; ``intensities`` are the scan's (for the grow level)."""

    def score(volume: np.ndarray) -> float:
        return float(np.mean(region_dice(volume, truth)))

    ignored = np.zeros((CLASSES, *truth.shape), bool)
    labels = annotation.label_volume()
    scores, drawn, history = [], [], [annotation.superpixel_labels.copy()]
    for _ in range(strokes):
        stroke = next_class_stroke(labels, truth, ignored)
        if stroke is not None:
            index, points, label, region = stroke
            level = paint_best_level(annotation, index, points, label, levels, score, intensities)
            drawn.append((label, level))
            history.append(annotation.superpixel_labels.copy())
            if level is None:
                ignored[label, index] |= region
            else:
                labels = annotation.label_volume()
        scores.append(region_dice(labels, truth))
    return ClassRun(np.array(scores), drawn, np.array(history))


def relabelled(history: np.ndarray) -> tuple[int, int, int]:
    """How many superpixels strokes changed, changed more than once, and gave back a label
    they had before (such as core, then enhancing, then core; or a class, then erased).

    ``history`` is :attr:`ClassRun.history`.
    """
    changes = (np.diff(history.astype(np.int16), axis=0) != 0).sum(axis=0)
    again = np.flatnonzero(changes >= 2)
    back = 0
    for column in history[:, again].T:
        values = column[np.r_[True, column[1:] != column[:-1]]]
        back += len(values) > len(set(values.tolist()))
    return int((changes > 0).sum()), again.size, back


def majority_classes(ids: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """The class most voxels of each id have (the smaller class on a tie; 0 for id 0).

    Returns
    -------
    ndarray of uint8, shape (ids.max() + 1,)
    """
    rows = int(ids.max()) + 1
    votes = np.bincount(
        ids.ravel().astype(np.int64) * CLASSES + truth.ravel(), minlength=rows * CLASSES
    )
    winners = votes.reshape(rows, CLASSES).argmax(axis=1).astype(np.uint8)
    winners[0] = 0
    return winners


def superpixel_bounds(
    superpixels: Superpixels, truth: np.ndarray, appearance: Appearance
) -> dict[str, list[float]]:
    """WT, TC and ET Dice of each superpixel (fine) or coarse region taking its majority class,
    with raw outlines, smoothed outlines, and as :meth:`Annotation.label_volume` shows them
    with ``appearance`` (smoothed and refined)."""
    fine = majority_classes(superpixels.labels, truth)
    coarse = majority_classes(superpixels.coarse[superpixels.labels], truth)[superpixels.coarse]
    bounds = {}
    for level, classes in (("supervoxels'", fine), ("coarse regions'", coarse)):
        bounds[f"{level} majority, raw"] = region_dice(classes[superpixels.labels], truth)
        smoothed = superpixel_segmentation(superpixels, classes)
        bounds[f"{level} majority, smoothed"] = region_dice(smoothed, truth)
        shown = placed(*segmentation_box(superpixels, classes, None, appearance), truth.shape)
        bounds[f"{level} majority, as shown"] = region_dice(shown, truth)
    return bounds


def _cells(values: Iterable[float]) -> str:
    return " | ".join(f"{value:.3f}" for value in values)


def stroke_counts(run: ClassRun) -> str:
    """Table cells: strokes per class, per level (or no change), and superpixels relabelled."""
    classes = " / ".join(str(sum(label == c for label, _ in run.drawn)) for c in range(CLASSES))
    levels = ", ".join(
        f"{sum(level == name for _, level in run.drawn)} {name or 'changed nothing'}"
        for name in (*LEVELS, None)
    )
    return f"{classes} | {levels} | {' / '.join(map(str, relabelled(run.history)))}"


def strokes_table(scores: dict[str, np.ndarray]) -> str:
    """Per run and as medians: mean(WT, TC, ET) Dice at the checkpoints, and the final Dice."""
    strokes = len(next(iter(scores.values())))
    checkpoints = [n for n in CHECKPOINTS if n <= strokes]
    columns = [f"mean after {n}" for n in checkpoints]
    columns += [f"{name} after {strokes}" for name in REGIONS]
    lines = ["| case | " + " | ".join(columns) + " |", "|---|" + "---:|" * len(columns)]
    rows = {
        name: [*run.mean(axis=1)[[n - 1 for n in checkpoints]], *run[-1]]
        for name, run in scores.items()
    }
    rows["**median**"] = [statistics.median(column) for column in zip(*rows.values(), strict=True)]
    lines += [f"| {name} | {_cells(row)} |" for name, row in rows.items()]
    return "\n".join(lines)


def report(runs: Iterable[Run], strokes: int, plot_path: Path) -> None:
    """Run the protocol on ``runs`` with and without the grow level; print its tables and plot
    its curves."""
    scores: dict[str, dict[str, np.ndarray]] = {name: {} for name in PIPELINES}
    bound_rows, stroke_rows = [], []
    for run in runs:
        truth = run.truth_classes()
        if run.t1c is None or truth is None:
            problem = "no T1c" if run.t1c is None else "ground-truth values it cannot map"
            print(f"Skipped {run.name}: {problem}")
            continue
        superpixels = compute_superpixels([run.flair, run.t1c])
        intensities = [run.flair.data, run.t1c.data]
        appearance = Appearance(superpixels, intensities)
        labellings = superpixel_bounds(superpixels, truth, appearance)
        for pipeline, levels in PIPELINES.items():
            annotation = Annotation(superpixels, appearance)
            result = simulate_classes(annotation, truth, strokes, intensities, levels)
            scores[pipeline][run.name] = result.scores
            stroke_rows.append(f"| {run.name} | {pipeline} | {stroke_counts(result)} |")
            raw = annotation.superpixel_labels[superpixels.labels]
            labellings[f"{pipeline}, raw"] = region_dice(raw, truth)
            labellings[f"{pipeline}, as shown (scored)"] = result.scores[-1]
        for name, values in labellings.items():
            bound_rows.append(f"| {run.name} | {name} | {_cells([*values, np.mean(values)])} |")
    if not bound_rows:
        return
    for pipeline, pipeline_scores in scores.items():
        print(f"{pipeline}:\n\n{strokes_table(pipeline_scores)}\n")
    print("| case | labels, outlines | WT | TC | ET | mean |")
    print("|---|---|---:|---:|---:|---:|")
    print("\n".join(bound_rows))
    print(
        f"\n| case | strokes | per class ({', '.join(NAMES)}) | per level "
        "| superpixels changed / changed twice or more / given back an earlier label |"
    )
    print("|---|---|---|---|---|")
    print("\n".join(stroke_rows))
    baseline, best = (scores[name].values() for name in PIPELINES)
    curves = {f"mean, {next(iter(PIPELINES))}": [run.mean(axis=1) for run in baseline]}
    curves["mean(WT, TC, ET)"] = [run.mean(axis=1) for run in best]
    for column, name in enumerate(REGIONS):
        curves[name] = [run[:, column] for run in scores[list(PIPELINES)[-1]].values()]
    plot_curves(curves, plot_path, "Sub-region Dice per stroke, all levels", CHECKPOINTS)
    print(f"\nPlot: {plot_path}")
