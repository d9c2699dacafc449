"""A dataset of a DICOMweb server's image series, against the session's real Orthanc
(``orthanc_server``): listing (a SEG stored there is not a case), opening a series, saving
a version on the series' grid, Next unfinished, a series gone or a server unreachable.

Orthanc is shared with other test modules, so these tests find their series by their own
UIDs; their series have study dates, which put them before the undated series of others.
"""

import dash
import nibabel as nib
import numpy as np
import pydicom
import pytest
import requests
from dicom_series import edit_file, write_series

from superpixel_annotator.core.annotation import Annotation
from superpixel_annotator.core.dicom import load_dicom_series
from superpixel_annotator.core.image_files import Limits
from superpixel_annotator.core.palette import DEFAULT_LABELS
from superpixel_annotator.core.segmentation_io import read_segmentation, save_segmentation
from superpixel_annotator.pacs.dicomweb import DicomWebSource, PacsError
from superpixel_annotator.serve import startup
from superpixel_annotator.serve.cli import main
from superpixel_annotator.store.pacs_dataset import PacsWorkspace, open_pacs_workspace
from superpixel_annotator.web.annotator import VolumeAnnotator
from superpixel_annotator.web.callbacks.dataset import open_requested, requested_case, save_answer

SHAPE = (16, 20, 12)
SIZE = 4.5
AFFINE = np.diag([1.0, 1.2, 2.0, 1.0])
PATIENT = "PACS-DATASET-1"
# Study dates put the cases in this order, before the undated or later series of others.
SERIES = {"early": "20010101", "later": "20020202"}


def blobs(seed: int) -> np.ndarray:
    """Bright balls on a noisy background."""
    rng = np.random.default_rng(seed)
    data = rng.normal(0, 2, SHAPE)
    for _ in range(4):
        centre = rng.integers(3, np.array(SHAPE) - 3)
        data[tuple(slice(c - 2, c + 2) for c in centre)] += rng.uniform(50, 200)
    return data


def upload_dated_series(server, folder, seed: int, date: str, description: str) -> str:
    """Store a series of its own study with ``date`` as its StudyDate; its UID."""
    files = write_series(
        folder, blobs(seed), AFFINE, description=description, patient_id=PATIENT, seed=seed
    )
    for path in files:
        edit_file(path, StudyDate=date)
    server.upload(files)
    return pydicom.dcmread(files[0], stop_before_pixels=True).SeriesInstanceUID


@pytest.fixture(scope="module")
def pacs(orthanc_server, tmp_path_factory):
    """Two dated series and a SEG of the first stored in Orthanc: their folders by name
    and their series UIDs, and the SEG's series UID."""
    root = tmp_path_factory.mktemp("pacs-dataset")
    folders, uids = {}, {}
    for seed, (name, date) in enumerate(SERIES.items()):
        folders[name] = root / name
        description = f"DATASET {name.upper()}"
        uids[name] = upload_dated_series(orthanc_server, folders[name], seed, date, description)
    volume = load_dicom_series(folders["early"])
    seg = root / "early_seg.dcm"
    save_segmentation(
        volume, (volume.data > 40).astype(np.uint8), seg, label_classes=DEFAULT_LABELS
    )
    orthanc_server.upload([seg])
    seg_uid = pydicom.dcmread(seg, stop_before_pixels=True).SeriesInstanceUID
    return folders, uids, seg_uid


def annotator_context(orthanc_server, tmp_path):
    """An annotator of the server's dataset, labels and cache in ``tmp_path``."""
    workspace, notes = open_pacs_workspace(
        DicomWebSource(orthanc_server.dicomweb_url),
        labels=DEFAULT_LABELS,
        limits=Limits(),
        labels_dir=tmp_path / "labels",
        cache_dir=tmp_path / "cache",
    )
    assert not any(PATIENT in note for note in notes)
    annotator = VolumeAnnotator(
        dash.Dash(__name__),
        workspace.start_volumes(),
        "ann",
        workspace=workspace,
        cache_dir=tmp_path / "cache",
    )
    return annotator.context


@pytest.fixture
def context(orthanc_server, pacs, tmp_path):
    return annotator_context(orthanc_server, tmp_path)


def opened(context, name) -> dict:
    result = open_requested(context, {"name": name}, SIZE)
    assert result["message_color"] == "info", result["message"]
    return result["case"]


