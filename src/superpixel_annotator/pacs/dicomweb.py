"""Studies and series of a DICOMweb server (a PACS such as Orthanc), through dicomweb-client.

:class:`DicomWebSource` is one server: :meth:`~DicomWebSource.studies` and
:meth:`~DicomWebSource.series` search it (QIDO-RS) and return small frozen records,
:meth:`~DicomWebSource.retrieve_series` downloads one series (WADO-RS) into a folder that
:func:`~superpixel_annotator.core.dicom.load_dicom_series` reads, and
:meth:`~DicomWebSource.store` sends a DICOM file, such as a segmentation, back (STOW-RS).

Bounds. Every answer is read through a byte budget: :data:`MAX_ANSWER_BYTES` for searches,
metadata and stores, ``limits.max_bytes`` for a series' instances. Before a series is
downloaded, its metadata gives the number of instances and each one's pixel size: a series
whose instances, at the largest size, would be over the limits (bytes or voxels), or more
files than :data:`~superpixel_annotator.core.dicom.MAX_DICOM_FILES`, is refused unread. The
byte budget still stops a download whose answer grows past ``limits.max_bytes`` (the
metadata can be wrong), and the files already written are removed. Each request is made
once: dicomweb-client's retries (which also retry refused connections, waiting seconds) are
off, so a user waiting on a page hears of a failure at once. A search is one request for at
most :data:`MAX_RESULTS` results: dicomweb-client's paging would ask for more for as long
as a server answers.

Errors. Everything that goes wrong on the way (server unreachable, an HTTP error status, an
answer that is not what DICOMweb promises, a series over the limits) is a
:class:`PacsError` with a one-line message naming the server (without credentials) and the
request. A :class:`PacsError` is a :class:`~superpixel_annotator.core.image_files.VolumeError`,
so that a caller opening a series handles both alike. Messages are made here from status
codes and the request's kind, never from the answer's text or the request's query, so that
no patient name or identifier appears in them or in logs.
"""

from __future__ import annotations

import datetime
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http import HTTPStatus
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pydicom
import requests
from dicomweb_client import DICOMwebClient
from pydicom.errors import InvalidDicomError
from pydicom.uid import RE_VALID_UID

from ..core.dicom import MAX_DICOM_FILES
from ..core.image_files import DEFAULT_LIMITS, Limits, VolumeError, file_size, printable

# Searches, series metadata and store answers larger than this are refused (64 MB).
MAX_ANSWER_BYTES = 2**26
# A search returns at most this many studies or series (one request: no paging).
MAX_RESULTS = 1000
# DICOM JSON tags (PS3.18 F.2) of the attributes read from answers.
_TAGS = {
    "StudyInstanceUID": "0020000D",
    "SeriesInstanceUID": "0020000E",
    "PatientID": "00100020",
    "StudyDate": "00080020",
    "StudyDescription": "00081030",
    "SeriesDescription": "0008103E",
    "Modality": "00080060",
    "NumberOfSeriesRelatedInstances": "00201209",
    "Rows": "00280010",
    "Columns": "00280011",
    "BitsAllocated": "00280100",
    "SamplesPerPixel": "00280002",
    "NumberOfFrames": "00280008",
}
# What a malformed answer raises inside dicomweb-client and pydicom.
_MALFORMED = (ValueError, KeyError, EOFError, InvalidDicomError)


class PacsError(VolumeError):
    """A DICOMweb request that failed; the one-line message names the server and request."""


@dataclass(frozen=True)
class Study:
    """A study found on the server.

    Attributes
    ----------
    uid : str
        StudyInstanceUID.
    patient_id : str
        PatientID, printable, or ``""``; left out of the ``repr`` so that it stays out of
        logs.
    date : datetime.date or None
        StudyDate, or ``None`` when missing or not a date.
    description : str
        StudyDescription, printable, or ``""``.
    """

    uid: str
    patient_id: str = field(repr=False)
    date: datetime.date | None
    description: str


