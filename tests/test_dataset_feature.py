"""Annotating a dataset, as the web layer does it, without a browser: opening cases,
saving versions through the save route's function, conflicts, locks, navigation, export."""

import zipfile
from pathlib import Path

import dash
import nibabel as nib
import numpy as np
import pytest
from dicom_series import write_series

from superpixel_annotator.core.annotation import Annotation
from superpixel_annotator.core.dicom import load_dicom_series
from superpixel_annotator.core.image_files import Limits
from superpixel_annotator.core.palette import DEFAULT_LABELS
from superpixel_annotator.core.segmentation_io import read_segmentation
from superpixel_annotator.core.volume import load_volume
from superpixel_annotator.store.workspace import open_workspace
from superpixel_annotator.web.annotator import VolumeAnnotator
from superpixel_annotator.web.callbacks.dataset import (
    carried_dataset,
    case_list,
    open_requested,
    requested_case,
    save_answer,
    versions_view,
)

SHAPE = (16, 20, 24)
SIZE = 4.5


def blobs(seed: int) -> np.ndarray:
    """Bright balls on a noisy background, of shape :data:`SHAPE`."""
    rng = np.random.default_rng(seed)
    data = np.zeros(SHAPE, np.float32)
    for _ in range(6):
        centre = rng.integers(3, np.array(SHAPE) - 3)
        grid = np.indices(SHAPE).T - centre
        data[(np.linalg.norm(grid, axis=-1) < 4).T] += rng.uniform(50, 200)
    return data + rng.normal(0, 2, SHAPE).astype(np.float32)


def write_case(folder: Path, seed: int, label: bool = False) -> None:
    """A case folder: FLAIR and T1c of blobs on a 1 mm grid, and optionally a label file."""
    data = blobs(seed)
    folder.mkdir(parents=True)
    affine = np.diag([1.0, 1.0, 1.0, 1.0])
    nib.save(nib.Nifti1Image(data, affine), folder / f"{folder.name}_flair.nii.gz")
    nib.save(nib.Nifti1Image(data * 0.5 + 10, affine), folder / f"{folder.name}_t1c.nii.gz")
    if label:
        labels = (data > 100).astype(np.uint8) * 2
        nib.save(nib.Nifti1Image(labels, affine), folder / f"{folder.name}_seg.nii.gz")


@pytest.fixture
def dataset_dir(tmp_path) -> Path:
    root = tmp_path / "dataset"
    for index in range(3):
        write_case(root / f"case{index}", seed=index, label=index == 2)
    return root


def annotator_context(root: Path, cache_dir: Path, database_url: str | None = None):
    """The context of an annotator of the dataset ``root``, checked to have no problem."""
    workspace, notes = open_workspace(
        root, labels=DEFAULT_LABELS, limits=Limits(), database=database_url
    )
    assert notes == []
    annotator = VolumeAnnotator(
        dash.Dash(__name__),
        workspace.start_volumes(),
        "ann",
        workspace=workspace,
        cache_dir=cache_dir,
    )
    return annotator.context


@pytest.fixture
def context(dataset_dir, tmp_path, database_url):
    """An annotator of the dataset, its metadata in SQLite and then in PostgreSQL."""
    return annotator_context(dataset_dir, tmp_path / "cache", database_url)


def opened(context, name, version=None) -> dict:
    request = {"name": name} if version is None else {"name": name, "version": version}
    result = open_requested(context, request, SIZE)
    assert result["message_color"] == "info", result["message"]
    return result["case"]


def painted_state(context, case_data, label: int, fraction: float) -> str:
    """The case's annotation with the first ``fraction`` of its superpixels set to ``label``."""
    case = context.cases.get(case_data["key"])
    annotation = Annotation.from_state(
        case.superpixels, case_data["state"], appearance=case.appearance
    )
    labels = annotation.superpixel_labels.copy()
    labels[1 : 1 + int(fraction * case.superpixels.count)] = label
    annotation.set_superpixel_labels(labels)
    return annotation.to_state()


def save(context, case_data, state, base, user="alice", done=False):
    dataset = case_data["dataset"]
    request = {
        "name": dataset["name"],
        "key": case_data["key"],
        "token": dataset["token"],
        "base": base,
        "state": state,
        "done": done,
    }
    return save_answer(context, request, user)


