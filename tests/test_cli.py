"""The console script: options, what it hands to the app, and one-line errors."""

import os
import subprocess
import sys

import nibabel as nib
import numpy as np
import pydicom
import pytest
from dicom_series import write_series

from superpixel_annotator.core.cache import CACHE_LIMIT_VARIABLE
from superpixel_annotator.core.image_files import DEFAULT_LIMITS, Limits
from superpixel_annotator.core.label_tables import BRATS_LABELS
from superpixel_annotator.core.palette import DEFAULT_LABELS
from superpixel_annotator.serve import startup
from superpixel_annotator.serve.cli import build_parser, main
from superpixel_annotator.serve.settings import settings_from_arguments, settings_from_environment
from superpixel_annotator.web.auth import add_user
from superpixel_annotator.web.limits import DEFAULT_SERVER_LIMITS
from superpixel_annotator.web.security import DEFAULT_FRAME_ANCESTORS


class FakeApp:
    """Stands in for the Dash app: records how it is run instead of serving."""

    def __init__(self, volumes, **options):
        self.volumes, self.options, self.run_with = volumes, options, None

    def run(self, **options):
        self.run_with = options


@pytest.fixture
def created(monkeypatch) -> list[FakeApp]:
    """The apps the command creates, with ``create_app`` replaced by :class:`FakeApp`."""
    apps = []

    def create_app(volumes, **options):
        apps.append(FakeApp(volumes, **options))
        return apps[-1]

    monkeypatch.setattr(startup, "create_app", create_app)
    return apps


def write_scan(path, shape=(8, 9, 10), seed=0, affine=None):
    array = np.random.default_rng(seed).random(shape).astype(np.float32)
    nib.save(nib.Nifti1Image(array, np.eye(4) if affine is None else affine), path)
    return str(path)


def test_help_names_the_options():
    help_text = build_parser().format_help()
    for option in ("--host", "--port", "--debug", "--volume", "--max-upload-mb", "--max-voxels"):
        assert option in help_text
    for option in ("--max-files", "--max-upload-total-mb", "--max-jobs", "--frame-ancestors"):
        assert option in help_text
    assert "FILE ..." in help_text


def test_several_files_are_modalities_of_one_case(tmp_path, created, capsys):
    flair = write_scan(tmp_path / "FLAIR.nii.gz", seed=1)
    t1c = write_scan(tmp_path / "T1c.nii.gz", seed=2)
    assert main([flair, t1c, "--port", "8123", "--host", "0.0.0.0"]) == 0
    (app,) = created
    assert [volume.name for volume in app.volumes] == ["FLAIR", "T1c"]
    assert app.options == {
        "limits": DEFAULT_LIMITS,
        "server_limits": DEFAULT_SERVER_LIMITS,
        "frame_ancestors": DEFAULT_FRAME_ANCESTORS,
        "background_manager": None,
        "users": None,
        "labels": DEFAULT_LABELS,
        "workspace": None,
        "pacs": None,
    }
    assert app.run_with["port"] == 8123 and app.run_with["host"] == "0.0.0.0"
    output = capsys.readouterr()
    assert "http://127.0.0.1:8123/" in output.out and output.err == ""


def test_dicomweb_gives_the_app_a_pacs(created):
    assert main(["--dicomweb", "http://user:secret@pacs.example:8042/dicom-web/"]) == 0
    pacs = created[0].options["pacs"]
    assert pacs.url == "http://pacs.example:8042/dicom-web"


@pytest.mark.parametrize(
    ("arguments", "problem"),
    [
        (["--database", "sqlite:///x.sqlite"], "needs --labels-dir DIR"),
        (["--labels-dir", "LABELS"], "127.0.0.1:9/dicom-web, series search: cannot connect"),
    ],
)
def test_a_dataset_of_a_dicomweb_server_that_cannot_open_stops_with_one_line(
    tmp_path, created, capsys, arguments, problem
):
    arguments = [str(tmp_path / a) if a == "LABELS" else a for a in arguments]
    assert main(["--dicomweb", "http://127.0.0.1:9/dicom-web", *arguments]) == 2
    assert problem in one_line_error(capsys) and created == []