def saved(context, case_data, *, done: bool) -> str:
    """Label a third of the case's superpixels 1 and save it; the state saved."""
    case = context.cases.get(case_data["key"])
    annotation = Annotation.from_state(
        case.superpixels, case_data["state"], appearance=case.appearance
    )
    labels = annotation.superpixel_labels.copy()
    labels[1 : 1 + case.superpixels.count // 3] = 1
    annotation.set_superpixel_labels(labels)
    state = annotation.to_state()
    dataset = case_data["dataset"]
    request = {
        "name": dataset["name"],
        "key": case_data["key"],
        "token": dataset["token"],
        "base": dataset["base"],
        "state": state,
        "done": done,
    }
    answer, status = save_answer(context, request, "alice")
    assert (status, answer["ok"]) == (200, True), answer
    return state


def refused(context, name) -> str:
    result = open_requested(context, {"name": name}, SIZE)
    assert result["message_color"] == "warning" and "case" not in result
    message = result["message"]
    assert "\n" not in message and PATIENT not in message and "Doe" not in message
    return message


def test_the_cases_are_the_image_series_by_date_named_by_uid(context, pacs):
    _, uids, seg_uid = pacs
    names = context.workspace.names
    assert seg_uid not in names
    mine = [name for name in names if name in uids.values()]
    assert mine == [uids["early"], uids["later"]]
    # Dated first, they come before the undated or later series of other tests.
    assert names[:2] == tuple(mine)
    # Listing retrieved the first case only.
    assert len(list((context.cache_dir / "pacs").iterdir())) == 1


def test_a_series_opens_saves_on_its_grid_and_next_unfinished_moves_on(context, pacs):
    folders, uids, _ = pacs
    data = opened(context, uids["early"])
    case = context.cases.get(data["key"])
    original = load_dicom_series(folders["early"])
    np.testing.assert_array_equal(case.volume.data, original.data)
    state = saved(context, data, done=True)

    path = context.workspace.store.latest_path(uids["early"])
    assert path.name == f"{uids['early']}_segmentation.nii.gz"
    np.testing.assert_allclose(nib.load(path).affine, original.affine)
    expected = Annotation.from_state(
        case.superpixels, state, appearance=case.appearance
    ).label_volume()
    assert np.count_nonzero(expected) > 0
    np.testing.assert_array_equal(read_segmentation(path, original).labels, expected)
    assert opened(context, uids["early"])["dataset"]["version"] == 1

    shown = {"name": uids["early"]}
    assert requested_case(context, "ann-case-next", shown, None) == {"name": uids["later"]}
    assert context.workspace.first_unfinished() == uids["later"]
    assert context.workspace.export_zip(context.cache_dir.parent / "export.zip") == 1


def test_a_series_gone_from_the_server_is_refused_in_one_line(pacs, orthanc_server, tmp_path):
    uids = pacs[1]
    gone = upload_dated_series(orthanc_server, tmp_path / "gone", 3, "20030303", "GONE")
    context = annotator_context(orthanc_server, tmp_path)
    assert gone in context.workspace.names
    found = requests.post(f"{orthanc_server.url}/tools/lookup", data=gone).json()
    (orthanc_id,) = [item["ID"] for item in found if item["Type"] == "Series"]
    requests.delete(f"{orthanc_server.url}/series/{orthanc_id}").raise_for_status()

    message = refused(context, gone)
    assert message.startswith(f"Case {gone} cannot be opened: DICOMweb server")
    assert "HTTP 404" in message
    opened(context, uids["later"])  # the others stay usable

    # A server unreachable after listing: every case says so, in one line.
    listed = DicomWebSource(orthanc_server.dicomweb_url).series()
    unreachable = PacsWorkspace(
        DicomWebSource("http://127.0.0.1:9/dicom-web"),
        [series for series in listed if series.uid == uids["later"]],
        context.workspace.store,
        DEFAULT_LABELS,
        Limits(),
        tmp_path / "other-cache",
    )
    with pytest.raises(PacsError, match=r"127\.0\.0\.1:9.*cannot connect") as error:
        unreachable.case_volumes(uids["later"])
    assert "\n" not in str(error.value)


class NotServed:
    """Stands in for the app: records the options it was made with, and is not run."""

    def __init__(self, volumes, **options):
        self.volumes, self.options = volumes, options

    def run(self, **options):
        pass


def test_the_command_serves_the_server_as_a_dataset(orthanc_server, pacs, tmp_path, monkeypatch):
    created = []

    def create_app(volumes, **options):
        created.append(NotServed(volumes, **options))
        return created[-1]

    monkeypatch.setattr(startup, "create_app", create_app)
    monkeypatch.setenv("SUPERPIXEL_ANNOTATOR_CACHE", str(tmp_path / "cache"))
    labels = tmp_path / "labels"
    assert main(["--dicomweb", orthanc_server.dicomweb_url, "--labels-dir", str(labels)]) == 0
    (app,) = created
    options = app.options
    workspace = options["workspace"]
    assert isinstance(workspace, PacsWorkspace) and options["pacs"] is not None
    assert [volume.name for volume in app.volumes] == ["DATASET_EARLY"]
    assert {pacs[1]["early"], pacs[1]["later"]} <= set(workspace.names)
    assert workspace.store.labels_dir == labels and (labels / "annotations.sqlite").exists()
