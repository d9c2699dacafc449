"""Simulate an annotator drawing straight strokes on axial slices of BraTS scans.

Run ``python benchmarks/simulated_annotator.py [--data DIR] [--cases N] [--strokes 20]
[--skip-sample-app] [--flips]``. Prints a Markdown table of the whole-tumour Dice (ground-truth
labels > 0) after 1, 3, 5, 10 and 20 strokes, per case and as medians, and writes the Dice
curves to ``benchmarks/results/simulated_annotator.png``. ``--flips`` adds each case mirrored
along each axis (plot: ``simulated_annotator_flips.png``): the same anatomy falls on other
supervoxel grids, which shows how much a result owes to where the grid happens to fall on
these two cases.

``--data`` (default ``../shared/data/brats2013``) is searched, folders included, for the
cases of any BraTS release (see :func:`find_cases`); ``--cases N`` takes the first N by name.

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
import dataclasses
import itertools
import statistics
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw
from scipy import ndimage as ndi
from skimage.segmentation import slic
from skimage.util import img_as_ubyte

from superpixel_annotator import Annotation, compute_superpixels, load_volume
from superpixel_annotator.core.image_files import VolumeError
from superpixel_annotator.core.superpixels import Superpixels, achievable_segmentation_accuracy
from superpixel_annotator.core.volume import Volume

DATA_DIR = Path(__file__).resolve().parents[1].parent / "shared/data/brats2013"
RESULTS_DIR = Path(__file__).resolve().parent / "results"
CHECKPOINTS = (1, 3, 5, 10, 20)
GOAL_DICE = 0.85
# Samples per voxel along a stroke's line when clipping it to its region.
_LINE_SAMPLES_PER_VOXEL = 4
# Supervoxels within this many voxels of the tumour are its surroundings for the separability.
_SURROUNDINGS = 5
_NIFTI = ".nii*"


@dataclasses.dataclass(frozen=True)
class Scan:
    """One image of a case: a file and, for a 4D file, the index of the volume in it."""

    path: Path
    volume_index: int = 0

    def load(self) -> Volume:
        """The image, read with :func:`load_volume`."""
        return load_volume(self.path, volume_index=self.volume_index)


@dataclasses.dataclass(frozen=True)
class BratsCase:
    """A case's FLAIR, its whole-tumour ground truth (labels > 0) and its T1c if present."""

    name: str
    flair: Scan
    truth: Scan
    t1c: Scan | None


def _sibling(flair: Path, pattern: str) -> Path | None:
    """The single file beside ``flair`` whose name matches ``pattern``, if there is one."""
    matches = sorted(flair.parent.glob(pattern))
    return matches[0] if len(matches) == 1 else None


def find_cases(data_dir: Path) -> list[BratsCase]:
    """The BraTS cases under ``data_dir``, sorted by name.

    Recognized layouts, each case in its own folder unless told otherwise:

    - BraTS 2013 as redistributed with DeepMedic: ``Flair*``, ``OT*``, ``T1c*``;
    - BraTS 2017-2021: ``<case>_flair``, ``<case>_seg``, ``<case>_t1ce``;
    - BraTS 2023 and later: ``<case>-t2f``, ``<case>-seg``, ``<case>-t1c``;
    - the Medical Segmentation Decathlon's brain tumours: 4D ``imagesTr/<case>`` (FLAIR
      volume 0, T1 with gadolinium volume 2) and ``labelsTr/<case>``.

    All files are NIfTI (``.nii`` or ``.nii.gz``). A FLAIR without its ground truth is left out.
    """
    found = {}
    for flair in data_dir.rglob("Flair*" + _NIFTI):
        found[flair.parent.name] = (
            flair,
            _sibling(flair, "OT*" + _NIFTI),
            _sibling(flair, "T1c*" + _NIFTI),
        )
    for flair_suffix, truth_suffix, t1c_suffix in (
        ("_flair", "_seg", "_t1ce"),
        ("-t2f", "-seg", "-t1c"),
    ):
        for flair in data_dir.rglob(f"*{flair_suffix}{_NIFTI}"):
            name = flair.name[: flair.name.index(flair_suffix)]
            truth, t1c = (
                _sibling(flair, name + suffix + _NIFTI) for suffix in (truth_suffix, t1c_suffix)
            )
            found[name] = (flair, truth, t1c)
    cases = [
        BratsCase(name, Scan(flair), Scan(truth), Scan(t1c) if t1c else None)
        for name, (flair, truth, t1c) in found.items()
        if truth is not None
    ]
    for images in data_dir.rglob("imagesTr"):
        for image in images.glob("[!.]*" + _NIFTI):
            truth = images.parent / "labelsTr" / image.name
            if truth.is_file():
                name = image.name.split(".")[0]
                cases.append(BratsCase(name, Scan(image, 0), Scan(truth), Scan(image, 2)))
    return sorted(cases, key=lambda case: case.name)