def test_no_file_opens_the_sample(created):
    assert main([]) == 0
    assert [volume.name for volume in created[0].volumes] == ["head_phantom"]


def test_limits_come_from_the_options(tmp_path, created):
    path = write_scan(tmp_path / "scan.nii.gz")
    assert main([path, "--max-upload-mb", "2.5", "--max-voxels", "1000"]) == 0
    assert created[0].options["limits"] == Limits(max_bytes=2_500_000, max_voxels=1000)


def test_4d_note_goes_to_stderr_and_volume_chooses(tmp_path, created, capsys):
    path = write_scan(tmp_path / "dwi.nii.gz", shape=(8, 9, 10, 3))
    assert main([path, "--volume", "2"]) == 0
    error = capsys.readouterr().err
    assert error == (
        f"superpixel-annotator: note: {path}: 4D image with 3 volumes (0 to 2), showing volume 2\n"
    )
    expected = nib.load(path).get_fdata(dtype=np.float32)[..., 2]
    np.testing.assert_array_equal(
        np.sort(created[0].volumes[0].data.ravel()), np.sort(expected.ravel())
    )


def one_line_error(capsys) -> str:
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and error.startswith("superpixel-annotator: ")
    assert "Traceback" not in error
    return error


@pytest.mark.parametrize(
    "content", [None, b"", b"not an image\n"], ids=["missing", "empty", "text"]
)
def test_unusable_file_exits_2_with_one_line(tmp_path, capsys, created, content):
    path = tmp_path / "scan.nii.gz"
    if content is not None:
        path.write_bytes(content)
    assert main([str(path)]) == 2
    assert str(path) in one_line_error(capsys)
    assert created == []


def test_modalities_on_different_grids_exit_2(tmp_path, capsys, created):
    flair = write_scan(tmp_path / "FLAIR.nii.gz")
    t1c = write_scan(tmp_path / "T1c.nii.gz", shape=(8, 9, 11))
    assert main([flair, t1c]) == 2
    error = one_line_error(capsys)
    assert f"{t1c}: shape (8, 9, 11) differs from {flair} (8, 9, 10)" in error
    assert created == []


@pytest.mark.parametrize(
    ("options", "problem"),
    [
        (["--max-upload-mb", "1"], "upload limit"),
        (["--max-voxels", "100"], "over the limit of 100 voxels"),
        (["--volume", "1"], "there is no volume 1"),
    ],
)
def test_limits_and_volume_errors_exit_2(tmp_path, capsys, created, options, problem):
    path = write_scan(tmp_path / "scan.nii", shape=(80, 80, 80))
    assert main([path, *options]) == 2
    assert problem in one_line_error(capsys)


@pytest.mark.parametrize(
    "options", [["--volume", "-1"], ["--max-voxels", "0"], ["--max-upload-mb", "nan"]]
)
def test_bad_option_values_are_usage_errors(options, capsys):
    with pytest.raises(SystemExit) as caught:
        main(options)
    assert caught.value.code == 2
    assert "Traceback" not in capsys.readouterr().err


