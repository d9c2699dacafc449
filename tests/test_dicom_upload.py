"""DICOM series uploaded as ``.dcm`` files or one ``.zip``: read as the folder would be, and
hostile archives (zip bombs, too many members, zip64, lying sizes) refused in one line."""

import io
import struct
import zipfile

import numpy as np
import pytest
from dicom_series import PATIENT_NAME, write_series

from superpixel_annotator.core.dicom import MAX_DICOM_FILES, load_dicom_series
from superpixel_annotator.core.dicom_upload import is_dicom_upload, read_dicom_upload
from superpixel_annotator.core.image_files import DEFAULT_LIMITS, Limits, VolumeError
from superpixel_annotator.web.limits import ServerLimits

AFFINE = np.diag([1.0, 1.2, 2.0, 1.0])


@pytest.fixture
def series(tmp_path):
    rng = np.random.default_rng(3)
    values = rng.integers(0, 400, size=(12, 10, 6)).astype(float)
    files = write_series(tmp_path / "series", values, AFFINE, description="FLAIR AX")
    return tmp_path / "series", files


def zipped(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, content in members.items():
            archive.writestr(name, content)
    return buffer.getvalue()


def assert_same_volume(read, expected):
    np.testing.assert_array_equal(read.data, expected.data)
    np.testing.assert_allclose(read.affine, expected.affine)
    assert read.name == expected.name == "FLAIR_AX"


def refusal(files, limits=DEFAULT_LIMITS) -> str:
    with pytest.raises(VolumeError) as refused:
        read_dicom_upload(files, limits)
    text = str(refused.value)
    assert "\n" not in text and "dicom-upload-" not in text and "Doe" not in text
    return text


def test_dcm_files_and_a_zip_read_as_the_folder(series):
    folder, files = series
    expected = load_dicom_series(folder)
    as_files = [(f"{index}.dcm", path.read_bytes()) for index, path in enumerate(files)]
    assert_same_volume(read_dicom_upload(as_files, Limits()), expected)
    # A zip of the folder, in a subfolder, with a directory entry and macOS metadata.
    members = {f"study/series/{path.name}": path.read_bytes() for path in files}
    members["__MACOSX/study/._x"] = b"resource fork"
    archive = zipped(members)
    assert_same_volume(read_dicom_upload([("study.zip", archive)], Limits()), expected)


def test_member_names_never_become_paths(series, tmp_path):
    _, files = series
    members = {f"../../escaped{index}": path.read_bytes() for index, path in enumerate(files)}
    read_dicom_upload([("evil.zip", zipped(members))], Limits())
    assert not list(tmp_path.parent.glob("escaped*")) and not list(tmp_path.glob("escaped*"))


def test_a_zip_bomb_is_refused_before_it_is_decompressed(series):
    _, files = series
    bomb = zipped({"a.dcm": files[0].read_bytes(), "zeros.dcm": bytes(50_000_000)})
    assert len(bomb) < 200_000
    text = refusal([("bomb.zip", bomb)], Limits(max_bytes=10_000_000))
    assert text.startswith("bomb.zip: its files expand to") and "limit" in text


def test_a_member_larger_than_it_declares_is_refused(series):
    _, files = series
    content = files[0].read_bytes()
    archive = bytearray(zipped({"a.dcm": content}))
    # Shrink the declared size (local header and central directory) of the only member.
    for signature, offset in ((b"PK\x03\x04", 22), (b"PK\x01\x02", 24)):
        at = archive.index(signature) + offset
        archive[at : at + 4] = struct.pack("<L", 100)
    text = refusal([("liar.zip", bytes(archive))])
    assert text.startswith("liar.zip: not a readable zip")


def test_too_many_members_and_zip64_are_refused_from_the_end_record(series):
    archive = bytearray(zipped({"a.dcm": b"x"}))
    end = archive.rindex(b"PK\x05\x06")
    crowded = archive.copy()
    crowded[end + 10 : end + 12] = struct.pack("<H", MAX_DICOM_FILES + 1)
    assert "more than 5,000 files" in refusal([("many.zip", bytes(crowded))])
    zip64 = archive[:end] + b"PK\x06\x07" + bytes(16) + archive[end:]
    assert "zip64" in refusal([("big.zip", bytes(zip64))])


@pytest.mark.parametrize(
    ("files", "problem"),
    [
        ([("x.zip", b"not a zip at all")], "x.zip: not a zip file"),
        ([("noise.dcm", bytes(range(256)) * 8)], "no DICOM series in noise.dcm"),
    ],
    ids=["random-zip", "random-dcm"],
)
def test_random_bytes_are_refused_naming_the_upload(files, problem):
    assert refusal(files).startswith(problem)


def test_two_series_are_listed_naming_the_upload(series, tmp_path):
    _, files = series
    other = write_series(tmp_path / "other", np.ones((12, 10, 4)) * np.arange(4), AFFINE)
    upload = [(f"{i}.dcm", path.read_bytes()) for i, path in enumerate([*files, *other])]
    text = refusal(upload)
    assert text.startswith(f"{len(upload)} DICOM files: 2 DICOM series, upload one alone: ")
    assert PATIENT_NAME not in text


def test_uploads_of_a_series_may_hold_more_files_than_modalities():
    limits, server = Limits(), ServerLimits()
    names = [f"{i}.dcm" for i in range(300)]
    server.check_upload(["data:,AAAA"] * 300, names, limits)
    assert is_dicom_upload(names) and is_dicom_upload(["Series.ZIP"])
    assert not is_dicom_upload(["a.nii.gz", "b.dcm"]) and not is_dicom_upload(["a.zip", "b.zip"])
    with pytest.raises(VolumeError, match="limit of 8 files"):
        server.check_upload(["data:,AAAA"] * 9, [f"{i}.nii" for i in range(9)], limits)
    with pytest.raises(VolumeError, match="limit of 5000 files .the files of one DICOM series"):
        many = MAX_DICOM_FILES + 1
        server.check_upload(["data:,AAAA"] * many, [f"{i}.dcm" for i in range(many)], limits)
