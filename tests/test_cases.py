"""Cases: what any worker process finds by key, from memory or from the bounded disk cache."""

import dataclasses
import gc
import os
import signal
import threading
import time
import weakref
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from superpixel_annotator.core import cases, contacts
from superpixel_annotator.core.cache import (
    CACHE_LIMIT_VARIABLE,
    CacheSettingError,
    cache_limit_bytes,
    trim_cache,
)
from superpixel_annotator.core.cases import (
    MAX_CASES_IN_MEMORY,
    CaseNotFoundError,
    CaseStore,
    case_key,
    open_case,
    prepare_strokes,
)
from superpixel_annotator.core.contacts import superpixel_contacts
from superpixel_annotator.core.volume import Volume


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


def test_requests_asking_at_once_for_a_case_on_disk_read_it_once(tmp_path, monkeypatch):
    import superpixel_annotator.core.cases as cases

    key = open_case([phantom(1)], tmp_path).key
    reads = []
    real_read = cases._read_case

    def slow_read(cache_dir, key):
        reads.append(key)
        time.sleep(0.2)  # long enough for the other requests to ask meanwhile
        return real_read(cache_dir, key)

    monkeypatch.setattr(cases, "_read_case", slow_read)
    store = CaseStore(tmp_path)  # a fresh store, as the web process after a background job
    with ThreadPoolExecutor(4) as pool:
        found = list(pool.map(lambda _: store.get(key).key, range(4)))
    assert found == [key] * 4 and reads == [key]


def test_a_case_read_from_dicom_keeps_its_headers_on_disk(tmp_path):
    from dicom_series import write_series

    from superpixel_annotator.core.dicom import load_dicom_series

    values = np.where(np.indices((12, 10, 6)).sum(axis=0) > 12, 300.0, 20.0)
    write_series(tmp_path / "series", values, np.diag([1.0, 1.2, 2.0, 1.0]))
    dicom = load_dicom_series(tmp_path / "series")
    opened = open_case([dicom], tmp_path)
    found = CaseStore(tmp_path).get(opened.key)  # read from disk, as another process does
    assert [h.SOPInstanceUID for h in found.volume.dicom_headers] == [
        h.SOPInstanceUID for h in dicom.dicom_headers
    ]
    assert (
        found.volume.dicom_headers[2].ImagePositionPatient
        == dicom.dicom_headers[2].ImagePositionPatient
    )
    # Case files of other scans have no headers member, as those written before it existed.
    assert CaseStore(tmp_path).get(open_case([phantom(4)], tmp_path).key).volume.dicom_headers == ()


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