def test_console_script_prints_no_traceback(tmp_path):
    path = tmp_path / "random.nii.gz"
    path.write_bytes(bytes(range(256)) * 4)
    done = subprocess.run(
        [sys.executable, "-m", "superpixel_annotator.cli", str(path)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2
    assert done.stderr.startswith("superpixel-annotator: ") and "Traceback" not in done.stderr


def test_malformed_cache_limit_stops_the_start_with_one_line(tmp_path):
    env = {**os.environ, "SUPERPIXEL_ANNOTATOR_CACHE": str(tmp_path), CACHE_LIMIT_VARIABLE: "5GB"}
    done = subprocess.run(
        [sys.executable, "-m", "superpixel_annotator.cli", "--port", "1"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert done.returncode == 2
    error = done.stderr.strip()
    assert error.startswith("superpixel-annotator: ") and CACHE_LIMIT_VARIABLE in error
    assert "\n" not in error
    assert not any(tmp_path.iterdir())  # stopped before computing anything


def test_celery_broker_option_gives_a_celery_manager(tmp_path, created):
    path = write_scan(tmp_path / "scan.nii.gz")
    assert main([path, "--celery-broker", "redis://127.0.0.1:1/0"]) == 0
    manager = created[0].options["background_manager"]
    assert manager.handle.conf.broker_url == "redis://127.0.0.1:1/0"


def test_a_folder_is_a_dataset_with_its_label_table_and_users(tmp_path, created, capsys):
    for name in ("case1", "case2"):
        (tmp_path / "data" / name).mkdir(parents=True)
        write_scan(tmp_path / "data" / name / f"{name}_flair.nii.gz")
        write_scan(tmp_path / "data" / name / f"{name}_t1c.nii.gz", seed=3)
    users = tmp_path / "users.txt"
    add_user(users, "alice", "secret")
    arguments = [str(tmp_path / "data"), "--labels", "brats", "--users", str(users)]
    assert main(arguments) == 0
    (app,) = created
    workspace = app.options["workspace"]
    assert workspace.names == ("case1", "case2")
    assert [volume.name for volume in app.volumes] == ["case1_flair", "case1_t1c"]
    assert app.options["labels"] == BRATS_LABELS and set(app.options["users"]) == {"alice"}
    assert workspace.store.labels_dir == tmp_path / "data" / "labels"
    assert "Dataset" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("arguments", "problem"),
    [
        (["EMPTY"], "no case"),
        (["EMPTY", "--labels", "nonexistent.txt"], "nonexistent.txt"),
        (["DATA", "--users", "missing-users.txt"], "missing-users.txt"),
        (["DATA", "--database", "postgresql+psycopg://u:hunter2@127.0.0.1:1/x"], "127.0.0.1"),
    ],
)
def test_a_bad_dataset_setting_stops_with_one_line(tmp_path, arguments, problem, capsys):
    (tmp_path / "EMPTY").mkdir()
    (tmp_path / "DATA" / "case").mkdir(parents=True)
    write_scan(tmp_path / "DATA" / "case" / "flair.nii.gz")
    paths = {"EMPTY": str(tmp_path / "EMPTY"), "DATA": str(tmp_path / "DATA")}
    assert main([paths.get(argument, argument) for argument in arguments]) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and problem in error and "hunter2" not in error


def test_dataset_settings_reach_the_workers_through_the_environment(tmp_path):
    args = build_parser().parse_args(
        [
            str(tmp_path),
            "--labels-dir",
            "L",
            "--database",
            "sqlite:///x",
            "--labels",
            "brats",
            "--modalities",
            "*_ct*",
            "--users",
            "U",
            "--dicomweb",
            "http://pacs/dicom-web",
        ]
    )
    settings = settings_from_arguments(args)
    assert settings.dicomweb == "http://pacs/dicom-web"
    assert settings_from_environment(settings.to_environment()) == settings


def test_a_dicom_folder_opens_its_series_and_several_need_a_choice(tmp_path, created, capsys):
    rng = np.random.default_rng(0)
    folder = tmp_path / "dicom"
    first = write_series(folder, rng.integers(0, 500, (6, 7, 5)), np.eye(4), description="T1")
    assert main([str(folder)]) == 0
    assert created[0].volumes[0].data.shape == (5, 7, 6)
    write_series(folder, rng.integers(0, 500, (6, 7, 5)), np.eye(4), description="FLAIR", seed=1)
    assert main([str(folder)]) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and "FLAIR" in error and "T1" in error
    uid = pydicom.dcmread(first[0], stop_before_pixels=True).SeriesInstanceUID
    assert main([str(folder), "--series", uid]) == 0
    assert created[-1].volumes[0].name == "T1"
