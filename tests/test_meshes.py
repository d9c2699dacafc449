import json
from pathlib import Path

import numpy as np
import pytest

from superpixel_annotator.core import meshes
from superpixel_annotator.core.meshes import (
    box_label_meshes,
    index_to_scene,
    label_meshes,
    outline_mesh,
    scene_layout,
)
from superpixel_annotator.core.volume import load_volume

SAMPLE_DIR = Path(__file__).resolve().parents[1] / "sample_data"
COLORS = {1: "#e6194b", 2: "#ffe119", 3: "#4363d8", 4: "#3cb44b"}


def vertices(trace: dict) -> np.ndarray:
    return np.column_stack([trace["x"], trace["y"], trace["z"]])


def triangles(trace: dict) -> np.ndarray:
    return np.column_stack([trace["i"], trace["j"], trace["k"]])


def signed_volume(trace: dict) -> float:
    """Volume enclosed by a closed mesh; positive when triangles face outward."""
    v, f = vertices(trace), triangles(trace)
    a, b, c = v[f[:, 0]], v[f[:, 1]], v[f[:, 2]]
    return float(np.einsum("ij,ij->i", a, np.cross(b, c)).sum() / 6.0)


def blob(shape, centre, radius=3):
    grid = np.indices(shape)
    dist2 = sum((g - c) ** 2 for g, c in zip(grid, centre, strict=True))
    return dist2 <= radius**2


def test_cube_extent_in_mm_follows_spacing():
    labels = np.zeros((20, 24, 30), np.uint8)
    labels[4:14, 6:11, 10:22] = 1  # 10 x 5 x 12 voxels along the display axes
    spacing = (2.0, 1.5, 0.5)
    (trace,) = label_meshes(labels, spacing, COLORS)
    v = vertices(trace)
    extent = v.max(axis=0) - v.min(axis=0)  # x <- axis 2, y <- axis 1, z <- axis 0
    np.testing.assert_allclose(extent, [12 * 0.5, 5 * 1.5, 10 * 2.0], atol=0.11)
    # Surfaces lie half-way between voxel centres: z spans (19 - 13.5) * 2 .. (19 - 3.5) * 2.
    np.testing.assert_allclose([v[:, 2].min(), v[:, 2].max()], [11.0, 31.0], atol=0.11)
    assert 0.9 * 900.0 < signed_volume(trace) <= 900.0  # closed, outward-facing


def test_meshes_from_a_box_are_those_of_the_whole_label_map():
    labels = np.zeros((30, 34, 38), np.int16)
    labels[blob(labels.shape, (9, 10, 12), radius=4)] = 2
    labels[blob(labels.shape, (18, 20, 22), radius=5)] = 1
    labels[3, 30, 4] = -1  # background, as in label_meshes
    box = (slice(2, 28), slice(5, 32), slice(3, 30))
    spacing = (1.2, 0.8, 0.9)
    expected = label_meshes(labels, spacing, COLORS, label_names={1: "Oedema"})
    boxed = box_label_meshes(
        box, labels[box], labels.shape, spacing, COLORS, label_names={1: "Oedema"}
    )
    assert len(expected) == 2
    assert boxed == expected


def test_one_trace_per_present_label_with_its_colour_and_name():
    labels = np.zeros((30, 30, 30), np.uint8)
    labels[blob(labels.shape, (8, 8, 8))] = 1
    labels[blob(labels.shape, (20, 20, 20))] = 3
    traces = label_meshes(labels, (1.0, 1.0, 1.0), COLORS, label_names={3: "Necrosis"})
    assert [t["type"] for t in traces] == ["mesh3d", "mesh3d"]
    assert [t["color"] for t in traces] == [COLORS[1], COLORS[3]]
    assert [t["name"] for t in traces] == ["Label 1", "Necrosis"]
    assert len({t["uid"] for t in traces}) == 2


