"""The label store: every saved version of each case's labels, who saved it and when,
whether the case is done, and who is editing it.

Metadata lives in a database (:mod:`.database`): SQLite in the labels folder by default, or
PostgreSQL when several hosts serve one dataset; they then share the labels folder and the
database, one database per labels folder. Label files are NIfTI files written by the caller.

How a save survives a crash, and never overwrites another one:

1. One transaction compares its base with the latest version (a save based on an older
   version is refused, :class:`VersionConflict`, before anything is written), checks the
   case's lock (:class:`CaseLocked` when another user holds it; the saving user's lock is
   taken or renewed) and commits a *save in progress* row naming the new file. That commit
   does not wait for the disk: the row only keeps a concurrent check away from the file,
   and after a power failure no save is live (a file whose row was lost counts as never
   acknowledged); step 3 flushes it with the version.
2. ``write(path)`` writes the file under a temporary name in ``versions/<case>/``; it is
   flushed to the disk (``fsync``), renamed to its own unique name
   (``v0004-<random hex>.nii.gz``) and the folder is flushed too.
3. One transaction deletes the save in progress and inserts the version (its number is the
   base's plus one, unique per case), if the base is still the latest. Another save that got
   there first makes it fail: :class:`VersionConflict`, and the new file is removed. The save
   is acknowledged (:meth:`LabelStore.save` returns) only once this commit has returned.
4. The latest copy, ``<case>_segmentation.nii.gz``, is replaced at once (a copy in the same
   folder, ``os.replace``) by the latest version's file, then the latest version is read
   again and copied anew if it changed, so that saves finishing together leave the latest
   one. The copy is not flushed to the disk: it derives from a version that is, and the
   start-up check rewrites it after a power failure.

A refused annotation is not stored: the caller keeps it (the web layer, in the browser) and
may save it again on top of the latest version. After a crash, :meth:`LabelStore.check`
removes temporary files and files of saves never acknowledged, and rewrites latest copies
(:mod:`.repair`). A check running beside live saves (another host starting) leaves their
files alone; a save it takes for abandoned fails rather than being acknowledged without a
file, since only one of the save and the check can delete its save in progress.

Locks say who is editing a case: they are rows, so they hold across processes and hosts.
A save that asks for the lock (``lock_seconds``) is refused while another user holds it;
between saves of one user, version numbers keep tabs apart. Lock expiry and abandoned
saves are judged by each host's clock (in UTC): hosts that share a database keep their
clocks synchronised.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import TypeVar

from sqlalchemy import delete, insert, or_, select
from sqlalchemy.engine import URL, Connection, Row
from sqlalchemy.exc import IntegrityError

from .database import (
    FINISH_SAVE,
    INSERT_VERSION,
    LATEST_VERSION,
    LOCK_HOLDER,
    START_SAVE,
    Database,
    StoreError,
    latest_versions,
    locks,
    versions,
)
from .files import (
    VERSIONS_FOLDER,
    check_case_name,
    make_folder,
    remove_version_file,
    version_file_name,
    write_durably,
)
from .records import CaseLocked, CaseSummary, Lock, Version, VersionConflict
from .repair import check_store, latest_copy_path, refresh_latest_copy, version_path

DATABASE_FILE = "annotations.sqlite"
LOCK_RENEWED_AFTER = 60
"""A save renews its user's lock once the lock is this many seconds old."""
MAX_LOCK_TRIES = 5
NAMES_PER_QUERY = 1000
""":meth:`LabelStore.summaries` asks for this many cases at most in one query."""

logger = logging.getLogger(__name__)
T = TypeVar("T")