def test_a_new_case_opens_empty_and_the_first_unfinished_is_the_default(context):
    result = open_requested(context, None, SIZE)
    data = result["case"]
    assert data["dataset"]["name"] == "case0"
    assert data["state"] is None and data["dataset"]["version"] is None
    assert "not annotated yet" in result["message"]


def test_a_label_file_in_the_case_is_its_starting_annotation(context, dataset_dir):
    data = opened(context, "case2")
    case = context.cases.get(data["key"])
    labels = Annotation.from_state(
        case.superpixels, data["state"], appearance=case.appearance
    ).label_volume()
    expected = load_volume(dataset_dir / "case2" / "case2_seg.nii.gz").data
    np.testing.assert_array_equal(labels, expected)  # voxel for voxel, as the file holds it


def test_saves_make_versions_written_like_download_and_reopen_exactly(context):
    data = opened(context, "case0")
    case = context.cases.get(data["key"])
    annotation = Annotation.from_state(
        case.superpixels, painted_state(context, data, 1, 0.3), appearance=case.appearance
    )
    middle = case.shape[0] // 2
    brushed = annotation.paint(0, middle, np.array([[4.0, 4.0], [4.0, 20.0]]), 2, level="brush")
    assert brushed.size and len(annotation.voxel_marks)
    state = annotation.to_state()
    answer, status = save(context, data, state, base=None)
    assert (status, answer["ok"], answer["version"]) == (200, True, 1)
    workspace = context.workspace
    path = workspace.store.latest_path("case0")
    saved = read_segmentation(path, case.volume, max_marks=case.superpixels.count + 1)
    np.testing.assert_array_equal(saved.labels, annotation.label_volume())
    np.testing.assert_array_equal(nib.load(path).affine, case.volume.affine)

    again = opened(context, "case0")
    assert again["dataset"]["version"] == 1 and again["dataset"]["base"] == 1
    reopened = Annotation.from_state(case.superpixels, again["state"], appearance=case.appearance)
    np.testing.assert_array_equal(reopened.marked_labels(), annotation.marked_labels())
    np.testing.assert_array_equal(reopened.label_volume(), annotation.label_volume())


def test_a_save_from_an_older_version_is_refused_and_both_are_kept(context):
    data = opened(context, "case0")
    first, second = painted_state(context, data, 1, 0.2), painted_state(context, data, 2, 0.4)
    assert save(context, data, first, base=None)[0]["version"] == 1
    answer, status = save(context, data, second, base=None, user="alice")
    assert status == 409 and answer["conflict"] and answer["version"] == 1
    assert "alice saved version 1 of case0" in answer["message"]
    assert [v.number for v in context.workspace.store.versions("case0")] == [1]
    # The user keeps theirs: saved after the newer one, which stays in the history.
    assert save(context, data, second, base=1)[0]["version"] == 2


def test_another_user_cannot_save_a_case_someone_is_editing(context):
    data = opened(context, "case1")
    state = painted_state(context, data, 1, 0.2)
    assert save(context, data, state, base=None, user="alice")[1] == 200
    answer, status = save(context, data, state, base=1, user="bob")
    assert status == 423 and "alice is editing case1" in answer["message"]
    options, value, text, read_only = versions_view(context, {"name": "case1"}, "bob")
    assert text.startswith("alice is editing this case") and value == "1" and read_only
    assert not versions_view(context, {"name": "case1"}, "alice")[3]
    # Alice moves on to another case: case1 is free for Bob at once.
    versions_view(context, {"name": "case0"}, "alice")
    assert not versions_view(context, {"name": "case1"}, "bob")[3]
    assert save(context, data, state, base=1, user="bob")[1] == 200


def test_malformed_or_mixed_up_saves_are_refused(context):
    data = opened(context, "case0")
    other = opened(context, "case1")
    state = painted_state(context, data, 1, 0.2)
    assert save_answer(context, "not json", "alice")[1] == 400
    assert save_answer(context, {"name": "case0"}, "alice")[1] == 400
    # The token of case1's opening does not let case0's annotation be saved as case1.
    mixed = {
        **data,
        "dataset": {**data["dataset"], "name": "case1", "token": other["dataset"]["token"]},
    }
    answer, status = save(context, mixed, state, base=None)
    assert status == 400 and "not case case1" in answer["message"]
    assert context.workspace.store.latest("case1") is None


