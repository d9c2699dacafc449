"""A dataset whose cases are the image series of a DICOMweb server (a PACS), with labels
saved in a labels folder on this server as for a dataset folder.

Listing the cases is one series search (QIDO-RS, at most
:data:`~superpixel_annotator.pacs.dicomweb.MAX_RESULTS` series); nothing is retrieved until
a case is opened. A case is named by its SeriesInstanceUID, as MONAI Label's DICOMweb
datastore names them: unique, and no patient data in the labels folder's file names. Cases
are listed by study date (undated last), then series description, then UID. Series that
are not images to annotate (:data:`NON_IMAGE_MODALITIES`: segmentations, reports,
presentation states...) are not cases.

Opening a case retrieves its series once into the cache folder
(:func:`~superpixel_annotator.pacs.series_cache.retrieved_series`) and reads it; a series
that cannot be retrieved or read is a one-line
:class:`~superpixel_annotator.core.image_files.VolumeError` for that case alone.
"""

from __future__ import annotations

import datetime
import os
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

from pydicom.uid import RE_VALID_UID

from ..core.datasets import Dataset, DatasetCase, DatasetError
from ..core.dicom import load_dicom_series
from ..core.image_files import Limits, VolumeError
from ..core.palette import LabelClass
from ..core.volume import Volume
from ..pacs.dicomweb import MAX_RESULTS, DicomWebSource, Series
from ..pacs.series_cache import RETRIEVED_FOLDER, retrieved_series, series_folder
from .labels import LabelStore
from .workspace import DatasetWorkspace

NON_IMAGE_MODALITIES = frozenset(
    {
        "AU", "DOC", "ECG", "FID", "HD", "KO", "PLAN", "PR", "REG", "RTDOSE", "RTPLAN",
        "RTRECORD", "RTSTRUCT", "RWV", "SEG", "SMR", "SR",
    }
)  # fmt: skip
"""Modalities of series that are not images to annotate, and so not cases."""


class PacsWorkspace(DatasetWorkspace):
    """A :class:`DatasetWorkspace` whose cases are series of a DICOMweb server.

    Parameters
    ----------
    source : DicomWebSource
        The server.
    series : sequence of Series
        The cases' series, in the case list's order; their UIDs are the case names.
    store, labels, limits
        As for :class:`DatasetWorkspace`.
    cache_dir : Path
        The cache folder that series are retrieved into.
    """

    def __init__(
        self,
        source: DicomWebSource,
        series: Sequence[Series],
        store: LabelStore,
        labels: Sequence[LabelClass],
        limits: Limits,
        cache_dir: Path,
    ) -> None:
        self.source = source
        self.cache_dir = Path(cache_dir)
        self._series = {found.uid: found for found in series}
        cases = tuple(
            DatasetCase(
                name=found.uid,
                modalities=(series_folder(source, found.study_uid, found.uid, self.cache_dir),),
                modality_names=(found.modality or "image",),
                label=None,
            )
            for found in series
        )
        dataset = Dataset(self.cache_dir / RETRIEVED_FOLDER, cases, problems=())
        super().__init__(dataset, store, labels, limits)
        self.where = f"DICOMweb server {source.url}"

    def case_volumes(self, name: str) -> list[Volume]:
        """The series of case ``name``, retrieved unless it is in the cache folder.

        Raises
        ------
        KeyError
            When there is no such case.
        VolumeError
            When the series cannot be retrieved or read; one line (a
            :class:`~superpixel_annotator.pacs.dicomweb.PacsError` is one).
        """
        series = self._series[name]
        try:
            folder = retrieved_series(self.source, series.study_uid, name, self.cache_dir)
        except OSError as error:
            raise VolumeError(
                f"series {name}: the cache folder {self.cache_dir} cannot hold it "
                f"({error.strerror or type(error).__name__})"
            ) from None
        return [load_dicom_series(folder, series_uid=name, limits=self.limits)]


def image_series(source: DicomWebSource) -> tuple[list[Series], list[str]]:
    """The image series of ``source`` as cases are listed, and notes on what was left out.

    Raises
    ------
    PacsError
        When the server cannot be searched.
    """
    found = source.series()
    notes = []
    if len(found) >= MAX_RESULTS:
        notes.append(
            f"DICOMweb server {source.url}: listed its first {MAX_RESULTS} series only, "
            "the others are not cases"
        )
    skipped = Counter(s.modality for s in found if s.modality in NON_IMAGE_MODALITIES)
    if skipped:
        kinds = ", ".join(f"{count} {modality}" for modality, count in sorted(skipped.items()))
        notes.append(f"DICOMweb server {source.url}: not images, not cases: {kinds}")
    cases, seen = [], set()
    for series in found:
        if series.modality in NON_IMAGE_MODALITIES or series.uid in seen:
            continue
        if len(series.uid) > 64 or not RE_VALID_UID.fullmatch(series.uid):
            notes.append(f"DICOMweb server {source.url}: a series UID is not a DICOM UID")
            continue
        seen.add(series.uid)
        cases.append(series)
    return sorted(cases, key=_case_order), notes


def _case_order(series: Series) -> tuple:
    """Study date (undated last), then series description, then UID."""
    date = series.study_date
    return (date is None, date or datetime.date.min, series.description, series.uid)


def open_pacs_workspace(
    source: DicomWebSource,
    *,
    labels: Sequence[LabelClass],
    limits: Limits,
    labels_dir: str | os.PathLike,
    cache_dir: str | os.PathLike,
    database: str | None = None,
) -> tuple[PacsWorkspace, list[str]]:
    """List the image series of a DICOMweb server as a dataset, with its label store.

    Parameters
    ----------
    source : DicomWebSource
        The server.
    labels, limits
        As for :class:`DatasetWorkspace`.
    labels_dir : str or path-like
        Where labels are saved.
    cache_dir : str or path-like
        The cache folder that series are retrieved into.
    database : str, optional
        The metadata's database URL; default SQLite in ``labels_dir``.

    Returns
    -------
    workspace : PacsWorkspace
    notes : list of str
        One line per kind of series left out, and per repair of the store.

    Raises
    ------
    PacsError
        When the server cannot be searched.
    DatasetError
        When it has no image series.
    StoreError
        When the database cannot be used.
    """
    series, notes = image_series(source)
    if not series:
        raise DatasetError(f"DICOMweb server {source.url}: no image series")
    store = LabelStore(Path(labels_dir), database)
    notes += store.check()
    return PacsWorkspace(source, series, store, labels, limits, Path(cache_dir)), notes
