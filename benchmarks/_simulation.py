"""Shared parts of the simulated annotators (``simulated_annotator.py``, ``simulated_classes.py``).

Not a benchmark itself: finding BraTS cases and reading their scans and ground truth, the
straight stroke through an error region, drawing a stroke at the best selection level, Dice,
and the plot of Dice curves.
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw
from scipy import ndimage as ndi

from superpixel_annotator import Annotation, load_volume
from superpixel_annotator.core.image_files import VolumeError
from superpixel_annotator.core.volume import Volume

DATA_DIR = Path(__file__).resolve().parents[1].parent / "shared/data/brats2013"
RESULTS_DIR = Path(__file__).resolve().parent / "results"
GOAL_DICE = 0.85
# Samples per voxel along a stroke's line when clipping it to its region.
_LINE_SAMPLES_PER_VOXEL = 4
_NIFTI = ".nii*"
# The sub-region class (1 oedema, 2 necrotic or non-enhancing core, 3 enhancing) of each
# ground-truth label value, per release: BraTS 2013-2021 (1 necrosis, 2 oedema, 3
# non-enhancing, 4 enhancing), BraTS 2023 and later (1 core, 2 oedema, 3 enhancing) and the
# Decathlon (1 oedema, 2 non-enhancing, 3 enhancing).
_BRATS_CLASSES = (0, 2, 1, 2, 3)
_BRATS_2023_CLASSES = (0, 2, 1, 3)
_DECATHLON_CLASSES = (0, 1, 2, 3)


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
    """A case's FLAIR, its ground truth and its T1c if present.

    ``classes`` gives the sub-region class (0 background, 1 oedema, 2 necrotic or
    non-enhancing core, 3 enhancing) of each label value of the ground truth.
    """

    name: str
    flair: Scan
    truth: Scan
    t1c: Scan | None
    classes: tuple[int, ...] = _BRATS_CLASSES


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
            _BRATS_CLASSES,
        )
    for flair_suffix, truth_suffix, t1c_suffix, classes in (
        ("_flair", "_seg", "_t1ce", _BRATS_CLASSES),
        ("-t2f", "-seg", "-t1c", _BRATS_2023_CLASSES),
    ):
        for flair in data_dir.rglob(f"*{flair_suffix}{_NIFTI}"):
            name = flair.name[: flair.name.index(flair_suffix)]
            truth, t1c = (
                _sibling(flair, name + suffix + _NIFTI) for suffix in (truth_suffix, t1c_suffix)
            )
            found[name] = (flair, truth, t1c, classes)
    cases = [
        BratsCase(name, Scan(flair), Scan(truth), Scan(t1c) if t1c else None, classes)
        for name, (flair, truth, t1c, classes) in found.items()
        if truth is not None
    ]
    for images in data_dir.rglob("imagesTr"):
        for image in images.glob("[!.]*" + _NIFTI):
            truth = images.parent / "labelsTr" / image.name
            if truth.is_file():
                name = image.name.split(".")[0]
                cases.append(
                    BratsCase(name, Scan(image, 0), Scan(truth), Scan(image, 2), _DECATHLON_CLASSES)
                )
    return sorted(cases, key=lambda case: case.name)


@dataclasses.dataclass(frozen=True)
class Run:
    """One case as a run sees it, possibly mirrored: its name, images and ground truth."""

    name: str
    flair: Volume
    truth: Volume
    t1c: Volume | None
    classes: tuple[int, ...]

    def truth_classes(self) -> np.ndarray | None:
        """The sub-region class of each voxel (uint8, see :class:`BratsCase`); None when the
        ground truth holds a value that is not a label of its release."""
        values = self.truth.data
        known = np.isin(values, np.arange(len(self.classes)))
        if not known.all():
            return None
        return np.asarray(self.classes, np.uint8)[values.astype(np.int64)]


def load_runs(cases: Sequence[BratsCase], axes: Sequence[int | None]) -> Iterator[Run]:
    """Each case mirrored along each of ``axes`` (None: as it is); a case that cannot be read is
    skipped with a one-line message."""
    for case, axis in itertools.product(cases, axes):
        scans = [case.flair, case.truth, *([case.t1c] if case.t1c else [])]
        try:
            flair, truth, *t1c = (flipped(scan.load(), axis) for scan in scans)
        except VolumeError as error:
            print(f"Skipped {case.name}: {error}")
            continue
        if truth.data.shape != flair.data.shape:
            print(f"Skipped {case.name}: its ground truth and FLAIR differ in shape")
            continue
        name = case.name + ("" if axis is None else f" flipped {axis}")
        yield Run(name, flair, truth, t1c[0] if t1c else None, case.classes)


def flipped(volume: Volume, axis: int | None) -> Volume:
    """``volume`` mirrored along ``axis`` (itself when None)."""
    if axis is None:
        return volume
    return dataclasses.replace(volume, data=np.ascontiguousarray(np.flip(volume.data, axis)))


def dice(prediction: np.ndarray, truth: np.ndarray) -> float:
    """Dice coefficient of two boolean volumes (1.0 when both are empty)."""
    total = prediction.sum() + truth.sum()
    return 1.0 if total == 0 else float(2 * (prediction & truth).sum() / total)


def largest_region(error: np.ndarray) -> np.ndarray | None:
    """The largest connected region of a 2D mask, as a mask; None when the mask is empty."""
    components, n = ndi.label(error)
    if n == 0:
        return None
    return components == np.argmax(np.bincount(components.ravel())[1:]) + 1


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


def paint_best_level(
    annotation: Annotation,
    index: int,
    points: np.ndarray,
    label: int,
    levels: Sequence[str],
    score: Callable[[np.ndarray], float],
    intensities: Sequence[np.ndarray] = (),
) -> str | None:
    """Draw an axial stroke at the level whose label volume ``score`` rates best.

    With more than one level, each is tried and undone, as a user watching the superpixel
    overlay would switch Fine or Grow strokes on. ``intensities`` are the scan's, for the grow
    level. Returns the level drawn, or None when the stroke changed nothing.
    """

    def paint(level: str) -> np.ndarray:
        return annotation.paint(0, index, points, label, level, intensities)

    best_score, best_level = -np.inf, levels[0]
    for level in levels if len(levels) > 1 else ():
        if paint(level).size:
            value = score(annotation.label_volume())
            annotation.undo()
            if value > best_score:
                best_score, best_level = value, level
    return best_level if paint(best_level).size else None


def plot_curves(
    curves: dict[str, list[list[float]]], path: Path, title: str, checkpoints: Sequence[int]
) -> None:
    """Write a PNG of each curve's median (thick) and per-run values (thin) per stroke."""
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
        if stroke in checkpoints or stroke == strokes:
            draw.text((xy(stroke, 0)[0] - 6, bottom + 8), str(stroke), fill="black")
    draw.rectangle([margin, margin, right, bottom], outline="black")
    runs = len(next(iter(curves.values())))
    caption = f"{title}: median of {runs} runs (thick), each run (thin)"
    draw.text((margin, margin - 40), caption, fill="black")
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
