"""The annotation state the browser keeps: writing it, and reading it back with bounded work.

A state is base64 text of a zlib-compressed ``.npz`` archive (written by ``np.savez``) whose
members are each superpixel's label (``labels``, uint8) and erased mark (``erased``, bool), and
for the ``undo`` and ``redo`` stacks the size of each step (``*_sizes``, int64), whether Fill
made it (``*_filled``, bool), and the ids (``*_ids``, int32) and marked labels before and after
(``*_before``, ``*_after``, int16) of the superpixels it changed. An annotation with voxel
marks also has their flat indices (``voxels``) and labels (``voxel_labels``, uint8), and per
step the number (``*_voxel_sizes``, int64), indices (``*_voxels``) and marks before and after
(``*_voxel_before``, ``*_voxel_after``, int16) of the voxel marks it changed. Indices are
sorted and kept as int32 gaps: the first index, then each one's distance from the one before
(per step in the history), which compress to little. States
written by earlier versions lack ``erased``, ``*_filled`` or the voxel members (no voxel
marks), or keep the marked labels in uint8.

A state comes back from the browser, so it may be hostile. Reading it never does more work than
the largest state of the case's superpixels can need: the text, the decompressed archive and
each member are bounded by the superpixel count and refused past their bound, and each member's
dtype and length are read from its header and checked before its data is read.
"""

from __future__ import annotations

import base64
import binascii
import io
import struct
import zipfile
import zlib
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field

import numpy as np

from .marks import ERASED, MAX_VOXEL_MARKS, VoxelMarks
from .npz import READ_ERRORS, ArchiveError, read_member
from .palette import MAX_LABEL

MAX_HISTORY = 200
"""The most undoable steps kept; the undo and redo stacks together never hold more."""
MAX_HISTORY_VOXEL_MARKS = 2**20
"""The most voxel marks the steps of the undo and redo stacks change, together."""
_STACKS = ("undo", "redo")
_STEP_FIELDS = ("ids", "before", "after")
_VOXEL_FIELDS = ("voxels", "voxel_before", "voxel_after")
_FAST_COMPRESSION_BYTES = 2**20
"""Archives larger than this are compressed at zlib level 1 rather than 6: level 6 costs
about 90 ms per MB of scattered voxel marks (10 ms at level 1, for 10 % more characters)."""
_MEMBER_ALLOWANCE = 1024
"""Bytes allowed per archive member besides its array data: zip headers, name, npy header."""
_DIRECTORY_ENTRY_BYTES = 256
_END_RECORD = struct.Struct("<4s4H2LH")
_ZIP64_LOCATOR_SIZE = 20


class AnnotationStateError(ValueError):
    """A serialized annotation state that does not fit these superpixels."""


@dataclass(frozen=True)
class Change:
    """One undoable step: superpixels ``ids`` went from marked labels ``before`` to ``after``
    (int16: a label, or :data:`~.marks.ERASED`), and the voxels of flat indices ``voxels``
    (sorted, unique) from voxel marks ``voxel_before`` to ``voxel_after`` (int16: a label, or
    :data:`~.marks.NO_VOXEL_MARK`).

    ``filled`` marks a step of :meth:`Annotation.autofill` rather than of the user.
    """

    ids: np.ndarray
    before: np.ndarray
    after: np.ndarray
    filled: bool = False
    voxels: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    voxel_before: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int16))
    voxel_after: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int16))


@dataclass(frozen=True)
class AnnotationState:
    """What a state holds: labels (uint8) and erased marks (bool) of every superpixel, shape
    (count + 1,), the undo and redo stacks, and the voxel marks."""

    labels: np.ndarray
    erased: np.ndarray
    undo: list[Change]
    redo: list[Change]
    voxels: VoxelMarks


