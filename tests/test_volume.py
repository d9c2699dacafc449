import gzip

import nibabel as nib
import numpy as np
import pytest

from superpixel_annotator.core.image_files import Limits, VolumeError
from superpixel_annotator.core.segmentation_io import save_segmentation
from superpixel_annotator.core.volume import (
    Volume,
    check_modalities,
    image_stem,
    load_modalities,
    load_volume,
    read_volume_bytes,
)


def write_nifti(path, array, affine):
    nib.save(nib.Nifti1Image(array, affine), path)
    return path


def nifti_gz(array, affine=None, image_class=nib.Nifti1Image) -> bytes:
    """A gzipped single-file image, as a ``.nii.gz`` on disk would hold it."""
    return gzip.compress(image_class(array, np.eye(4) if affine is None else affine).to_bytes())


def scan(shape=(6, 7, 8), dtype=np.float32, seed=0) -> np.ndarray:
    return (np.random.default_rng(seed).random(shape) * 100).astype(dtype)


@pytest.fixture(params=["path", "bytes"])
def read(request, tmp_path):
    """Read file content named ``filename`` from disk or from memory, as the test is run."""

    def read_content(content: bytes, filename: str = "case.nii.gz", **options) -> Volume:
        if request.param == "bytes":
            return read_volume_bytes(content, filename, **options)
        path = tmp_path / filename
        path.write_bytes(content)
        return load_volume(path, **options)

    return read_content


def refusal(read, content, filename="case.nii.gz", **options) -> str:
    """The message of the VolumeError reading the content raises; checked to be one line."""
    with pytest.raises(VolumeError) as caught:
        read(content, filename, **options)
    message = str(caught.value)
    assert "\n" not in message and filename in message
    return message


def test_display_order_puts_superior_anterior_right_first(tmp_path):
    # An RAS image with one bright voxel at the superior, anterior, right corner.
    array = np.zeros((4, 5, 6), np.float32)
    array[3, 4, 5] = 1  # x max = right, y max = anterior, z max = superior
    volume = load_volume(write_nifti(tmp_path / "ras.nii.gz", array, np.eye(4)))
    assert volume.data.shape == (6, 5, 4)
    assert volume.data[0, 0, 0] == 1
    assert volume.notes == ()


def test_spacing_follows_display_axes(tmp_path, oblique_affine):
    array = np.random.default_rng(0).random((7, 8, 9)).astype(np.float32)
    volume = load_volume(write_nifti(tmp_path / "oblique.nii", array, oblique_affine))
    # Display axis 0 is superior-inferior: the source axis along world z has 1 mm voxels.
    assert volume.spacing == (1.0, 1.5, 2.0)
    assert volume.data.shape == (8, 7, 9)
    assert volume.source_shape == (7, 8, 9)
    assert volume.name == "oblique"


def test_display_affine_maps_display_voxels_to_their_world_position(oblique_affine):
    array = scan((7, 8, 9))
    volume = Volume.from_source_array(array, oblique_affine)
    source_voxel = np.array([2, 5, 3])
    display_voxel = np.argwhere(volume.data == array[tuple(source_voxel)])[0]
    np.testing.assert_allclose(
        volume.display_affine @ [*display_voxel, 1], oblique_affine @ [*source_voxel, 1]
    )


def test_segmentation_round_trip_keeps_source_geometry(tmp_path, oblique_affine):
    array = np.random.default_rng(1).random((7, 8, 9)).astype(np.float32)
    source = write_nifti(tmp_path / "scan.nii.gz", array, oblique_affine)
    volume = load_volume(source)
    labels = np.zeros(volume.data.shape, np.uint8)
    labels[1:3, 2:4, 5:8] = 2
    save_segmentation(volume, labels, tmp_path / "seg.nii.gz")

    saved = nib.load(tmp_path / "seg.nii.gz")
    assert saved.shape == (7, 8, 9)
    np.testing.assert_allclose(saved.affine, oblique_affine)
    assert saved.get_data_dtype() == np.uint8
    assert int(saved.header["sform_code"]) == 1
    np.testing.assert_array_equal(load_volume(tmp_path / "seg.nii.gz").data, labels)
    # The label sits on the same source voxels as the intensities it was drawn on.
    source_labels = np.asarray(saved.dataobj)
    np.testing.assert_array_equal(
        np.sort(array[source_labels == 2]), np.sort(volume.data[labels == 2])
    )


