"""Cases: the read-only data the server keeps per scan, shared by every worker through disk.

A *case* is one scan's co-registered modalities with their superpixels. Its key digests the
intensities, geometry and superpixel parameters, so a user's session names the case it shows
by key alone, and any worker process can serve it: from memory, or else from the disk cache
that the worker which opened the case wrote. The cache is bounded (see :func:`trim_cache`):
a case unused for long may be gone from it, and then only a process that still holds it in
memory knows it.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import threading
import weakref
from collections import OrderedDict
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np
import pydicom
from nibabel import orientations
from pydicom.errors import InvalidDicomError

from .cache import (
    CacheArchive,
    CacheFileError,
    cache_directory,
    mark_cache_file_used,
    trim_cache,
    write_npz_atomically,
)
from .contacts import superpixel_contacts
from .meshes import outline_mesh
from .refinement import Appearance
from .superpixels import (
    Progress,
    Superpixels,
    complete_params,
    load_or_compute_superpixels,
    no_progress,
)
from .volume import Volume

# Cases held in memory per process; a 240x240x155 case takes about 70 MB.
MAX_CASES_IN_MEMORY = 4
# The most bytes of the small arrays of a case file; a modality's intensities, stored
# uncompressed, are bounded by the file's size.
_MAX_NAMES_BYTES = 2**20
_MAX_GEOMETRY_BYTES = 2**10
_MAX_PARAMS_BYTES = 2**16
# Superpixels prepared per step (see prepare_strokes): a stroke that needs one of them waits
# for at most one step, 25-35 ms on a 0.5 mm grid.
_PREPARED_PER_STEP = 512
_PREPARING = ThreadPoolExecutor(1, thread_name_prefix="prepare-strokes")
# Held for each step, so that a fork (gunicorn's preloading master) never copies a step half
# done; a child process prepares the cases it inherits unprepared (see _prepare_in_child).
_preparing_step = threading.Lock()
_unprepared: weakref.WeakSet = weakref.WeakSet()


class CaseNotFoundError(KeyError):
    """A case key that neither this process nor the disk cache knows."""


def is_case_key(value) -> bool:
    """Whether ``value`` (a JSON value from the browser) has the form of a :func:`case_key`."""
    is_hex = isinstance(value, str) and all(c in "0123456789abcdef" for c in value)
    return is_hex and len(value) == 32


def is_json_int(value) -> bool:
    """Whether a JSON value from the browser is an integer (``true`` and ``false`` are not)."""
    return isinstance(value, int) and not isinstance(value, bool)


def case_key(volumes: Sequence[Volume], params: dict, *, former: bool = False) -> str:
    """The key of a case: its modalities' content and the complete superpixel parameters;
    with ``former``, the key it had before DICOM instances counted in the content (see
    :attr:`Volume.former_content_hash`)."""
    digest = hashlib.sha256()
    for volume in volumes:
        content = volume.former_content_hash if former else None
        digest.update((content or volume.content_hash).encode())
    digest.update(json.dumps(complete_params(params), sort_keys=True).encode())
    return digest.hexdigest()[:32]


@dataclass(frozen=True, eq=False)
class Case:
    """One scan's modalities and superpixels.

    Attributes
    ----------
    volumes : tuple of Volume
        Co-registered modalities (same shape and affine); the first is shown first.
    superpixels : Superpixels
        Supervoxels computed from all modalities.
    key : str
        See :func:`case_key`.
    """

    volumes: tuple[Volume, ...]
    superpixels: Superpixels
    key: str

    def __post_init__(self) -> None:
        # Made with the case, not on its first stroke: 0.1 s on a CT head.
        self.superpixels.compact_labels  # noqa: B018
        _unprepared.add(self)
        # Held by a weak reference: a case dropped before its turn is not prepared.
        _PREPARING.submit(_prepare_while_held, weakref.ref(self))

    @property
    def former_key(self) -> str | None:
        """For a case read from DICOM, the key it had before DICOM instances counted in
        :func:`case_key`, under which browsers may keep its annotation; else ``None``."""
        if not any(volume.dicom_headers for volume in self.volumes):
            return None
        return case_key(self.volumes, self.superpixels.params, former=True)

    @property
    def volume(self) -> Volume:
        """The first modality, which carries the case's name and geometry."""
        return self.volumes[0]

    @property
    def shape(self) -> tuple[int, int, int]:
        """Shape in display order."""
        return self.volume.data.shape

    def has_slice(self, axis: int, index) -> bool:
        """Whether ``index`` (a JSON value from the browser) is a slice along ``axis``."""
        return is_json_int(index) and 0 <= index < self.shape[axis]

    @cached_property
    def windows(self) -> tuple[tuple[float, float], ...]:
        """Per modality, an intensity window from the 0.5th to 99.5th percentile in the head."""
        inside = self.superpixels.labels > 0
        return tuple(default_window(volume.data, inside) for volume in self.volumes)

    @cached_property
    def superpixel_sizes(self) -> np.ndarray:
        """Voxel count of each superpixel id (index 0: outside the head)."""
        return np.bincount(self.superpixels.labels.ravel(), minlength=self.superpixels.count + 1)

    @cached_property
    def outline(self) -> dict:
        """A coarse mesh of the head's surface (see :func:`outline_mesh`)."""
        return outline_mesh(self.superpixels.labels > 0, self.volume.spacing)

    @cached_property
    def intensities(self) -> list[np.ndarray]:
        """Every modality's intensities (for autofill and statistics)."""
        return [volume.data for volume in self.volumes]

    @cached_property
    def appearance(self) -> Appearance:
        """The modalities as the refinement of borders between labels models them."""
        return Appearance(self.superpixels, self.intensities)


