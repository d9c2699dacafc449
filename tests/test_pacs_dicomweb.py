"""The DICOMweb client against a real Orthanc server (see ``orthanc.py``)."""

import datetime
import json
import socket
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pytest
from dicom_series import PATIENT_NAME, edit_file, phantom_image, write_series
from scipy.spatial.transform import Rotation

from superpixel_annotator.core.dicom import load_dicom_series
from superpixel_annotator.core.image_files import Limits, VolumeError
from superpixel_annotator.pacs import DicomWebSource, PacsError, Series, Study

REPO = Path(__file__).resolve().parents[1]
BRATS_FLAIR = (
    REPO.parent / "shared/data/brats2013/brats_2013_pat0005_1/Flair_subtrMeanDivStd.nii.gz"
)
# The series written here share write_series' patient; their studies differ by these.
IDENTIFYING = ("Doe", "Jane", "JD-1234", "19700101", "PACS-")


def turned(affine: np.ndarray) -> np.ndarray:
    """``affine`` turned 20 degrees about an oblique axis."""
    axis = np.array([1, 2, 0.5]) / np.linalg.norm([1, 2, 0.5])
    turn = np.eye(4)
    turn[:3, :3] = Rotation.from_rotvec(np.radians(20) * axis).as_matrix()
    return turn @ affine


@dataclass(frozen=True)
class Uploaded:
    """A series written to ``folder`` and stored in Orthanc."""

    folder: Path
    patient_id: str
    date: datetime.date
    study_uid: str
    series_uid: str
    slices: int


def upload_series(server, folder: Path, array, affine, patient_id, date, **options) -> Uploaded:
    """Write a series with shuffled file names, give it its own study, and store it."""
    paths = write_series(folder, array, affine, **options)
    study_uid = pydicom.uid.generate_uid()
    for path in paths:
        edit_file(
            path,
            PatientID=patient_id,
            StudyDate=f"{date:%Y%m%d}",
            StudyDescription=f"study {date:%Y}",
            StudyInstanceUID=study_uid,
        )
    server.upload(paths)
    series_uid = pydicom.dcmread(paths[0]).SeriesInstanceUID
    return Uploaded(folder, patient_id, date, study_uid, series_uid, len(paths))


def assert_one_line_and_private(error: BaseException) -> str:
    message = str(error)
    assert "\n" not in message
    assert not any(text in message for text in IDENTIFYING), message
    return message


@pytest.fixture(scope="module")
def phantom():
    return phantom_image()


@pytest.fixture(scope="module")
def source(orthanc_server) -> DicomWebSource:
    return DicomWebSource(orthanc_server.dicomweb_url)


@pytest.fixture(scope="module")
def axial(orthanc_server, phantom, tmp_path_factory) -> Uploaded:
    folder = tmp_path_factory.mktemp("pacs-axial")
    date = datetime.date(2020, 1, 15)
    return upload_series(orthanc_server, folder, *phantom, "PACS-AX", date, description="T1 AX")


@pytest.fixture(scope="module")
def oblique(orthanc_server, phantom, tmp_path_factory) -> Uploaded:
    folder = tmp_path_factory.mktemp("pacs-oblique")
    array, affine = phantom
    return upload_series(
        orthanc_server,
        folder,
        array,
        turned(affine),
        "PACS-OB",
        datetime.date(2021, 6, 10),
        description="oblique",
        modality="CT",
        slope=0.5,
        intercept=-20.0,
    )


@pytest.fixture(scope="module")
def brats(orthanc_server, tmp_path_factory) -> Uploaded:
    if not BRATS_FLAIR.exists():
        pytest.skip(f"BraTS data not found at {BRATS_FLAIR}")
    image = nib.load(BRATS_FLAIR)
    folder = tmp_path_factory.mktemp("pacs-brats")
    return upload_series(
        orthanc_server,
        folder,
        image.get_fdata(),
        image.affine,
        "PACS-BRATS",
        datetime.date(2013, 9, 22),
        description="FLAIR",
        slope=0.001,
    )


def test_studies_are_found_by_patient_id_with_their_series(source, axial, oblique):
    [study] = source.studies(patient_id="PACS-AX")
    assert study == Study(axial.study_uid, "PACS-AX", axial.date, "study 2020")
    assert "PACS-AX" not in repr(study)
    assert source.series(study.uid) == [
        Series(axial.study_uid, axial.series_uid, "T1 AX", "MR", axial.slices, axial.date)
    ]
    [oblique_series] = source.series(oblique.study_uid)
    assert (oblique_series.modality, oblique_series.instances) == ("CT", oblique.slices)
    assert source.studies(patient_id="PACS-NOBODY") == []


def test_studies_are_found_by_date_range_newest_first(source, axial, oblique):
    def found(**dates) -> list[str]:
        ours = {axial.study_uid, oblique.study_uid}
        return [study.uid for study in source.studies(**dates) if study.uid in ours]

    assert found() == [oblique.study_uid, axial.study_uid]
    assert found(since=datetime.date(2021, 1, 1)) == [oblique.study_uid]
    assert found(until=datetime.date(2020, 12, 31)) == [axial.study_uid]
    assert found(since=axial.date, until=axial.date) == [axial.study_uid]
    assert found(since=datetime.date(2020, 1, 16), until=datetime.date(2021, 6, 9)) == []


