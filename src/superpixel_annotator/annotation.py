"""Annotation state: one label per superpixel, with undo and redo.

The state is small (one byte per superpixel plus the history of changes), so it
can travel with the user's session; :meth:`Annotation.to_state` and
:meth:`Annotation.from_state` turn it into a compact string and back.
"""

from __future__ import annotations

import base64
import binascii
import io
import zlib
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from .autofill import DEFAULT_ENRICHMENT, grow_labels, superpixel_graph
from .outlines import superpixel_segmentation
from .overlays import section
from .superpixels import Superpixels
from .volume import MAX_LABEL

LEVELS = ("coarse", "fine")
MAX_HISTORY = 200
_SAMPLES_PER_VOXEL = 4
_VOTE_SLAB_VOXELS = 1 << 20


class AnnotationStateError(ValueError):
    """A serialized annotation state that does not fit these superpixels."""


@dataclass(frozen=True)
class Change:
    """One undoable step: superpixels ``ids`` went from ``before`` to ``after``.

    ``filled`` marks a step of :meth:`Annotation.autofill` rather than of the user.
    """

    ids: np.ndarray
    before: np.ndarray
    after: np.ndarray
    filled: bool = False


def polyline_voxels(points: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """The (row, col) voxels of a 2D image that a polyline passes through.

    Parameters
    ----------
    points : array-like, shape (n, 2)
        Vertices as (row, col) in voxel coordinates; a single vertex is a click.
        Vertices outside the slice are moved to its border.
    shape : tuple of int
        The slice shape.

    Returns
    -------
    ndarray of int, shape (m, 2)
        Unique voxel coordinates along the polyline.
    """
    upper = np.asarray(shape) - 1
    points = np.clip(np.asarray(points, dtype=np.float64).reshape(-1, 2), 0, upper)
    samples = [points[:1]]
    for start, stop in zip(points[:-1], points[1:], strict=True):
        steps = max(1, int(np.ceil(np.abs(stop - start).max() * _SAMPLES_PER_VOXEL)))
        fractions = np.arange(1, steps + 1)[:, None] / steps
        samples.append(start + fractions * (stop - start))
    return np.unique(np.rint(np.concatenate(samples)).astype(np.int64), axis=0)


class Annotation:
    """Labels painted on superpixels, with an undo/redo history.

    Parameters
    ----------
    superpixels : Superpixels
        The partition that strokes select from.
    """

    def __init__(self, superpixels: Superpixels) -> None:
        self.superpixels = superpixels
        self.superpixel_labels = np.zeros(superpixels.count + 1, dtype=np.uint8)
        self._undo: list[Change] = []
        self._redo: list[Change] = []

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

        At the ``"fine"`` level, those it passes through; at the ``"coarse"`` level, every
        superpixel of the coarse regions it passes through (the same without a coarse level).
        """
        if level not in LEVELS:
            raise ValueError(f"level must be one of {LEVELS}, not {level!r}")
        superpixel_section = section(self.superpixels.labels, axis, index)
        rows, cols = polyline_voxels(points, superpixel_section.shape).T
        ids = np.unique(superpixel_section[rows, cols])
        ids = ids[ids > 0]
        return self.superpixels.members(ids) if level == "coarse" else ids

    def paint(
        self, axis: int, index: int, points: np.ndarray, label: int, level: str = "coarse"
    ) -> np.ndarray:
        """Give ``label`` to every superpixel the stroke selects; ``label=0`` erases.

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
        level : {"coarse", "fine"}
            Select whole coarse regions (the default) or only the superpixels crossed.

        Returns
        -------
        ndarray of int
            The ids of superpixels whose label changed (empty when nothing changed,
            in which case no undo step is recorded).
        """
        if not 0 <= axis <= 2:
            raise ValueError(f"axis must be 0, 1 or 2, not {axis}")
        if not 0 <= index < self.superpixels.labels.shape[axis]:
            raise ValueError(f"slice index {index} is outside the volume along axis {axis}")
        if not 0 <= label <= MAX_LABEL:
            raise ValueError(f"label must be between 0 and {MAX_LABEL}, not {label}")
        ids = self.superpixels_on_stroke(axis, index, points, level)
        ids = ids[self.superpixel_labels[ids] != label]
        if ids.size == 0:
            return ids
        self._record(Change(ids, self.superpixel_labels[ids], np.full(ids.size, label, np.uint8)))
        return ids

    def set_superpixel_labels(
        self, superpixel_labels: np.ndarray, filled: bool = False
    ) -> np.ndarray:
        """Replace all labels in one undoable step; returns the ids that changed.

        ``filled`` records the step as an automatic fill rather than the user's labels.
        """
        new = np.asarray(superpixel_labels, dtype=np.uint8)
        if new.shape != self.superpixel_labels.shape:
            raise ValueError(f"expected {self.superpixel_labels.shape} labels, got {new.shape}")
        ids = np.flatnonzero(new != self.superpixel_labels)
        ids = ids[ids > 0]
        if ids.size:
            self._record(Change(ids, self.superpixel_labels[ids], new[ids], filled))
        return ids

    def user_marks(self) -> tuple[np.ndarray, np.ndarray]:
        """Which superpixels the user labelled and which the user erased.

        Read from the undo history: the last step touching a superpixel decides. Labelled
        superpixels that no recorded step touched count as the user's.

        Returns
        -------
        labelled, erased : ndarray of bool, shape (count + 1,)
            Superpixels holding a label the user set, and those the user set to 0.
        """
        by_user = np.ones(self.superpixel_labels.shape, bool)
        erased = np.zeros(self.superpixel_labels.shape, bool)
        for change in self._undo:
            by_user[change.ids] = not change.filled
            erased[change.ids] = (change.after == 0) & (not change.filled)
        return by_user & (self.superpixel_labels > 0), erased

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

    def load_label_volume(self, labels: np.ndarray) -> tuple[np.ndarray, int]:
        """Give each superpixel the most common label of its voxels, in one undoable step.

        For opening a segmentation (see :func:`~superpixel_annotator.volume.read_segmentation`).
        Background 0 takes part in the vote; ties go to the smaller label. A label volume
        this annotation produced (:meth:`label_volume`) comes back as it was, unless its
        outlines were smoothed away from a superpixel's majority. The labels set count as the
        user's, so they seed :meth:`autofill`.

        Parameters
        ----------
        labels : ndarray of int, shape of the superpixels
            Labels from 0 to ``MAX_LABEL`` in display order.

        Returns
        -------
        changed : ndarray of int
            Ids of the superpixels whose label changed.
        differing_voxels : int
            How many voxels of :meth:`label_volume` now differ from ``labels``: in
            superpixels the vote went against, outside the head, and where outlines differ.
        """
        labels = self._checked_label_volume(labels)
        new = _majority_labels(self.superpixels, labels)
        old = self.superpixel_labels
        labelled, _ = self.user_marks()
        # Superpixels last set by autofill are taken over as the user's, even when unchanged.
        ids = np.flatnonzero((new != old) | ((old > 0) & ~labelled))
        changed = ids[new[ids] != old[ids]]
        if ids.size:
            self._record(Change(ids, old[ids], new[ids]))
        return changed, int(np.count_nonzero(self.label_volume() != labels))

    def remapped(self, superpixels: Superpixels) -> Annotation:
        """This annotation on other superpixels of the same volume, each labelled by majority.

        For changing the superpixel size while keeping the labels: the new superpixels vote
        as in :meth:`load_label_volume`. The result has no history, and all its labels
        count as the user's.

        Parameters
        ----------
        superpixels : Superpixels
            A partition of the same volume (same shape).

        Returns
        -------
        Annotation
        """
        if superpixels.labels.shape != self.superpixels.labels.shape:
            raise ValueError(
                f"superpixels of shape {superpixels.labels.shape} do not fit an annotation "
                f"of shape {self.superpixels.labels.shape}"
            )
        annotation = Annotation(superpixels)
        annotation.superpixel_labels[:] = _majority_labels(superpixels, self.label_volume())
        return annotation

    def _checked_label_volume(self, labels: np.ndarray) -> np.ndarray:
        labels = np.asarray(labels)
        if labels.shape != self.superpixels.labels.shape:
            raise ValueError(
                f"labels have shape {labels.shape}, expected {self.superpixels.labels.shape}"
            )
        if labels.dtype.kind not in "biu":
            raise ValueError(f"labels must be integers, not {labels.dtype}")
        if labels.size and not 0 <= labels.min() <= labels.max() <= MAX_LABEL:
            raise ValueError(f"labels must be between 0 and {MAX_LABEL}")
        return labels.astype(np.uint8, copy=False)

    def _record(self, change: Change) -> None:
        self.superpixel_labels[change.ids] = change.after
        self._undo.append(change)
        del self._undo[:-MAX_HISTORY]
        self._redo.clear()

    def undo(self) -> np.ndarray:
        """Revert the last change; returns the ids it touched (empty if none)."""
        if not self._undo:
            return np.zeros(0, dtype=np.int64)
        change = self._undo.pop()
        self.superpixel_labels[change.ids] = change.before
        self._redo.append(change)
        return change.ids

    def redo(self) -> np.ndarray:
        """Re-apply the last undone change; returns the ids it touched (empty if none)."""
        if not self._redo:
            return np.zeros(0, dtype=np.int64)
        change = self._redo.pop()
        self.superpixel_labels[change.ids] = change.after
        self._undo.append(change)
        return change.ids

    def label_volume(self) -> np.ndarray:
        """The annotation as a uint8 volume of the superpixels' shape, with smooth outlines.

        Each superpixel's label fills its voxels, and the outline of the labelled voxels is
        then smoothed (see :func:`~superpixel_annotator.outlines.smooth_outlines`).
        """
        return superpixel_segmentation(self.superpixels, self.superpixel_labels)

    def to_state(self) -> str:
        """Serialize labels and history into a compact ASCII string."""
        arrays = {"labels": self.superpixel_labels}
        for stack_name, stack in (("undo", self._undo), ("redo", self._redo)):
            arrays[f"{stack_name}_sizes"] = np.array([c.ids.size for c in stack], np.int64)
            arrays[f"{stack_name}_filled"] = np.array([c.filled for c in stack], bool)
            for field in ("ids", "before", "after"):
                parts = [getattr(c, field) for c in stack]
                dtype = np.int32 if field == "ids" else np.uint8
                arrays[f"{stack_name}_{field}"] = np.concatenate(parts or [np.zeros(0)]).astype(
                    dtype
                )
        buffer = io.BytesIO()
        np.savez(buffer, **arrays)
        return base64.b64encode(zlib.compress(buffer.getvalue(), 6)).decode("ascii")

    @classmethod
    def from_state(cls, superpixels: Superpixels, state: str | None) -> Annotation:
        """Rebuild an annotation from :meth:`to_state` output (``None`` gives an empty one).

        Raises
        ------
        AnnotationStateError
            If the string is not a state or does not fit ``superpixels``.
        """
        annotation = cls(superpixels)
        if state is None:
            return annotation
        try:
            raw = zlib.decompress(base64.b64decode(state, validate=True))
            with np.load(io.BytesIO(raw), allow_pickle=False) as arrays:
                labels = arrays["labels"]
                stacks = {
                    name: _split_changes(arrays, name, superpixels.count)
                    for name in ("undo", "redo")
                }
        except (binascii.Error, zlib.error, ValueError, KeyError, OSError, TypeError) as error:
            raise AnnotationStateError(f"not an annotation state ({error})") from None
        if labels.dtype != np.uint8 or labels.shape != annotation.superpixel_labels.shape:
            raise AnnotationStateError("annotation state does not fit these superpixels")
        annotation.superpixel_labels[:] = labels
        annotation.superpixel_labels[0] = 0
        annotation._undo, annotation._redo = stacks["undo"], stacks["redo"]
        return annotation


def _split_changes(arrays, name: str, count: int) -> list[Change]:
    sizes = arrays[f"{name}_sizes"]
    ids, before, after = (arrays[f"{name}_{field}"] for field in ("ids", "before", "after"))
    # States written before autofill existed have no "filled" flags: all steps were the user's.
    filled_key = f"{name}_filled"
    filled = arrays[filled_key] if filled_key in arrays.files else np.zeros(sizes.size, bool)
    if (
        sizes.sum() != ids.size
        or not (ids.size == before.size == after.size)
        or filled.shape != sizes.shape
    ):
        raise ValueError("history arrays disagree")
    if ids.size and (ids.min() < 1 or ids.max() > count):
        raise ValueError("history names superpixels that do not exist")
    if not sizes.size:
        return []
    bounds = np.cumsum(sizes)[:-1]
    return [
        Change(i.astype(np.int64), b.astype(np.uint8), a.astype(np.uint8), bool(f))
        for i, b, a, f in zip(
            np.split(ids, bounds),
            np.split(before, bounds),
            np.split(after, bounds),
            filled,
            strict=True,
        )
        if i.size
    ]


def _majority_labels(superpixels: Superpixels, labels: np.ndarray) -> np.ndarray:
    """The most common label of each superpixel's voxels.

    Parameters
    ----------
    superpixels : Superpixels
        The partition that votes.
    labels : ndarray of uint8, shape of the superpixels
        The label of each voxel.

    Returns
    -------
    ndarray of uint8, shape (count + 1,)
        The winning label of each superpixel (ties go to the smaller label); 0 for id 0.
    """
    present = np.flatnonzero(np.bincount(labels.ravel(), minlength=MAX_LABEL + 1))
    column = np.zeros(MAX_LABEL + 1, np.int64)
    column[present] = np.arange(present.size)
    rows = superpixels.count + 1
    votes = np.zeros(rows * present.size, np.int64)
    # Slabs of slices bound the int64 vote indices to a few MB whatever the volume size.
    slab = max(1, _VOTE_SLAB_VOXELS // max(1, labels[0].size))
    for start in range(0, labels.shape[0], slab):
        ids = superpixels.labels[start : start + slab].ravel().astype(np.int64)
        index = ids * present.size + column[labels[start : start + slab].ravel()]
        votes += np.bincount(index, minlength=votes.size)
    votes = votes.reshape(rows, present.size)
    winner = votes.argmax(axis=1)
    superpixel_labels = present[winner].astype(np.uint8)
    superpixel_labels[0] = 0
    return superpixel_labels