def prepare_strokes(case: Case) -> None:
    """Find, for every superpixel of ``case``, what strokes ask of the superpixels they
    label: which superpixels it touches (:func:`~.contacts.superpixel_contacts`) and the
    sums of its intensities (:meth:`~.refinement.Appearance.sums`), kept with the case.

    Strokes find them for the superpixels they label when first labelled, but each
    superpixel's bounding box is then read on its own, and on a fine grid that is most of a
    first stroke's time: one pass over all superpixels costs less (0.2 s on BraTS, 0.9-1.4 s
    on a 0.5 mm grid). Every case does this in the background once made, one case at a time.
    """
    _prepare_while_held(weakref.ref(case))


def _prepare_while_held(reference: weakref.ref) -> None:
    """:func:`prepare_strokes` of the case ``reference`` refers to, a step at a time, for as
    long as something else holds the case."""
    case = reference()
    count = 0 if case is None else case.superpixels.count
    del case
    for first in range(1, count + 1, _PREPARED_PER_STEP):
        case = reference()
        if case is None:
            return
        _prepare_step(case, first)
        del case
    case = reference()
    if case is not None:
        _unprepared.discard(case)


def _prepare_step(case: Case, first: int) -> None:
    """Prepare :data:`_PREPARED_PER_STEP` superpixels of ``case`` from id ``first`` on."""
    ids = np.arange(first, min(first + _PREPARED_PER_STEP, case.superpixels.count + 1))
    with _preparing_step:
        superpixel_contacts(case.superpixels, ids)
        case.appearance.sums(ids)


def _prepare_in_child() -> None:
    """In a forked process, where the parent's preparing thread is gone: start another, for
    the cases not prepared yet."""
    global _PREPARING
    _preparing_step.release()
    _PREPARING = ThreadPoolExecutor(1, thread_name_prefix="prepare-strokes")
    for case in list(_unprepared):
        _PREPARING.submit(_prepare_while_held, weakref.ref(case))


os.register_at_fork(
    before=_preparing_step.acquire,
    after_in_parent=_preparing_step.release,
    after_in_child=_prepare_in_child,
)


def default_window(data: np.ndarray, mask: np.ndarray) -> tuple[float, float]:
    """An intensity window from the 0.5th to 99.5th percentile inside ``mask``."""
    values = data[mask] if mask.any() else data.ravel()
    low, high = np.percentile(values, [0.5, 99.5])
    if high <= low:
        high = low + 1.0
    return float(low), float(high)


