"""The dataset server killed with SIGKILL while saves are in flight: after a restart, every
save it acknowledged is on disk and in the database, and nothing half-written remains."""

import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
import requests
from test_dataset_feature import SIZE, write_case

from superpixel_annotator.core.annotation import Annotation
from superpixel_annotator.core.cases import open_case
from superpixel_annotator.core.datasets import find_dataset
from superpixel_annotator.core.image_files import Limits
from superpixel_annotator.core.palette import DEFAULT_LABELS
from superpixel_annotator.core.segmentation_io import read_segmentation
from superpixel_annotator.core.volume import load_modalities
from superpixel_annotator.store import LabelStore
from superpixel_annotator.store.workspace import DatasetWorkspace

ROUNDS = 3
SAVE_ROUTE = "_superpixel_annotator/annotator/save"


def start_server(dataset: Path, cache: Path, port: int) -> subprocess.Popen:
    """The console script on the dataset; returns once it serves."""
    process = subprocess.Popen(
        [sys.executable, "-m", "superpixel_annotator.cli", str(dataset), "--port", str(port)],
        env={**os.environ, "SUPERPIXEL_ANNOTATOR_CACHE": str(cache)},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    for line in process.stdout:
        if "Running on" in line:
            threading.Thread(target=process.stdout.read, daemon=True).start()
            return process
    raise RuntimeError(f"server exited with {process.wait()}")


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def dataset(tmp_path):
    root = tmp_path / "dataset"
    write_case(root / "case0", seed=0)
    return root


def states(case, count: int) -> list[str]:
    """``count`` different annotations of the case."""
    rng = np.random.default_rng(0)
    result = []
    for _ in range(count):
        annotation = Annotation(case.superpixels)
        labels = rng.integers(0, 3, case.superpixels.count + 1).astype(np.uint8)
        annotation.set_superpixel_labels(labels)
        result.append(annotation.to_state())
    return result


def save_until_killed(url, request, states_to_save, base, acked, stop) -> None:
    """Post saves one after the other, the first on version ``base``, each next one on the
    version the previous one made, until the server stops answering; ``acked`` gets
    (version, state index) of each save acknowledged."""
    for index, state in enumerate(states_to_save):
        if stop.is_set():
            return
        try:
            answer = requests.post(url, json={**request, "base": base, "state": state}, timeout=30)
        except requests.RequestException:
            return
        assert answer.status_code == 200, answer.text
        base = answer.json()["version"]
        acked.append((base, index))


def test_acknowledged_saves_survive_sigkill_of_the_server(dataset, tmp_path):
    cache = tmp_path / "cache"
    entry = find_dataset(dataset).case("case0")
    case = open_case(load_modalities(entry.modalities), cache, size=SIZE)
    store = LabelStore(dataset / "labels")
    workspace = DatasetWorkspace(find_dataset(dataset), store, DEFAULT_LABELS, Limits())
    request = {
        "name": "case0",
        "key": case.key,
        "token": workspace.case_token("case0", case.key),
        "done": False,
    }
    saved_states = states(case, 400)
    all_acked = []
    for round_number in range(ROUNDS):
        port = free_port()
        server = start_server(dataset, cache, port)
        acked, stop = [], threading.Event()
        latest = store.latest("case0")  # each round goes on from the versions saved before
        url = f"http://127.0.0.1:{port}/{SAVE_ROUTE}"
        saver = threading.Thread(
            target=save_until_killed,
            args=(url, request, saved_states, latest and latest.number, acked, stop),
        )
        saver.start()
        target = 3 + 2 * round_number
        while len(acked) < target and saver.is_alive():
            saver.join(0.01)
        os.kill(server.pid, signal.SIGKILL)
        server.wait()
        stop.set()
        saver.join()
        assert len(acked) >= target
        all_acked += acked

    restarted = start_server(dataset, cache, free_port())
    restarted.terminate()
    restarted.wait()
    versions = {version.number: version for version in store.versions("case0")}
    for number, index in all_acked:
        annotation = Annotation.from_state(
            case.superpixels, saved_states[index], appearance=case.appearance
        )
        saved = read_segmentation(versions[number].path, case.volume)
        np.testing.assert_array_equal(saved.labels, annotation.label_volume())
    assert sorted(versions) == list(range(1, len(versions) + 1))
    on_disk = sorted(p.name for p in (dataset / "labels" / "versions" / "case0").iterdir())
    assert on_disk == sorted(version.path.name for version in versions.values())
    assert store.check() == []
