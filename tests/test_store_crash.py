"""Saves killed (SIGKILL) at any moment lose nothing that was acknowledged, and leave
nothing a check does not clear, on SQLite and on PostgreSQL.

This module, run as a script, forks a process for each round (after its imports, before
opening the store) that saves versions of two cases in a loop, writing real NIfTI files of
a few MB, and reports each step on its standard output: ``writing`` when its file starts
to be written, ``written`` when the file is complete (before the database commit),
``acked`` once the save has returned. The test kills it on a chosen report, a different
one each round, then opens the store anew, runs the check and compares everything with
what was acknowledged. The labels of each version are a function of the case and the
version number, so every file can be checked to the voxel.
"""

from __future__ import annotations

import itertools
import os
import select
import signal
import subprocess
import sys
import time
import traceback
from pathlib import Path

import nibabel as nib
import numpy as np
import psycopg  # noqa: F401 (imported once, before the script forks its rounds)

from superpixel_annotator.store import LabelStore

SOURCE = Path(__file__).resolve().parents[1] / "src"
CASES = ("alpha", "beta")
SHAPE = (128, 128, 96)
KILL_ON = [
    ("writing", 1, 0),
    ("written", 1, 0),
    ("acked", 1, 0),
    ("writing", 3, 0.02),
    ("written", 2, 0.005),
    ("acked", 2, 0.05),
    ("written", 3, 0.01),
    ("written", 2, 0.003),
]
"""Each round's kill: on the n-th report of that step, after that many seconds (so that it
lands in the write, the renaming, the commit, the latest copy...)."""
REPORT_TIMEOUT_S = 60
DATABASE_FILES = {"annotations.sqlite", "annotations.sqlite-wal", "annotations.sqlite-shm"}


def expected_labels(case: str, number: int) -> np.ndarray:
    """The labels version ``number`` of ``case`` holds."""
    return np.random.default_rng([CASES.index(case), number]).integers(0, 6, SHAPE, np.uint8)


def report(line: str) -> None:
    """Write ``line`` to the standard output in one system call: a kill never leaves half a
    line."""
    os.write(sys.stdout.fileno(), f"{line}\n".encode())


def save_until_killed(labels_dir: Path, database_url: str | None) -> None:
    """A round's process: save versions of each case in turn, reporting each step."""
    report(f"pid {os.getpid()}")
    store = LabelStore(labels_dir, database_url)
    for index in itertools.count():
        case = CASES[index % len(CASES)]
        latest = store.latest(case)
        base = None if latest is None else latest.number
        number = (base or 0) + 1
        labels = expected_labels(case, number)
        image = nib.Nifti1Image(labels, np.eye(4))

        def write(path: Path, image=image, step=f"{case} {number}") -> None:
            report(f"writing {step}")
            nib.save(image, path)
            report(f"written {step}")

        store.save(
            case,
            write,
            user="crash test",
            base_version=base,
            labelled_voxels=int(np.count_nonzero(labels)),
            labelled_ml=np.count_nonzero(labels) / 1000,
        )
        report(f"acked {case} {number}")


def fork_rounds(labels_dir: Path, database_url: str | None) -> None:
    """The script: for each line read, fork a process that saves until it is killed, wait
    for it to end, and say so."""
    for _ in sys.stdin:
        pid = os.fork()
        if pid == 0:
            try:
                save_until_killed(labels_dir, database_url)
            finally:
                traceback.print_exc()
                os._exit(1)
        os.waitpid(pid, 0)
        report("ended")