def open_case(
    volumes: Sequence[Volume],
    cache_dir: str | os.PathLike | None = None,
    superpixels: Superpixels | None = None,
    progress: Progress = no_progress,
    **params,
) -> Case:
    """Build a case, computing its superpixels (or reading them from the cache).

    The modalities are written to the cache too (or, when there already, marked used), so
    other worker processes can load the case by key (see :class:`CaseStore`).

    Parameters
    ----------
    volumes : sequence of Volume
        Co-registered modalities of one scan.
    cache_dir : str or path-like, optional
        See :func:`cache_directory`.
    superpixels : Superpixels, optional
        Precomputed superpixels (then ``params`` are theirs).
    progress : Progress, optional
        Told how far computing the superpixels is.
    **params
        Superpixel parameters (see :func:`compute_superpixels`).

    Returns
    -------
    Case
    """
    volumes = tuple(volumes)
    params = complete_params(params) if superpixels is None else superpixels.params
    key = case_key(volumes, params)
    # Writing the modalities is mostly compressing them, outside the GIL: it takes the other
    # core while this one computes the superpixels.
    with ThreadPoolExecutor(1) as writer:
        written = writer.submit(_keep_on_disk, cache_directory(cache_dir), key, volumes, params)
        if superpixels is None:
            superpixels = load_or_compute_superpixels(volumes, cache_dir, progress, **params)
        written.result()
    return Case(volumes=volumes, superpixels=superpixels, key=key)


class CaseStore:
    """The cases a process serves: pinned and recently used ones in memory, the others from
    disk.

    Parameters
    ----------
    cache_dir : str or path-like, optional
        See :func:`cache_directory`.
    pinned : sequence of Case
        Cases always kept in memory, whatever the disk cache removes (the scan every session
        starts with).
    """

    def __init__(
        self, cache_dir: str | os.PathLike | None = None, pinned: Sequence[Case] = ()
    ) -> None:
        self.cache_dir = cache_directory(cache_dir)
        self._pinned = {case.key: case for case in pinned}
        self._cases: OrderedDict[str, Case] = OrderedDict()
        self._lock = threading.Lock()
        self._reading = threading.Lock()

    def add(self, case: Case) -> None:
        """Keep ``case`` in memory (it is on disk already, see :func:`open_case`)."""
        with self._lock:
            self._cases[case.key] = case
            self._cases.move_to_end(case.key)
            while len(self._cases) > MAX_CASES_IN_MEMORY:
                self._cases.popitem(last=False)

    def get(self, key: str) -> Case:
        """The case with ``key``.

        A case found in memory is marked used on disk too (written again if the cache
        removed it), so that other processes keep finding it there.

        Raises
        ------
        CaseNotFoundError
            When neither memory nor the disk cache holds it.
        """
        if not isinstance(key, str):
            raise CaseNotFoundError(key)
        if key in self._pinned:
            return self._pinned[key]
        with self._lock:
            case = self._cases.get(key)
            if case is not None:
                self._cases.move_to_end(key)
        if case is not None:
            _keep_on_disk(self.cache_dir, key, case.volumes, case.superpixels.params)
            return case
        # The requests that follow a case change all ask for it at once: one reads it.
        with self._reading:
            with self._lock:
                case = self._cases.get(key)
            if case is None:
                case = _read_case(self.cache_dir, key)
                self.add(case)
        return case


def _volumes_path(cache_dir: Path, key: str) -> Path:
    return cache_dir / "cases" / f"{key}.npz"


def _keep_on_disk(cache_dir: Path, key: str, volumes: Sequence[Volume], params: dict) -> None:
    """Mark the file of case ``key`` in the cache used, writing it when it is not there."""
    path = _volumes_path(cache_dir, key)
    if mark_cache_file_used(path):
        return
    arrays = {
        "names": np.array([volume.name for volume in volumes]),
        "spacing": np.array(volumes[0].spacing),
        "affine": volumes[0].affine,
        "source_ornt": volumes[0].source_ornt,
        "params": np.array(json.dumps(params, sort_keys=True)),
    }
    for index, volume in enumerate(volumes):
        arrays[f"data{index}"] = volume.data
        if volume.dicom_headers:
            arrays[f"dicom{index}"], arrays[f"dicom{index}_sizes"] = _encoded(volume.dicom_headers)
    write_npz_atomically(path, arrays)
    trim_cache(cache_dir, path)


def _read_case(cache_dir: Path, key: str) -> Case:
    """The case ``key`` from its file in the cache; a damaged file is removed and counts as
    missing, so that the case is written again when opened again."""
    if not is_case_key(key):
        raise CaseNotFoundError(key)
    path = _volumes_path(cache_dir, key)
    try:
        volumes, params = _read_case_file(path)
        if case_key(volumes, params) != key:
            raise CacheFileError(f"{path}: holds another case")
    except FileNotFoundError:  # never written here, or removed by the cache's bound
        raise CaseNotFoundError(key) from None
    except CacheFileError:  # truncated, foreign or forged
        try:
            path.unlink(missing_ok=True)
        except OSError:
            pass
        raise CaseNotFoundError(key) from None
    return open_case(volumes, cache_dir, **params)


