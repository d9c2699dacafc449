"""Annotation state: one label per superpixel, with undo and redo.

Each superpixel holds a label (0: unlabelled), and an unlabelled one may be marked as
erased by the user: erased superpixels stop :meth:`Annotation.autofill` and keep smooth
outlines out. Voxel marks hold labels finer than superpixels: the brush's, and those of
label volumes superpixels cannot make (see :mod:`~superpixel_annotator.core.marks`). The
state is small, so it travels with the user's session; :meth:`Annotation.to_state` and
:meth:`Annotation.from_state` turn it into a compact string and back.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence

import numpy as np

from .autofill import DEFAULT_ENRICHMENT, grow_labels, superpixel_graph
from .brush import brush_voxels
from .client_state import (
    MAX_HISTORY,
    MAX_HISTORY_VOXEL_MARKS,
    AnnotationStateError,
    Change,
    read_state,
    write_state,
)
from .geometry import polyline_voxels, section
from .marks import (
    ERASED,
    NO_VOXEL_MARK,
    Marks,
    VoxelMarks,
    checked_label_volume,
    opening_marks,
    shown_volume,
    split_marks,
    valid_marks,
)
from .palette import MAX_LABEL
from .refinement import Appearance
from .statistics import majority_labels
from .superpixels import Superpixels

__all__ = [
    "ERASED",
    "LEVELS",
    "MAX_HISTORY",
    "Annotation",
    "AnnotationStateError",
    "Change",
    "Marks",
    "VoxelMarks",
    "split_marks",
]
LEVELS = ("coarse", "fine", "grow", "brush")
_NO_IDS = (np.zeros(0, np.int64), np.zeros(0, np.int16), np.zeros(0, np.int16))


class Annotation:
    """Labels painted on superpixels, with an undo/redo history.

    Parameters
    ----------
    superpixels : Superpixels
        The partition that strokes select from.
    appearance : Appearance, optional
        The scan's intensities (of these superpixels): with them, :meth:`label_volume`
        refines the borders between labels to voxels (see
        :func:`~superpixel_annotator.core.refinement.refine_borders`).
    """

    def __init__(self, superpixels: Superpixels, appearance: Appearance | None = None) -> None:
        self.superpixels = superpixels
        self.appearance = appearance
        self.superpixel_labels = np.zeros(superpixels.count + 1, dtype=np.uint8)
        self.erased = np.zeros(superpixels.count + 1, dtype=bool)
        self.voxel_marks = VoxelMarks.none()
        self._undo: list[Change] = []
        self._redo: list[Change] = []

    def marked_labels(self) -> np.ndarray:
        """Each superpixel's label, or :data:`ERASED` where the user erased it; int16,
        shape (count + 1,)."""
        marks = self.superpixel_labels.astype(np.int16)
        marks[self.erased] = ERASED
        return marks

    def marks(self) -> Marks:
        """Everything the label volume is made from: :meth:`marked_labels` and the voxel
        marks."""
        return Marks(self.marked_labels(), self.voxel_marks)

    @property
    def can_undo(self) -> bool:
        return bool(self._undo)

    @property
    def can_redo(self) -> bool:
        return bool(self._redo)

    def superpixels_on_stroke(
        self, axis: int, index: int, points: np.ndarray, level: str = "coarse"
    ) -> np.ndarray:
        """Ids of the superpixels a polyline on one slice selects (background excluded).

        At the ``"fine"`` and ``"grow"`` levels, those it passes through; at the ``"coarse"``
        level, every superpixel of the coarse regions it passes through (the same without a
        coarse level).
        """
        if level not in LEVELS:
            raise ValueError(f"level must be one of {LEVELS}, not {level!r}")
        superpixel_section = section(self.superpixels.labels, axis, index)
        rows, cols = polyline_voxels(points, superpixel_section.shape).T
        ids = np.unique(superpixel_section[rows, cols])
        ids = ids[ids > 0]
        return self.superpixels.members(ids) if level == "coarse" else ids

    def paint(
        self,
        axis: int,
        index: int,
        points: np.ndarray,
        label: int,
        level: str = "coarse",
        intensities: Sequence[np.ndarray] = (),
    ) -> np.ndarray:
        """Give ``label`` to every superpixel the stroke selects, or with the brush to the
        voxels it paints; ``label=0`` erases.

        Parameters
        ----------
        axis : int
            The axis the slice is taken along (0 axial, 1 coronal, 2 sagittal).
        index : int
            The slice index along ``axis``.
        points : array-like, shape (n, 2)
            The stroke as (row, col) voxel coordinates within that slice.
        label : int
            The label value, 0 to erase.
        level : {"coarse", "fine", "grow", "brush"}
            Select whole coarse regions (the default), only the superpixels crossed, or
            those and the superpixels the label grows into from them (see
            :meth:`grown_selection`; the eraser erases as at the fine level); or paint
            voxel marks near the stroke (:func:`~superpixel_annotator.core.brush.brush_voxels`).
        intensities : sequence of ndarray
            One intensity volume per modality, for the ``"grow"`` level (as for
            :meth:`autofill_labels`) and for the brush to snap to.

        Returns
        -------
        ndarray of int
            The superpixels whose label, erased mark or voxel marks changed (empty when
            nothing changed: no undo step is recorded). Erasing marks unlabelled superpixels
            too, so smooth outlines stay out of them; a stroke on the superpixels drops the
            voxel marks inside those it selects.
        """
        if not 0 <= axis <= 2:
            raise ValueError(f"axis must be 0, 1 or 2, not {axis}")
        if not 0 <= index < self.superpixels.labels.shape[axis]:
            raise ValueError(f"slice index {index} is outside the volume along axis {axis}")
        if not 0 <= label <= MAX_LABEL:
            raise ValueError(f"label must be between 0 and {MAX_LABEL}, not {label}")
        if level == "brush":
            shape, spacing = self.superpixels.labels.shape, self.superpixels.spacing
            voxels = brush_voxels(shape, spacing, axis, index, points, intensities)
            return self._record(Change(*_NO_IDS, False, *self.voxel_marks.painting(voxels, label)))
        ids = self.superpixels_on_stroke(axis, index, points, level)
        if level == "grow" and label and ids.size:
            ids = self.grown_selection(ids, label, intensities)
        return self._change(ids, np.full(ids.size, label or ERASED, np.int16))

    def grown_selection(
        self, ids: np.ndarray, label: int, intensities: Sequence[np.ndarray]
    ) -> np.ndarray:
        """Superpixels ``ids`` and those ``label`` grows into once the user labels them.

        Fill for one label: growing from the superpixels the user gave ``label``, ``ids``
        included, over touching superpixels whose mean intensities are like theirs, then
        filling the pockets they enclose (see :func:`grow_labels`). Superpixels of other
        labels and those the user erased stop the growth.

        Parameters
        ----------
        ids : ndarray of int
            The superpixels a stroke selects.
        label : int
            The label drawn, not 0.
        intensities : sequence of ndarray
            One intensity volume per modality, as for :meth:`autofill_labels`.

        Returns
        -------
        ndarray of int
            Every superpixel that then holds ``label``: ``ids``, those the user gave it
            before and those it grows into, sorted.
        """
        if not intensities:
            raise ValueError("growing a label needs the scan's intensities")
        labelled, erased = self.user_marks()
        labels = self.superpixel_labels.copy()
        labels[ids], labelled[ids], erased[ids] = label, True, False
        seeds = np.where(labelled & (labels == label), label, 0).astype(np.uint8)
        blocked = erased | ((labels > 0) & (labels != label))
        graph = superpixel_graph(self.superpixels, intensities)
        grown = grow_labels(graph, seeds, blocked)
        return np.union1d(ids, np.flatnonzero(grown == label))

    def set_superpixel_labels(
        self, superpixel_labels: np.ndarray, filled: bool = False
    ) -> np.ndarray:
        """Replace all labels in one undoable step; returns the ids whose label changed.

        ``filled`` records the step as an automatic fill rather than the user's labels.
        Superpixels the user's step unlabels become erased.
        """
        new = np.asarray(superpixel_labels, dtype=np.uint8)
        if new.shape != self.superpixel_labels.shape:
            raise ValueError(f"expected {self.superpixel_labels.shape} labels, got {new.shape}")
        ids = np.flatnonzero(new != self.superpixel_labels)
        ids = ids[ids > 0]
        marks = new[ids].astype(np.int16)
        marks[marks == 0] = 0 if filled else ERASED
        return self._change(ids, marks, filled)

    def _change(self, ids: np.ndarray, marks: np.ndarray, filled: bool = False) -> np.ndarray:
        """Record one step giving superpixels ``ids`` the marked labels ``marks``, for those
        it changes, and dropping the voxel marks inside them; returns the superpixels it
        touches (see :meth:`_touched`)."""
        before = self.marked_labels()[ids]
        changed = before != marks
        voxels = self.voxel_marks.inside(self.superpixels.labels, ids)
        dropped = (voxels, self.voxel_marks.at(voxels), np.full(voxels.size, NO_VOXEL_MARK, "i2"))
        return self._record(Change(ids[changed], before[changed], marks[changed], filled, *dropped))

    def user_marks(self) -> tuple[np.ndarray, np.ndarray]:
        """Which superpixels the user labelled and which the user erased.

        Whose labels they are is read from the undo history: the last step touching a
        superpixel decides, and labelled superpixels that no recorded step touched count as
        the user's.

        Returns
        -------
        labelled, erased : ndarray of bool, shape (count + 1,)
            Superpixels holding a label the user set, and those the user erased.
        """
        by_user = np.ones(self.superpixel_labels.shape, bool)
        for change in self._undo:
            by_user[change.ids] = not change.filled
        return by_user & (self.superpixel_labels > 0), self.erased.copy()

    def autofill_labels(
        self, intensities: Sequence[np.ndarray], enrichment: float = DEFAULT_ENRICHMENT
    ) -> np.ndarray:
        """The labels :meth:`autofill` would set, without changing anything (a preview).

        Parameters
        ----------
        intensities : sequence of ndarray
            One intensity volume per loaded modality, each of the superpixels' shape. Their
            per-superpixel statistics are computed once and cached (by array identity).
        enrichment : float
            How many times more frequent a superpixel's mean intensities must be among the
            labelled superpixels than in the whole head for it to be filled (see
            :func:`grow_labels`).

        Returns
        -------
        ndarray of uint8, shape (count + 1,)
            Proposed label of every superpixel (the input of :meth:`set_superpixel_labels`).
        """
        labelled, erased = self.user_marks()
        seeds = np.where(labelled, self.superpixel_labels, 0).astype(np.uint8)
        graph = superpixel_graph(self.superpixels, intensities)
        return grow_labels(graph, seeds, erased, enrichment)

    def autofill(
        self, intensities: Sequence[np.ndarray], enrichment: float = DEFAULT_ENRICHMENT
    ) -> np.ndarray:
        """Label the superpixels that are like, and connected to, those the user labelled.

        One undoable step. Growing from the user's labelled superpixels over the superpixel
        adjacency graph, a superpixel takes a neighbour's label when its mean intensities are
        close to that label's seeds; then pockets of superpixels the labels enclose are
        filled whatever their intensity. Superpixels the user labelled keep their label; those
        the user erased are never filled and stop the growth; those filled by an earlier
        autofill are filled again from the current seeds (so they may be cleared).

        Parameters
        ----------
        intensities, enrichment
            As for :meth:`autofill_labels`.

        Returns
        -------
        ndarray of int
            Ids of the superpixels whose label changed (empty: no step recorded).
        """
        return self.set_superpixel_labels(self.autofill_labels(intensities, enrichment), True)

    def load_label_volume(
        self, labels: np.ndarray, saved_marks: np.ndarray | None = None
    ) -> tuple[np.ndarray, int]:
        """Load a label volume, such as an opened segmentation, in one undoable step.

        For opening a segmentation (see :func:`~superpixel_annotator.volume.read_segmentation`).
        The superpixels take ``saved_marks`` (the :meth:`marked_labels` saved with the file):
        a segmentation this app saved comes back with its marks, erased superpixels
        included, also one an earlier version saved or one edited elsewhere. Without them,
        each superpixel takes the most common label of its voxels (0 included; ties go to
        the smaller label) and none is erased. The voxels the superpixels' labels show
        otherwise keep the file's labels as voxel marks; when more than
        :data:`~superpixel_annotator.core.marks.MAX_VOXEL_MARKS` differ, the other marks are
        tried, and failing both, those showing the fewest voxels otherwise are taken without
        voxel marks (see :func:`~superpixel_annotator.core.marks.opening_marks`). The labels
        set count as the user's, so they seed :meth:`autofill`.

        Parameters
        ----------
        labels : ndarray of int, shape of the superpixels
            Labels from 0 to ``MAX_LABEL`` in display order.
        saved_marks : ndarray of int, shape (count + 1,), optional
            Marked labels saved with ``labels``; ignored unless they are marked labels of
            these superpixels.

        Returns
        -------
        changed : ndarray of int
            Ids of the superpixels whose label, erased mark or voxel marks changed.
        differing_voxels : int
            How many voxels of :meth:`label_volume` now differ from ``labels``: none, unless
            too many voxels differ to keep them as voxel marks (then those in superpixels
            the vote went against, outside the head, and where smooth outlines differ).
        """
        labels = checked_label_volume(labels, self.superpixels.labels.shape)
        saved = valid_marks(self.superpixels, saved_marks)
        new, voxels = opening_marks(self.superpixels, self.appearance, labels, saved)
        old = self.marked_labels()
        labelled, _ = self.user_marks()
        # Superpixels last set by autofill are taken over as the user's, even when unchanged.
        ids = np.flatnonzero((new != old) | ((old > 0) & ~labelled))
        kept = VoxelMarks.none() if voxels is None else voxels
        touched = np.union1d(self.voxel_marks.indices, kept.indices)
        before, after = self.voxel_marks.at(touched), kept.at(touched)
        moved = before != after
        step = Change(ids, old[ids], new[ids], False, touched[moved], before[moved], after[moved])
        self._record(step)
        changed = np.union1d(ids[new[ids] != old[ids]], self._touched(step, ids=False))
        if voxels is not None:
            return changed, 0
        return changed, int(np.count_nonzero(self.label_volume() != labels))

    def remapped(
        self, superpixels: Superpixels, appearance: Appearance | None = None
    ) -> Annotation:
        """This annotation on other superpixels of the same volume, each labelled by majority.

        For changing the superpixel size while keeping the labels: the new superpixels vote
        as in :meth:`load_label_volume`, those mostly made of erased ones are erased, and
        the voxels they show otherwise keep this label volume as voxel marks (unless too
        many differ). The result has no history; all its labels count as the user's.

        Parameters
        ----------
        superpixels : Superpixels
            A partition of the same volume (same shape).
        appearance : Appearance, optional
            The scan's intensities on ``superpixels`` (see :class:`Annotation`).

        Returns
        -------
        Annotation
        """
        if superpixels.labels.shape != self.superpixels.labels.shape:
            raise ValueError(
                f"superpixels of shape {superpixels.labels.shape} do not fit an annotation "
                f"of shape {self.superpixels.labels.shape}"
            )
        annotation = Annotation(superpixels, appearance)
        volume = self.label_volume()
        annotation.superpixel_labels[:] = majority_labels(superpixels, volume)
        erased_voxels = self.erased[self.superpixels.labels].astype(np.uint8)
        annotation.erased[:] = majority_labels(superpixels, erased_voxels) == 1
        annotation.erased &= annotation.superpixel_labels == 0
        voxels = VoxelMarks.differences(annotation.label_volume(), volume)
        annotation.voxel_marks = VoxelMarks.none() if voxels is None else voxels
        return annotation

    def _apply(self, change: Change, forward: bool) -> None:
        """Set the marks ``change`` leaves (``forward``) or found."""
        marks, voxel_marks = (
            (change.after, change.voxel_after) if forward else (change.before, change.voxel_before)
        )
        self.superpixel_labels[change.ids], self.erased[change.ids] = split_marks(marks)
        self.voxel_marks = self.voxel_marks.changed(change.voxels, voxel_marks)

    def _touched(self, change: Change, ids: bool = True) -> np.ndarray:
        """The superpixels ``change`` touches: its ``ids`` (unless ``ids`` is False) and those
        holding its voxels (0 for voxels outside the head), sorted."""
        holding = self.superpixels.labels.ravel()[change.voxels]
        return np.union1d(change.ids if ids else [], holding).astype(np.int64)

    def _record(self, change: Change) -> np.ndarray:
        """Apply ``change`` as a new step (none when it changes nothing); returns the
        superpixels it touches."""
        if not (change.ids.size or change.voxels.size):
            return change.ids
        self._apply(change, forward=True)
        self._undo.append(change)
        del self._undo[:-MAX_HISTORY]
        while sum(step.voxels.size for step in self._undo) > MAX_HISTORY_VOXEL_MARKS:
            del self._undo[0]
        self._redo.clear()
        return self._touched(change)

    def undo(self) -> np.ndarray:
        """Revert the last change; returns the ids it touched (empty if none)."""
        if not self._undo:
            return np.zeros(0, dtype=np.int64)
        change = self._undo.pop()
        self._apply(change, forward=False)
        self._redo.append(change)
        return self._touched(change)

    def redo(self) -> np.ndarray:
        """Re-apply the last undone change; returns the ids it touched (empty if none)."""
        if not self._redo:
            return np.zeros(0, dtype=np.int64)
        change = self._redo.pop()
        self._apply(change, forward=True)
        self._undo.append(change)
        return self._touched(change)

    def label_volume(self) -> np.ndarray:
        """The annotation as a uint8 volume of the superpixels' shape, with smooth outlines.

        Each superpixel's label fills its voxels, and the outline of the labelled voxels is
        then smoothed (see :func:`~superpixel_annotator.core.outlines.superpixel_segmentation`),
        never into erased superpixels. With the annotation's ``appearance``, the borders
        between two labels then follow the intensities (see
        :func:`~superpixel_annotator.core.refinement.refine_borders`). The voxel marks
        come on top (see :func:`~superpixel_annotator.core.marks.marked_box`).
        """
        return shown_volume(self.superpixels, self.marks(), self.appearance)

    def to_state(self) -> str:
        """Serialize labels, erased marks, voxel marks and history into a compact ASCII
        string (see :mod:`~superpixel_annotator.core.client_state`)."""
        return write_state(
            self.superpixel_labels, self.erased, self._undo, self._redo, self.voxel_marks
        )

    @classmethod
    def from_state(
        cls,
        superpixels: Superpixels,
        state: str | None,
        *,
        labels: Collection[int] | None = None,
        history: bool = True,
        appearance: Appearance | None = None,
    ) -> Annotation:
        """Rebuild an annotation from :meth:`to_state` output (``None`` gives an empty one).

        The work is bounded by the superpixel count whatever ``state`` holds (see
        :func:`~superpixel_annotator.core.client_state.read_state`).

        Parameters
        ----------
        superpixels : Superpixels
            The partition the state was written for.
        state : str or None
            The state, as the browser sent it.
        labels : collection of int, optional
            The label values the state may hold, such as a palette's (0, and erased marks in
            the history, always may); by default 0 to ``MAX_LABEL``.
        history : bool
            Whether to read the undo history; without it, the annotation's labels are read
            faster and it cannot undo.
        appearance : Appearance, optional
            See :class:`Annotation`.

        Raises
        ------
        AnnotationStateError
            If the string is not a state, does not fit ``superpixels`` or holds labels not in
            ``labels``.
        """
        annotation = cls(superpixels, appearance)
        if state is None:
            return annotation
        read = read_state(
            state, superpixels.count, labels, history=history, voxel_count=superpixels.labels.size
        )
        annotation.superpixel_labels[:] = read.labels
        annotation.superpixel_labels[0] = 0
        annotation.erased[:] = read.erased & (annotation.superpixel_labels == 0)
        annotation._undo, annotation._redo = read.undo, read.redo
        annotation.voxel_marks = read.voxels
        return annotation