def test_restoring_an_old_version_opens_it_to_be_saved_as_the_newest(context):
    data = opened(context, "case0")
    save(context, data, painted_state(context, data, 1, 0.2), base=None)
    save(context, data, painted_state(context, data, 2, 0.5), base=1)
    request = requested_case(context, "ann-version-restore", {"name": "case0"}, "1")
    assert request == {"name": "case0", "version": 1}
    restored = opened(context, "case0", version=1)
    assert restored["dataset"]["version"] == 1 and restored["dataset"]["base"] == 2
    assert restored["dataset"]["restored"] and "restored" not in opened(context, "case0")["dataset"]


def test_navigation_goes_to_the_next_unfinished_case_and_wraps(context):
    data = opened(context, "case1")
    save(context, data, painted_state(context, data, 1, 0.2), base=None, done=True)
    shown = {"name": "case0"}
    assert requested_case(context, "ann-case-next", shown, None) == {"name": "case2"}
    assert requested_case(context, "ann-case-previous", shown, None) == {"name": "case2"}
    assert requested_case(context, "ann-case-next", {"name": "../etc"}, None) is dash.no_update
    table, pages, page, progress = case_list(context, shown, "", 1, "ann-dataset-case")
    assert (pages, page, progress) == (1, 1, "1 / 3 done")
    rows = [[cell.children for cell in row.children] for row in table.children[1].children]
    assert [row[:3] for row in rows] == [
        ["case0", "new", ""],
        ["case1", "done", "alice"],
        ["case2", "new", ""],
    ]
    table, *_ = case_list(context, shown, "done", 1, "ann-case-filter")
    assert [getattr(row, "data-dataset-case") for row in table.children[1].children] == ["case1"]


def test_a_new_superpixel_size_keeps_the_dataset_case_only_with_its_token(context):
    data = opened(context, "case0")
    current = context.cases.get(data["key"])
    other = opened(context, "case1")
    carried = carried_dataset(context, data["dataset"], current, current)
    assert carried["name"] == "case0" and carried["token"] == data["dataset"]["token"]
    forged = {**data["dataset"], "token": other["dataset"]["token"]}
    assert carried_dataset(context, forged, current, current) is None


def test_export_holds_the_done_segmentations_and_their_statistics(context, tmp_path):
    for name in ("case0", "case1"):
        data = opened(context, name)
        save(context, data, painted_state(context, data, 1, 0.3), base=None, done=name == "case1")
    destination = tmp_path / "export.zip"
    assert context.workspace.export_zip(destination) == 1
    with zipfile.ZipFile(destination) as archive:
        assert sorted(archive.namelist()) == ["case1_segmentation.nii.gz", "statistics.csv"]
        lines = archive.read("statistics.csv").decode().splitlines()
    assert lines[0].startswith("case,label,voxels,volume_mm3,volume_ml,mean_FLAIR,mean_T1c")
    assert len(lines) == 2 and lines[1].startswith("case1,1,")


def test_every_process_on_the_labels_folder_makes_the_same_tokens(context, dataset_dir):
    workspace = context.workspace
    token = workspace.case_token("case0", "0" * 32)
    other, _ = open_workspace(dataset_dir, labels=DEFAULT_LABELS, limits=Limits())
    assert other.case_token("case0", "0" * 32) == token
    assert other.case_token("case1", "0" * 32) != token
    secret = workspace.store.labels_dir / ".case-token-key"
    assert secret.stat().st_mode & 0o777 == 0o600 and len(secret.read_bytes()) == 32
    assert [path.name for path in secret.parent.glob(".case-token-key.*")] == []


# DICOM series as cases

DICOM_AFFINE = np.array(
    [[0.9, 0, 0, -8.0], [0, 1.1, 0, 12.0], [0, 0, 2.0, -30.0], [0, 0, 0, 1.0]],
)
IDENTIFYING = ("Doe", "Jane", "JD-1234")