def test_brats_round_trip(tmp_path, brats_case):
    source = brats_case / "OTMultiClass.nii.gz"
    volume = load_volume(source)
    save_segmentation(volume, volume.data.astype(np.uint8), tmp_path / "seg.nii.gz")
    original, saved = nib.load(source), nib.load(tmp_path / "seg.nii.gz")
    np.testing.assert_allclose(saved.affine, original.affine)
    np.testing.assert_array_equal(np.asarray(saved.dataobj), np.asarray(original.dataobj))


def test_content_hash_depends_on_data(oblique_affine):
    array = np.zeros((3, 4, 5), np.float32)
    first = Volume.from_source_array(array, oblique_affine)
    array[1, 1, 1] = 1
    second = Volume.from_source_array(array, oblique_affine)
    assert first.content_hash != second.content_hash
    assert (
        first.content_hash
        == Volume.from_source_array(np.zeros((3, 4, 5)), oblique_affine).content_hash
    )


@pytest.mark.parametrize(
    ("image_class", "filename"),
    [
        (nib.Nifti1Image, "scan.nii"),
        (nib.Nifti1Image, "scan.nii.gz"),
        (nib.Nifti2Image, "scan.nii"),
        (nib.Nifti2Image, "scan.nii.gz"),
        (nib.MGHImage, "scan.mgh"),
        (nib.MGHImage, "scan.mgz"),
    ],
)
def test_bytes_and_path_read_the_same_image(tmp_path, oblique_affine, image_class, filename):
    content = image_class(scan((7, 8, 9)), oblique_affine).to_bytes()
    if filename.endswith("gz"):
        content = gzip.compress(content)
    (tmp_path / filename).write_bytes(content)
    from_path = load_volume(tmp_path / filename)
    from_bytes = read_volume_bytes(content, filename)
    np.testing.assert_array_equal(from_bytes.data, from_path.data)
    np.testing.assert_allclose(from_bytes.affine, oblique_affine, atol=1e-6)
    assert from_bytes.name == from_path.name == "scan"


def test_upload_name_is_only_a_name():
    volume = read_volume_bytes(nifti_gz(scan()), "C:\\fakepath\\../../etc/case.nii.gz")
    assert volume.name == "case"
    with pytest.raises(VolumeError) as caught:
        read_volume_bytes(b"junk", "dir/evil\nname.nii.gz")
    assert str(caught.value).startswith("evil?name.nii.gz: ")


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        (b"", "the file is empty"),
        (b"hello, this is text\n", "not a readable image"),
        (bytes(range(256)) * 8, "not a readable image"),
        (gzip.compress(bytes(range(256)) * 8), "not a readable image"),
    ],
    ids=["empty", "text", "random", "gzipped-random"],
)
def test_bad_files_give_one_line_errors(read, content, problem):
    assert problem in refusal(read, content)


