"""Cases: what any worker process finds by key, from memory or from the disk cache."""

import dataclasses

import numpy as np
import pytest

from superpixel_annotator.cases import (
    MAX_CASES_IN_MEMORY,
    CaseNotFoundError,
    CaseStore,
    case_key,
    open_case,
)
from superpixel_annotator.volume import Volume


def phantom(seed: int, name: str = "scan") -> Volume:
    """A small noisy ball, different per seed."""
    rng = np.random.default_rng(seed)
    grid = np.indices((16, 18, 20)).astype(np.float32)
    ball = ((grid - np.array([8, 9, 10])[:, None, None, None]) ** 2).sum(axis=0) < 36
    data = np.where(ball, 100.0, 0.0) + rng.normal(0, 5, ball.shape)
    return Volume.from_source_array(data.astype(np.float32), np.diag([1.0, 1.5, 2.0, 1.0]), name)


def test_another_process_finds_a_case_by_key_on_disk(tmp_path):
    opened = open_case([phantom(1, "t1"), phantom(2, "flair")], tmp_path)
    found = CaseStore(tmp_path).get(opened.key)  # a fresh store: nothing in memory
    assert [volume.name for volume in found.volumes] == ["t1", "flair"]
    for mine, theirs in zip(opened.volumes, found.volumes, strict=True):
        np.testing.assert_array_equal(mine.data, theirs.data)
        np.testing.assert_array_equal(mine.affine, theirs.affine)
        assert mine.spacing == theirs.spacing
    np.testing.assert_array_equal(opened.superpixels.labels, found.superpixels.labels)
    assert found.key == opened.key


def test_keys_follow_content_modalities_and_parameters():
    one, other = phantom(1), phantom(2)
    assert case_key([one], {}) == case_key([dataclasses.replace(one, name="x")], {})
    assert case_key([one], {}) != case_key([other], {})
    assert case_key([one], {}) != case_key([one, other], {})
    assert case_key([one], {}) != case_key([one], {"size": 6.5})


@pytest.mark.parametrize("key", ["0" * 32, "../../etc/passwd", "", None, 12, ["a"]], ids=str)
def test_unknown_or_malformed_keys_are_not_found(tmp_path, key):
    with pytest.raises(CaseNotFoundError):
        CaseStore(tmp_path).get(key)


def test_memory_holds_recent_cases_and_disk_the_rest(tmp_path):
    store = CaseStore(tmp_path)
    cases = [open_case([phantom(seed)], tmp_path) for seed in range(MAX_CASES_IN_MEMORY + 1)]
    for case in cases:
        store.add(case)
    assert cases[0].key not in store._cases
    assert store.get(cases[0].key).key == cases[0].key  # read back from disk
    assert len(store._cases) == MAX_CASES_IN_MEMORY
