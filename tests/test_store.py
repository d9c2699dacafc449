"""The label store on real databases: each test runs on SQLite (the default, a file in the
labels folder) and on a PostgreSQL server the session starts (``database_url``).

Run as a script, this module forks the processes of the concurrency test.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
import traceback
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from sqlalchemy import create_engine, event, update
from sqlalchemy.engine import Engine

from superpixel_annotator.store import (
    CaseLocked,
    LabelStore,
    StoreError,
    Version,
    VersionConflict,
)
from superpixel_annotator.store.database import Database, saves_in_progress

SOURCE = Path(__file__).resolve().parents[1] / "src"
RACING_PROCESSES = 4
FORKS_BESIDE_SAVES = 10
CHILD_SECONDS = 40


def writer(content: bytes) -> Callable[[Path], None]:
    """A ``write`` for :meth:`LabelStore.save`: the store treats files as bytes."""
    return lambda path: path.write_bytes(content)


def save(
    store: LabelStore, case: str, content: bytes, base: int | None, user="alice", done=False
) -> Version:
    return store.save(
        case,
        writer(content),
        user=user,
        base_version=base,
        labelled_voxels=len(content),
        labelled_ml=len(content) / 1000,
        done=done,
    )


@pytest.fixture
def labels_dir(tmp_path) -> Path:
    return tmp_path / "labels"


@pytest.fixture
def open_store(labels_dir, database_url):
    """Opens stores on the test's folder and database (as other processes would), and
    closes them at the end."""
    stores = []

    def open_one() -> LabelStore:
        stores.append(LabelStore(labels_dir, database_url))
        return stores[-1]

    yield open_one
    for store in stores:
        store.close()


@pytest.fixture
def store(open_store) -> LabelStore:
    return open_store()


def test_versions_are_numbered_and_listed_newest_first(store, labels_dir):
    before = datetime.now(timezone.utc)
    first = save(store, "case 1", b"first", None, user="alice")
    second = save(store, "case 1", b"second", 1, user="bob")
    third = save(store, "case 1", b"third", 2, user="alice")
    other = save(store, "case 2", b"other", None, user="carol")

    assert [v.number for v in (first, second, third, other)] == [1, 2, 3, 1]
    assert store.versions("case 1") == [third, second, first]
    assert [v.user for v in store.versions("case 1")] == ["alice", "bob", "alice"]
    assert store.version("case 1", 2) == second
    assert store.latest("case 1") == third
    assert store.latest("case 3") is None and store.versions("case 3") == []
    with pytest.raises(KeyError):
        store.version("case 1", 4)
    times = [v.saved_at for v in (first, second, third)]
    assert all(t.tzinfo is not None and t.utcoffset() == timedelta(0) for t in times)
    assert before <= times[0] <= times[1] <= times[2] <= datetime.now(timezone.utc)
    assert [v.path.read_bytes() for v in (first, second, third)] == [b"first", b"second", b"third"]
    assert all(v.path.parent == labels_dir / "versions" / "case 1" for v in (first, third))
    assert store.latest_path("case 1") == labels_dir / "case 1_segmentation.nii.gz"
    assert store.latest_path("case 1").read_bytes() == b"third"
    assert store.latest_path("case 2").read_bytes() == b"other"


def test_status_follows_the_latest_version(store):
    assert store.summaries(["a"])[0].status == "new"
    save(store, "a", b"1", None)
    assert store.summaries(["a"])[0].status == "in progress"
    done = save(store, "a", b"2", 1, user="bob", done=True)
    summary = store.summaries(["a"])[0]
    assert (summary.status, summary.version, summary.user) == ("done", 2, "bob")
    assert (summary.saved_at, summary.labelled_ml) == (done.saved_at, done.labelled_ml)
    save(store, "a", b"3", 2)
    assert store.summaries(["a"])[0].status == "in progress"


def test_summaries_of_many_cases_take_one_query(store):
    names = [f"case {i:03d}" for i in range(500)]
    for name in names[::50]:
        save(store, name, b"labels", None, done=name.endswith("00"))
    statements = []

    def record(connection, cursor, statement, *arguments) -> None:
        statements.append(statement)

    event.listen(Engine, "before_cursor_execute", record)
    try:
        summaries = store.summaries(names[::-1])
    finally:
        event.remove(Engine, "before_cursor_execute", record)

    assert [s.name for s in summaries] == names[::-1]
    assert len([s for s in statements if "versions" in s]) == 1
    statuses = {s.name: s.status for s in summaries}
    assert statuses["case 000"] == statuses["case 100"] == "done"
    assert statuses["case 050"] == "in progress" and statuses["case 001"] == "new"
    assert sum(s.version is None for s in summaries) == 490


def test_a_save_on_a_stale_base_is_refused_and_stores_nothing(store, labels_dir):
    save(store, "a", b"alice 1", None, user="alice")
    written = []
    with pytest.raises(VersionConflict) as refused:
        store.save(
            "a", written.append, user="bob", base_version=None, labelled_voxels=0, labelled_ml=0
        )
    assert refused.value.latest == store.latest("a") and refused.value.latest.user == "alice"
    assert written == []  # refused before anything is written
    assert "\n" not in str(refused.value) and "version 1" in str(refused.value)

    with pytest.raises(VersionConflict) as unknown:
        save(store, "b", b"", 3)
    assert unknown.value.latest is None

    # Bob's save starts on the latest version, but Carol's lands while his file is written.
    def write_while_carol_saves(path: Path) -> None:
        path.write_bytes(b"bob 2")
        save(store, "a", b"carol 2", 1, user="carol")

    with pytest.raises(VersionConflict) as overtaken:
        store.save(
            "a",
            write_while_carol_saves,
            user="bob",
            base_version=1,
            labelled_voxels=0,
            labelled_ml=0,
        )
    assert (overtaken.value.latest.number, overtaken.value.latest.user) == (2, "carol")
    contents = sorted(path.read_bytes() for path in (labels_dir / "versions" / "a").iterdir())
    assert contents == [b"alice 1", b"carol 2"]
    assert store.latest_path("a").read_bytes() == b"carol 2"
    assert save(store, "a", b"bob 3", 2, user="bob").number == 3
    assert store.check() == []


def test_a_save_whose_file_cannot_be_written_stores_nothing(store, labels_dir):
    def fail_half_way(path: Path) -> None:
        path.write_bytes(b"half")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        store.save(
            "a", fail_half_way, user="alice", base_version=None, labelled_voxels=0, labelled_ml=0
        )
    assert store.versions("a") == [] and list((labels_dir / "versions" / "a").iterdir()) == []
    assert not store.latest_path("a").exists() and store.check() == []
    assert save(store, "a", b"whole", None).number == 1


def test_processes_saving_at_once_lose_nothing(labels_dir, database_url, open_store):
    """Processes open the store on a new database at once, save version 1 of one case
    (exactly one wins), try to lock a case (exactly one gets it), and save their own cases."""
    racing = subprocess.run(
        [sys.executable, __file__, str(labels_dir), database_url or "", str(RACING_PROCESSES)],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(SOURCE)},
        timeout=120,
    )
    assert racing.returncode == 0, racing.stderr
    results = {}
    for line in racing.stdout.splitlines():
        index, result = line.split(" ", 1)
        results.setdefault(int(index), []).append(result)

    losers = RACING_PROCESSES - 1
    assert sorted(saves for saves, _ in results.values()) == ["refused 1"] * losers + ["saved 1"]
    assert sorted(locks for _, locks in results.values()) == ["locked"] + ["refused"] * losers
    store = open_store()
    winner = next(index for index, result in results.items() if result[0] == "saved 1")
    assert [v.path.read_bytes() for v in store.versions("shared")] == [b"%d" % winner]
    for index in range(RACING_PROCESSES):
        own = store.versions(f"own {index}")
        assert [v.path.read_bytes() for v in own] == [b"%d-%d" % (index, s) for s in (2, 1, 0)]
    assert store.check() == []


def race(labels_dir: Path, database_url: str | None, processes: int) -> None:
    """The script of :func:`test_processes_saving_at_once_lose_nothing`: fork the racing
    processes once the modules are imported, so that they start together."""
    racers = []
    for index in range(processes):
        pid = os.fork()
        if pid == 0:
            try:
                race_once(labels_dir, database_url, index)
                os._exit(0)
            finally:
                traceback.print_exc()
                os._exit(1)
        racers.append(pid)
    sys.exit(sum(os.waitpid(pid, 0)[1] != 0 for pid in racers))


def report(line: str) -> None:
    """Write ``line`` to the standard output in one system call: lines of processes that
    share the output never mix."""
    os.write(sys.stdout.fileno(), f"{line}\n".encode())


def race_once(labels_dir: Path, database_url: str | None, index: int) -> None:
    """One racing process: report each result on a line of its own, after its index."""
    store = LabelStore(labels_dir, database_url)
    try:
        saved = save(store, "shared", b"%d" % index, None, user=f"user {index}")
        report(f"{index} saved {saved.number}")
    except VersionConflict as conflict:
        report(f"{index} refused {conflict.latest.number}")
    try:
        store.lock("locked", f"user {index}")
        report(f"{index} locked")
    except CaseLocked:
        report(f"{index} refused")
    base = None
    for step in range(3):
        base = save(store, f"own {index}", b"%d-%d" % (index, step), base).number
    store.close()


def test_a_store_opened_before_a_fork_serves_both_processes(store):
    """As in gunicorn, which loads the app (and checks the store) before forking workers."""
    save(store, "a", b"parent", None)
    pid = os.fork()
    if pid == 0:
        try:
            os._exit(0 if save(store, "a", b"child", 1).number == 2 else 1)
        finally:
            os._exit(1)
    assert os.waitpid(pid, 0)[1] == 0
    assert save(store, "a", b"parent again", 2).number == 3
    assert [v.path.read_bytes() for v in store.versions("a")] == [
        b"parent again",
        b"child",
        b"parent",
    ]


def test_a_fork_while_other_threads_save_leaves_both_processes_a_working_store(store):
    """As Dash's background jobs, forked from one serving thread while others save: the
    child must not inherit the parent's transactions in progress (with SQLite, their locks'
    bookkeeping: the child's save failed with "database is locked" or hung)."""
    stop = threading.Event()
    errors = []

    def keep_saving(case: str) -> None:
        base = None
        try:
            while not stop.is_set():
                base = save(store, case, b"parent", base).number
        except Exception as error:
            errors.append(error)

    threads = [threading.Thread(target=keep_saving, args=(f"busy {i}",)) for i in range(2)]
    for thread in threads:
        thread.start()
    try:
        for attempt in range(FORKS_BESIDE_SAVES):
            pid = os.fork()
            if pid == 0:
                signal.alarm(CHILD_SECONDS)  # a hung child ends, and fails the test
                code = 1
                try:
                    code = 0 if save(store, f"child {attempt}", b"child", None).number else 1
                finally:
                    os._exit(code)
            assert os.waitpid(pid, 0)[1] == 0, f"the child of fork {attempt} failed"
    finally:
        stop.set()
        for thread in threads:
            thread.join()
    assert errors == []
    children = [f"child {attempt}" for attempt in range(FORKS_BESIDE_SAVES)]
    assert [summary.version for summary in store.summaries(children)] == [1] * len(children)