@dataclass(frozen=True)
class Series:
    """A series of a study found on the server.

    Attributes
    ----------
    study_uid, uid : str
        StudyInstanceUID and SeriesInstanceUID.
    description : str
        SeriesDescription, printable, or ``""``.
    modality : str
        Modality (``CT``, ``MR``, ``SEG``...), or ``""``.
    instances : int or None
        NumberOfSeriesRelatedInstances, or ``None`` when the server does not say.
    study_date : datetime.date or None
        The study's StudyDate, when the server gives it with the series.
    """

    study_uid: str
    uid: str
    description: str
    modality: str
    instances: int | None
    study_date: datetime.date | None = None


class DicomWebSource:
    """One DICOMweb server, searched and read within ``limits``.

    Parameters
    ----------
    url : str
        The DICOMweb root, such as ``http://pacs.example.org:8042/dicom-web``; credentials
        given in it (``http://user:password@host/...``) are sent as HTTP basic
        authentication and never shown.
    limits : Limits
        The largest series retrieved: total bytes and voxels.

    Attributes
    ----------
    url : str
        The DICOMweb root without credentials, as messages show it.

    Raises
    ------
    PacsError
        When ``url`` is not an http or https URL with a host (nothing is sent yet).
    """

    def __init__(self, url: str, limits: Limits = DEFAULT_LIMITS) -> None:
        parts = urlsplit(url.rstrip("/"))
        try:
            host, port = parts.hostname, parts.port
        except ValueError:  # a port that is not a number
            host = port = None
        if parts.scheme not in ("http", "https") or not host:
            raise PacsError(
                "the DICOMweb URL is not an http(s) URL with a host, such as "
                "http://pacs.example.org:8042/dicom-web"
            )
        host = f"[{host}]" if ":" in host else host
        host += f":{port}" if port else ""
        self.url = urlunsplit(parts._replace(netloc=host))
        self.limits = limits
        self._auth = (parts.username, parts.password or "") if parts.username else None

    def studies(
        self,
        *,
        patient_id: str | None = None,
        since: datetime.date | None = None,
        until: datetime.date | None = None,
    ) -> list[Study]:
        """The studies matching a patient ID and a range of study dates.

        Parameters
        ----------
        patient_id : str, optional
            Only this PatientID (the server's matching: exact, or with ``*`` wildcards).
        since, until : datetime.date, optional
            Only studies on or after ``since`` and on or before ``until``.

        Returns
        -------
        list of Study
            At most :data:`MAX_RESULTS`; newest first (undated last), then by description
            and UID.

        Raises
        ------
        PacsError
        """
        filters = {}
        if patient_id:
            filters["PatientID"] = patient_id
        if since or until:
            filters["StudyDate"] = "-".join(f"{d:%Y%m%d}" if d else "" for d in (since, until))
        with self._client("study search", MAX_ANSWER_BYTES) as client:
            answer = client.search_for_studies(
                fields=["StudyDescription"], search_filters=filters, limit=MAX_RESULTS
            )
            found = [
                Study(
                    uid=_text(item, "StudyInstanceUID", required=True),
                    patient_id=_text(item, "PatientID"),
                    date=_date(_text(item, "StudyDate")),
                    description=_text(item, "StudyDescription"),
                )
                for item in _items(answer)
            ]
        found.sort(key=lambda study: (study.description, study.uid))
        return sorted(found, key=lambda study: study.date or datetime.date.min, reverse=True)

    def series(self, study_uid: str | None = None) -> list[Series]:
        """The series of one study, or of every study when ``study_uid`` is ``None`` (at
        most :data:`MAX_RESULTS`), by description, modality and UID.

        Raises
        ------
        PacsError
        """
        if study_uid is not None:
            _check_uids(study_uid)
        with self._client("series search", MAX_ANSWER_BYTES) as client:
            answer = client.search_for_series(
                study_instance_uid=study_uid,
                fields=["StudyDate", "SeriesDescription", "NumberOfSeriesRelatedInstances"],
                limit=MAX_RESULTS,
            )
            found = [
                Series(
                    study_uid=study_uid or _text(item, "StudyInstanceUID", required=True),
                    uid=_text(item, "SeriesInstanceUID", required=True),
                    description=_text(item, "SeriesDescription"),
                    modality=_text(item, "Modality"),
                    instances=_integer(item, "NumberOfSeriesRelatedInstances"),
                    study_date=_date(_text(item, "StudyDate")),
                )
                for item in _items(answer)
            ]
        return sorted(found, key=lambda s: (s.description, s.modality, s.uid))

    def retrieve_series(self, study_uid: str, series_uid: str, folder: str | os.PathLike) -> Path:
        """Download one series into ``folder`` (created if needed), one file per instance;
        ``folder`` should be new or empty, since a DICOM reader reads all its files.

        The series is refused before download when its metadata puts it over the limits;
        the download stops when the answer grows past ``limits.max_bytes``. On any error the
        files written are removed.

        Returns
        -------
        Path
            ``folder``, holding ``00000.dcm``, ``00001.dcm``... for
            :func:`~superpixel_annotator.core.dicom.load_dicom_series`.

        Raises
        ------
        PacsError
        """
        _check_uids(study_uid, series_uid)
        label = f"series {series_uid}"
        with self._client(f"{label} metadata", MAX_ANSWER_BYTES) as client:
            metadata = _items(client.retrieve_series_metadata(study_uid, series_uid))
            self._check_size(label, metadata)
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        written = []
        try:
            with self._client(f"{label} retrieval", self.limits.max_bytes) as client:
                for dataset in client.iter_series(study_uid, series_uid):
                    written.append(folder / f"{len(written):05d}.dcm")
                    dataset.save_as(written[-1], enforce_file_format=True)
        except BaseException:
            for path in written:
                path.unlink(missing_ok=True)
            raise
        return folder

    def store(self, path: str | os.PathLike) -> None:
        """Send one DICOM file (a segmentation, for example) to the server.

        Raises
        ------
        PacsError
            When the file cannot be read as DICOM, is over ``limits.max_bytes``, or the
            server does not store it.
        """
        name = printable(Path(path).name)
        try:
            self.limits.check_size(Path(path).stat().st_size, name)
            dataset = pydicom.dcmread(path)
        except VolumeError as error:
            raise PacsError(str(error)) from None
        except OSError as error:
            raise PacsError(f"{name}: {error.strerror or 'cannot be read'}") from None
        except _MALFORMED:
            raise PacsError(f"{name}: not a readable DICOM file") from None
        with self._client(f"store of {name}", MAX_ANSWER_BYTES) as client:
            answer = client.store_instances([dataset])
            if answer.get("FailedSOPSequence"):
                raise PacsError(f"DICOMweb server {self.url}: refused to store {name}")

    def _check_size(self, label: str, metadata: list[dict]) -> None:
        """Refuse a series whose metadata puts it over the limits or the file count."""
        if not metadata:
            raise PacsError(f"DICOMweb server {self.url}: no {label}")
        if len(metadata) > MAX_DICOM_FILES:
            raise PacsError(
                f"{label}: {len(metadata)} instances are more than the {MAX_DICOM_FILES} "
                "files a series may have"
            )
        sizes = [
            _integer(item, "Rows", 0)
            * _integer(item, "Columns", 0)
            * _integer(item, "SamplesPerPixel", 1)
            * _integer(item, "NumberOfFrames", 1)
            * -(-_integer(item, "BitsAllocated", 16) // 8)
            for item in metadata
        ]
        rows, columns = _integer(metadata[0], "Rows", 0), _integer(metadata[0], "Columns", 0)
        try:
            self.limits.check_size(len(metadata) * max(sizes), label)
            self.limits.check_voxels((columns, rows, len(metadata)), label)
        except VolumeError as error:
            raise PacsError(f"{error} (from the server's metadata)") from None

    @contextmanager
    def _client(self, request: str, budget: int) -> Iterator[DICOMwebClient]:
        """A client whose answers may total ``budget`` bytes; failures as :class:`PacsError`."""
        where = f"DICOMweb server {self.url}, {request}"
        session = requests.Session()
        session.auth = self._auth
        try:
            client = DICOMwebClient(self.url, session=session, callback=_ByteBudget(budget, where))
            client.set_http_retry_params(retry=False)
            yield client
        except PacsError:
            raise
        except requests.HTTPError as error:
            raise PacsError(f"{where}: {_status(error.response)}") from None
        except requests.ConnectionError:
            raise PacsError(f"{where}: cannot connect") from None
        except requests.Timeout:
            raise PacsError(f"{where}: no answer in time") from None
        except requests.RequestException as error:
            raise PacsError(f"{where}: {type(error).__name__}") from None
        except _MALFORMED as error:
            raise PacsError(f"{where}: malformed answer ({type(error).__name__})") from None
        finally:
            session.close()


class _ByteBudget:
    """A response hook counting the bytes read from each answer against one budget."""

    def __init__(self, budget: int, where: str) -> None:
        self.left = budget
        self.budget = budget
        self.where = where

    def __call__(self, response: requests.Response, *args, **kwargs) -> requests.Response:
        chunks = response.iter_content

        def counted(chunk_size=1, decode_unicode=False):
            for chunk in chunks(chunk_size, decode_unicode):
                self.left -= len(chunk)
                if self.left < 0:
                    response.close()
                    raise PacsError(
                        f"{self.where}: the answer is over the {file_size(self.budget)} limit"
                    )
                yield chunk

        response.iter_content = counted
        return response


def _check_uids(*uids: str) -> None:
    """Refuse what is not a DICOM UID (digits and dots, at most 64 characters)."""
    for uid in uids:
        if len(uid) > 64 or not RE_VALID_UID.fullmatch(uid):
            raise PacsError(f"{printable(uid)[:70]!r} is not a DICOM UID")


def _status(response: requests.Response | None) -> str:
    """``HTTP 404 Not Found``: the status code and its standard phrase, not the server's."""
    if response is None:
        return "HTTP error"
    try:
        return f"HTTP {response.status_code} {HTTPStatus(response.status_code).phrase}"
    except ValueError:
        return f"HTTP {response.status_code}"


def _items(answer) -> list[dict]:
    """A DICOM JSON answer: a list of objects."""
    if not isinstance(answer, list) or not all(isinstance(item, dict) for item in answer):
        raise ValueError("not a list of DICOM JSON objects")
    return answer


def _value(item: dict, keyword: str):
    """The first value of an attribute of a DICOM JSON object, or ``None``."""
    element = item.get(_TAGS[keyword])
    if not isinstance(element, dict):
        return None
    values = element.get("Value")
    return values[0] if isinstance(values, list) and values else None


def _text(item: dict, keyword: str, *, required: bool = False) -> str:
    value = _value(item, keyword)
    if value is None and required:
        raise ValueError(f"no {keyword}")
    if value is not None and not isinstance(value, str):
        raise ValueError(f"{keyword} is not text")
    return printable(value or "")


def _integer(item: dict, keyword: str, default: int | None = None) -> int | None:
    value = _value(item, keyword)
    if value is None:
        return default
    if isinstance(value, str) and value.strip().isdigit():
        return int(value)
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    raise ValueError(f"{keyword} is not a count")


def _date(text: str) -> datetime.date | None:
    try:
        return datetime.datetime.strptime(text, "%Y%m%d").date()
    except ValueError:
        return None