def flipped(volume: Volume, axis: int | None) -> Volume:
    """``volume`` mirrored along ``axis`` (itself when None)."""
    if axis is None:
        return volume
    return dataclasses.replace(volume, data=np.ascontiguousarray(np.flip(volume.data, axis)))


def dice(prediction: np.ndarray, truth: np.ndarray) -> float:
    """Dice coefficient of two boolean volumes (1.0 when both are empty)."""
    total = prediction.sum() + truth.sum()
    return 1.0 if total == 0 else float(2 * (prediction & truth).sum() / total)


def principal_stroke(region: np.ndarray) -> np.ndarray:
    """The longest straight run inside a 2D region along its principal axis through its centroid.

    Parameters
    ----------
    region : ndarray of bool, 2D
        One connected region.

    Returns
    -------
    ndarray of float, shape (2, 2)
        The stroke's end points as (row, col); both are the same point for a one-voxel run.
    """
    coords = np.argwhere(region).astype(np.float64)
    centroid = coords.mean(axis=0)
    if len(coords) == 1:
        return np.vstack([centroid, centroid])
    _, vectors = np.linalg.eigh(np.cov(coords.T))
    direction = vectors[:, -1]
    reach = np.abs(coords - centroid).max() * 2 + 1
    t = np.arange(-reach, reach, 1 / _LINE_SAMPLES_PER_VOXEL)
    samples = centroid + t[:, None] * direction
    voxels = np.rint(samples).astype(np.int64)
    valid = ((voxels >= 0) & (voxels < region.shape)).all(axis=1)
    inside = np.zeros(len(t), bool)
    inside[valid] = region[voxels[valid, 0], voxels[valid, 1]]
    if not inside.any():  # a curved region the line misses: click its voxel nearest the centroid
        nearest = coords[np.argmin(((coords - centroid) ** 2).sum(axis=1))]
        return np.vstack([nearest, nearest])
    edges = np.flatnonzero(np.diff(np.concatenate([[0], inside.astype(np.int8), [0]])))
    starts, stops = edges[::2], edges[1::2]
    longest = np.argmax(stops - starts)
    return voxels[[starts[longest], stops[longest] - 1]].astype(np.float64)


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
    best_size, best = 0, None
    for label, error in ((1, missed[index]), (0, wrong[index])):
        components, n = ndi.label(error)
        if n == 0:
            continue
        sizes = np.bincount(components.ravel())[1:]
        if sizes.max() > best_size:
            best_size, best = sizes.max(), (label, components == np.argmax(sizes) + 1)
    label, region = best
    return index, principal_stroke(region), label, region


def simulate(
    annotation: Annotation,
    truth: np.ndarray,
    strokes: int,
    can_erase: bool = True,
    levels: tuple[str, ...] = ("coarse", "fine"),
    fill_intensities: list[np.ndarray] | None = None,
) -> list[float]:
    """Dice against ``truth`` after each of ``strokes`` simulated strokes.

    With more than one selection level, the annotator draws the stroke at the level whose
    result is best (as a user looking at the superpixel overlay would choose whether to hold
    the fine-level modifier). With ``fill_intensities``, :meth:`Annotation.autofill` runs on
    them after every stroke that changed something.
    """
    ignored = np.zeros_like(truth)
    scores = []
    for _ in range(strokes):
        stroke = next_stroke(annotation.label_volume() > 0, truth, ignored, can_erase)
        if stroke is not None:
            index, points, label, region = stroke
            best_score, best_level = -1.0, levels[0]
            for level in levels if len(levels) > 1 else ():
                if annotation.paint(0, index, points, label, level).size:
                    score = dice(annotation.label_volume() > 0, truth)
                    annotation.undo()
                    if score > best_score:
                        best_score, best_level = score, level
            if annotation.paint(0, index, points, label, best_level).size == 0:
                ignored[index] |= region
            elif fill_intensities is not None:
                annotation.autofill(fill_intensities)
        scores.append(dice(annotation.label_volume() > 0, truth))
    return scores


def sample_app_superpixels(volume: Volume) -> Superpixels:
    """scikit-image SLIC as the original Plotly sample app called it."""
    data = volume.data
    image = img_as_ubyte((data - data.min()) / (data.max() - data.min()))
    labels = slic(image, n_segments=300, compactness=0.1, channel_axis=None, start_label=1)
    return Superpixels.from_labels(labels, params={"n_segments": 300, "compactness": 0.1})


