"""Opening segmentations: reading label files for a volume, voting them onto superpixels,
and keeping an annotation when the superpixels change."""

import gzip

import nibabel as nib
import numpy as np
import pytest

from superpixel_annotator.core.annotation import ERASED, Annotation
from superpixel_annotator.core.image_files import Limits, VolumeError
from superpixel_annotator.core.segmentation_io import (
    Segmentation,
    read_segmentation,
    read_segmentation_bytes,
    save_segmentation,
)
from superpixel_annotator.core.superpixels import Superpixels
from superpixel_annotator.core.volume import Volume, load_volume
from superpixel_blocks import block_superpixels


@pytest.fixture(params=["path", "bytes"])
def read(request, tmp_path):
    """Read a segmentation file's content named ``filename`` from disk or from memory."""

    def read_content(content: bytes, volume, filename="seg.nii.gz", **options) -> Segmentation:
        if request.param == "bytes":
            return read_segmentation_bytes(content, filename, volume, **options)
        path = tmp_path / filename
        path.write_bytes(content)
        return read_segmentation(path, volume, **options)

    return read_content


def nifti_gz(array, affine) -> bytes:
    return gzip.compress(nib.Nifti1Image(array, affine).to_bytes())


def painted(superpixels) -> Annotation:
    annotation = Annotation(superpixels)
    annotation.paint(0, 1, [(4, 1), (4, 10)], 1, level="fine")
    annotation.paint(1, 7, [(0, 2), (3, 8)], 2, level="fine")
    return annotation


def test_saved_segmentation_comes_back_exactly(tmp_path, small_case, read):
    volume, superpixels = small_case
    annotation = painted(superpixels)
    save_segmentation(volume, annotation.label_volume(), tmp_path / "saved.nii.gz")
    segmentation = read((tmp_path / "saved.nii.gz").read_bytes(), volume)
    assert segmentation.labels.dtype == np.uint8 and segmentation.superpixel_marks is None
    np.testing.assert_array_equal(segmentation.labels, annotation.label_volume())

    reopened = Annotation(superpixels)
    changed, differing_voxels = reopened.load_label_volume(segmentation.labels)
    assert differing_voxels == 0
    np.testing.assert_array_equal(reopened.superpixel_labels, annotation.superpixel_labels)
    np.testing.assert_array_equal(changed, np.flatnonzero(annotation.superpixel_labels))


def cube_superpixels(side=5, cubes=6) -> Superpixels:
    """Cubes of ``side`` voxels, ``cubes`` along each axis, with smooth outlines of 2 mm."""
    grid = np.indices((side * cubes,) * 3) // side
    labels = 1 + grid[0] * cubes**2 + grid[1] * cubes + grid[2]
    return Superpixels.from_labels(labels, params={"outline_smoothing": 2.0})


def cube_id(cube) -> int:
    return 1 + cube[0] * 36 + cube[1] * 6 + cube[2]


def smoothed_annotation() -> Annotation:
    """Cubes 1-4 along each axis labelled, but the inner cube (2, 2, 2) erased and the
    inner cube (3, 3, 3) never touched; smoothing would fill both three quarters."""
    superpixels = cube_superpixels()
    annotation = Annotation(superpixels)
    labels = np.zeros(superpixels.count + 1, np.uint8)
    block = np.indices((4, 4, 4)).reshape(3, -1).T + 1
    labels[[cube_id(cube) for cube in block]] = 1
    labels[[cube_id((2, 2, 2)), cube_id((3, 3, 3))]] = 0
    annotation.set_superpixel_labels(labels)
    annotation.paint(0, 12, [(12, 12)], 0, level="fine")  # erases the middle cube
    return annotation


def test_smoothing_leaves_erased_superpixels_unlabelled():
    annotation = smoothed_annotation()
    superpixels = annotation.superpixels
    volume = annotation.label_volume()
    assert annotation.erased[cube_id((2, 2, 2))]
    assert not volume[superpixels.labels == cube_id((2, 2, 2))].any()
    assert volume[superpixels.labels == cube_id((3, 3, 3))].mean() > 0.5
    annotation.undo()  # the middle cube is no longer erased: smoothing fills most of it
    assert annotation.label_volume()[superpixels.labels == cube_id((2, 2, 2))].mean() > 0.5