def test_traces_are_plain_json_with_coordinates_rounded_to_a_tenth_mm():
    labels = np.zeros((16, 16, 16), np.float32)  # as load_volume returns label files
    labels[blob(labels.shape, (8, 7, 9), radius=4)] = 2
    (trace,) = label_meshes(labels, (1.3, 0.7, 1.1), COLORS)
    json.dumps(trace)
    for key in "xyz":
        assert all(type(value) is float for value in trace[key])
        tenths = np.asarray(trace[key]) * 10
        np.testing.assert_allclose(tenths, np.round(tenths), atol=1e-6)
    for key in "ijk":
        assert all(type(value) is int for value in trace[key])
    assert triangles(trace).max() < len(trace["x"])


def test_empty_labels_give_no_trace():
    assert label_meshes(np.zeros((8, 9, 10), np.uint8), (1.0, 1.0, 1.0), COLORS) == []
    only_negative = np.full((8, 9, 10), -1, np.int16)
    assert label_meshes(only_negative, (1.0, 1.0, 1.0), COLORS) == []


def test_label_touching_the_volume_border_gives_a_closed_mesh():
    labels = np.zeros((10, 10, 10), np.uint8)
    labels[:4, :4, :4] = 1
    (trace,) = label_meshes(labels, (1.0, 1.0, 1.0), COLORS)
    assert signed_volume(trace) > 0.8 * 64


def test_large_label_is_downsampled_to_the_triangle_budget():
    labels = blob((100, 100, 100), (50, 50, 50), radius=40).astype(np.uint8)
    full = label_meshes(labels, (1.0, 1.0, 1.0), COLORS, max_triangles=10**9)[0]
    (coarse,) = label_meshes(labels, (1.0, 1.0, 1.0), COLORS, max_triangles=5_000)
    assert len(coarse["i"]) <= 1.5 * 5_000 < len(full["i"])
    np.testing.assert_allclose(
        vertices(coarse).max(axis=0) - vertices(coarse).min(axis=0), 81.0, atol=2.0
    )


def test_scattered_pieces_are_kept_rather_than_downsampled_away():
    labels = np.zeros((40, 40, 40), np.uint8)
    labels[2::6, 2::6, 2::6] = 1  # 343 isolated voxels
    (trace,) = label_meshes(labels, (1.0, 1.0, 1.0), COLORS, max_triangles=500)
    assert len(trace["i"]) >= 343 * 8  # each isolated voxel is an octahedron


def test_orientation_superior_anterior_and_patient_right():
    shape = (40, 40, 40)
    labels = np.zeros(shape, np.uint8)
    labels[blob(shape, (6, 20, 20))] = 1  # near the top of the head
    labels[blob(shape, (33, 20, 20))] = 2  # near the bottom
    labels[blob(shape, (20, 6, 20))] = 3  # anterior
    labels[blob(shape, (20, 20, 6))] = 4  # patient right (low axis-2 index)
    top, bottom, front, right = (
        vertices(t).mean(axis=0) for t in label_meshes(labels, (1, 1, 1), COLORS)
    )
    centre = index_to_scene([[19.5, 19.5, 19.5]], shape, (1, 1, 1))[0]
    assert top[2] > centre[2] > bottom[2]
    assert front[1] > centre[1]
    assert right[0] > centre[0]  # x increases toward the patient's right


def test_index_to_scene_maps_corners():
    shape, spacing = (5, 6, 7), (3.0, 2.0, 1.0)
    corners = index_to_scene([[0, 0, 0], [4, 5, 6]], shape, spacing)
    # Superior-anterior-right voxel: max x, y, z; the opposite corner is the origin.
    np.testing.assert_allclose(corners, [[6.0, 10.0, 12.0], [0.0, 0.0, 0.0]])


def test_outline_is_coarse_and_faint():
    mask = blob((155, 240, 240), (77, 120, 120), radius=70)
    trace = outline_mesh(mask, (1.0, 1.0, 1.0))
    assert 100 < len(trace["i"]) <= 4_000
    assert trace["opacity"] <= 0.3 and trace["showlegend"] is False
    v = vertices(trace)
    np.testing.assert_allclose(v.max(axis=0) - v.min(axis=0), 141.0, atol=10.0)
    json.dumps(trace)