def write_state(
    labels: np.ndarray,
    erased: np.ndarray,
    undo: Sequence[Change],
    redo: Sequence[Change],
    voxels: VoxelMarks,
) -> str:
    """The compact ASCII string of an annotation (see :func:`read_state`).

    Parameters
    ----------
    labels, erased : ndarray, shape (count + 1,)
        Each superpixel's label (uint8) and erased mark (bool).
    undo, redo : sequence of Change
        The history, oldest step first.
    voxels : VoxelMarks
        The voxel marks (their members are written only when there are voxel marks, now or
        in the history).

    Returns
    -------
    str
    """
    arrays = {"labels": labels, "erased": erased}
    with_voxels = len(voxels) > 0 or any(c.voxels.size for c in (*undo, *redo))
    if with_voxels:
        arrays.update(voxels=_gaps(voxels.indices), voxel_labels=voxels.labels)
    for stack_name, stack in (("undo", undo), ("redo", redo)):
        arrays[f"{stack_name}_sizes"] = np.array([c.ids.size for c in stack], np.int64)
        arrays[f"{stack_name}_filled"] = np.array([c.filled for c in stack], bool)
        fields = _STEP_FIELDS
        if with_voxels:
            sizes = np.array([c.voxels.size for c in stack], np.int64)
            arrays[f"{stack_name}_voxel_sizes"] = sizes
            fields += _VOXEL_FIELDS
        for name in fields:
            parts = [_gaps(c.voxels) if name == "voxels" else getattr(c, name) for c in stack]
            dtype = np.int32 if name in ("ids", "voxels") else np.int16
            arrays[f"{stack_name}_{name}"] = np.concatenate(parts or [np.zeros(0)]).astype(dtype)
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    archive = buffer.getvalue()
    level = 1 if len(archive) > _FAST_COMPRESSION_BYTES else 6
    return base64.b64encode(zlib.compress(archive, level)).decode("ascii")


def member_limits(count: int) -> dict[str, tuple[tuple[np.dtype, ...], int]]:
    """The dtypes allowed for each member of the state of ``count`` superpixels, and its
    largest length.

    Each stack may hold :data:`MAX_HISTORY` steps of up to ``count + 1`` superpixels each,
    and :data:`MAX_HISTORY_VOXEL_MARKS` voxel marks in all.
    """
    steps = MAX_HISTORY * (count + 1)
    marks = (np.dtype(np.int16), np.dtype(np.uint8))
    limits = {
        "labels": ((np.dtype(np.uint8),), count + 1),
        "erased": ((np.dtype(bool),), count + 1),
        "voxels": ((np.dtype(np.int32),), MAX_VOXEL_MARKS),
        "voxel_labels": ((np.dtype(np.uint8),), MAX_VOXEL_MARKS),
    }
    for stack in _STACKS:
        limits[f"{stack}_sizes"] = ((np.dtype(np.int64),), MAX_HISTORY)
        limits[f"{stack}_filled"] = ((np.dtype(bool),), MAX_HISTORY)
        limits[f"{stack}_ids"] = ((np.dtype(np.int32),), steps)
        limits[f"{stack}_before"] = limits[f"{stack}_after"] = (marks, steps)
        limits[f"{stack}_voxel_sizes"] = ((np.dtype(np.int64),), MAX_HISTORY)
        limits[f"{stack}_voxels"] = ((np.dtype(np.int32),), MAX_HISTORY_VOXEL_MARKS)
        voxel_marks = ((np.dtype(np.int16),), MAX_HISTORY_VOXEL_MARKS)
        limits[f"{stack}_voxel_before"] = limits[f"{stack}_voxel_after"] = voxel_marks
    return limits


def max_state_bytes(count: int) -> int:
    """The size of the largest decompressed state archive of ``count`` superpixels.

    Labels and erased marks, and a history of :data:`MAX_HISTORY` steps between both stacks,
    each of ``count + 1`` superpixels (int32 id, int16 marks before and after); voxel marks
    (int32 index, uint8 label) and the voxel marks of each stack's steps (int32 index, int16
    marks before and after); plus a kilobyte for each member and one for the archive's
    directory.
    """
    limits = member_limits(count)
    history = MAX_HISTORY * (count + 1) * (4 + 2 + 2)
    voxels = MAX_VOXEL_MARKS * (4 + 1) + len(_STACKS) * MAX_HISTORY_VOXEL_MARKS * (4 + 2 + 2)
    flags = len(_STACKS) * MAX_HISTORY * (8 + 1 + 8)
    allowance = _MEMBER_ALLOWANCE * (len(limits) + 1)
    return 2 * (count + 1) + flags + history + voxels + allowance


