import nibabel as nib
import numpy as np
import pytest

from superpixel_annotator.volume import (
    Volume,
    VolumeError,
    image_stem,
    load_volume,
    save_segmentation,
)


def write_nifti(path, array, affine):
    nib.save(nib.Nifti1Image(array, affine), path)
    return path


def test_display_order_puts_superior_anterior_right_first(tmp_path):
    # An RAS image with one bright voxel at the superior, anterior, right corner.
    array = np.zeros((4, 5, 6), np.float32)
    array[3, 4, 5] = 1  # x max = right, y max = anterior, z max = superior
    volume = load_volume(write_nifti(tmp_path / "ras.nii.gz", array, np.eye(4)))
    assert volume.data.shape == (6, 5, 4)
    assert volume.data[0, 0, 0] == 1


def test_spacing_follows_display_axes(tmp_path, oblique_affine):
    array = np.random.default_rng(0).random((7, 8, 9)).astype(np.float32)
    volume = load_volume(write_nifti(tmp_path / "oblique.nii", array, oblique_affine))
    # Display axis 0 is superior-inferior: the source axis along world z has 1 mm voxels.
    assert volume.spacing == (1.0, 1.5, 2.0)
    assert volume.data.shape == (8, 7, 9)
    assert volume.name == "oblique"


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
    ("content", "problem"),
    [
        (b"", "not a readable image"),
        (b"hello, this is text\n", "not a readable image"),
        (bytes(range(256)) * 8, "not a readable image"),
    ],
)
def test_bad_files_give_one_line_errors(tmp_path, content, problem):
    path = tmp_path / "bad.nii.gz"
    path.write_bytes(content)
    with pytest.raises(VolumeError) as caught:
        load_volume(path)
    message = str(caught.value)
    assert str(path) in message and problem in message and "\n" not in message


def test_missing_path_directory_2d_and_thin(tmp_path):
    with pytest.raises(VolumeError, match="no such file"):
        load_volume(tmp_path / "missing.nii.gz")
    with pytest.raises(VolumeError, match="is a directory"):
        load_volume(tmp_path)
    flat = write_nifti(tmp_path / "flat.nii.gz", np.zeros((5, 6), np.float32), np.eye(4))
    with pytest.raises(VolumeError, match="expected a 3D image"):
        load_volume(flat)
    thin = write_nifti(tmp_path / "thin.nii.gz", np.zeros((1, 1, 1), np.float32), np.eye(4))
    with pytest.raises(VolumeError, match="too thin"):
        load_volume(thin)


def test_nan_becomes_zero(tmp_path):
    array = np.ones((3, 4, 5), np.float32)
    array[0, 0, 0] = np.nan
    volume = load_volume(write_nifti(tmp_path / "nan.nii", array, np.eye(4)))
    assert np.isfinite(volume.data).all()


def test_image_stem():
    assert image_stem("/a/case.nii.gz") == "case"
    assert image_stem("b.nii") == "b"
    assert image_stem("c.mgz") == "c"