@pytest.mark.parametrize("series_fixture", ["axial", "oblique", "brats"])
def test_a_retrieved_series_reads_like_the_original_folder(
    series_fixture, source, request, tmp_path
):
    uploaded = request.getfixturevalue(series_fixture)
    folder = source.retrieve_series(uploaded.study_uid, uploaded.series_uid, tmp_path / "got")
    assert len(list(folder.iterdir())) == uploaded.slices
    retrieved, original = load_dicom_series(folder), load_dicom_series(uploaded.folder)
    np.testing.assert_array_equal(retrieved.data, original.data)
    np.testing.assert_array_equal(retrieved.affine, original.affine)
    assert (retrieved.name, retrieved.notes) == (original.name, original.notes)


def test_a_series_over_the_limits_is_refused_before_download(source, axial, tmp_path):
    pixel_bytes = 116 * 140 * 2 * axial.slices
    for limits in (Limits(max_bytes=pixel_bytes - 1), Limits(max_voxels=116 * 140)):
        small = DicomWebSource(source.url, limits)
        with pytest.raises(PacsError) as caught:
            small.retrieve_series(axial.study_uid, axial.series_uid, tmp_path)
        assert "from the server's metadata" in assert_one_line_and_private(caught.value)
        assert isinstance(caught.value, VolumeError)
        assert list(tmp_path.iterdir()) == []


def test_a_download_growing_past_the_byte_limit_stops_and_leaves_nothing(source, axial, tmp_path):
    # The metadata's pixel bytes pass; the files' headers make the answer larger.
    small = DicomWebSource(source.url, Limits(max_bytes=116 * 140 * 2 * axial.slices))
    with pytest.raises(PacsError) as caught:
        small.retrieve_series(axial.study_uid, axial.series_uid, tmp_path)
    message = assert_one_line_and_private(caught.value)
    assert message.endswith("retrieval: the answer is over the 2.5 MB limit")
    assert list(tmp_path.iterdir()) == []


def test_an_unknown_series_is_a_one_line_error(source, axial, tmp_path):
    with pytest.raises(PacsError) as caught:
        source.retrieve_series(axial.study_uid, "1.2.3.4", tmp_path)
    assert "series 1.2.3.4" in assert_one_line_and_private(caught.value)


def test_what_is_not_a_uid_is_refused_before_a_request(source, tmp_path):
    with pytest.raises(PacsError, match=r"^'\.\./\.\.' is not a DICOM UID$"):
        source.series("../..")
    with pytest.raises(PacsError, match=r"^'1\.2\.x' is not a DICOM UID$"):
        source.retrieve_series("1.2.3", "1.2.x", tmp_path)


def test_a_stored_file_is_found_back(source, phantom, tmp_path):
    array, affine = phantom
    [path] = write_series(tmp_path, array[:, :, :1], affine, description="stored", seed=3)
    edit_file(path, PatientID="PACS-STOW", StudyDate="20220202")
    source.store(path)
    [study] = source.studies(patient_id="PACS-STOW")
    assert study.date == datetime.date(2022, 2, 2)
    [series] = source.series(study.uid)
    assert (series.description, series.modality, series.instances) == ("stored", "MR", 1)
    stored = pydicom.dcmread(path)
    folder = source.retrieve_series(study.uid, series.uid, tmp_path / "back")
    back = pydicom.dcmread(folder / "00000.dcm")
    assert back.SOPInstanceUID == stored.SOPInstanceUID
    assert back.PixelData == stored.PixelData


def test_a_file_that_is_not_dicom_is_not_stored(source, tmp_path):
    path = tmp_path / "image.dcm"
    path.write_bytes(np.random.default_rng(0).bytes(3000))
    with pytest.raises(PacsError, match=r"^image.dcm: not a readable DICOM file$"):
        source.store(path)


def test_an_unreachable_server_is_a_one_line_error_without_credentials():
    with socket.socket() as bound:  # bound, not listening: connections are refused
        bound.bind(("127.0.0.1", 0))
        port = bound.getsockname()[1]
        source = DicomWebSource(f"http://alice:secret@127.0.0.1:{port}/dicom-web/")
        with pytest.raises(PacsError) as caught:
            source.studies(patient_id="PACS-AX")
    assert assert_one_line_and_private(caught.value) == (
        f"DICOMweb server http://127.0.0.1:{port}/dicom-web, study search: cannot connect"
    )


@pytest.mark.parametrize(
    "url", ["pacs.example.org/dicom-web", "ftp://pacs/dicom-web", "http://bob:pw@pacs:port/"]
)
def test_a_url_that_is_not_http_is_refused_without_showing_it(url):
    with pytest.raises(PacsError, match=r"^the DICOMweb URL is not an http\(s\) URL") as caught:
        DicomWebSource(url)
    assert "pw" not in str(caught.value)


def test_an_http_error_is_a_one_line_error(orthanc_server, axial):
    with pytest.raises(PacsError) as caught:
        DicomWebSource(f"{orthanc_server.url}/no-dicom-web").series(axial.study_uid)
    assert assert_one_line_and_private(caught.value).endswith("series search: HTTP 404 Not Found")


class MalformedAnswers(BaseHTTPRequestHandler):
    """Answers every request with JSON that is not DICOM JSON, naming the patient."""

    def do_GET(self):
        body = json.dumps(
            [{"00100010": {"vr": "PN", "Value": [{"Alphabetic": PATIENT_NAME}]}, "0020000D": 7}]
        ).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/dicom+json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def test_a_malformed_answer_is_a_one_line_error_without_patient_data():
    server = ThreadingHTTPServer(("127.0.0.1", 0), MalformedAnswers)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        source = DicomWebSource(f"http://127.0.0.1:{server.server_port}/dicom-web")
        for search in (source.studies, lambda: source.series("1.2.3")):
            with pytest.raises(PacsError) as caught:
                search()
            assert "malformed answer" in assert_one_line_and_private(caught.value)
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