def max_state_length(count: int) -> int:
    """The length of the longest state text of ``count`` superpixels: base64 of the largest
    archive (:func:`max_state_bytes`) when zlib cannot compress it at all."""
    size = max_state_bytes(count)
    compressed = size + (size >> 12) + (size >> 14) + (size >> 25) + 64
    return 4 * -(-compressed // 3)


def read_state(
    state: object,
    count: int,
    labels: Collection[int] | None = None,
    *,
    history: bool = True,
    voxel_count: int,
) -> AnnotationState:
    """Read a state string (see :func:`write_state`) of an annotation of ``count`` superpixels.

    Parameters
    ----------
    state : object
        What the browser sent.
    count : int
        The number of superpixels of the case.
    labels : collection of int, optional
        The label values allowed (0, and :data:`ERASED` in the history, always are); by
        default 0 to ``MAX_LABEL``.
    history : bool
        Whether to read the undo and redo stacks; without them (empty stacks in the result)
        a state whose labels alone are needed reads faster. States written before erased
        marks were kept are read whole: their marks come from the history.
    voxel_count : int
        The number of voxels of the case's volume.

    Returns
    -------
    AnnotationState

    Raises
    ------
    AnnotationStateError
        If ``state`` is not a state, is larger than a state of ``count`` superpixels can be,
        does not fit them, or holds labels not allowed.
    """
    raw = _decompressed(state, count)
    marks_only = {"labels", "erased", "voxels", "voxel_labels"}
    arrays = _read_members(raw, member_limits(count), None if history else marks_only)
    if "erased" not in arrays and not history:
        history = True
        arrays = _read_members(raw, member_limits(count))
    required = {"labels"}
    if history:
        required |= {f"{s}_{f}" for s in _STACKS for f in ("sizes", *_STEP_FIELDS)}
    if missing := sorted(required - set(arrays)):
        raise AnnotationStateError(f"annotation state lacks {', '.join(missing)}")
    superpixel_labels = arrays["labels"]
    if superpixel_labels.shape != (count + 1,):
        raise AnnotationStateError("annotation state does not fit these superpixels")
    allowed = _allowed_marks(labels)
    _check_marks(superpixel_labels[1:], allowed, "labels")
    stacks = {
        name: _split_changes(arrays, name, count, voxel_count, allowed) if history else []
        for name in _STACKS
    }
    erased = arrays.get("erased")
    if erased is None:
        erased = _erased_by_history(stacks["undo"], superpixel_labels.shape)
    if erased.shape != (count + 1,):
        raise AnnotationStateError("annotation state does not fit these superpixels")
    voxels = _voxel_marks(arrays, voxel_count, allowed)
    return AnnotationState(superpixel_labels, erased, stacks["undo"], stacks["redo"], voxels)


def _voxel_marks(arrays: dict, voxel_count: int, allowed: np.ndarray) -> VoxelMarks:
    """The voxel marks of a state (none in states written before there were any), refused
    when they are not sorted and unique, lie outside the volume or hold labels ``allowed``
    (indexed by mark + 1) does not allow."""
    gaps = arrays.get("voxels", np.zeros(0, np.int32))
    labels = arrays.get("voxel_labels", np.zeros(0, np.uint8))
    if gaps.size != labels.size:
        raise AnnotationStateError("annotation state voxel marks disagree")
    indices = _indices(gaps, np.array([gaps.size]), voxel_count)
    _check_marks(labels, allowed, "voxel marks")
    return VoxelMarks(indices, labels)


def _gaps(indices: np.ndarray) -> np.ndarray:
    """Sorted flat indices as the first one and each one's distance from the one before."""
    return np.diff(indices, prepend=0).astype(np.int32)


def _indices(gaps: np.ndarray, sizes: np.ndarray, voxel_count: int) -> np.ndarray:
    """The flat indices (int64) of runs of ``sizes`` gaps (see :func:`_gaps`), refused unless
    each run is sorted, unique and within a volume of ``voxel_count`` voxels."""
    sizes = sizes[sizes > 0]
    starts = np.cumsum(sizes) - sizes
    later = np.ones(gaps.size, bool)
    later[starts] = False
    if gaps.size and (gaps.min() < 0 or (gaps[later] < 1).any()):
        raise AnnotationStateError("annotation state voxel marks are not sorted")
    totals = np.cumsum(gaps, dtype=np.int64)
    indices = totals - np.repeat(totals[starts] - gaps[starts], sizes)
    if indices.size and indices.max() >= voxel_count:
        raise AnnotationStateError("annotation state names voxels outside the volume")
    return indices


def _decompressed(state: object, count: int) -> bytes:
    """The archive of a state text, refused when the text or the archive is larger than a
    state of ``count`` superpixels."""
    if not isinstance(state, str):
        raise AnnotationStateError("not an annotation state (not a string)")
    if len(state) > max_state_length(count):
        raise AnnotationStateError("annotation state is too long for these superpixels")
    limit = max_state_bytes(count)
    inflater = zlib.decompressobj()
    try:
        raw = inflater.decompress(base64.b64decode(state, validate=True), limit + 1)
    except (binascii.Error, ValueError, zlib.error) as error:
        raise AnnotationStateError(f"not an annotation state ({error!r})") from None
    if len(raw) > limit:
        raise AnnotationStateError("annotation state expands beyond what these superpixels need")
    if not inflater.eof:
        raise AnnotationStateError("not an annotation state (truncated)")
    return raw


def _read_members(
    raw: bytes, limits: dict, wanted: Collection[str] | None = None
) -> dict[str, np.ndarray]:
    """The arrays of an npz archive whose members are all named in ``limits``: those named in
    ``wanted`` (by default all)."""
    _check_directory(raw, len(limits))
    try:
        with zipfile.ZipFile(io.BytesIO(raw)) as archive:
            infos = archive.infolist()
            names = [info.filename.removesuffix(".npy") for info in infos]
            unknown = sorted(set(names) - set(limits))
            if unknown or len(set(names)) != len(names):
                raise AnnotationStateError(f"annotation state has unknown members {unknown}")
            return {
                name: _read_member(archive, info, *limits[name])
                for name, info in zip(names, infos, strict=True)
                if wanted is None or name in wanted
            }
    except AnnotationStateError:
        raise
    except READ_ERRORS as error:
        raise AnnotationStateError(f"not an annotation state ({error!r})") from None


def _check_directory(raw: bytes, members: int) -> None:
    """Refuse an archive whose central directory may list more than ``members`` entries.

    ``zipfile`` reads every entry of the directory before any can be checked, so its size is
    read here from the end record, which must be the plain one ``np.savez`` writes (no comment,
    no zip64 record, which ``zipfile`` would read instead).
    """
    if len(raw) < _END_RECORD.size + _ZIP64_LOCATOR_SIZE:
        raise AnnotationStateError("not an annotation state (not an archive)")
    end = _END_RECORD.unpack(raw[-_END_RECORD.size :])
    signature, directory_size, comment = end[0], end[5], end[7]
    locator = raw[-_END_RECORD.size - _ZIP64_LOCATOR_SIZE :][:4]
    if signature != b"PK\x05\x06" or comment or locator == b"PK\x06\x07":
        raise AnnotationStateError("not an annotation state (not a plain archive)")
    if directory_size > members * _DIRECTORY_ENTRY_BYTES:
        raise AnnotationStateError("annotation state has too many members")


def _read_member(
    archive: zipfile.ZipFile, info: zipfile.ZipInfo, dtypes: tuple[np.dtype, ...], length: int
) -> np.ndarray:
    """A 1D array member of at most ``length`` items of one of ``dtypes``, checked by its
    declared size and its header before its data is read."""
    max_bytes = length * max(dtype.itemsize for dtype in dtypes)
    try:
        array = read_member(archive, info, max_bytes, dtypes=dtypes, ndim=1)
    except ArchiveError as error:
        raise AnnotationStateError(f"not an annotation state (member {error})") from None
    if array.size > length:
        raise AnnotationStateError(f"annotation state member {info.filename} is too large")
    return array


def _allowed_marks(labels: Collection[int] | None) -> np.ndarray:
    """Which marked labels are allowed, indexed by mark + 1: :data:`ERASED`, 0 and
    ``labels`` (by default all labels)."""
    allowed = np.zeros(MAX_LABEL + 2, bool)
    if labels is None:
        allowed[:] = True
    else:
        values = [value for value in labels if 0 <= value <= MAX_LABEL]
        allowed[np.array(values, np.int64) + 1] = True
        allowed[[ERASED + 1, 1]] = True
    return allowed


def _check_marks(marks: np.ndarray, allowed: np.ndarray, what: str) -> None:
    """Refuse marked labels that ``allowed`` (indexed by mark + 1) does not allow."""
    if not marks.size:
        return
    if marks.min() < ERASED or marks.max() > MAX_LABEL:
        values = np.unique(marks[(marks < ERASED) | (marks > MAX_LABEL)])[:5].tolist()
    else:
        present = np.bincount(marks.astype(np.int16) + 1, minlength=allowed.size) > 0
        values = (np.flatnonzero(present & ~allowed)[:5] - 1).tolist()
    if values:
        raise AnnotationStateError(f"annotation state {what} hold labels {values} not allowed")


def _erased_by_history(undo: list[Change], shape: tuple[int]) -> np.ndarray:
    """The erased superpixels of a state written before erased marks were kept: those the
    user's last step touching them set to 0."""
    erased = np.zeros(shape, bool)
    for change in undo:
        erased[change.ids] = (change.after == 0) & (not change.filled)
    return erased


def _split_changes(
    arrays: dict, name: str, count: int, voxel_count: int, allowed: np.ndarray
) -> list[Change]:
    """The steps of stack ``name``, refused when its arrays disagree, name superpixels beyond
    ``count`` or voxels beyond ``voxel_count`` (or not sorted in a step), or hold marks
    ``allowed`` (indexed by mark + 1) does not allow."""
    sizes = arrays[f"{name}_sizes"]
    ids, before, after = (arrays[f"{name}_{field}"] for field in _STEP_FIELDS)
    # States written before autofill existed have no "filled" flags: all steps were the user's.
    filled = arrays.get(f"{name}_filled", np.zeros(sizes.size, bool))
    # States written before voxel marks existed, or without any, have no voxel members.
    voxel_sizes = arrays.get(f"{name}_voxel_sizes", np.zeros(sizes.size, np.int64))
    voxels = arrays.get(f"{name}_voxels", np.zeros(0, np.int32))
    voxel_before, voxel_after = (
        arrays.get(f"{name}_{field}", np.zeros(0, np.int16)) for field in _VOXEL_FIELDS[1:]
    )
    if (
        (sizes.size and (sizes.min() < 0 or sizes.max() > count + 1))
        or sizes.sum() != ids.size
        or not (ids.size == before.size == after.size)
        or filled.shape != sizes.shape
        or voxel_sizes.shape != sizes.shape
        or (voxel_sizes.size and not 0 <= voxel_sizes.min() <= voxel_sizes.max() <= voxels.size)
        or voxel_sizes.sum() != voxels.size
        or not (voxels.size == voxel_before.size == voxel_after.size)
    ):
        raise AnnotationStateError("annotation state history arrays disagree")
    if ids.size and (ids.min() < 1 or ids.max() > count):
        raise AnnotationStateError("annotation state history names superpixels that do not exist")
    voxels = _indices(voxels, voxel_sizes, voxel_count)
    for marks in (before, after, voxel_before, voxel_after):
        _check_marks(marks, allowed, "history")
    if not sizes.size:
        return []
    bounds, voxel_bounds = np.cumsum(sizes)[:-1], np.cumsum(voxel_sizes)[:-1]
    steps = zip(
        *(np.split(array, bounds) for array in (ids, before, after)),
        filled,
        *(np.split(array, voxel_bounds) for array in (voxels, voxel_before, voxel_after)),
        strict=True,
    )
    return [
        Change(
            i.astype(np.int64),
            b.astype(np.int16),
            a.astype(np.int16),
            bool(f),
            v.astype(np.int64),
            vb.astype(np.int16),
            va.astype(np.int16),
        )
        for i, b, a, f, v, vb, va in steps
        if i.size or v.size
    ]
