import dataclasses
import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
from scipy import ndimage as ndi

from superpixel_annotator.core import slic
from superpixel_annotator.core import superpixels as sp
from superpixel_annotator.core.regions import merge_regions, superpixel_adjacency
from superpixel_annotator.core.superpixels import (
    Superpixels,
    achievable_segmentation_accuracy,
    compute_superpixels,
    head_mask,
    load_or_compute_superpixels,
    modality_channels,
)
from superpixel_annotator.core.threads import slabs
from superpixel_annotator.core.volume import Volume, load_volume

BRATS = Path(__file__).resolve().parents[1].parent / "shared/data/brats2013"


def display_volume(array, spacing=(1.0, 1.0, 1.0)):
    """A volume whose display order and spacing are those of ``array``."""
    affine = np.zeros((4, 4))
    affine[2, 0], affine[1, 1], affine[0, 2], affine[3, 3] = (
        -spacing[0],
        -spacing[1],
        -spacing[2],
        1,
    )
    return Volume.from_source_array(array, affine)


def grid_labels(mask, step):
    """Cubes of ``step`` voxels cut to ``mask``: superpixels that ignore edges."""
    cells = np.indices(mask.shape) // step
    ids = np.ravel_multi_index(tuple(cells), tuple(c.max() + 1 for c in cells)) + 1
    return np.where(mask, ids, 0)


def ellipsoid(shape, radii_fraction=0.4):
    grid = np.indices(shape, dtype=float)
    centre = (np.array(shape) - 1) / 2
    radii = radii_fraction * np.array(shape)
    return sum(((g - c) / r) ** 2 for g, c, r in zip(grid, centre, radii, strict=True)) <= 1


def ball(shape, centre, radius):
    grid = np.indices(shape, dtype=float)
    return sum((g - c) ** 2 for g, c in zip(grid, centre, strict=True)) <= radius**2


def skull_stripped(shape=(36, 40, 44), spacing=(1.0, 1.0, 1.0)):
    """A BraTS-like volume: noisy tissue, a bright ball, constant negative background."""
    rng = np.random.default_rng(0)
    head = ellipsoid(shape)
    lesion = ball(shape, np.array(shape) * 0.55, 6)
    data = rng.normal(0.0, 0.2, shape) + 2.0 * lesion
    data[~head] = -3.5
    return display_volume(data, spacing), head, lesion


def noisy_air(shape=(36, 40, 44)):
    """A head with a dark cavity inside, surrounded by noisy air (ordinary MRI)."""
    rng = np.random.default_rng(1)
    head = ellipsoid(shape)
    cavity = ball(shape, np.array(shape) / 2, 4)
    data = np.abs(rng.normal(0, 10, shape)) + 200 * (head & ~cavity)
    return data, head


def test_head_mask_constant_background_is_exact():
    volume, head, _ = skull_stripped()
    np.testing.assert_array_equal(head_mask(volume.data), head)


