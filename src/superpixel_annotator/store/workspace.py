"""A dataset being annotated: its cases on disk, their labels on the server, and the
annotation each case starts from.

This is where the web layer's dataset feature does its work, so that it is tested without a
browser: opening a case (the latest saved version, else the dataset's own label file, such
as a model's prediction to correct), saving an annotation as a new version, and the case
list's order.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..core.annotation import Annotation
from ..core.cases import Case, open_case
from ..core.client_state import write_state
from ..core.datasets import Dataset, DatasetError, find_dataset
from ..core.dicom import find_series, load_dicom_series
from ..core.image_files import Limits, VolumeError, printable
from ..core.palette import LabelClass
from ..core.segmentation_io import read_segmentation, save_segmentation
from ..core.statistics import label_statistics, statistics_csv
from ..core.volume import Volume, check_modalities, load_volume
from .labels import LabelStore
from .records import CaseSummary, Version

UNFINISHED = ("new", "in progress")
"""The statuses of a case that "Next unfinished" goes to."""
_SECRET_FILE = ".case-token-key"
LOCK_SECONDS = 300
"""How long a user's save keeps a case locked for them."""
MAX_START_TRIES = 20
"""The most cases a server tries to open at start-up."""


@dataclass(frozen=True)
class OpenedCase:
    """A dataset case ready to annotate.

    Attributes
    ----------
    name : str
        The case's name in the dataset.
    case : Case
        Its modalities and superpixels.
    state : str or None
        The annotation it starts from (see :meth:`Annotation.to_state`); ``None``: empty.
    version : int or None
        The saved version ``state`` is, which the next save names as its base.
    note : str
        Where the annotation comes from, for the user.
    """

    name: str
    case: Case
    state: str | None
    version: int | None
    note: str