def _read_case_file(path: Path) -> tuple[tuple[Volume, ...], dict]:
    """The modalities and superpixel parameters in a case file, checked to be as
    :func:`_keep_on_disk` writes them.

    Raises
    ------
    FileNotFoundError
        When there is no file.
    CacheFileError
        When it is damaged or not a case file.
    """
    with CacheArchive(path) as stored:
        names = stored.array("names", _MAX_NAMES_BYTES, stored=True)
        spacing = stored.array("spacing", _MAX_GEOMETRY_BYTES, stored=True)
        affine = stored.array("affine", _MAX_GEOMETRY_BYTES, stored=True)
        source_ornt = stored.array("source_ornt", _MAX_GEOMETRY_BYTES, stored=True)
        params = stored.array("params", _MAX_PARAMS_BYTES, stored=True)
        fitting = (
            names.ndim == 1
            and names.size > 0
            and names.dtype.kind == "U"
            and spacing.shape == (3,)
            and affine.shape == (4, 4)
            and np.isfinite(affine).all()
            and source_ornt.shape == (3, 2)
            and np.array_equal(source_ornt, orientations.io_orientation(affine))
            and params.shape == ()
            and params.dtype.kind == "U"
        )
        if not fitting:
            raise CacheFileError(f"{path}: not a case file")
        size = path.stat().st_size
        data = [stored.array(f"data{i}", size, stored=True) for i in range(len(names))]
        headers = [_decoded(stored, i, size) for i in range(len(names))]
    shape = data[0].shape
    if len(shape) != 3 or not all(_is_intensities(array, shape) for array in data):
        raise CacheFileError(f"{path}: not a case file")
    try:
        params = complete_params(json.loads(str(params)))
    except (ValueError, TypeError):
        raise CacheFileError(f"{path}: not a case file") from None
    volumes = tuple(
        Volume(
            data=array,
            spacing=tuple(float(s) for s in spacing),
            affine=affine.astype(np.float64),
            source_ornt=source_ornt,
            name=str(name),
            dicom_headers=dicom_headers,
        )
        for array, name, dicom_headers in zip(data, names, headers, strict=True)
    )
    slices = volumes[0].source_shape[2]
    if any(len(volume.dicom_headers) not in (0, slices) for volume in volumes):
        raise CacheFileError(f"{path}: not a case file")
    return volumes, params


def _encoded(headers: Sequence[pydicom.Dataset]) -> tuple[np.ndarray, np.ndarray]:
    """DICOM headers as one byte array and each one's size, for a case file."""
    parts = []
    for header in headers:
        buffer = io.BytesIO()
        pydicom.dcmwrite(buffer, header, enforce_file_format=False)
        parts.append(buffer.getvalue())
    return np.frombuffer(b"".join(parts), np.uint8), np.array([len(p) for p in parts], np.int64)


def _decoded(stored: CacheArchive, index: int, max_bytes: int) -> tuple[pydicom.Dataset, ...]:
    """The DICOM headers of modality ``index`` in a case file; none for a volume not read
    from DICOM (and in case files written before headers were kept)."""
    if not stored.has(f"dicom{index}"):
        return ()
    content = stored.array(f"dicom{index}", max_bytes, stored=True)
    sizes = stored.array(f"dicom{index}_sizes", max_bytes, stored=True)
    if content.dtype != np.uint8 or sizes.dtype != np.int64 or sizes.ndim != 1:
        raise CacheFileError(f"modality {index}: not DICOM headers")
    if sizes.size and (sizes.min() < 1 or int(sizes.sum()) != content.size):
        raise CacheFileError(f"modality {index}: not DICOM headers")
    bounds = np.concatenate([[0], np.cumsum(sizes)])
    raw = content.tobytes()
    try:
        return tuple(
            pydicom.dcmread(io.BytesIO(raw[start:end]), force=True)
            for start, end in zip(bounds[:-1], bounds[1:], strict=True)
        )
    except (InvalidDicomError, ValueError, EOFError, KeyError) as error:
        raise CacheFileError(f"modality {index}: DICOM headers: {error}") from None


def _is_intensities(array: np.ndarray, shape: tuple[int, ...]) -> bool:
    """Whether ``array`` is a modality's intensities as :class:`Volume` holds them."""
    return array.dtype == np.float32 and array.shape == shape and array.flags.c_contiguous
