"""Hostile and damaged files: bombs, forged headers and broken cache files cost a bounded
amount of memory and end in a clean error or count as missing, never in a crash."""

import base64
import gzip
import io
import os
import tracemalloc
import zipfile
import zlib
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from superpixel_annotator.core import slic
from superpixel_annotator.core.cache import write_npz_atomically
from superpixel_annotator.core.cases import CaseNotFoundError, CaseStore, open_case
from superpixel_annotator.core.editing import EditSession
from superpixel_annotator.core.image_files import DEFAULT_LIMITS, Limits, VolumeError
from superpixel_annotator.core.segmentation_io import read_segmentation_bytes, save_segmentation
from superpixel_annotator.core.superpixels import compute_superpixels, load_or_compute_superpixels
from superpixel_annotator.core.volume import Volume, load_volume, read_volume_bytes

SAMPLE = Path(__file__).resolve().parents[1] / "sample_data" / "head_phantom.nii.gz"
MAX_PEAK_BYTES = 50 * 2**20
BOMB_BYTES = 200 * 2**20


def peak_bytes(function, *args, **kwargs):
    """``function``'s result (or the exception it raised) and its peak of traced memory."""
    tracemalloc.start()
    try:
        result = function(*args, **kwargs)
    except Exception as error:  # the caller checks which
        result = error
    finally:
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    return result, peak