class Rounds:
    """The script's process, for the test; it fails when a report is over a minute late."""

    def __init__(self, labels_dir: Path, database_url: str | None, errors: Path) -> None:
        self.errors = errors
        self.script = subprocess.Popen(
            [sys.executable, __file__, str(labels_dir), database_url or ""],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=errors.open("w"),
            env={**os.environ, "PYTHONPATH": str(SOURCE)},
        )
        self.pending = b""
        self.running = None

    def run_and_kill(self, step: str, count: int, delay: float) -> list[str]:
        """Start a round, kill its process ``delay`` seconds after its ``count``-th ``step``
        report; the reports it made."""
        self.script.stdin.write(b"round\n")
        self.script.stdin.flush()
        reports, seen = [], 0
        while seen < count:
            report = self._read()
            assert report != "ended", self.errors.read_text()
            if report.startswith("pid "):
                self.running = int(report.split()[1])
                continue
            reports.append(report)
            seen += report.startswith(step + " ")
        time.sleep(delay)
        os.kill(self.running, signal.SIGKILL)
        while (report := self._read()) != "ended":
            reports.append(report)
        self.running = None
        return reports

    def close(self) -> None:
        """End the script, and a round's process the test left running."""
        if self.running is not None:
            os.kill(self.running, signal.SIGKILL)
        self.script.stdin.close()
        try:
            self.script.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.script.kill()
            self.script.wait()

    def _read(self) -> str:
        output = self.script.stdout.fileno()
        while b"\n" not in self.pending:
            ready, _, _ = select.select([output], [], [], REPORT_TIMEOUT_S)
            assert ready, f"no report for {REPORT_TIMEOUT_S} s: {self.errors.read_text()}"
            chunk = os.read(output, 1 << 16)
            assert chunk, self.errors.read_text()
            self.pending += chunk
        line, self.pending = self.pending.split(b"\n", 1)
        return line.decode()


def leftovers(labels_dir: Path) -> list[str]:
    """Temporary files in the labels folder and its versions folders."""
    folders = [labels_dir, *(labels_dir / "versions").iterdir()]
    return [p.name for folder in folders for p in folder.iterdir() if p.name.startswith(".")]


def assert_consistent(store: LabelStore, labels_dir: Path, acknowledged: set) -> set:
    """Every acknowledged version is there with its labels, every file has a version and
    every version a file, the latest copies are the latest versions, nothing else is left;
    the (case, number) of every version."""
    saved = set()
    for case in CASES:
        versions = store.versions(case)
        assert [v.number for v in versions] == list(range(len(versions), 0, -1))
        for version in versions:
            labels = np.asarray(nib.load(version.path).dataobj)
            assert np.array_equal(labels, expected_labels(case, version.number))
            saved.add((case, version.number))
        folder = labels_dir / "versions" / case
        files = {path.name for path in folder.iterdir()} if folder.exists() else set()
        assert files == {version.path.name for version in versions}
        if versions:
            latest_copy = store.latest_path(case).read_bytes()
            assert latest_copy == versions[0].path.read_bytes()
    assert acknowledged <= saved
    assert leftovers(labels_dir) == []
    latest_copies = {f"{case}_segmentation.nii.gz" for case in CASES}
    assert {p.name for p in labels_dir.iterdir()} <= {"versions", *latest_copies, *DATABASE_FILES}
    assert store.check() == []
    return saved


def test_saves_killed_at_any_moment_lose_nothing_acknowledged(tmp_path, database_url):
    labels_dir = tmp_path / "labels"
    acknowledged, saved = set(), set()
    landed = {"writing the file": 0, "copying the latest": 0, "after the commit": 0}
    rounds = Rounds(labels_dir, database_url, tmp_path / "errors.txt")
    try:
        for step, count, delay in KILL_ON:
            reports = [line.split() for line in rounds.run_and_kill(step, count, delay)]
            acknowledged |= {(case, int(n)) for event, case, n in reports if event == "acked"}
            left = leftovers(labels_dir)
            landed["writing the file"] += any(name.endswith(".tmp.nii.gz") for name in left)
            landed["copying the latest"] += any(name.endswith(".tmp") for name in left)
            store = LabelStore(labels_dir, database_url)
            try:
                store.check()
                unacknowledged = len(saved - acknowledged)
                saved = assert_consistent(store, labels_dir, acknowledged)
                landed["after the commit"] += len(saved - acknowledged) > unacknowledged
            finally:
                store.close()
    finally:
        rounds.close()
    assert len(acknowledged) >= len(KILL_ON)
    assert landed["writing the file"] >= 1, "no kill landed while a version file was written"
    print(f"{len(KILL_ON)} kills, {len(acknowledged)} saves acknowledged, kills {landed}")


if __name__ == "__main__":
    fork_rounds(Path(sys.argv[1]), sys.argv[2] or None)