def test_truncated_file(read):
    content = nifti_gz(scan((20, 20, 20)))
    message = refusal(read, content[: len(content) // 2])
    assert "truncated" in message


def test_missing_path_and_directory(tmp_path):
    with pytest.raises(VolumeError, match="missing.nii.gz: no such file"):
        load_volume(tmp_path / "missing.nii.gz")
    with pytest.raises(VolumeError, match="is a directory"):
        load_volume(tmp_path)


@pytest.mark.parametrize(
    ("shape", "problem"),
    [
        ((5, 6), "expected a 3D image, got shape (5, 6)"),
        ((1, 1, 1), "too thin to annotate"),
        ((16, 16, 1), "an image of shape (16, 16, 1) is too thin"),
        ((4, 4, 4, 2, 2), "expected a 3D or 4D image"),
    ],
    ids=["2d", "one-voxel", "one-slice", "5d"],
)
def test_shapes_that_cannot_be_annotated(read, shape, problem):
    assert problem in refusal(read, nifti_gz(scan(shape)))


def test_trailing_axes_of_length_one_are_dropped(read):
    volume = read(nifti_gz(scan((4, 5, 6, 1, 1))))
    assert volume.data.shape == (6, 5, 4) and volume.notes == ()


def test_file_over_the_size_limit(read):
    content = nifti_gz(scan((20, 20, 20)))
    message = refusal(read, content, limits=Limits(max_bytes=1000))
    assert message.endswith(
        f"case.nii.gz: {len(content) / 1e3:.1f} kB is over the 1.0 kB upload limit"
    )


def test_size_message_in_gigabytes():
    with pytest.raises(VolumeError, match=r"^big.nii.gz: 1.3 GB is over the 1.0 GB upload limit$"):
        Limits().check_size(1_300_000_000, "big.nii.gz")


def test_voxel_limit_is_checked_before_reading_voxels(read):
    # Only the header: reading the voxels would fail, so the voxel limit must come first.
    header_only = nib.Nifti1Image(scan((30, 40, 50)), np.eye(4)).to_bytes()[:352]
    message = refusal(read, gzip.compress(header_only), limits=Limits(max_voxels=59_999))
    assert "30x40x50 = 60,000 voxels is over the limit of 59,999 voxels" in message
    assert "truncated" in refusal(read, gzip.compress(header_only))


def test_default_limits_admit_a_large_ct():
    limits = Limits()
    limits.check_voxels((512, 512, 400), "ct.nii")
    limits.check_size(512 * 512 * 400 * 8 + 352, "ct.nii")  # even as float64


@pytest.mark.parametrize("dtype", [np.int16, np.uint8, np.int32, np.float64])
def test_numeric_types_become_float32(read, dtype):
    array = scan(dtype=dtype)
    volume = read(nifti_gz(array))
    assert volume.data.dtype == np.float32
    np.testing.assert_array_equal(
        np.sort(volume.data.ravel()), np.sort(array.astype(np.float32).ravel())
    )


def test_scaled_integers_are_scaled(read):
    image = nib.Nifti1Image(scan(dtype=np.int16), np.eye(4))
    image.header.set_slope_inter(0.5, -10)
    volume = read(gzip.compress(image.to_bytes()))
    assert volume.data.min() == np.asarray(image.dataobj).min() * 0.5 - 10


def test_complex_voxels_are_refused(read):
    array = scan().astype(np.complex64)
    assert "voxels of type complex64 are not supported" in refusal(read, nifti_gz(array))


def test_nan_and_infinity_become_the_lowest_value_with_a_note(read):
    array = scan() + 5
    array[0, 0, :3] = [np.nan, np.inf, -np.inf]
    lowest = np.nanmin(np.where(np.isfinite(array), array, np.nan))
    volume = read(nifti_gz(array))
    assert np.isfinite(volume.data).all()
    assert np.count_nonzero(volume.data == lowest) == 4
    (note,) = volume.notes
    assert note.endswith(
        f"case.nii.gz: 3 NaN or infinite voxels were set to the lowest value, {lowest:g}"
    )


def test_all_nan_is_refused(read):
    assert "every voxel is NaN or infinite" in refusal(read, nifti_gz(np.full((4, 5, 6), np.nan)))


def test_constant_image_is_refused(read):
    message = refusal(read, nifti_gz(np.full((4, 5, 6), 7, np.int16)))
    assert message.endswith("case.nii.gz: every voxel is 7; nothing to annotate")


def test_4d_shows_the_first_volume_and_says_so(read):
    array = np.stack([scan(seed=seed) for seed in range(3)], axis=-1)
    volume = read(nifti_gz(array))
    np.testing.assert_array_equal(volume.data, read(nifti_gz(array[..., 0])).data)
    (note,) = volume.notes
    assert note.endswith("case.nii.gz: 4D image with 3 volumes (0 to 2), showing volume 0")
    chosen = read(nifti_gz(array), volume_index=2)
    np.testing.assert_array_equal(chosen.data, read(nifti_gz(array[..., 2])).data)
    assert "showing volume 2" in chosen.notes[0]


def test_volume_index_out_of_range(read):
    four_d = nifti_gz(np.stack([scan(seed=seed) for seed in range(3)], axis=-1))
    message = refusal(read, four_d, volume_index=3)
    assert message.endswith(
        "case.nii.gz: there is no volume 3; the image has 3 volumes, numbered from 0"
    )
    assert "the image has 1 volume," in refusal(read, nifti_gz(scan()), volume_index=1)


def test_degenerate_affine_is_refused(read):
    content = nib.Nifti1Image(scan(), np.eye(4)).to_bytes()
    # nibabel will not write a singular affine, so zero one row of the header's sform.
    header = np.frombuffer(content[:348], dtype=nib.nifti1.header_dtype).copy()
    header["srow_y"] = 0
    header["qform_code"] = 0
    content = header.tobytes() + content[348:]
    assert "affine is degenerate" in refusal(read, gzip.compress(content))


def test_image_stem():
    assert image_stem("/a/case.nii.gz") == "case"
    assert image_stem("b.nii") == "b"
    assert image_stem("c.mgz") == "c"
    assert image_stem("C:\\scans\\d.NII.GZ") == "d"


def write_case(tmp_path, arrays_and_affines) -> list:
    return [
        write_nifti(tmp_path / name, array, affine)
        for name, (array, affine) in arrays_and_affines.items()
    ]


def test_modalities_on_one_grid(tmp_path, oblique_affine):
    paths = write_case(
        tmp_path,
        {
            "FLAIR.nii.gz": (scan(seed=1), oblique_affine),
            "T1c.nii.gz": (scan(seed=2), oblique_affine),
        },
    )
    flair, t1c = load_modalities(paths)
    assert (flair.name, t1c.name) == ("FLAIR", "T1c")


def test_modalities_stored_in_other_axis_orders_share_the_grid(tmp_path, oblique_affine):
    array = scan((6, 7, 8))
    # The same image with the first axis reversed and swapped with the last.
    flipped = np.ascontiguousarray(array[::-1].transpose(2, 1, 0))
    to_flipped = np.array([[0, 0, -1, 5], [0, 1, 0, 0], [1, 0, 0, 0], [0, 0, 0, 1.0]])
    paths = write_case(
        tmp_path,
        {
            "a.nii.gz": (array, oblique_affine),
            "b.nii.gz": (flipped, oblique_affine @ to_flipped),
        },
    )
    first, second = load_modalities(paths)
    np.testing.assert_array_equal(first.data, second.data)


def test_modalities_of_different_shape_are_refused(tmp_path):
    paths = write_case(
        tmp_path,
        {
            "FLAIR.nii.gz": (scan((24, 24, 15)), np.eye(4)),
            "T1c.nii.gz": (scan((24, 24, 14)), np.eye(4)),
        },
    )
    with pytest.raises(VolumeError) as caught:
        load_modalities(paths)
    assert str(caught.value) == (
        f"{paths[1]}: shape (24, 24, 14) differs from {paths[0]} (24, 24, 15)"
    )


def test_modalities_on_shifted_grids_are_refused(tmp_path):
    shifted = np.eye(4)
    shifted[0, 3] = 2.5
    paths = write_case(
        tmp_path, {"FLAIR.nii.gz": (scan(), np.eye(4)), "T1c.nii.gz": (scan(), shifted)}
    )
    with pytest.raises(
        VolumeError,
        match=r"T1c.nii.gz: not on the voxel grid of .*FLAIR.nii.gz "
        r"\(corners up to 2.5 mm apart\)",
    ):
        load_modalities(paths)


def test_check_modalities_names_uploads_and_tolerates_rounding(oblique_affine):
    nudged = oblique_affine + 1e-4
    nudged[3] = [0, 0, 0, 1]
    volumes = [
        read_volume_bytes(nifti_gz(scan(), affine), name)
        for name, affine in (("FLAIR.nii.gz", oblique_affine), ("T1c.nii.gz", nudged))
    ]
    check_modalities(volumes, ["FLAIR.nii.gz", "T1c.nii.gz"])
    other = read_volume_bytes(nifti_gz(scan((6, 7, 9))), "T2.nii.gz")
    with pytest.raises(VolumeError, match=r"^T2: shape \(6, 7, 9\) differs from FLAIR "):
        check_modalities([volumes[0], other])


def test_brats_modalities(brats_case):
    flair, t1c = load_modalities(
        [brats_case / "Flair_subtrMeanDivStd.nii.gz", brats_case / "T1c_subtrMeanDivStd.nii.gz"]
    )
    assert flair.data.shape == t1c.data.shape == (155, 240, 240)
    assert flair.notes == t1c.notes == ()