def plot_curves(curves: dict[str, list[list[float]]], path: Path) -> None:
    """Write a PNG of each pipeline's median Dice (thick) and per-case Dice (thin) per stroke."""
    width, height, margin = 900, 560, 70
    colours = ["#7f7f7f", "#1f77b4", "#d62728", "#2ca02c", "#9467bd"]
    image = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(image)
    strokes = max(len(case) for cases in curves.values() for case in cases)
    right, bottom = width - 250, height - margin

    def xy(stroke: int, value: float) -> tuple[float, float]:
        x = margin + (stroke - 1) / max(strokes - 1, 1) * (right - margin)
        return x, bottom - value * (bottom - margin)

    for value in np.linspace(0, 1, 11):
        draw.line([xy(1, value), xy(strokes, value)], fill="#e6e6e6")
        draw.text((margin - 35, xy(1, value)[1] - 6), f"{value:.1f}", fill="black")
    for start in np.arange(1, strokes, 0.5)[::2]:  # dashed
        draw.line([xy(start, GOAL_DICE), xy(start + 0.25, GOAL_DICE)], fill="black")
    draw.text((margin - 38, xy(1, GOAL_DICE)[1] - 6), "goal", fill="black")
    for stroke in range(1, strokes + 1):
        if stroke in CHECKPOINTS or stroke == strokes:
            draw.text((xy(stroke, 0)[0] - 6, bottom + 8), str(stroke), fill="black")
    draw.rectangle([margin, margin, right, bottom], outline="black")
    runs = len(next(iter(curves.values())))
    title = f"Whole-tumour Dice per stroke: median of {runs} runs (thick), each run (thin)"
    draw.text((margin, margin - 40), title, fill="black")
    draw.text(((margin + right) // 2 - 20, bottom + 30), "strokes", fill="black")
    draw.text((10, margin - 20), "Dice", fill="black")
    for (name, cases), colour in zip(curves.items(), colours, strict=False):
        for case in cases:
            draw.line([xy(i + 1, v) for i, v in enumerate(case)], fill=colour, width=1)
        medians = np.median(np.array(cases), axis=0)
        draw.line([xy(i + 1, v) for i, v in enumerate(medians)], fill=colour, width=4)
        legend_y = margin + 24 * list(curves).index(name)
        draw.line([(right + 15, legend_y + 6), (right + 45, legend_y + 6)], fill=colour, width=4)
        draw.text((right + 52, legend_y), name, fill="black")
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path)


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DATA_DIR, help="folder holding BraTS cases")
    parser.add_argument("--cases", type=int, help="run only the first N cases by name")
    parser.add_argument("--strokes", type=int, default=max(CHECKPOINTS))
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
    with_t1c = all(case.t1c is not None for case in cases)
    axes = [None, 0, 1, 2] if args.flips else [None]
    curves: dict[str, list[list[float]]] = {}
    case_names = []
    case_rows = []
    for case, axis in itertools.product(cases, axes):
        scans = [case.flair, case.truth, *([case.t1c] if with_t1c else [])]
        try:
            flair, reference, *t1c = (flipped(scan.load(), axis) for scan in scans)
        except VolumeError as error:
            print(f"Skipped {case.name}: {error}")
            continue
        if reference.data.shape != flair.data.shape:
            print(f"Skipped {case.name}: its ground truth and FLAIR differ in shape")
            continue
        case_names.append(case.name + ("" if axis is None else f" flipped {axis}"))
        truth = reference.data > 0
        if not args.skip_sample_app:
            annotation = Annotation(sample_app_superpixels(flair))
            scores = simulate(annotation, truth, args.strokes, can_erase=False, levels=("fine",))
            curves.setdefault("sample app", []).append(scores)
        flair_superpixels = compute_superpixels(flair)
        coarse_labels = flair_superpixels.coarse[flair_superpixels.labels]
        case_rows.append(
            f"| {case_names[-1]} | {truth.sum() * np.prod(flair.spacing) / 1000:.1f} | "
            f"{separability(flair_superpixels, flair.data, truth):.2f} | "
            f"{achievable_segmentation_accuracy(flair_superpixels.labels, truth):.3f} | "
            f"{achievable_segmentation_accuracy(coarse_labels, truth):.3f} |"
        )
        runs = {
            "ours, fine level only": (flair_superpixels, ("fine",), None),
            "ours": (flair_superpixels, ("coarse", "fine"), None),
            "ours + autofill": (flair_superpixels, ("coarse", "fine"), [flair.data]),
        }
        if with_t1c:
            runs["ours + autofill (FLAIR, T1c)"] = (
                compute_superpixels([flair, *t1c]),
                ("coarse", "fine"),
                [flair.data, t1c[0].data],
            )
        for name, (superpixels, levels, intensities) in runs.items():
            annotation = Annotation(superpixels)
            scores = simulate(annotation, truth, args.strokes, True, levels, intensities)
            curves.setdefault(name, []).append(scores)
    if not case_names:
        return
    print(markdown_table(curves, case_names))
    print(
        "\n| case | tumour (mL) | FLAIR separability (AUC) | ASA supervoxels | ASA coarse |"
        "\n|---|---:|---:|---:|---:|"
    )
    print("\n".join(case_rows))
    plot_path = (
        args.plot or RESULTS_DIR / f"simulated_annotator{'_flips' if args.flips else ''}.png"
    )
    plot_curves(curves, plot_path)
    print(f"\nPlot: {plot_path}")


if __name__ == "__main__":
    main()
