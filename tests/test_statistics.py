import csv
import dataclasses
import io

import numpy as np
import pytest

from superpixel_annotator.core.annotation import Annotation
from superpixel_annotator.core.statistics import label_statistics, statistics_csv
from superpixel_blocks import block_superpixels


def labels_of(annotation):
    return annotation.label_volume(), annotation.superpixel_labels


@pytest.fixture
def painted():
    superpixels = block_superpixels()
    annotation = Annotation(superpixels)
    annotation.paint(0, 1, [(4, 4), (4, 7)], 1)  # two 3x3 blocks through 4 slices
    annotation.paint(0, 1, [(8, 8)], 3)  # one 3x3 block
    intensity = np.arange(superpixels.labels.size, dtype=np.float32).reshape(
        superpixels.labels.shape
    )
    return annotation, {"flair": intensity, "t1c": 2 * intensity}


def test_volumes_follow_the_voxel_spacing(painted):
    annotation, volumes = painted
    rows = label_statistics(*labels_of(annotation), volumes, spacing=(1.0, 1.0, 1.0))
    assert [row["label"] for row in rows] == [1, 3]
    one, three = rows
    labels = annotation.label_volume()
    assert one["voxels"] == (labels == 1).sum() == 2 * 9 * 4
    assert one["superpixels"] == 2 and three["superpixels"] == 1
    assert one["volume_mm3"] == pytest.approx(72)
    scaled = label_statistics(*labels_of(annotation), volumes, spacing=(2.0, 0.5, 1.5))
    assert scaled[0]["volume_mm3"] == pytest.approx(72 * 1.5)
    assert scaled[0]["volume_ml"] == pytest.approx(72 * 1.5 / 1000)


def test_mean_intensity_per_modality(painted):
    annotation, volumes = painted
    three = label_statistics(*labels_of(annotation), volumes, spacing=(1.0, 1.0, 1.0))[1]
    inside = annotation.label_volume() == 3
    assert three["mean_flair"] == pytest.approx(volumes["flair"][inside].mean())
    assert three["mean_t1c"] == pytest.approx(2 * three["mean_flair"])


def test_no_labels_no_rows():
    annotation = Annotation(block_superpixels())
    assert label_statistics(*labels_of(annotation), {}, spacing=(1, 1, 1)) == []
    assert statistics_csv([]) == "label,voxels,volume_mm3,volume_ml,superpixels\n"


def test_csv_header_and_rows(painted):
    annotation, volumes = painted
    rows = label_statistics(*labels_of(annotation), volumes, spacing=(1.0, 1.0, 1.0))
    text = statistics_csv(rows)
    lines = text.splitlines()
    assert lines[0] == ("label,voxels,volume_mm3,volume_ml,superpixels,mean_flair,mean_t1c")
    parsed = list(csv.DictReader(io.StringIO(text)))
    assert [int(row["label"]) for row in parsed] == [1, 3]
    assert float(parsed[0]["volume_ml"]) == pytest.approx(0.072)
    assert float(parsed[1]["mean_flair"]) == pytest.approx(rows[1]["mean_flair"], rel=1e-5)


def test_volumes_are_those_of_the_smoothed_labels():
    blocks = block_superpixels(shape=(12, 12, 12))
    superpixels = dataclasses.replace(blocks, params={"outline_smoothing": 2.0})
    annotation = Annotation(superpixels)
    annotation.paint(0, 6, [(2, 2), (8, 8)], 1)
    labels = annotation.label_volume()
    (row,) = label_statistics(labels, annotation.superpixel_labels, {}, spacing=(1, 1, 1))
    assert row["voxels"] == (labels == 1).sum()
    superpixel_voxels = np.isin(blocks.labels, np.flatnonzero(annotation.superpixel_labels))
    assert row["voxels"] != superpixel_voxels.sum()
