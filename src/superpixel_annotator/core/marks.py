"""What a user set: a mark per superpixel, and labels kept on single voxels.

Superpixel marks are each superpixel's label, or :data:`ERASED`. Where a label volume is not
made of whole superpixels, such as a segmentation opened from a file or labels carried over
to superpixels of another size, the voxels where the superpixels' labels differ from it are
kept as *voxel marks*, which the label volume shows over the superpixels' labels. A stroke
over a superpixel drops the voxel marks inside it: the last stroke decides.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np

from .outlines import enclosing_box, placed, within
from .palette import MAX_LABEL
from .refinement import Appearance, segmentation_box
from .statistics import majority_labels
from .superpixels import Superpixels

ERASED = -1
"""The mark of a superpixel the user erased, in :meth:`Annotation.marked_labels`."""
NO_VOXEL_MARK = -1
"""In a step of the history: the voxel had, or has, no voxel mark."""
MAX_VOXEL_MARKS = 2**18
"""The most voxel marks an annotation holds (1.3 MB in its state before compression)."""


def split_marks(marks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The labels (uint8) and the erased superpixels (bool) of marked labels (see
    :meth:`Annotation.marked_labels`)."""
    return np.maximum(marks, 0).astype(np.uint8), marks == ERASED


@dataclass(frozen=True, eq=False)
class VoxelMarks:
    """Labels kept on single voxels.

    Attributes
    ----------
    indices : ndarray of int64
        Flat indices of the voxels (C order), sorted and unique.
    labels : ndarray of uint8
        The label of each (0: unlabelled, whatever the superpixels say).
    """

    indices: np.ndarray
    labels: np.ndarray

    @classmethod
    def none(cls) -> VoxelMarks:
        """No voxel marks."""
        return cls(np.zeros(0, np.int64), np.zeros(0, np.uint8))

    @classmethod
    def differences(cls, shown: np.ndarray, labels: np.ndarray) -> VoxelMarks | None:
        """The voxel marks that make the label volume ``shown`` into ``labels``; None when
        more than :data:`MAX_VOXEL_MARKS` voxels differ."""
        indices = np.flatnonzero(shown != labels)
        if indices.size > MAX_VOXEL_MARKS:
            return None
        return cls(indices, labels.ravel()[indices].astype(np.uint8))

    def __len__(self) -> int:
        return int(self.indices.size)

    def at(self, indices: np.ndarray) -> np.ndarray:
        """The mark of each voxel of ``indices`` (int16: a label, or :data:`NO_VOXEL_MARK`)."""
        rows = np.searchsorted(self.indices, indices)
        found = rows < self.indices.size
        found[found] = self.indices[rows[found]] == indices[found]
        marks = np.full(np.shape(indices), NO_VOXEL_MARK, np.int16)
        marks[found] = self.labels[rows[found]]
        return marks

    def changed(self, indices: np.ndarray, marks: np.ndarray) -> VoxelMarks:
        """These marks with the voxels ``indices`` (unique) given ``marks`` (int16; a label,
        or :data:`NO_VOXEL_MARK` to drop the voxel's mark)."""
        if not np.size(indices):
            return self
        kept = ~np.isin(self.indices, indices)
        added = marks != NO_VOXEL_MARK
        new_indices = np.concatenate([self.indices[kept], indices[added]])
        new_labels = np.concatenate([self.labels[kept], marks[added].astype(np.uint8)])
        order = np.argsort(new_indices, kind="stable")
        return VoxelMarks(new_indices[order].astype(np.int64), new_labels[order])

    def painting(self, indices: np.ndarray, label: int) -> tuple[np.ndarray, ...]:
        """The voxels of ``indices`` (sorted, unique) whose mark giving them ``label``
        changes, with their marks before and after (int16), for a step of the history.

        Raises
        ------
        ValueError
            When the marks would then be more than :data:`MAX_VOXEL_MARKS`.
        """
        before = self.at(indices)
        changed = before != label
        added = np.count_nonzero(before[changed] == NO_VOXEL_MARK)
        if len(self) + added > MAX_VOXEL_MARKS:
            raise ValueError(
                f"the brush holds at most {MAX_VOXEL_MARKS:,} voxels; label larger parts "
                "with strokes on the superpixels"
            )
        return (
            indices[changed],
            before[changed],
            np.full(np.count_nonzero(changed), label, np.int16),
        )

    def inside(self, superpixel_volume: np.ndarray, ids: np.ndarray) -> np.ndarray:
        """The indices of the marked voxels that lie in the superpixels ``ids``."""
        if not self.indices.size or not np.size(ids):
            return np.zeros(0, np.int64)
        return self.indices[np.isin(superpixel_volume.ravel()[self.indices], ids)]

    def painted(
        self, box: tuple[slice, ...] | None, labels: np.ndarray, shape: tuple[int, ...]
    ) -> tuple[tuple[slice, ...] | None, np.ndarray]:
        """A labelled box (None: nothing labelled) and its labels with these marks on top,
        the box grown to hold the labelled ones (``labels`` is not changed)."""
        if not self.indices.size:
            return box, labels
        points = np.stack(np.unravel_index(self.indices, shape), axis=1)
        labelled = points[self.labels > 0]
        boxes = [] if box is None else [box]
        if labelled.size:
            ends = zip(labelled.min(axis=0), labelled.max(axis=0) + 1, strict=True)
            boxes.append(tuple(slice(int(start), int(stop)) for start, stop in ends))
        if not boxes:
            return box, labels
        new_box = enclosing_box(boxes)
        new_labels = within(box, labels, new_box)
        if new_labels is labels:
            new_labels = labels.copy()
        origin = np.array([part.start for part in new_box])
        inside = ((points >= origin) & (points < origin + new_labels.shape)).all(axis=1)
        local = points[inside] - origin
        new_labels[tuple(local.T)] = self.labels[inside]
        return new_box, new_labels

    def key(self) -> bytes:
        """Bytes that identify these marks."""
        return self.indices.astype(np.int64).tobytes() + self.labels.tobytes()