class LabelStore:
    """Saved versions and locks of a dataset's cases.

    Parameters
    ----------
    labels_dir : Path
        Where label files go (created if missing): latest copies at the top, every version in
        ``versions/<case>/``.
    database_url : str, optional
        An SQLAlchemy URL (``postgresql+psycopg://user@host/name``); default
        ``sqlite:///<labels_dir>/annotations.sqlite``. The tables are created if missing.

    Raises
    ------
    StoreError
        When the database cannot be reached or the URL is not usable; one line, without the
        password.
    """

    def __init__(self, labels_dir: Path, database_url: str | None = None) -> None:
        self.labels_dir = Path(labels_dir)
        make_folder(self.labels_dir / VERSIONS_FOLDER)
        default = URL.create("sqlite", database=str((self.labels_dir / DATABASE_FILE).resolve()))
        self._database = Database(database_url or default)

    def save(
        self,
        case: str,
        write: Callable[[Path], None],
        *,
        user: str,
        base_version: int | None,
        labelled_voxels: int,
        labelled_ml: float,
        done: bool = False,
        lock_seconds: float | None = None,
    ) -> Version:
        """Save a new version of ``case``, based on version ``base_version`` (``None``: the
        case has no version yet).

        Parameters
        ----------
        write : callable
            ``write(path)`` writes the label file at ``path`` (ending in ``.nii.gz``).
        user : str
            Who saves.
        base_version : int or None
            The version the labels were edited from.
        labelled_voxels, labelled_ml
            The labels' size, for the case list.
        done : bool
            Whether the user marks the case done.
        lock_seconds : float, optional
            Also hold the case for ``user`` this long (see :meth:`lock`), renewing their lock
            once it is :data:`LOCK_RENEWED_AFTER` seconds old.

        Returns
        -------
        Version
            The version saved, once it is durably stored.

        Raises
        ------
        VersionConflict
            When ``base_version`` is not the latest version; nothing is stored.
        CaseLocked
            When another user holds the case; nothing is stored.
        StoreError
            When the database cannot be written, or a check took the save for an abandoned
            one; nothing is stored.
        OSError
            When the file cannot be written (or ``write`` raises it); nothing is stored.
        ValueError
            When the case or user name is not allowed.
        """
        check_case_name(case)
        _check_user(user)
        file_name = version_file_name((base_version or 0) + 1)
        self._start_save(case, file_name, base_version, user, lock_seconds)
        try:
            write_durably(self.labels_dir / VERSIONS_FOLDER / case, file_name, write)
            saved = self._commit_version(
                case, file_name, user, base_version, labelled_voxels, labelled_ml, done
            )
        except BaseException:
            self._abandon_save(case, file_name)
            raise
        try:
            refresh_latest_copy(self._database, self.labels_dir, case, (saved.number, file_name))
        except (OSError, StoreError) as error:
            logger.warning("%s: the latest copy was not updated (check() will): %s", case, error)
        return saved

    def versions(self, case: str) -> list[Version]:
        """Every version of ``case``, newest first."""
        query = select(versions).where(versions.c.case_name == check_case_name(case))
        with self._database.transaction() as connection:
            rows = connection.execute(query.order_by(versions.c.number.desc())).all()
        return [self._version(row) for row in rows]

    def version(self, case: str, number: int) -> Version:
        """Version ``number`` of ``case``.

        Raises
        ------
        KeyError
            When the case has no such version.
        """
        query = select(versions).where(
            versions.c.case_name == check_case_name(case), versions.c.number == number
        )
        with self._database.transaction() as connection:
            row = connection.execute(query).first()
        if row is None:
            raise KeyError(f"{case}: no version {number}")
        return self._version(row)

    def latest(self, case: str) -> Version | None:
        """The latest version of ``case``; ``None`` when it has none."""
        with self._database.transaction() as connection:
            return self._latest_in(connection, check_case_name(case))

    def summaries(self, cases: Sequence[str]) -> list[CaseSummary]:
        """The case list: a summary per name of ``cases``, in that order, read in one query
        (per thousand names)."""
        names = [check_case_name(case) for case in cases]
        latest = {}
        with self._database.transaction() as connection:
            for start in range(0, len(names), NAMES_PER_QUERY):
                query = latest_versions(names[start : start + NAMES_PER_QUERY])
                latest.update((row.case_name, row) for row in connection.execute(query))
        return [_summary(name, latest.get(name)) for name in names]

    def latest_path(self, case: str) -> Path:
        """The copy of ``case``'s latest version: ``<labels_dir>/<case>_segmentation.nii.gz``."""
        return latest_copy_path(self.labels_dir, case)

    def lock(self, case: str, user: str, *, seconds: float = 300) -> Lock:
        """Take ``case`` for ``user`` for ``seconds``, or extend their lock.

        Raises
        ------
        CaseLocked
            When another user holds a lock that has not expired.
        """
        check_case_name(case)
        _check_user(user)
        if not seconds > 0:
            raise ValueError(f"a lock for {seconds} seconds")
        return self._locking(
            case, user, lambda connection, now: _take_lock(connection, case, user, now, seconds)
        )

    def unlock(self, case: str, user: str) -> None:
        """Release ``user``'s lock on ``case``, if they hold one."""
        query = delete(locks).where(
            locks.c.case_name == check_case_name(case), locks.c.user_name == user
        )
        with self._database.transaction() as connection:
            connection.execute(query)

    def unlock_others(self, user: str, case: str) -> None:
        """Release ``user``'s locks on every case but ``case``: a user edits one case at a
        time, so leaving a case frees it for the others at once."""
        query = delete(locks).where(
            locks.c.user_name == user, locks.c.case_name != check_case_name(case)
        )
        with self._database.transaction() as connection:
            connection.execute(query)

    def holder(self, case: str) -> Lock | None:
        """The lock on ``case`` that has not expired, if any."""
        now = datetime.now(timezone.utc)
        with self._database.transaction() as connection:
            return _holder_in(connection, check_case_name(case), now)

    def check(self) -> list[str]:
        """The start-up check: remove temporary files and files of saves never acknowledged,
        report versions whose file is missing, rewrite latest copies that differ from their
        latest version. It reads only the labels folder and ``versions/*/``.

        Returns
        -------
        list of str
            One line per difference found or repaired.
        """
        return check_store(self._database, self.labels_dir)

    def close(self) -> None:
        """Close the database connections."""
        self._database.close()

    def _start_save(
        self, case: str, file_name: str, base: int | None, user: str, lock_seconds: float | None
    ) -> None:
        """Commit the save in progress of ``file_name``, if ``base`` is the latest version and
        no other user holds the case; take or renew ``user``'s lock for ``lock_seconds``.

        The commit is not flushed to the disk: the row only keeps a check of another process
        away from the save's file, and after a power failure no save is live (a file whose
        row is lost counts as never acknowledged). The version's commit flushes both.
        """
        row = {
            "case_name": case,
            "file_name": file_name,
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "started_at": datetime.now(timezone.utc),
        }

        def start(connection: Connection, now: datetime) -> None:
            holder = _holder_in(connection, case, now)
            if holder is not None and holder.user != user:
                raise CaseLocked(holder)
            latest = self._latest_in(connection, case)
            if _number(latest) != base:
                raise VersionConflict(case, base, latest)
            renew_before = now + timedelta(seconds=(lock_seconds or 0) - LOCK_RENEWED_AFTER)
            if lock_seconds is not None and (holder is None or holder.expires_at < renew_before):
                _take_lock(connection, case, user, now, lock_seconds)
            connection.execute(START_SAVE, row)

        self._locking(case, user, start, durable=False)

    def _locking(
        self,
        case: str,
        user: str,
        work: Callable[[Connection, datetime], T],
        *,
        durable: bool = True,
    ) -> T:
        """``work(connection, now)`` in a transaction that may take ``case``'s lock for
        ``user``; when another process took the lock first (PostgreSQL then refuses the
        row), it runs again, or raises :class:`CaseLocked` if the lock is another user's."""
        for _ in range(MAX_LOCK_TRIES):
            try:
                with self._database.transaction(durable=durable) as connection:
                    return work(connection, datetime.now(timezone.utc))
            except IntegrityError:
                holder = self.holder(case)
            if holder is not None and holder.user != user:
                raise CaseLocked(holder)
        raise StoreError(f"{case}: the lock kept changing hands, try again")

    def _commit_version(
        self,
        case: str,
        file_name: str,
        user: str,
        base: int | None,
        labelled_voxels: int,
        labelled_ml: float,
        done: bool,
    ) -> Version:
        row = {
            "case_name": case,
            "number": (base or 0) + 1,
            "user_name": user,
            "saved_at": datetime.now(timezone.utc),
            "done": bool(done),
            "labelled_voxels": int(labelled_voxels),
            "labelled_ml": float(labelled_ml),
            "file_name": file_name,
        }
        try:
            with self._database.transaction() as connection:
                if not connection.execute(FINISH_SAVE, {"case": case, "file": file_name}).rowcount:
                    # No row names the file, nor ever will: it is this save's to remove.
                    remove_version_file(self.labels_dir / VERSIONS_FOLDER / case, file_name)
                    raise StoreError(
                        f"{case}: the save was cancelled: a check took it for an abandoned one"
                    )
                latest = self._latest_in(connection, case)
                if _number(latest) != base:
                    raise VersionConflict(case, base, latest)
                connection.execute(INSERT_VERSION, row)
        except IntegrityError:
            raise VersionConflict(case, base, self.latest(case)) from None
        return self._version(row)

    def _abandon_save(self, case: str, file_name: str) -> None:
        """Remove the files of a save that failed, unless its fate is unknown (the database
        could not be reached): then the next check does."""
        try:
            with self._database.transaction() as connection:
                claimed = connection.execute(
                    FINISH_SAVE, {"case": case, "file": file_name}
                ).rowcount
        except StoreError as error:
            logger.warning("%s: %s left for check(): %s", case, file_name, error)
            return
        if claimed:
            remove_version_file(self.labels_dir / VERSIONS_FOLDER / case, file_name)

    def _latest_in(self, connection: Connection, case: str) -> Version | None:
        row = connection.execute(LATEST_VERSION, {"case": case}).first()
        return None if row is None else self._version(row)

    def _version(self, row: Row | dict) -> Version:
        values = row if isinstance(row, dict) else row._mapping
        return Version(
            case=values["case_name"],
            number=values["number"],
            user=values["user_name"],
            saved_at=values["saved_at"],
            done=values["done"],
            labelled_voxels=values["labelled_voxels"],
            labelled_ml=values["labelled_ml"],
            path=version_path(self.labels_dir, values["case_name"], values["file_name"]),
        )