def test_threads_sharing_a_store_lose_nothing(store):
    errors = []

    def save_case(case: str) -> None:
        try:
            for step in range(4):
                save(store, case, case.encode(), step or None)
        except Exception as error:
            errors.append(error)

    threads = [threading.Thread(target=save_case, args=(f"case {i}",)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert [s.version for s in store.summaries([f"case {i}" for i in range(4)])] == [4] * 4


def test_locks_are_held_across_stores_expire_and_are_renewed(open_store):
    store, other = open_store(), open_store()  # as two processes would
    lock = store.lock("a", "alice", seconds=60)
    assert other.holder("a") == lock
    with pytest.raises(CaseLocked) as refused:
        other.lock("a", "bob")
    assert refused.value.lock == lock and "alice" in str(refused.value)
    renewed = other.lock("a", "alice", seconds=120)
    assert renewed.expires_at > lock.expires_at and store.holder("a") == renewed
    store.unlock("a", "bob")
    assert store.holder("a") == renewed
    store.unlock("a", "alice")
    assert store.holder("a") is None
    assert other.lock("a", "bob").user == "bob"

    short = store.lock("b", "alice", seconds=0.2)
    time.sleep(max(0.0, (short.expires_at - datetime.now(timezone.utc)).total_seconds()) + 0.01)
    assert store.holder("b") is None
    assert other.lock("b", "bob").user == "bob"
    with pytest.raises(ValueError):
        store.lock("c", "alice", seconds=0)


def test_a_save_holds_the_case_for_its_user_and_renews_the_lock_once_a_minute_old(store):
    def save_holding(user: str, base: int | None) -> Version:
        return store.save(
            "a",
            writer(b"x"),
            user=user,
            base_version=base,
            labelled_voxels=1,
            labelled_ml=0.001,
            lock_seconds=300,
        )

    save_holding("alice", None)
    taken = store.holder("a")
    assert taken.user == "alice"
    assert timedelta(seconds=299) < taken.expires_at - datetime.now(timezone.utc)
    save_holding("alice", 1)
    assert store.holder("a") == taken  # less than a minute old: not written again
    with pytest.raises(CaseLocked) as refused:
        save_holding("bob", 2)
    assert refused.value.lock == taken and store.latest("a").number == 2
    # A lock a minute old is renewed by its holder's next save.
    store.lock("a", "alice", seconds=230)
    save_holding("alice", 2)
    assert store.holder("a").expires_at > taken.expires_at


def test_only_a_transaction_asked_not_to_be_durable_skips_the_flush(tmp_path, database_url):
    database = Database(database_url or f"sqlite:///{tmp_path / 'a.sqlite'}")
    setting = (
        "PRAGMA synchronous"
        if database.is_sqlite
        else "SELECT current_setting('synchronous_commit')"
    )
    try:
        with database.transaction(durable=False) as connection:
            relaxed = connection.exec_driver_sql(setting).scalar()
        with database.transaction() as connection:
            durable = connection.exec_driver_sql(setting).scalar()
    finally:
        database.close()
    # SQLite: 1 NORMAL, 2 FULL (the connection is reused from the pool).
    assert (relaxed, durable) in [(1, 2), ("off", "on")]


def test_check_repairs_what_interrupted_saves_left(store, labels_dir):
    first = save(store, "a", b"a1", None)
    latest = save(store, "a", b"a2", 1)
    save(store, "b", b"b1", None)
    folder = labels_dir / "versions" / "a"
    (folder / ".v0003-0123456789abcdef.tmp.nii.gz").write_bytes(b"half written")
    (folder / "v0003-0123456789abcdef.nii.gz").write_bytes(b"never committed")
    (labels_dir / ".a_segmentation.nii.gz.0123456789abcdef.tmp").write_bytes(b"half copied")
    (folder / "notes.txt").write_bytes(b"not the store's")
    (labels_dir / "notes.txt").write_bytes(b"not the store's")
    store.latest_path("a").write_bytes(b"changed by hand")
    store.latest_path("b").unlink()
    first.path.unlink()

    report = store.check()

    assert len(report) == 6 and all("\n" not in line for line in report)
    assert sum("removed" in line for line in report) == 3
    assert "a: version 1: its file is missing" in report
    assert {line for line in report if "rewritten" in line} == {
        "a: latest copy rewritten from version 2",
        "b: latest copy rewritten from version 1",
    }
    assert sorted(path.name for path in folder.iterdir()) == ["notes.txt", latest.path.name]
    assert store.latest_path("a").read_bytes() == b"a2"
    assert store.latest_path("b").read_bytes() == b"b1"
    assert (labels_dir / "notes.txt").exists()
    assert store.check() == ["a: version 1: its file is missing"]


def test_a_check_beside_a_save_in_flight_leaves_it_alone(open_store):
    store, starting = open_store(), open_store()
    reports = []

    def write_while_another_process_starts(path: Path) -> None:
        path.write_bytes(b"labels")
        reports.append(starting.check())

    saved = store.save(
        "a",
        write_while_another_process_starts,
        user="alice",
        base_version=None,
        labelled_voxels=1,
        labelled_ml=0.001,
    )
    assert reports == [[]]
    assert saved.path.read_bytes() == store.latest_path("a").read_bytes() == b"labels"
    assert store.check() == []


def test_a_save_a_check_took_for_abandoned_is_not_acknowledged(
    open_store, labels_dir, database_url
):
    store, starting = open_store(), open_store()
    engine = create_engine(database_url or f"sqlite:///{labels_dir / 'annotations.sqlite'}")
    reports = []

    def write_after_a_long_pause(path: Path) -> None:
        with engine.begin() as connection:
            long_ago = datetime.now(timezone.utc) - timedelta(days=1)
            connection.execute(update(saves_in_progress).values(started_at=long_ago))
        reports.append(starting.check())
        path.write_bytes(b"too late")

    with pytest.raises(StoreError, match="cancelled"):
        store.save(
            "a",
            write_after_a_long_pause,
            user="alice",
            base_version=None,
            labelled_voxels=1,
            labelled_ml=0.001,
        )
    engine.dispose()
    assert len(reports) == 1 and len(reports[0]) == 1 and "interrupted" in reports[0][0]
    assert store.versions("a") == [] and list((labels_dir / "versions" / "a").iterdir()) == []
    assert store.check() == []


BAD_NAMES = ["", ".", "..", "../etc", "a/b", "a\\b", "a\0b", "a..b", "x" * 201]


@pytest.mark.parametrize("name", BAD_NAMES)
def test_case_names_cannot_leave_the_labels_folder(tmp_path, name):
    store = LabelStore(tmp_path)
    calls = [
        lambda: save(store, name, b"", None),
        lambda: store.versions(name),
        lambda: store.latest(name),
        lambda: store.summaries(["a", name]),
        lambda: store.latest_path(name),
        lambda: store.lock(name, "alice"),
    ]
    for call in calls:
        with pytest.raises(ValueError):
            call()
    store.close()
    written = {path.name for path in tmp_path.iterdir()} - {"annotations.sqlite", "versions"}
    assert written == set() and list((tmp_path / "versions").iterdir()) == []


def test_long_and_unusual_case_names_are_kept_inside_the_folder(tmp_path):
    store = LabelStore(tmp_path)
    for name in ["x" * 200, "BraTS 2013 pat0001", "patient-ü.1", ".hidden"]:
        version = save(store, name, name.encode(), None)
        assert version.path.parent.parent == tmp_path / "versions"
        assert store.latest_path(name).parent == tmp_path
        assert store.latest_path(name).read_bytes() == name.encode()
    assert store.check() == []
    store.close()


def assert_one_line_without(error: StoreError, secret: str) -> None:
    text = "".join(traceback.format_exception(error))
    assert "\n" not in str(error) and secret not in text


def test_an_unreachable_database_is_a_one_line_error_without_the_password(tmp_path):
    with socket.socket() as probe:  # a port where nothing listens
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    url = f"postgresql+psycopg://alice:s3cret-pw@127.0.0.1:{port}/labels"
    with pytest.raises(StoreError) as unreachable:
        LabelStore(tmp_path, url)
    assert_one_line_without(unreachable.value, "s3cret-pw")
    assert f"alice:***@127.0.0.1:{port}/labels" in str(unreachable.value)


@pytest.mark.parametrize(
    "url",
    [
        "not a url",
        "postgresql+psycopg://alice:s3cret-pw@host:port/labels",
        "mysql://alice:s3cret-pw@localhost/labels",
        "postgresql+nodriver://alice:s3cret-pw@localhost/labels",
        "sqlite:////nonexistent/folder/labels.sqlite",
    ],
)
def test_bad_urls_are_one_line_errors_without_the_password(tmp_path, url):
    with pytest.raises(StoreError) as bad:
        LabelStore(tmp_path, url)
    assert_one_line_without(bad.value, "s3cret-pw")


def test_a_missing_postgresql_database_is_a_store_error(tmp_path, postgres_server):
    with pytest.raises(StoreError, match='"missing" does not exist'):
        LabelStore(tmp_path, postgres_server.url("missing"))


if __name__ == "__main__":
    race(Path(sys.argv[1]), sys.argv[2] or None, int(sys.argv[3]))