def test_saved_smooth_segmentation_comes_back_exactly_with_its_marks(tmp_path, read):
    annotation = smoothed_annotation()
    superpixels = annotation.superpixels
    volume = Volume.from_source_array(
        np.ones(superpixels.labels.shape, np.float32), np.eye(4), "cubes"
    )
    path = tmp_path / "saved.nii.gz"
    save_segmentation(volume, annotation.label_volume(), path, annotation.marked_labels())
    segmentation = read(path.read_bytes(), volume)
    np.testing.assert_array_equal(segmentation.superpixel_marks, annotation.marked_labels())

    reopened = Annotation(superpixels)
    reopened.paint(0, 2, [(2, 2)], 0, level="fine")  # an erased mark the file does not hold
    _, differing_voxels = reopened.load_label_volume(
        segmentation.labels, segmentation.superpixel_marks
    )
    assert differing_voxels == 0
    np.testing.assert_array_equal(reopened.marked_labels(), annotation.marked_labels())
    np.testing.assert_array_equal(reopened.label_volume(), segmentation.labels)

    assert not len(reopened.voxel_marks)

    # By majority alone, the inner cube smoothing filled comes back labelled, and the erased
    # middle cube may be filled: the outlines differ from the file, and voxel marks keep it.
    by_majority = Annotation(superpixels)
    assert by_majority.load_label_volume(segmentation.labels)[1] == 0
    assert len(by_majority.voxel_marks)
    np.testing.assert_array_equal(by_majority.label_volume(), segmentation.labels)