def zeros_compressed(size: int, compressor) -> bytes:
    """``size`` zero bytes through ``compressor`` (a zlib compressobj), without holding them."""
    chunk = bytes(2**20)
    parts = [compressor.compress(chunk) for _ in range(size // len(chunk))]
    return b"".join(parts) + compressor.compress(bytes(size % len(chunk)))


def ball(n: int = 24, spacing: float = 1.0, noise: float = 5.0, seed: int = 0) -> Volume:
    """A noisy ball of ``n`` voxels a side."""
    rng = np.random.default_rng(seed)
    grid = np.indices((n, n, n)) - (n - 1) / 2
    data = np.where((grid**2).sum(axis=0) < (0.4 * n) ** 2, 100.0, 0.0)
    data += rng.normal(0, noise, data.shape)
    return Volume.from_source_array(data.astype(np.float32), np.diag([spacing] * 3 + [1.0]))


# Superpixel marks in a segmentation's extension


def marks_file(volume: Volume, packed: bytes, directory: Path) -> bytes:
    """A label file of ``volume`` whose marks extension holds ``packed`` (zlib data)."""
    path = directory / "saved.nii"
    save_segmentation(volume, np.zeros(volume.data.shape, np.uint8), path, np.zeros(2))
    image = nib.load(path)
    (extension,) = image.header.extensions
    tag = extension.get_content().split(b"\n")[0] + b"\n"
    image.header.extensions[0] = nib.nifti1.Nifti1Extension(
        extension.get_code(), tag + base64.b64encode(packed)
    )
    return image.to_bytes()


def test_a_zlib_bomb_of_marks_is_ignored_in_bounded_memory(tmp_path):
    volume = ball(12)
    compressor = zlib.compressobj(9)
    bomb = zeros_compressed(BOMB_BYTES, compressor) + compressor.flush()
    content = marks_file(volume, bomb, tmp_path)
    assert len(content) < BOMB_BYTES // 100
    for max_marks in (100, None):
        segmentation, peak = peak_bytes(
            read_segmentation_bytes, content, "bomb.nii", volume, max_marks=max_marks
        )
        assert segmentation.superpixel_marks is None
        assert peak < MAX_PEAK_BYTES


def test_marks_beyond_the_count_expected_count_as_none(tmp_path):
    volume = ball(12)
    marks = np.arange(50, dtype=np.int16)
    content = marks_file(volume, zlib.compress(marks.tobytes()), tmp_path)
    read = read_segmentation_bytes(content, "seg.nii", volume, max_marks=50)
    np.testing.assert_array_equal(read.superpixel_marks, marks)
    assert read_segmentation_bytes(content, "s.nii", volume, max_marks=49).superpixel_marks is None
    noise = np.random.default_rng(0).integers(-5, 5, 5000).astype(np.int16)
    content = marks_file(volume, zlib.compress(noise.tobytes()), tmp_path)
    assert read_segmentation_bytes(content, "s.nii", volume, max_marks=50).superpixel_marks is None


# Uploads: gzip bombs and forged headers


def nifti_header(shape, header_class=nib.Nifti1Header, vox_offset: int | None = None) -> bytes:
    header = header_class()
    header.set_data_dtype(np.float32)
    header.set_data_shape(shape)
    header["vox_offset"] = vox_offset or header.single_vox_offset
    return header.binaryblock + bytes(4)


def test_a_gzip_bomb_after_a_small_image_is_not_decompressed():
    data = np.arange(4 * 5 * 6, dtype=np.float32).tobytes()
    compressor = zlib.compressobj(9, zlib.DEFLATED, 31)  # gzip
    content = compressor.compress(nifti_header((4, 5, 6)) + data)
    content += zeros_compressed(BOMB_BYTES, compressor) + compressor.flush()
    volume, peak = peak_bytes(read_volume_bytes, content, "bomb.nii.gz")
    assert volume.data.shape == (6, 5, 4) and volume.data.max() == 4 * 5 * 6 - 1
    assert peak < MAX_PEAK_BYTES


def test_a_gzip_bomb_in_the_header_extensions_is_refused_before_it_is_read():
    size = BOMB_BYTES
    compressor = zlib.compressobj(9, zlib.DEFLATED, 31)
    header = nifti_header((4, 5, 6), vox_offset=352 + size)[:-4] + b"\x01\x00\x00\x00"
    content = compressor.compress(header + np.array([size, 6], "<i4").tobytes())
    content += zeros_compressed(size - 8, compressor) + compressor.flush()
    error, peak = peak_bytes(read_volume_bytes, content, "bomb.nii.gz")
    assert isinstance(error, VolumeError)
    assert str(error).startswith("bomb.nii.gz: the header and its extensions take 209.7 MB")
    assert peak < MAX_PEAK_BYTES


@pytest.mark.parametrize("shape", [(2**21, 2**21, 2**22), (2**31 - 1,) * 3, (2**32, 2**32, 1)])
def test_voxel_counts_that_overflow_64_bits_are_refused(shape):
    with pytest.raises(VolumeError, match="voxels is over the limit"):
        Limits().check_voxels(shape, "huge.nii")


def test_a_nifti2_header_of_2_to_the_64_voxels_is_refused():
    content = gzip.compress(nifti_header((2**21, 2**21, 2**22), nib.Nifti2Header) + bytes(64))
    error, peak = peak_bytes(read_volume_bytes, content, "huge.nii.gz")
    assert isinstance(error, VolumeError)
    assert str(error) == (
        "huge.nii.gz: 2097152x2097152x4194304 = 18,446,744,073,709,551,616 voxels is over "
        f"the limit of {Limits().max_voxels:,} voxels"
    )
    assert peak < MAX_PEAK_BYTES


# The disk cache


def damaged(path: Path, kind: str) -> None:
    """Damage the case file at ``path`` in the way ``kind`` names."""
    content = path.read_bytes()
    with np.load(path) as stored:
        arrays = {name: stored[name] for name in stored.files}
    if kind == "truncated":
        path.write_bytes(content[: len(content) // 2])
    elif kind == "garbage":
        path.write_bytes(np.random.default_rng(0).bytes(len(content)))
    elif kind == "empty":
        path.write_bytes(b"")
    elif kind == "wrong members":
        np.savez(path, something=np.zeros(3))
    elif kind == "wrong dtype":
        np.savez(path, **{**arrays, "data0": arrays["data0"].astype(np.float64)})
    elif kind == "wrong shape":
        np.savez(path, **{**arrays, "data0": arrays["data0"][1:]})
    elif kind == "another case":
        np.savez(path, **{**arrays, "data0": arrays["data0"] + 1})
    elif kind == "deflate bomb":
        bomb_member(path, arrays, "data0", compressed=True)
    elif kind == "forged header":
        bomb_member(path, arrays, "data0", compressed=False)


def bomb_member(path: Path, arrays: dict, name: str, compressed: bool) -> None:
    """Replace the member ``name`` by 200 MB of zeros (deflated) or by a header claiming
    them (stored)."""
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        header, {"descr": "<f4", "fortran_order": False, "shape": (BOMB_BYTES // 4,)}
    )
    with zipfile.ZipFile(path, "w") as archive:
        for other, array in arrays.items():
            if other != name:
                with archive.open(f"{other}.npy", "w") as member:
                    np.lib.format.write_array(member, array)
        info = zipfile.ZipInfo(f"{name}.npy")
        info.compress_type = zipfile.ZIP_DEFLATED if compressed else zipfile.ZIP_STORED
        with archive.open(info, "w", force_zip64=True) as member:
            member.write(header.getvalue())
            if compressed:
                chunk = bytes(2**20)
                for _ in range(BOMB_BYTES // len(chunk)):
                    member.write(chunk)


KINDS = [
    "truncated",
    "garbage",
    "empty",
    "wrong members",
    "wrong dtype",
    "wrong shape",
    "another case",
    "deflate bomb",
    "forged header",
]


@pytest.mark.parametrize("kind", KINDS)
def test_a_damaged_case_file_counts_as_missing_until_opened_again(tmp_path, kind):
    case = open_case([ball(16)], tmp_path)
    path = tmp_path / "cases" / f"{case.key}.npz"
    damaged(path, kind)
    error, peak = peak_bytes(CaseStore(tmp_path).get, case.key)
    assert isinstance(error, CaseNotFoundError)
    assert peak < MAX_PEAK_BYTES
    assert not path.exists()
    open_case([ball(16)], tmp_path)  # "open it again"
    found = CaseStore(tmp_path).get(case.key)
    np.testing.assert_array_equal(found.volume.data, case.volume.data)


@pytest.mark.parametrize("member", ["labels", "extents", "coarse"])
@pytest.mark.parametrize("kind", ["truncated", "deflate bomb", "forged header", "wrong shape"])
def test_a_damaged_superpixel_file_is_computed_again(tmp_path, member, kind):
    volume = ball(16)
    expected = load_or_compute_superpixels(volume, tmp_path)
    (path,) = tmp_path.glob("*.npz")
    with np.load(path) as stored:
        arrays = {name: stored[name] for name in stored.files}
    if kind == "truncated":
        path.write_bytes(path.read_bytes()[:-100])
    elif kind == "wrong shape":
        np.savez_compressed(path, **{**arrays, member: arrays[member][1:]})
    else:
        bomb_member(path, arrays, member, compressed=kind == "deflate bomb")
    superpixels, peak = peak_bytes(load_or_compute_superpixels, volume, tmp_path)
    np.testing.assert_array_equal(superpixels.labels, expected.labels)
    np.testing.assert_array_equal(superpixels.coarse, expected.coarse)
    assert peak < MAX_PEAK_BYTES
    with np.load(path) as stored:  # written again
        np.testing.assert_array_equal(stored["labels"], expected.labels)


def test_cache_files_reach_the_disk_before_they_are_renamed(tmp_path, monkeypatch):
    synced = []
    real_fsync, real_replace = os.fsync, os.replace
    monkeypatch.setattr(os, "fsync", lambda fd: synced.append(fd) or real_fsync(fd))
    monkeypatch.setattr(
        os, "replace", lambda *paths: synced.append("replace") or real_replace(*paths)
    )
    write_npz_atomically(tmp_path / "a.npz", {"x": np.arange(3)})
    assert len(synced) == 3 and synced[1] == "replace"  # the file, the rename, the directory
    with np.load(tmp_path / "a.npz") as stored:
        np.testing.assert_array_equal(stored["x"], np.arange(3))


# Superpixels of coarse voxels


@pytest.mark.parametrize("noise", [5.0, 100.0])
def test_coarse_voxels_give_superpixels_of_several_voxels(noise):
    volume = ball(40, spacing=5.0, noise=noise)
    superpixels = compute_superpixels(volume)
    assert 0 < superpixels.count <= volume.data.size / slic.MIN_SUPERPIXEL_VOXELS
    assert superpixels.count <= (superpixels.labels > 0).sum() / 3


@pytest.mark.parametrize(
    "spacing", [(1.0, 1.0, 1.0), (3.0, 1.5, 1.5), (2.0, 2.0, 2.0), (0.5, 0.5, 5.0)], ids=str
)
def test_the_grid_of_usual_scans_is_unchanged(spacing):
    assert slic.grid_steps(spacing, 4.5) == [max(1.0, 4.5 / s) for s in spacing]


@pytest.mark.parametrize("spacing", [(5.0, 5.0, 5.0), (3.0, 3.0, 3.0), (4.0, 4.0, 8.0)], ids=str)
def test_a_grid_cell_holds_the_minimum_of_voxels(spacing):
    steps = slic.grid_steps(spacing, 4.5)
    assert np.prod(steps) == pytest.approx(slic.MIN_SUPERPIXEL_VOXELS)
    assert min(steps) >= 1.0


def test_the_phantom_superpixels_are_unchanged_by_the_minimum(monkeypatch):
    volume = load_volume(SAMPLE)
    with_minimum = compute_superpixels(volume)
    monkeypatch.setattr(slic, "MIN_SUPERPIXEL_VOXELS", 1)
    without = compute_superpixels(volume)
    np.testing.assert_array_equal(with_minimum.labels, without.labels)
    np.testing.assert_array_equal(with_minimum.coarse, without.coarse)


def test_opening_a_segmentation_caps_the_marks_at_the_superpixel_count(tmp_path):
    case = open_case([ball(16)], tmp_path)
    volume = case.volume
    image = nib.Nifti1Image(np.zeros(volume.source_shape, np.uint8), volume.affine)
    tag = b"superpixel-annotator superpixel marks, int16, zlib, base64\n"
    bomb = zlib.compress(bytes(BOMB_BYTES), 9)
    image.header.extensions.append(nib.nifti1.Nifti1Extension(6, tag + base64.b64encode(bomb)))
    content = gzip.compress(image.to_bytes())
    session = EditSession(case, None, {1})
    tracemalloc.start()
    try:
        changed, text = session.open_segmentation(content, "bomb.nii.gz", DEFAULT_LIMITS)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 50 * 2**20 and changed.size == 0 and "bomb.nii.gz" in text