class DatasetWorkspace:
    """A dataset's cases with their server-side labels.

    Parameters
    ----------
    dataset : Dataset
        The cases (see :func:`~superpixel_annotator.core.datasets.find_dataset`).
    store : LabelStore
        Where versions are saved.
    labels : sequence of LabelClass
        The label table; saved files use its values.
    limits : Limits
        The largest image read.

    Attributes
    ----------
    where : str
        Where the cases are, for messages: the dataset folder.
    """

    def __init__(
        self,
        dataset: Dataset,
        store: LabelStore,
        labels: Sequence[LabelClass],
        limits: Limits,
    ) -> None:
        self.dataset = dataset
        self.store = store
        self.label_values = frozenset(label.value for label in labels)
        self.limits = limits
        self._names = tuple(case.name for case in dataset.cases)
        self._secret_key: bytes | None = None
        self.where = printable(os.fspath(dataset.root))

    def start_volumes(self) -> list[Volume]:
        """The modalities of the case a server starts with: the first unfinished case that
        opens, else the first that opens.

        Raises
        ------
        DatasetError
            When none of the first :data:`MAX_START_TRIES` opens; naming the first problem.
        """
        first = self.first_unfinished()
        order = [first, *(name for name in self.names if name != first)]
        problems = []
        for name in order[:MAX_START_TRIES]:
            try:
                return self.case_volumes(name)
            except VolumeError as error:
                problems.append(f"{name}: {error}")
        raise DatasetError(f"{self.where}: no case opens ({problems[0]})")

    def case_volumes(self, name: str) -> list[Volume]:
        """The modalities of case ``name``: its image files, and its folders read as DICOM
        series.

        Raises
        ------
        KeyError
            When there is no such case.
        VolumeError
            When a modality is unusable (a folder holding several series is), or not on the
            first one's grid; one line.
        """
        paths = self.dataset.case(name).modalities
        volumes = [_load_modality(path, self.limits) for path in paths]
        check_modalities(volumes, [printable(os.fspath(path)) for path in paths])
        return volumes

    @property
    def names(self) -> tuple[str, ...]:
        """The case names, in the dataset's order."""
        return self._names

    def summaries(self) -> list[CaseSummary]:
        """Each case's status, latest version, its user, time and labelled volume."""
        return self.store.summaries(self.names)

    def case_token(self, name: str, key: str) -> str:
        """A token proving that this server opened the case with ``key`` for dataset case
        ``name``: a save must carry it, so a browser cannot mix cases up. Every process and
        host serving the labels folder shares its secret."""
        digest = hmac.new(self._secret(), f"{name}\0{key}".encode(), hashlib.sha256)
        return digest.hexdigest()

    def is_case_token(self, name: str, key: str, token) -> bool:
        """Whether ``token`` (a JSON value from the browser) is :meth:`case_token`."""
        return isinstance(token, str) and hmac.compare_digest(token, self.case_token(name, key))

    def _secret(self) -> bytes:
        if self._secret_key is None:
            self._secret_key = self._read_secret()
        return self._secret_key

    def _read_secret(self) -> bytes:
        """The labels folder's secret, made by the first process that needs it: written
        whole under another name, then linked into place, so no process reads it half
        written."""
        path = self.store.labels_dir / _SECRET_FILE
        if not path.exists():
            temporary = path.with_name(f"{_SECRET_FILE}.{secrets.token_hex(8)}.tmp")
            descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(descriptor, "wb") as file:
                file.write(secrets.token_bytes(32))
                file.flush()
                os.fsync(file.fileno())
            try:
                os.link(temporary, path)
            except FileExistsError:
                pass  # another process linked its own first: every process reads that one
            finally:
                temporary.unlink()
        return path.read_bytes()

    def first_unfinished(self) -> str:
        """The first case not done (the first case when all are)."""
        return self.next_unfinished(None) or self.names[0]

    def next_unfinished(self, current: str | None) -> str | None:
        """The first case after ``current`` (from the start when ``None``) that is not done,
        wrapping around; ``None`` when every other case is done."""
        summaries = self.summaries()
        start = 0 if current is None else self.dataset.index(current) + 1
        order = summaries[start:] + summaries[:start]
        return next((s.name for s in order if s.status in UNFINISHED and s.name != current), None)

    def neighbour(self, current: str, step: int) -> str:
        """The case ``step`` places after ``current`` in the list, wrapping around."""
        names = self.names
        return names[(self.dataset.index(current) + step) % len(names)]

    def open(
        self, name: str, cache_dir: Path, *, size: float, version: int | None = None
    ) -> OpenedCase:
        """Open case ``name`` with superpixels of ``size`` mm, starting from its saved
        ``version`` (default the latest), else from the dataset's label file, else empty.

        Raises
        ------
        KeyError
            When no case or version has that name.
        VolumeError
            When a file of the case is unusable; one line naming it.
        """
        entry = self.dataset.case(name)
        case = open_case(self.case_volumes(name), cache_dir, size=size)
        saved = self.store.version(name, version) if version else self.store.latest(name)
        if saved is not None:
            state = self._state_from_file(case, saved.path)
            note = f"{name}: version {saved.number}, saved by {saved.user} {saved_when(saved)}."
            return OpenedCase(name, case, state, saved.number, note)
        if entry.label is not None:
            state = self._state_from_file(case, entry.label)
            note = f"{name}: starting from {entry.label.name}."
            return OpenedCase(name, case, state, None, note)
        return OpenedCase(name, case, None, None, f"{name}: not annotated yet.")

    def _state_from_file(self, case: Case, path: Path) -> str:
        segmentation = read_segmentation(
            path, case.volume, limits=self.limits, max_marks=case.superpixels.count + 1
        )
        unknown = sorted(set(np.unique(segmentation.labels).tolist()) - {0} - self.label_values)
        if unknown:
            raise VolumeError(
                f"{path.name}: labels {unknown} are not in the label table "
                f"{sorted(self.label_values)}; start the server with a matching --labels"
            )
        loaded = Annotation(case.superpixels, case.appearance)
        loaded.load_label_volume(segmentation.labels, segmentation.superpixel_marks)
        # The case starts from the file: loading it is not a step to undo.
        return write_state(loaded.superpixel_labels, loaded.erased, [], [], loaded.voxel_marks)

    def save(
        self,
        name: str,
        case: Case,
        marks: np.ndarray,
        label_volume: np.ndarray,
        *,
        user: str,
        base_version: int | None,
        done: bool = False,
    ) -> Version:
        """Save an annotation of case ``name`` as a new version, written as Download writes
        it: ``label_volume`` with the scan's geometry, and the annotation's ``marks``
        (:meth:`Annotation.marked_labels`) to reopen it exactly.

        Raises
        ------
        VersionConflict
            When ``base_version`` is not the latest version (another tab or user saved).
        CaseLocked
            When another user holds the case.
        """
        self.dataset.case(name)
        labelled = int(np.count_nonzero(label_volume))
        voxel_ml = float(np.prod(case.volume.spacing)) / 1000

        def write(path: Path) -> None:
            save_segmentation(case.volume, label_volume, path, marks)

        return self.store.save(
            name,
            write,
            user=user,
            base_version=base_version,
            labelled_voxels=labelled,
            labelled_ml=labelled * voxel_ml,
            done=done,
            lock_seconds=LOCK_SECONDS,
        )

    def export_zip(self, destination: os.PathLike) -> int:
        """Write every done case's segmentation into a zip file, with ``statistics.csv``: a
        row per case and label (see :func:`~superpixel_annotator.core.statistics.label_statistics`,
        without superpixel counts), a mean intensity column per modality name of any case,
        empty for the cases without it.

        Returns
        -------
        int
            How many cases the zip holds.
        """
        done = [s.name for s in self.summaries() if s.status == "done"]
        rows = []
        with zipfile.ZipFile(destination, "w", zipfile.ZIP_STORED) as archive:
            for name in done:
                path = self.store.latest_path(name)
                archive.write(path, path.name)
                rows += self._statistics(name, path)
            columns = dict.fromkeys(column for row in rows for column in row)
            rows = [{column: row.get(column, "") for column in columns} for row in rows]
            archive.writestr("statistics.csv", statistics_csv(rows))
        return len(done)

    def _statistics(self, name: str, path: Path) -> list[dict]:
        entry = self.dataset.case(name)
        volumes = self.case_volumes(name)
        labels = read_segmentation(path, volumes[0], limits=self.limits).labels
        data = {n: v.data for n, v in zip(entry.modality_names, volumes, strict=True)}
        rows = label_statistics(labels, np.zeros(1, np.uint8), data, volumes[0].spacing)
        return [
            {"case": name, **{k: v for k, v in row.items() if k != "superpixels"}} for row in rows
        ]