def test_marks_that_do_not_give_the_labels_are_kept_when_closer_than_the_vote():
    """A file edited elsewhere after saving: its saved marks show fewer voxels otherwise than
    the superpixels' vote, so they are taken, and voxel marks keep the edit; marks that do
    not fit the superpixels are ignored for the vote."""
    annotation = smoothed_annotation()
    labels = annotation.label_volume()
    labels[labels.shape[0] // 2] = 0  # edited elsewhere after saving
    majority = Annotation(annotation.superpixels)
    majority.load_label_volume(labels)
    for marks, expected in (
        (annotation.marked_labels(), annotation),
        (annotation.marked_labels()[:-1], majority),
        (None, majority),
    ):
        reopened = Annotation(annotation.superpixels)
        _, differing_voxels = reopened.load_label_volume(labels, marks)
        np.testing.assert_array_equal(reopened.marked_labels(), expected.marked_labels())
        assert differing_voxels == 0
        np.testing.assert_array_equal(reopened.label_volume(), labels)
    assert (annotation.marked_labels() == ERASED).any()
    assert 0 < len(reopened.voxel_marks) and not (majority.marked_labels() == ERASED).any()


def test_float_labels_stored_in_display_order_are_read(small_case, read):
    volume, _ = small_case
    labels = np.zeros(volume.data.shape, np.float32)
    labels[2:4, 3:9, 1:5] = 3
    result = read(nifti_gz(labels, volume.display_affine), volume)
    np.testing.assert_array_equal(result.labels, labels.astype(np.uint8))


def test_brats_ground_truth_fits_its_flair(brats_case):
    flair = load_volume(brats_case / "Flair_subtrMeanDivStd.nii.gz")
    labels = read_segmentation(brats_case / "OTMultiClass.nii.gz", flair).labels
    truth = load_volume(brats_case / "OTMultiClass.nii.gz").data
    np.testing.assert_array_equal(labels, truth.astype(np.uint8))
    assert set(np.unique(labels)) <= {0, 1, 2, 3, 4} and labels.any()


def shifted(affine, mm):
    moved = np.array(affine, dtype=np.float64)
    moved[0, 3] += mm
    return moved


@pytest.mark.parametrize(
    ("make_labels", "problem"),
    [
        (lambda shape: np.zeros((*shape[:2], shape[2] - 1), np.uint8), "shape (15, 6, 17)"),
        (lambda shape: np.full(shape, 0.5, np.float32), "non-integer values (such as 0.5)"),
        (lambda shape: np.full(shape, -1, np.int16), "negative values (such as -1)"),
        (lambda shape: np.full(shape, 300, np.int16), "holds label 300"),
        (lambda shape: np.full(shape, np.nan, np.float32), "NaN or infinite"),
        (lambda shape: np.zeros((*shape, 2), np.uint8), "must be a 3D image"),
    ],
    ids=["shape", "fraction", "negative", "too-large", "nan", "4d"],
)
def test_unusable_segmentations_are_refused(small_case, read, make_labels, problem):
    volume, _ = small_case
    content = nifti_gz(make_labels(volume.source_shape), volume.affine)
    with pytest.raises(VolumeError) as caught:
        read(content, volume)
    message = str(caught.value)
    assert problem in message and "seg.nii.gz: " in message and "\n" not in message


def test_segmentation_on_another_grid_is_refused(small_case, read):
    volume, _ = small_case
    content = nifti_gz(np.zeros(volume.source_shape, np.uint8), shifted(volume.affine, 3.0))
    with pytest.raises(VolumeError, match=r"not on the voxel grid of the scan small .*3 mm"):
        read(content, volume)


def test_segmentation_over_the_size_limit(small_case, read):
    volume, _ = small_case
    content = nifti_gz(np.zeros(volume.source_shape, np.uint8), volume.affine)
    with pytest.raises(VolumeError, match="upload limit"):
        read(content, volume, limits=Limits(max_bytes=10))


def voxels_of(superpixels, superpixel_id, count, label, labels):
    """Give ``label`` to the first ``count`` voxels of a superpixel."""
    voxels = np.flatnonzero(superpixels.labels == superpixel_id)[:count]
    labels.flat[voxels] = label


def test_majority_vote_counts_background_and_breaks_ties_low():
    superpixels = block_superpixels()  # interior blocks: 3x3 voxels over 4 slices
    labels = np.zeros(superpixels.labels.shape, np.uint8)
    labels[superpixels.labels == 6] = 2  # all of it
    voxels_of(superpixels, 7, 20, 1, labels)  # 20 of 36: a majority
    voxels_of(superpixels, 10, 16, 4, labels)  # 16 of 36: background wins
    voxels_of(superpixels, 11, 18, 3, labels)
    labels[(superpixels.labels == 11) & (labels == 0)] = 1  # 18 and 18: the smaller label wins
    outside = np.argwhere(superpixels.labels == 0)[0]
    labels[tuple(outside)] = 2
    assert {int(np.count_nonzero(superpixels.labels == i)) for i in (6, 7, 10, 11)} == {36}

    annotation = Annotation(superpixels)
    changed, differing_voxels = annotation.load_label_volume(labels)
    assert annotation.superpixel_labels[[6, 7, 10, 11]].tolist() == [2, 1, 0, 1]
    # The voxels the vote went against keep their labels as voxel marks: 0 outside the head.
    assert len(annotation.voxel_marks) == 16 + 16 + 18 + 1 and differing_voxels == 0
    np.testing.assert_array_equal(changed, [0, 6, 7, 10, 11])
    np.testing.assert_array_equal(annotation.label_volume(), labels)


def test_loading_is_one_undoable_step_of_the_users_labels():
    superpixels = block_superpixels()
    annotation = Annotation(superpixels)
    annotation.paint(0, 1, [(7, 7)], 3, level="fine")
    assert annotation.superpixel_labels[11] == 3
    filled = annotation.superpixel_labels.copy()
    filled[[5, 6]] = 1
    annotation.set_superpixel_labels(filled, filled=True)
    before = annotation.superpixel_labels.copy()

    labels = np.where(np.isin(superpixels.labels, [5, 9]), 1, 0).astype(np.uint8)
    changed, _ = annotation.load_label_volume(labels)
    np.testing.assert_array_equal(changed, [6, 9, 11])
    labelled, _ = annotation.user_marks()
    # Superpixel 5 kept the label autofill gave it, but it is now the user's: a seed.
    np.testing.assert_array_equal(np.flatnonzero(labelled), [5, 9])
    annotation.undo()
    np.testing.assert_array_equal(annotation.superpixel_labels, before)
    annotation.redo()
    assert annotation.superpixel_labels[[5, 6, 9]].tolist() == [1, 0, 1]


@pytest.mark.parametrize(
    ("labels", "problem"),
    [
        (np.zeros((4, 12, 11), np.uint8), "shape"),
        (np.zeros((4, 12, 12), np.float32), "integers"),
        (np.full((4, 12, 12), 256, np.int16), "between 0 and 255"),
    ],
)
def test_load_label_volume_checks_its_input(labels, problem):
    with pytest.raises(ValueError, match=problem):
        Annotation(block_superpixels()).load_label_volume(labels)


def majority_by_loop(superpixels, labels):
    """Reference: the most common label of each superpixel, ties to the smaller label."""
    result = np.zeros(superpixels.count + 1, np.uint8)
    for superpixel_id in range(1, superpixels.count + 1):
        votes = np.bincount(labels[superpixels.labels == superpixel_id], minlength=256)
        result[superpixel_id] = votes.argmax()
    return result


def test_remapped_onto_other_superpixels_votes_by_majority():
    annotation = painted(block_superpixels(shape=(4, 12, 12), block=3))
    smaller = block_superpixels(shape=(4, 12, 12), block=2)
    remapped = annotation.remapped(smaller)
    assert remapped.superpixels is smaller and not remapped.can_undo
    np.testing.assert_array_equal(
        remapped.superpixel_labels, majority_by_loop(smaller, annotation.label_volume())
    )
    assert remapped.superpixel_labels.any()
    labelled, _ = remapped.user_marks()
    np.testing.assert_array_equal(labelled, remapped.superpixel_labels > 0)


def test_remapped_onto_the_same_superpixels_keeps_the_labels_and_erased_marks():
    annotation = painted(block_superpixels())
    annotation.paint(0, 1, [(7, 7)], 0, level="fine")
    remapped = annotation.remapped(annotation.superpixels)
    assert annotation.erased.any()
    np.testing.assert_array_equal(remapped.marked_labels(), annotation.marked_labels())
    with pytest.raises(ValueError, match="do not fit"):
        annotation.remapped(block_superpixels(shape=(5, 12, 12)))


def test_labels_everywhere_differ_outside_the_head():
    superpixels = block_superpixels()
    annotation = Annotation(superpixels)
    changed, differing_voxels = annotation.load_label_volume(
        np.ones(superpixels.labels.shape, np.uint8)
    )
    assert changed.size == superpixels.count + 1  # 0 holds the voxels outside the head
    assert len(annotation.voxel_marks) == np.count_nonzero(superpixels.labels == 0)
    assert differing_voxels == 0


@pytest.mark.parametrize("dtype_max", [4, 300])
def test_saved_file_holds_the_bytes_nibabel_writes(tmp_path, small_case, dtype_max):
    volume, superpixels = small_case
    labels = (np.arange(volume.data.size).reshape(volume.data.shape) % (dtype_max + 1)).astype(
        np.uint16
    )
    marks = np.arange(superpixels.count + 1, dtype=np.int16) % 3
    save_segmentation(volume, labels, tmp_path / "fast.nii.gz", marks)
    # The same image through nibabel's own writer.
    dtype = np.uint8 if dtype_max < 256 else np.uint16
    reference = nib.Nifti1Image(
        np.ascontiguousarray(volume.to_source(labels.astype(dtype))), volume.affine
    )
    reference.set_qform(volume.affine, code=1)
    reference.set_sform(volume.affine, code=1)
    reference.header.set_intent("label")
    reference.header.extensions = nib.load(tmp_path / "fast.nii.gz").header.extensions
    nib.save(reference, tmp_path / "reference.nii.gz")
    written = gzip.decompress((tmp_path / "fast.nii.gz").read_bytes())
    assert written == gzip.decompress((tmp_path / "reference.nii.gz").read_bytes())