@pytest.fixture
def mixed_dir(tmp_path) -> Path:
    """A NIfTI case, a DICOM series case, a case of two DICOM modalities, a series with a
    missing slice and a folder of two series."""
    root = tmp_path / "mixed"
    write_case(root / "nifti", seed=0)
    write_series(root / "series", blobs(1), DICOM_AFFINE, description="T1 AX")
    for seed, modality in enumerate(("flair", "t1c")):
        write_series(root / "modalities" / modality, blobs(2) + seed, DICOM_AFFINE)
    paths = write_series(root / "broken", blobs(3), DICOM_AFFINE, description="T2 AX")
    paths[5].unlink()
    for seed, description in enumerate(("first", "second")):
        folder = root / "several"
        write_series(folder, blobs(seed), DICOM_AFFINE, description=description, seed=seed)
    return root


@pytest.fixture
def mixed(mixed_dir, tmp_path):
    return annotator_context(mixed_dir, tmp_path / "cache")


def refused(context, name) -> str:
    """The one-line message of opening case ``name``, free of patient data."""
    result = open_requested(context, {"name": name}, SIZE)
    assert result["message_color"] == "warning" and "case" not in result
    message = result["message"]
    assert "\n" not in message and not any(field in message for field in IDENTIFYING)
    return message


def test_a_dicom_case_opens_and_saves_nifti_on_the_series_grid(mixed, mixed_dir):
    assert mixed.workspace.names == ("broken", "modalities", "nifti", "series", "several")
    data = opened(mixed, "series")
    case = mixed.cases.get(data["key"])
    series = load_dicom_series(mixed_dir / "series")
    np.testing.assert_array_equal(case.volume.data, series.data)
    state = painted_state(mixed, data, 2, 0.3)
    answer, status = save(mixed, data, state, base=None, done=True)
    assert (status, answer["version"]) == (200, 1)
    path = mixed.workspace.store.latest_path("series")
    assert path.name == "series_segmentation.nii.gz"
    np.testing.assert_allclose(nib.load(path).affine, series.affine)
    saved = read_segmentation(path, series)
    expected = Annotation.from_state(
        case.superpixels, state, appearance=case.appearance
    ).label_volume()
    assert np.count_nonzero(expected) > 0
    np.testing.assert_array_equal(saved.labels, expected)
    assert opened(mixed, "series")["dataset"]["version"] == 1


def test_dicom_subfolders_open_as_the_modalities_of_one_case(mixed):
    data = opened(mixed, "modalities")
    case = mixed.cases.get(data["key"])
    assert len(case.volumes) == 2
    np.testing.assert_allclose(case.volumes[1].data, case.volumes[0].data + 1, atol=0.5)


def test_broken_dicom_cases_are_refused_in_one_line_and_the_others_open(mixed):
    assert refused(mixed, "broken").startswith(
        'Case broken cannot be opened: DICOM series "T2 AX": slices missing or unevenly spaced'
    )
    message = refused(mixed, "several")
    assert message.startswith("Case several cannot be opened: ")
    assert "2 DICOM series" in message and "one series per folder" in message
    assert '"first"' not in message and "first (MR, 24 slices)" in message
    assert "second (MR, 24 slices)" in message
    # The server started on the first case that opens, and every other case opens.
    for name in ("modalities", "nifti", "series"):
        opened(mixed, name)


def test_the_export_of_a_mixed_dataset_has_every_done_case(mixed):
    for name in ("nifti", "series"):
        data = opened(mixed, name)
        save(mixed, data, painted_state(mixed, data, 1, 0.3), base=None, done=True)
    destination = mixed.workspace.store.labels_dir.parent / "export.zip"
    assert mixed.workspace.export_zip(destination) == 2
    with zipfile.ZipFile(destination) as archive:
        lines = archive.read("statistics.csv").decode().splitlines()
    assert lines[0] == ("case,label,voxels,volume_mm3,volume_ml,mean_FLAIR,mean_T1c,mean_series")
    assert lines[1].startswith("nifti,1,") and lines[1].endswith(",")
    assert lines[2].startswith("series,1,") and ",," in lines[2]