def cache_file(path: Path, size: int, age_s: float) -> Path:
    """A cache file of ``size`` bytes last used ``age_s`` seconds ago."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"x" * size)
    used = time.time() - age_s
    os.utime(path, (used, used))
    return path


def limit_cache(monkeypatch, max_bytes: int) -> None:
    monkeypatch.setenv(CACHE_LIMIT_VARIABLE, str(max_bytes / 1e6))


def test_trimming_removes_least_recently_used_files_of_both_kinds(tmp_path, monkeypatch):
    oldest = cache_file(tmp_path / "cases" / f"{'a' * 32}.npz", 1000, age_s=400)
    older = cache_file(tmp_path / f"{'b' * 32}-{'c' * 16}.npz", 1000, age_s=300)
    newer = cache_file(tmp_path / "cases" / f"{'d' * 32}.npz", 1000, age_s=200)
    newest = cache_file(tmp_path / f"{'e' * 32}-{'f' * 16}.npz", 1000, age_s=100)
    others = [  # not the cache's own files: never removed, whatever their age
        cache_file(tmp_path / "notes.npz", 5000, age_s=900),
        cache_file(tmp_path / "cases" / "half-written.tmp", 5000, age_s=900),
        cache_file(tmp_path / "jobs" / f"{'0' * 32}.npz", 5000, age_s=900),
    ]
    limit_cache(monkeypatch, 2500)
    assert trim_cache(tmp_path, keep=newest) == [oldest, older]
    assert all(path.exists() for path in [newer, newest, *others])


def test_the_file_just_written_stays_even_alone_over_the_limit(tmp_path, monkeypatch):
    written = cache_file(tmp_path / "cases" / f"{'a' * 32}.npz", 1000, age_s=400)
    other = cache_file(tmp_path / f"{'b' * 32}-{'c' * 16}.npz", 1000, age_s=100)
    limit_cache(monkeypatch, 0)
    assert trim_cache(tmp_path, keep=written) == [other]
    assert written.exists()


def test_reading_a_case_marks_its_files_used(tmp_path):
    opened = open_case([phantom(1)], tmp_path)
    files = [*tmp_path.glob("*.npz"), *tmp_path.glob("cases/*.npz")]
    assert len(files) == 2  # its superpixels and its modalities
    for path in files:
        os.utime(path, (1000.0, 1000.0))
    CaseStore(tmp_path).get(opened.key)  # a fresh store: read from disk
    assert all(path.stat().st_mtime > 1000.0 for path in files)


def test_a_case_gone_from_disk_is_unknown_unless_in_memory(tmp_path, monkeypatch):
    first = open_case([phantom(1)], tmp_path)
    store, pinned_store = CaseStore(tmp_path), CaseStore(tmp_path, pinned=[first])
    store.add(first)
    limit_cache(monkeypatch, 0)
    open_case([phantom(2)], tmp_path)  # the bound removes every file of the first case
    assert not (tmp_path / "cases" / f"{first.key}.npz").exists()
    with pytest.raises(CaseNotFoundError):
        CaseStore(tmp_path).get(first.key)
    assert pinned_store.get(first.key) is first
    assert store.get(first.key) is first  # ... and writes it back for other processes
    assert CaseStore(tmp_path).get(first.key).key == first.key


def test_cache_limit_comes_from_the_environment(monkeypatch):
    monkeypatch.delenv(CACHE_LIMIT_VARIABLE, raising=False)
    assert cache_limit_bytes() == 5 * 10**9
    monkeypatch.setenv(CACHE_LIMIT_VARIABLE, "250.5")
    assert cache_limit_bytes() == 250_500_000


@pytest.mark.parametrize("value", ["5GB", "-1", "nan", "inf"])
def test_malformed_cache_limit_is_a_one_line_error(monkeypatch, value):
    monkeypatch.setenv(CACHE_LIMIT_VARIABLE, value)
    with pytest.raises(CacheSettingError) as caught:
        cache_limit_bytes()
    message = str(caught.value)
    assert message.startswith(f"{CACHE_LIMIT_VARIABLE}={value!r}") and "\n" not in message


def prepared_ids(case) -> np.ndarray:
    """The superpixels whose contacts and intensity sums ``case`` holds already."""
    sizes = contacts._contacts_found[case.superpixels][0]
    summed = ~np.isnan(case.appearance._sums[:, 0])
    return np.flatnonzero((sizes >= 0) & summed)


def test_a_new_case_prepares_every_superpixel_for_strokes_in_the_background(tmp_path):
    case = open_case([phantom(1, "t1"), phantom(2, "flair")], tmp_path)
    cases._PREPARING.submit(lambda: None).result()  # one worker: the preparation ran before
    assert prepared_ids(case).tolist() == list(range(1, case.superpixels.count + 1))
    expected = superpixel_contacts(case.superpixels, np.arange(1, case.superpixels.count + 1))
    prepare_strokes(case)  # found once: asking again changes nothing
    after = superpixel_contacts(case.superpixels, np.arange(1, case.superpixels.count + 1))
    for before, now in zip(expected, after, strict=True):
        np.testing.assert_array_equal(before, now)


def test_a_case_dropped_before_its_preparation_is_not_prepared(tmp_path):
    release = threading.Event()
    cases._PREPARING.submit(release.wait)  # holds the worker until the case is dropped
    case = open_case([phantom(3)], tmp_path)
    reference = weakref.ref(case)
    del case
    gc.collect()
    release.set()
    assert reference() is None


def test_a_forked_process_prepares_the_cases_it_inherits_unprepared(tmp_path):
    release = threading.Event()
    cases._PREPARING.submit(release.wait)  # the parent prepares nothing before the fork
    case = open_case([phantom(4)], tmp_path)
    child = os.fork()
    if child == 0:
        signal.alarm(60)  # a child whose preparation never runs fails instead of hanging
        prepared = False
        try:
            cases._PREPARING.submit(lambda: None).result()
            prepared = prepared_ids(case).size == case.superpixels.count
        finally:
            os._exit(0 if prepared else 1)
    release.set()
    assert os.waitstatus_to_exitcode(os.waitpid(child, 0)[1]) == 0