def test_head_mask_noisy_air_keeps_the_head_and_fills_holes():
    data, head = noisy_air()
    data[0, 0, 0] = 400  # a bright speck of noise in the air is not head
    mask = head_mask(data)
    assert not mask[0, 0, 0]
    assert (mask != head).sum() < 0.01 * head.sum()
    assert mask[tuple(np.array(data.shape) // 2)]  # the cavity is filled


def test_head_mask_air_beyond_constant_padding():
    data, head = noisy_air()
    data[:, :, :4] = -1000  # padding outside the field of view, as in CT
    mask = head_mask(data)
    assert (mask != head).sum() < 0.01 * head.sum()


def test_head_mask_constant_image():
    assert not head_mask(np.full((5, 6, 7), 3.0, np.float32)).any()


def test_superpixels_cover_the_head_only_with_contiguous_connected_ids():
    volume, head, _ = skull_stripped(spacing=(1.0, 1.0, 2.0))
    result = compute_superpixels(volume)
    labels = result.labels
    assert labels.dtype == np.int32 and labels.shape == volume.data.shape
    np.testing.assert_array_equal(labels > 0, head_mask(volume.data))
    np.testing.assert_array_equal(np.unique(labels), np.arange(result.count + 1))
    assert 20 < result.count < 2000
    for k, box in enumerate(ndi.find_objects(labels), start=1):
        assert ndi.label(labels[box] == k)[1] == 1


def test_progress_moves_forward_while_computing_and_is_silent_from_the_cache(tmp_path):
    volume, _, _ = skull_stripped()
    told = []
    computed = load_or_compute_superpixels(volume, tmp_path, lambda *report: told.append(report))
    done = [fraction for fraction, _ in told]
    assert done == sorted(done) and done[0] == 0 and done[-1] < 1
    assert len(set(done)) >= 2 + computed.params["iterations"]
    assert all(isinstance(text, str) and text for _, text in told)
    assert computed.params == compute_superpixels(volume).params  # not a parameter
    told.clear()
    load_or_compute_superpixels(volume, tmp_path, lambda *report: told.append(report))
    assert told == []


def test_extents_match_brute_force():
    volume, _, _ = skull_stripped(shape=(20, 24, 28))
    result = compute_superpixels(volume, size=3.0)
    assert result.extents.dtype == np.int32
    assert result.extents.shape == (result.count + 1, 3, 2)
    assert not result.extents[0].any()
    for k in range(1, result.count + 1):
        where = np.nonzero(result.labels == k)
        expected = [(w.min(), w.max() + 1) for w in where]
        np.testing.assert_array_equal(result.extents[k], expected)


@pytest.mark.parametrize("count, dtype", [(2**16 - 1, np.uint16), (2**16, np.int32)])
def test_compact_labels_are_the_labels_in_uint16_when_every_id_fits(count, dtype):
    labels = np.arange(1, count + 1, dtype=np.int32).reshape(-1, 1, 1)
    superpixels = Superpixels.from_labels(labels, params={})
    assert superpixels.compact_labels.dtype == dtype
    np.testing.assert_array_equal(superpixels.compact_labels, labels)


def test_size_is_in_mm_along_each_axis():
    volume, _, _ = skull_stripped(shape=(60, 24, 64), spacing=(1.0, 3.0, 1.0))
    result = compute_superpixels(volume, size=6.0, compactness=5.0)
    widths_mm = (result.extents[1:, :, 1] - result.extents[1:, :, 0]) * np.array(volume.spacing)
    mean_widths = widths_mm.mean(axis=0)
    assert mean_widths.max() < 1.5 * mean_widths.min()
    assert compute_superpixels(volume, size=10.0).count < result.count / 2


def test_superpixels_follow_an_intensity_edge():
    volume, head, lesion = skull_stripped()
    labels = compute_superpixels(volume).labels
    ours = achievable_segmentation_accuracy(labels, lesion)
    assert ours > 0.9
    assert ours > achievable_segmentation_accuracy(grid_labels(head, 4), lesion) + 0.1


def test_one_volume_alone_or_in_a_list_or_twice_gives_the_same_partition():
    volume, _, _ = skull_stripped()
    alone = compute_superpixels(volume)
    for volumes in ([volume], [volume, volume]):
        result = compute_superpixels(volumes)
        np.testing.assert_array_equal(result.labels, alone.labels)
        np.testing.assert_array_equal(result.coarse, alone.coarse)


def test_threads_cut_the_volume_into_consecutive_slabs():
    assert slabs(5, 3) == [(0, 1), (1, 3), (3, 5)]
    assert slabs(2, 4) == [(0, 1), (1, 2)]
    assert slabs(7, 1) == [(0, 7)]


@pytest.mark.parametrize("parts", [3, 7])
def test_the_partition_does_not_depend_on_the_number_of_threads(monkeypatch, parts):
    volume = display_volume(noisy_air()[0])
    monkeypatch.setattr(slic, "slabs", lambda length: slabs(length, 1))
    one = compute_superpixels(volume)
    monkeypatch.setattr(slic, "slabs", lambda length: slabs(length, parts))
    several = compute_superpixels(volume)
    np.testing.assert_array_equal(several.labels, one.labels)
    np.testing.assert_array_equal(several.coarse, one.coarse)


def test_a_structure_seen_only_in_the_second_modality_gets_a_boundary():
    volume, head, lesion = skull_stripped()
    rng = np.random.default_rng(3)
    plain = np.where(head, rng.normal(0.0, 0.2, head.shape), volume.data.min())
    first = dataclasses.replace(volume, data=plain.astype(np.float32), name="first")
    # A different intensity range: the second modality is scaled to the first's.
    second = dataclasses.replace(volume, data=volume.data * 50 + 100, name="second")
    alone = compute_superpixels(first)
    both = compute_superpixels([first, second])
    np.testing.assert_array_equal(both.labels > 0, head)
    assert achievable_segmentation_accuracy(both.labels, lesion) > 0.9
    assert achievable_segmentation_accuracy(alone.labels, lesion) < 0.8
    assert achievable_segmentation_accuracy(both.coarse[both.labels], lesion) > 0.85


def test_modality_channels_share_the_first_ones_scale():
    rng = np.random.default_rng(4)
    mask = np.zeros((4, 5, 6), bool)
    mask[1:3] = True
    first, second = rng.normal(5, 2, mask.shape), rng.normal(-7, 30, mask.shape)
    second[~mask] = 1e6  # outside the head: ignored
    channels = modality_channels([first, second], mask)
    assert channels.shape == (2, *mask.shape)
    np.testing.assert_allclose(channels[0], first / first[mask].std())
    ranges = [np.ptp(np.percentile(c[mask], [1, 99])) for c in channels]
    np.testing.assert_allclose(ranges[1], ranges[0])


@pytest.mark.parametrize(
    ("shape", "spacing", "problem"),
    [((36, 40, 40), (1.0, 1.0, 1.0), "shape"), ((36, 40, 44), (1.0, 1.0, 2.0), "spacing")],
)
def test_modalities_must_share_shape_and_spacing(shape, spacing, problem):
    volume, _, _ = skull_stripped()
    other = dataclasses.replace(
        display_volume(np.zeros(shape), spacing), name="t1c", data=np.zeros(shape, np.float32)
    )
    with pytest.raises(ValueError, match=f"t1c: {problem}"):
        compute_superpixels([volume, other])
    with pytest.raises(ValueError, match="at least one"):
        compute_superpixels([])


def test_merge_compares_every_channel():
    # A row of 4 supervoxels alike in channel 0; channel 1 steps between the 2nd and 3rd.
    labels = np.arange(1, 5, dtype=np.int32).reshape(1, 1, 4)
    image = np.stack([np.zeros((1, 1, 4)), np.array([0.0, 0.0, 1.0, 1.0]).reshape(1, 1, 4)])
    np.testing.assert_array_equal(
        merge_regions(labels, image, 0.5, 9.0, 100, 20.0), [0, 1, 1, 2, 2]
    )
    np.testing.assert_array_equal(
        merge_regions(labels, image[:1], 0.5, 9.0, 100, 20.0), [0, 1, 1, 1, 1]
    )
    # The step is 1 in one channel of two: a root mean square difference of 0.71.
    assert len(set(merge_regions(labels, image, 0.75, 9.0, 100, 20.0)[1:])) == 1
    assert len(set(merge_regions(labels, image, 0.75, 0.5, 100, 20.0)[1:])) == 2


def test_adjacency_matches_brute_force():
    labels = np.random.default_rng(2).integers(0, 6, (5, 6, 7)).astype(np.int32)
    expected = set()
    for axis in range(3):
        a = np.moveaxis(labels, axis, 0)
        for x, y in zip(a[:-1].ravel(), a[1:].ravel(), strict=True):
            if x and y and x != y:
                expected.add((min(x, y), max(x, y)))
    pairs = superpixel_adjacency(labels)
    assert pairs.dtype == np.int64
    assert [tuple(p) for p in pairs] == sorted(expected)


def test_merge_limits_similarity_and_span():
    # A row of 8 supervoxels of 2 voxels each, means rising by 0.2 at each step.
    labels = np.repeat(np.arange(1, 9), 2).reshape(1, 1, 16).astype(np.int32)
    image = (labels - 1) * 0.2
    assert len(set(merge_regions(labels, image, 1.0, 9.0, 100, 20.0)[1:])) == 1
    coarse = merge_regions(labels, image, 1.0, 0.5, 100, 20.0)  # at most 3 steps of 0.2 per region
    assert coarse[0] == 0
    assert all(np.ptp(image.ravel()[coarse[labels.ravel()] == c]) <= 0.5 for c in coarse[1:])
    assert len(set(coarse[1:])) == 3
    assert len(set(merge_regions(labels, image, 0.1, 9.0, 100, 20.0)[1:])) == 8


def test_merge_caps_common_intensities_more_than_rare_ones():
    # 20 supervoxels of 2 voxels at intensity 0, then 4 at intensity 3: a fifth as frequent.
    labels = np.repeat(np.arange(1, 25), 2).reshape(1, 1, 48).astype(np.int32)
    image = np.where(labels > 20, 3.0, 0.0)
    coarse = merge_regions(labels, image, 1.0, 9.0, 4, 20.0)
    sizes = np.bincount(coarse[labels.ravel()])
    assert sizes[np.unique(coarse[1:21])].max() == 4
    assert len(set(coarse[21:])) == 1 and sizes[coarse[21]] == 8


def test_merge_keeps_rare_intensities_apart_from_common_ones():
    # 20 supervoxels of 2 voxels at intensity 0, then 2 at 0.5: a tenth as frequent.
    labels = np.repeat(np.arange(1, 23), 2).reshape(1, 1, 44).astype(np.int32)
    image = np.where(labels > 20, 0.5, 0.0)
    assert len(set(merge_regions(labels, image, 1.0, 9.0, 1000, 20.0)[1:])) == 1
    coarse = merge_regions(labels, image, 1.0, 9.0, 1000, 8.0)
    assert len(set(coarse[1:21])) == 1 and len(set(coarse[21:])) == 1
    assert coarse[1] != coarse[21]


def test_coarse_regions_are_unions_that_follow_an_intensity_edge():
    volume, _, lesion = skull_stripped()
    result = compute_superpixels(volume)
    coarse = result.coarse
    assert coarse.dtype == np.int32 and coarse.shape == (result.count + 1,)
    assert coarse[0] == 0
    np.testing.assert_array_equal(np.unique(coarse), np.arange(coarse.max() + 1))
    assert coarse.max() < result.count / 4
    coarse_labels = coarse[result.labels]
    assert achievable_segmentation_accuracy(coarse_labels, lesion) > 0.85
    for k, box in enumerate(ndi.find_objects(coarse_labels), start=1):
        assert ndi.label(coarse_labels[box] == k)[1] == 1


def test_members_of_coarse_regions():
    labels = np.arange(1, 5, dtype=np.int32).reshape(1, 1, 4)
    fine = Superpixels.from_labels(labels, params={})
    np.testing.assert_array_equal(fine.members([0, 3, 3]), [3])
    coarse = Superpixels.from_labels(labels, params={}, coarse=[0, 1, 1, 2, 2])
    np.testing.assert_array_equal(coarse.members([3]), [3, 4])
    np.testing.assert_array_equal(coarse.members([1, 4]), [1, 2, 3, 4])
    assert coarse.members([]).size == 0


def test_constant_image_has_no_superpixels():
    volume = display_volume(np.zeros((8, 9, 10)))
    result = compute_superpixels(volume)
    assert result.count == 0
    assert not result.labels.any()
    assert result.extents.shape == (1, 3, 2)


def test_two_voxel_thin_axis():
    for shape in [(2, 30, 32), (30, 2, 32), (30, 32, 2)]:
        head = ellipsoid(shape, 0.45)
        volume = display_volume(np.where(head, 1.0, -1.0))
        result = compute_superpixels(volume)
        np.testing.assert_array_equal(result.labels > 0, head)
        assert result.count > 4


def test_unknown_parameter_is_an_error():
    volume, _, _ = skull_stripped(shape=(10, 10, 10))
    with pytest.raises(TypeError, match="colour"):
        compute_superpixels(volume, colour=3)


def test_params_are_json_able_defaults():
    volume, _, _ = skull_stripped(shape=(10, 10, 10))
    params = compute_superpixels(volume, size=3).params
    assert params == {**sp.DEFAULT_PARAMS, "size": 3.0}


def test_cache_round_trip(tmp_path, monkeypatch):
    volume, _, _ = skull_stripped()
    first = load_or_compute_superpixels(volume, tmp_path, size=5)
    files = list(tmp_path.iterdir())
    assert len(files) == 1 and files[0].suffix == ".npz"

    def fail(*args, **kwargs):
        raise AssertionError("recomputed although cached")

    monkeypatch.setattr(sp, "compute_superpixels", fail)
    second = load_or_compute_superpixels(volume, tmp_path, size=5)
    np.testing.assert_array_equal(second.labels, first.labels)
    np.testing.assert_array_equal(second.extents, first.extents)
    np.testing.assert_array_equal(second.coarse, first.coarse)
    assert second.params == first.params and second.count == first.count


def test_cache_distinguishes_parameters(tmp_path):
    volume, _, _ = skull_stripped()
    fine = load_or_compute_superpixels(volume, tmp_path, size=3)
    coarse = load_or_compute_superpixels(volume, tmp_path, size=6)
    assert coarse.count < fine.count
    assert len(list(tmp_path.iterdir())) == 2


def test_cache_key_covers_every_modality(tmp_path, monkeypatch):
    volume, _, _ = skull_stripped()
    other = dataclasses.replace(volume, data=volume.data[::-1].copy(), name="other")
    first = load_or_compute_superpixels([volume, other], tmp_path)
    load_or_compute_superpixels(volume, tmp_path)
    load_or_compute_superpixels([volume, volume], tmp_path)
    assert len(list(tmp_path.iterdir())) == 3
    monkeypatch.setattr(sp, "compute_superpixels", None)  # any recomputation would fail
    again = load_or_compute_superpixels([volume, other], tmp_path)
    np.testing.assert_array_equal(again.labels, first.labels)


@pytest.mark.parametrize("content", [b"", b"not a zip file", b"PK\x03\x04truncated"])
def test_corrupt_cache_file_is_recomputed(tmp_path, content):
    volume, _, _ = skull_stripped()
    expected = compute_superpixels(volume)
    load_or_compute_superpixels(volume, tmp_path)
    (path,) = tmp_path.iterdir()
    path.write_bytes(content)
    result = load_or_compute_superpixels(volume, tmp_path)
    np.testing.assert_array_equal(result.labels, expected.labels)
    with np.load(path) as stored:  # and the file was rewritten
        np.testing.assert_array_equal(stored["labels"], expected.labels)


def test_cache_of_another_shape_is_recomputed(tmp_path):
    volume, _, _ = skull_stripped()
    load_or_compute_superpixels(volume, tmp_path)
    (path,) = tmp_path.iterdir()
    np.savez(
        path.with_suffix(""), labels=np.zeros((3, 3, 3), np.int32), extents=np.zeros((1, 3, 2))
    )
    result = load_or_compute_superpixels(volume, tmp_path)
    assert result.labels.shape == volume.data.shape and result.count > 0


def test_default_cache_dir_from_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("SUPERPIXEL_ANNOTATOR_CACHE", str(tmp_path / "cache"))
    volume, _, _ = skull_stripped(shape=(12, 12, 12))
    load_or_compute_superpixels(volume)
    assert len(list((tmp_path / "cache").iterdir())) == 1


def test_unwritable_cache_warns_and_still_returns(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    volume, _, _ = skull_stripped(shape=(12, 12, 12))
    with pytest.warns(UserWarning, match="could not cache"):
        result = load_or_compute_superpixels(volume, blocker / "cache")
    assert result.count > 0


def test_asa_by_hand():
    labels = np.array([1, 1, 1, 2, 2, 0, 0, 3, 3, 3]).reshape(1, 2, 5)
    truth = np.array([1, 1, 0, 1, 0, 1, 0, 0, 0, 1], bool).reshape(1, 2, 5)
    # superpixel 1 is 2/3 in (chosen), 2 is exactly half (not), 3 is 1/3; background never.
    # chosen = 3 voxels, 2 of them in truth, truth has 5 voxels: Dice = 2 * 2 / (3 + 5).
    assert achievable_segmentation_accuracy(labels, truth) == pytest.approx(0.5)
    assert achievable_segmentation_accuracy(labels, truth == 2) == 1.0
    assert achievable_segmentation_accuracy(labels, labels == 3) == 1.0
    assert achievable_segmentation_accuracy(labels, labels == 0) == 0.0


@pytest.mark.skipif(not BRATS.is_dir(), reason=f"BraTS data not found at {BRATS}")
def test_brats_whole_tumour_is_achievable():
    case = BRATS / "brats_2013_pat0006_1"
    volume = load_volume(case / "Flair_subtrMeanDivStd.nii.gz")
    truth = load_volume(case / "OTMultiClass.nii.gz").data > 0
    result = compute_superpixels(volume)
    assert 5_000 < result.count < 30_000
    brain = volume.data > volume.data.min()
    labelled = result.labels > 0
    assert labelled[brain].all() and (labelled & ~brain).sum() < 100  # only filled holes
    assert achievable_segmentation_accuracy(result.labels, truth) >= 0.91


def cache_name_of_0_1_0(volume: Volume, params: dict) -> str:
    """The superpixel file name version 0.1.0 gave a single-modality scan."""
    key = json.dumps([4, {**sp.DEFAULT_PARAMS, **params}, []], sort_keys=True).encode()
    return f"{volume.content_hash}-{hashlib.sha256(key).hexdigest()[:16]}.npz"


@pytest.mark.parametrize("spacing", [(1.0, 1.0, 1.0), (3.0, 1.5, 1.5), (2.0, 2.0, 2.0)])
def test_cache_files_of_earlier_versions_are_still_read(tmp_path, spacing):
    volume, _, _ = skull_stripped()
    volume = dataclasses.replace(volume, spacing=spacing)
    load_or_compute_superpixels(volume, tmp_path)
    assert [path.name for path in tmp_path.iterdir()] == [cache_name_of_0_1_0(volume, {})]


def test_scans_of_coarse_voxels_get_a_cache_file_of_their_own(tmp_path):
    volume, _, _ = skull_stripped()
    volume = dataclasses.replace(volume, spacing=(5.0, 5.0, 5.0))
    load_or_compute_superpixels(volume, tmp_path)
    assert [path.name for path in tmp_path.iterdir()] != [cache_name_of_0_1_0(volume, {})]