def test_outline_of_empty_mask_is_an_empty_trace():
    trace = outline_mesh(np.zeros((10, 10, 10), bool), (1.0, 1.0, 1.0))
    assert trace["x"] == [] and trace["i"] == []


def test_scene_layout_fits_volume_with_true_aspect():
    shape, spacing = (76, 136, 116), (3.0, 1.5, 1.5)
    scene = scene_layout(shape, spacing)
    assert scene["xaxis"]["range"] == [-0.75, 173.25]
    assert scene["zaxis"]["range"] == [-1.5, 226.5]
    ratio = scene["aspectratio"]
    assert ratio["z"] == 1.0
    assert ratio["x"] == pytest.approx(174.0 / 228.0, abs=1e-3)
    assert scene["camera"]["eye"]["y"] > 1.0  # in front of the face
    assert scene["camera"]["up"] == {"x": 0.0, "y": 0.0, "z": 1.0}
    json.dumps(scene)


def test_sample_phantom_lesion_is_inside_the_head_on_the_patient_right():
    image_path = SAMPLE_DIR / "head_phantom.nii.gz"
    lesion_path = SAMPLE_DIR / "head_phantom_lesion.nii.gz"
    if not (image_path.exists() and lesion_path.exists()):
        pytest.skip("sample phantom not generated")
    image = load_volume(image_path)
    lesion = load_volume(lesion_path)
    oedema, core = label_meshes(lesion.data, lesion.spacing, COLORS)
    head = vertices(outline_mesh(image.data > 20, image.spacing))
    centre = (head.min(axis=0) + head.max(axis=0)) / 2
    for trace in (oedema, core):
        v = vertices(trace)
        assert (v.min(axis=0) > head.min(axis=0)).all() and (v.max(axis=0) < head.max(axis=0)).all()
    assert vertices(core).mean(axis=0)[0] > centre[0] + 20  # the generator puts it right


@pytest.mark.parametrize("factors", [(2, 2, 2), (3, 1, 2), (7, 7, 7)])
def test_block_mean_is_the_mean_of_the_zero_padded_blocks(factors):
    mask = np.random.default_rng(0).random((15, 16, 17)) < 0.4
    pad = [(0, -n % f) for n, f in zip(mask.shape, factors, strict=True)]
    padded = np.pad(mask.astype(np.float32), pad)
    (a, b, c), (fa, fb, fc) = padded.shape, factors
    blocks = padded.reshape(a // fa, fa, b // fb, fb, c // fc, fc)
    expected = blocks.mean(axis=(1, 3, 5), dtype=np.float32)
    np.testing.assert_array_equal(meshes._block_mean(mask, factors), expected)


@pytest.mark.parametrize("shape", [(1, 1, 1), (15, 16, 17), (2, 40, 3)])
def test_exposed_faces_are_the_changes_along_each_axis_of_the_zero_padded_mask(shape):
    mask = np.random.default_rng(1).random(shape) < 0.6
    padded = np.pad(mask, 1)
    expected = sum(np.count_nonzero(np.diff(padded, axis=axis)) for axis in range(3))
    assert meshes._exposed_faces(mask.view(np.uint8)) == expected


def test_negative_values_are_background_in_any_integer_type():
    labels = np.zeros((12, 12, 12), np.int16)
    labels[2:6, 2:6, 2:6] = 3
    labels[7:10, 7:10, 7:10] = 1
    with_negatives = np.where(labels == 0, -5, labels).astype(np.int16)
    colours = {1: "#ff0000", 3: "#00ff00"}
    expected = label_meshes(labels.astype(np.uint8), (1.0, 1.0, 1.0), colours)
    assert [trace["uid"] for trace in expected] == ["label-1", "label-3"]
    assert label_meshes(with_negatives, (1.0, 1.0, 1.0), colours) == expected