@dataclass(frozen=True, eq=False)
class Marks:
    """Everything a label volume is made from: superpixel marks and voxel marks.

    Equal and hashed by value, so that a rendered label volume can be cached by its marks;
    the arrays must not change once the marks are made.

    Attributes
    ----------
    superpixels : ndarray of int16, shape (count + 1,)
        Each superpixel's label, or :data:`ERASED`.
    voxels : VoxelMarks
    """

    superpixels: np.ndarray
    voxels: VoxelMarks

    @cached_property
    def key(self) -> bytes:
        """Bytes that identify these marks."""
        size = self.superpixels.size.to_bytes(8, "little")
        return size + self.superpixels.astype(np.int16).tobytes() + self.voxels.key()

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Marks) and self.key == other.key

    def __hash__(self) -> int:
        return hash(self.key)


def marked_box(
    superpixels: Superpixels, marks: Marks, appearance: Appearance | None = None
) -> tuple[tuple[slice, ...] | None, np.ndarray]:
    """The labelled box of the label volume ``marks`` make (None: nothing labelled) and the
    labels in it, as the app shows them: the superpixels' labels with smooth outlines and
    refined borders (:func:`~.refinement.segmentation_box`), and the voxel marks on top."""
    box, labels = segmentation_box(superpixels, *split_marks(marks.superpixels), appearance)
    return marks.voxels.painted(box, labels, superpixels.labels.shape)


def shown_volume(
    superpixels: Superpixels, marks: Marks, appearance: Appearance | None = None
) -> np.ndarray:
    """The label volume ``marks`` make, as the app shows it (see :func:`marked_box`)."""
    return placed(*marked_box(superpixels, marks, appearance), superpixels.labels.shape)


def valid_marks(superpixels: Superpixels, saved_marks) -> np.ndarray | None:
    """``saved_marks`` as int16 when they are marked labels of ``superpixels`` (see
    :meth:`Annotation.marked_labels`), otherwise None."""
    if saved_marks is None:
        return None
    marks = np.asarray(saved_marks)
    if marks.shape != (superpixels.count + 1,) or marks.dtype.kind not in "iu":
        return None
    if marks[0] != 0 or marks.min() < ERASED or marks.max() > MAX_LABEL:
        return None
    return marks.astype(np.int16)


def checked_label_volume(labels: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """``labels`` as uint8, refused (ValueError) unless integers from 0 to ``MAX_LABEL`` of
    ``shape``."""
    labels = np.asarray(labels)
    if labels.shape != shape:
        raise ValueError(f"labels have shape {labels.shape}, expected {shape}")
    if labels.dtype.kind not in "biu":
        raise ValueError(f"labels must be integers, not {labels.dtype}")
    if labels.size and not 0 <= labels.min() <= labels.max() <= MAX_LABEL:
        raise ValueError(f"labels must be between 0 and {MAX_LABEL}")
    return labels.astype(np.uint8, copy=False)


def opening_marks(
    superpixels: Superpixels,
    appearance: Appearance | None,
    labels: np.ndarray,
    saved_marks: np.ndarray | None,
) -> tuple[np.ndarray, VoxelMarks | None]:
    """The marks that give the label volume ``labels``: ``saved_marks`` (unless None), else
    the superpixels' majority labels, with the voxel marks that make up the difference.
    When more than :data:`MAX_VOXEL_MARKS` voxels differ, the other marks are tried, and
    without voxel marks (None) those that differ in the fewest voxels are taken."""
    candidates = [] if saved_marks is None else [lambda: saved_marks]
    candidates.append(lambda: majority_labels(superpixels, labels).astype(np.int16))
    fewest = None
    for candidate in candidates:  # the vote only when needed: it reads every voxel
        marks = candidate()
        shown = shown_volume(superpixels, Marks(marks, VoxelMarks.none()), appearance)
        voxels = VoxelMarks.differences(shown, labels)
        if voxels is not None:
            return marks, voxels
        differing = int(np.count_nonzero(shown != labels))
        if fewest is None or differing < fewest[0]:
            fewest = differing, marks
    return fewest[1], None
