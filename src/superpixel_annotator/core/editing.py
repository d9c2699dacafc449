"""An edit session: one request's change to a user's annotation of a case.

The web layer hands over what the browser sent (the annotation state string, a stroke in a
view's mm, a Fill proposal, an uploaded segmentation) and gets back plain results: which
superpixels changed, the new state, messages, and which slices of each view must be drawn
again. Everything here can be tested without Dash.
"""

from __future__ import annotations

import re
from collections.abc import Collection
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from .annotation import Annotation
from .cases import Case, CaseStore, is_json_int
from .geometry import other_axes, polyline_length, section, view_geometry, view_to_voxels
from .image_files import Limits, VolumeError
from .marks import MAX_VOXEL_MARKS, Marks, marked_box
from .outlines import enclosing_box, placed, within
from .palette import MAX_LABEL
from .segmentation_io import read_segmentation_bytes

MAX_STROKE_VERTICES = 5000
MAX_STROKE_LENGTH_VOXELS = 20_000
"""The longest stroke painted, in voxels along its path once clipped to the slice (over 80
times across a 240-voxel slice): the work of a stroke is linear in its length."""
PREVIEW_VALUE = 255
"""The palette index of what Fill proposes before the user accepts it."""
_NUMBER = re.compile(r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?")
_NO_PROPOSAL = (np.zeros(0, np.int64), np.zeros(0, np.uint8))


def parse_stroke_path(path: str) -> np.ndarray:
    """The (x, y) vertices of a Plotly SVG path such as ``"M1,2L3,4"``.

    Raises
    ------
    ValueError
        If the path is not a list of coordinate pairs of a sensible length.
    """
    if not isinstance(path, str) or len(path) > 40 * MAX_STROKE_VERTICES:
        raise ValueError("stroke path is not a string of a sensible length")
    numbers = np.array([float(n) for n in _NUMBER.findall(path)])
    if numbers.size < 2 or numbers.size % 2 or not np.isfinite(numbers).all():
        raise ValueError("stroke path is not a list of coordinate pairs")
    return numbers.reshape(-1, 2)


def proposal_arrays(
    preview, count: int, *, labels: Collection[int] | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """The (ids, labels) of a Fill preview sent back by the browser; empty when there is none
    or it is malformed.

    Parameters
    ----------
    preview : dict or None
        ``{"ids": [...], "labels": [...]}`` as :meth:`EditSession.propose_fill` made it.
    count : int
        The number of superpixels of the case.
    labels : collection of int, optional
        The palette's label values: a preview with others is dropped (0 is always allowed).
        By default 0 to ``MAX_LABEL``.
    """
    if not isinstance(preview, dict):
        return _NO_PROPOSAL
    try:
        ids = np.asarray(preview.get("ids"), dtype=np.int64)
        values = np.asarray(preview.get("labels"), dtype=np.int64)
    except (TypeError, ValueError, OverflowError):
        return _NO_PROPOSAL
    valid = ids.ndim == 1 and ids.shape == values.shape
    if not valid or (ids.size and (ids.min() < 1 or ids.max() > count)):
        return _NO_PROPOSAL
    if values.size and (values.min() < 0 or values.max() > MAX_LABEL):
        return _NO_PROPOSAL
    if labels is not None and not np.isin(values, [0, *labels]).all():
        return _NO_PROPOSAL
    return ids, values.astype(np.uint8)


def shown_labels(annotation: Annotation, proposal: tuple[np.ndarray, np.ndarray]) -> Marks:
    """The marks as the overlay shows them (see :meth:`Annotation.marks`): with a Fill
    ``proposal`` (ids, labels), the superpixels it would label in :data:`PREVIEW_VALUE` and
    those it would clear unlabelled."""
    marks = annotation.marked_labels()
    marks[proposal[0]] = np.where(proposal[1] > 0, PREVIEW_VALUE, 0)
    return Marks(marks, annotation.voxel_marks)


@dataclass(frozen=True)
class FillProposal:
    """What Fill would label, for the user to accept or discard.

    Attributes
    ----------
    ids, labels : ndarray
        The superpixels whose label would change, and their new labels (0: cleared).
    text : str
        What the proposal holds, for the user.
    """

    ids: np.ndarray
    labels: np.ndarray
    text: str

    def to_preview(self) -> dict:
        """The proposal as the browser keeps it (see :func:`proposal_arrays`)."""
        return {"ids": self.ids.tolist(), "labels": self.labels.tolist()}


class EditSession:
    """A user's annotation of ``case``, opened from the state string the browser sent.

    Parameters
    ----------
    case : Case
        The scan edited.
    state : str or None
        The annotation state (see :meth:`Annotation.to_state`).
    label_values : collection of int
        The palette's label values; 0 (the eraser) is always allowed. A state or a preview
        holding other labels is refused.
    preview : dict, optional
        The Fill proposal on screen, if any (see :func:`proposal_arrays`).

    Raises
    ------
    AnnotationStateError
        When ``state`` does not fit the case's superpixels or holds labels not in the palette.
    """

    def __init__(
        self, case: Case, state: str | None, label_values: Collection[int], preview=None
    ) -> None:
        self.case = case
        self.label_values = frozenset(label_values)
        self.annotation = Annotation.from_state(
            case.superpixels, state, labels=self.label_values, appearance=case.appearance
        )
        self.proposal = proposal_arrays(preview, case.superpixels.count, labels=self.label_values)
        self.shown_before = shown_labels(self.annotation, self.proposal)

    def stroke(self, axis: int, index, path, label, level: str = "coarse") -> np.ndarray:
        """Paint a stroke drawn on slice ``index`` of the view along ``axis``.

        Parameters
        ----------
        axis : int
            The view (0 axial, 1 coronal, 2 sagittal).
        index, path, label
            As the browser sent them: the slice, the SVG path in the view's mm (see
            :func:`parse_stroke_path`) and the label (0 erases).
        level : str
            One of :data:`~.annotation.LEVELS`.

        Returns
        -------
        ndarray of int
            The superpixels whose marked label changed.

        Raises
        ------
        ValueError
            When the label, slice or path is not usable, such as a path of more than
            :data:`MAX_STROKE_VERTICES` vertices or longer than
            :data:`MAX_STROKE_LENGTH_VOXELS`; the message says which.
        """
        if not is_json_int(label) or label not in {0} | self.label_values:
            raise ValueError(f"unknown label {label!r}")
        if not self.case.has_slice(axis, index):
            raise ValueError(f"slice index {index!r} is outside the volume")
        xy = parse_stroke_path(path)
        if len(xy) > MAX_STROKE_VERTICES:
            raise ValueError("stroke has too many points")
        points = view_to_voxels(xy, view_geometry(self.case.volume.spacing, axis))
        shape = section(self.case.superpixels.labels, axis, index).shape
        if polyline_length(points, shape) > MAX_STROKE_LENGTH_VOXELS:
            raise ValueError("stroke is too long")
        return self.annotation.paint(axis, index, points, label, level, self.case.intensities)

    def grown_text(self, changed: np.ndarray) -> str:
        """What a grow stroke labelled, for the user to see a growth beyond the slices on
        screen; ``changed`` are the superpixels :meth:`stroke` returned."""
        return (
            f"The grow stroke labelled {self._superpixels_and_volume(changed)}: "
            "undo it (Ctrl+Z) if it spread too far."
        )

    def _superpixels_and_volume(self, ids: np.ndarray) -> str:
        voxels = self.case.superpixel_sizes[ids].sum()
        volume_ml = voxels * float(np.prod(self.case.volume.spacing)) / 1000
        return f"{ids.size:,} superpixels ({volume_ml:.1f} mL)"

    def propose_fill(self) -> FillProposal | None:
        """What Fill would label (``None`` when nothing), without changing the annotation."""
        labels = self.annotation.autofill_labels(self.case.intensities)
        ids = np.flatnonzero(labels != self.annotation.superpixel_labels)
        ids = ids[ids > 0]
        if not ids.size:
            return None
        added = labels[ids] > 0
        cleared = int((~added).sum())
        text = (
            f"Fill proposes {self._superpixels_and_volume(ids[added])}, shown in white"
            + (f", and clears {cleared:,}" if cleared else "")
            + ". Accept (Enter) or discard (Esc)."
        )
        return FillProposal(ids, labels[ids], text)

    def accept_fill(self) -> np.ndarray:
        """Apply the proposal on screen as one undoable step; returns the changed ids."""
        labels = self.annotation.superpixel_labels.copy()
        labels[self.proposal[0]] = self.proposal[1]
        return self.annotation.set_superpixel_labels(labels, filled=True)

    def open_segmentation(
        self, content: bytes, filename: str, limits: Limits
    ) -> tuple[np.ndarray, str]:
        """Load an uploaded label map of the case in one undoable step.

        Returns
        -------
        changed : ndarray of int
            The superpixels whose marked label changed.
        text : str
            How well the superpixels reproduce the file, for the user.

        Raises
        ------
        VolumeError
            When the file is unusable, not on the scan's grid, or holds labels outside the
            palette; one line naming the file.
        """
        segmentation = read_segmentation_bytes(
            content,
            filename,
            self.case.volume,
            limits=limits,
            max_marks=self.case.superpixels.count + 1,
        )
        labels = segmentation.labels
        unknown = sorted(set(np.unique(labels).tolist()) - {0} - self.label_values)
        if unknown:
            raise VolumeError(
                f"{filename}: labels {unknown} are not in this annotator's palette "
                f"{sorted(self.label_values)}"
            )
        changed, differing = self.annotation.load_label_volume(
            labels, segmentation.superpixel_marks
        )
        kept = len(self.annotation.voxel_marks)
        if differing == 0 and not kept:
            return changed, f"Opened {filename}: it matches the superpixels exactly."
        if differing == 0:
            return changed, (
                f"Opened {filename} as it is: {kept:,} voxels the superpixels do not follow "
                "keep the file's labels until a stroke goes over their superpixels."
            )
        return changed, (
            f"Opened {filename}: mapped onto the superpixels by majority, "
            f"{differing:,} voxels differ from the file (more than {MAX_VOXEL_MARKS:,} "
            "differ, too many to keep)."
        )

    def shown_after(self, proposal: FillProposal | None = None) -> Marks:
        """The marks the overlay shows now, with ``proposal`` when one is shown."""
        if proposal is None:
            return self.annotation.marks()
        return shown_labels(self.annotation, (proposal.ids, proposal.labels))


class Segmentations:
    """The label volumes (smooth outlines) of recent annotations, per case; read-only.

    A stroke compares the labels before it with those after, and the next stroke starts
    from those, so the last few are kept, each as the labels of its labelled box: a stroke
    needs only the slices that changed and the one on screen, and meshes and statistics
    only the box. Whole volumes, for downloads and saves, are kept for the last two.

    Parameters
    ----------
    cases : CaseStore
        Where cases are found by key.
    size : int
        How many labelled boxes are kept.
    """

    def __init__(self, cases: CaseStore, size: int = 4) -> None:
        self._cases = cases
        self._boxed = lru_cache(maxsize=size)(self._render_box)
        self._whole = lru_cache(maxsize=2)(self._whole_volume)

    def get(self, case: Case, marks: Marks) -> np.ndarray:
        """The label volume of ``case`` for ``marks`` (see :meth:`Annotation.marks`), as
        :meth:`Annotation.label_volume` gives it: smooth outlines, refined borders between
        labels, and the voxel marks."""
        return self._whole(case.key, marks)

    def boxed(self, case: Case, marks: Marks) -> tuple[tuple[slice, ...] | None, np.ndarray]:
        """The labelled box of the label volume :meth:`get` gives (None when nothing is
        labelled) and the labels in it: nothing outside the box is labelled."""
        return self._boxed(case.key, marks)

    def section(self, case: Case, marks: Marks, axis: int, index: int) -> np.ndarray:
        """Slice ``index`` along ``axis`` of the label volume :meth:`get` gives, made from
        the labelled box alone."""
        box, labels = self.boxed(case, marks)
        shape = section(case.superpixels.labels, axis, index).shape
        if box is None or not box[axis].start <= index < box[axis].stop:
            return placed(None, labels, shape)
        rows, cols = other_axes(axis)
        return placed((box[rows], box[cols]), section(labels, axis, index - box[axis].start), shape)

    def changed_slices(self, case: Case, before: Marks, after: Marks) -> list[list[int]]:
        """For each view axis, the slices whose labels differ between marks ``before`` and
        ``after``."""
        boxed = [self.boxed(case, marks) for marks in (before, after)]
        boxes = [box for box, _ in boxed if box is not None]
        if not boxes:
            return [[], [], []]
        # Both volumes are unlabelled outside their boxes: compare within the two boxes'.
        box = enclosing_box(boxes)
        differs = within(*boxed[0], box) != within(*boxed[1], box)
        # Two passes over the box instead of one per axis: a plane of the voxels that differ
        # in any slice along the first axis gives the slices along the other two.
        plane = differs.any(axis=0)
        along = (
            differs.reshape(len(differs), -1).any(axis=1),
            plane.any(axis=1),
            plane.any(axis=0),
        )
        return [
            (np.flatnonzero(changed) + part.start).tolist()
            for changed, part in zip(along, box, strict=True)
        ]

    def _render_box(self, key: str, marks: Marks) -> tuple[tuple[slice, ...] | None, np.ndarray]:
        case = self._cases.get(key)
        box, labels = marked_box(case.superpixels, marks, case.appearance)
        labels.setflags(write=False)
        return box, labels

    def _whole_volume(self, key: str, marks: Marks) -> np.ndarray:
        volume = placed(*self._boxed(key, marks), self._cases.get(key).superpixels.labels.shape)
        volume.setflags(write=False)
        return volume