def _holder_in(connection: Connection, case: str, now: datetime) -> Lock | None:
    row = connection.execute(LOCK_HOLDER, {"case": case, "now": now}).first()
    return None if row is None else Lock(row.case_name, row.user_name, row.expires_at)


def _take_lock(connection: Connection, case: str, user: str, now: datetime, seconds: float) -> Lock:
    """Replace an expired lock on ``case``, or ``user``'s own, by ``user``'s for ``seconds``;
    a lock of another user that has not expired makes the insert fail."""
    lock = Lock(case, user, now + timedelta(seconds=seconds))
    connection.execute(
        delete(locks).where(
            locks.c.case_name == case, or_(locks.c.expires_at <= now, locks.c.user_name == user)
        )
    )
    connection.execute(
        insert(locks).values(case_name=case, user_name=user, expires_at=lock.expires_at)
    )
    return lock


def _summary(name: str, latest: Row | None) -> CaseSummary:
    if latest is None:
        return CaseSummary(name, "new", None, None, None, None)
    status = "done" if latest.done else "in progress"
    return CaseSummary(
        name, status, latest.number, latest.user_name, latest.saved_at, latest.labelled_ml
    )


def _number(version: Version | None) -> int | None:
    return None if version is None else version.number


def _check_user(user: str) -> None:
    if not isinstance(user, str) or not user.strip():
        raise ValueError(f"user {user!r}: empty")