def _load_modality(path: Path, limits: Limits) -> Volume:
    """An image file, or a folder's DICOM series; a folder holding several series is
    refused with their list, as a case has one series per folder."""
    if not path.is_dir():
        return load_volume(path, limits=limits)
    try:
        return load_dicom_series(path, limits=limits)
    except VolumeError:
        series = find_series(path, limits=limits)
        if len(series) < 2:
            raise
    listing = "; ".join(
        f"{printable(found.description or found.uid)} ({found.modality or 'no modality'}, "
        f"{found.slices} slices)"
        for found in series
    )
    raise VolumeError(
        f"{printable(os.fspath(path))}: {len(series)} DICOM series ({listing}); a dataset "
        "case reads one series per folder, move each series into a folder of its own"
    )


def saved_when(version: Version) -> str:
    """When ``version`` was saved, in the server's time zone, for the user."""
    return f"on {version.saved_at.astimezone():%Y-%m-%d at %H:%M:%S}"


def open_workspace(
    folder: str | os.PathLike,
    *,
    labels: Sequence[LabelClass],
    limits: Limits,
    labels_dir: str | os.PathLike | None = None,
    database: str | None = None,
    modalities: str | None = None,
) -> tuple[DatasetWorkspace, list[str]]:
    """Open a dataset folder with its label store, and check the store.

    Parameters
    ----------
    folder : str or path-like
        The dataset (see :func:`~superpixel_annotator.core.datasets.find_dataset`).
    labels, limits
        As for :class:`DatasetWorkspace`.
    labels_dir : str or path-like, optional
        Where labels are saved; default ``folder/labels``.
    database : str, optional
        The metadata's database URL; default SQLite in ``labels_dir``.
    modalities : str, optional
        Patterns naming the modalities of each case folder (see ``find_dataset``).

    Returns
    -------
    workspace : DatasetWorkspace
    notes : list of str
        One line per case that cannot be one, and per repair of the store.

    Raises
    ------
    DatasetError
        When the folder holds no case.
    StoreError
        When the database cannot be used.
    """
    labels_dir = Path(labels_dir) if labels_dir is not None else Path(folder) / "labels"
    dataset = find_dataset(folder, modalities=modalities, exclude=[labels_dir])
    store = LabelStore(labels_dir, database)
    notes = list(dataset.problems) + store.check()
    return DatasetWorkspace(dataset, store, labels, limits), notes
