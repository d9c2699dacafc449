"""The label store's database: its tables, and an engine with the settings the store relies
on, through SQLAlchemy Core (one code path for SQLite and PostgreSQL).

- **SQLite** (one host): the WAL journal and ``synchronous=FULL`` (a committed transaction
  survives a power cut), a busy timeout so that processes wait for each other instead of
  failing, and every transaction opened with ``BEGIN IMMEDIATE``: it takes the write lock at
  once, so a transaction that reads and then writes never fails half-way.
- **PostgreSQL** (``postgresql+psycopg://...``, several hosts): its default durability; a
  connection timeout, and connections checked before use, so that a restarted server is
  reconnected to.

Times are stored in UTC and read back timezone-aware. Connections are never shared with a
forked child (gunicorn forks its workers after loading the app; Dash forks background jobs
from a serving thread while others may be saving): see :class:`_ForkBarrier`.
"""

from __future__ import annotations

import os
import threading
import weakref
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, nullcontext
from datetime import datetime, timezone

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Float,
    Integer,
    MetaData,
    String,
    Table,
    TypeDecorator,
    and_,
    bindparam,
    create_engine,
    delete,
    event,
    func,
    insert,
    make_url,
    select,
)
from sqlalchemy.engine import URL, Connection, Engine
from sqlalchemy.exc import (
    IntegrityError,
    ProgrammingError,
    SQLAlchemyError,
)
from sqlalchemy.sql import Select

MAX_CASE_NAME_LENGTH = 200
SQLITE_BUSY_TIMEOUT_MS = 30_000
POSTGRESQL_CONNECT_TIMEOUT_S = 10
SUPPORTED_BACKENDS = ("sqlite", "postgresql")


class StoreError(RuntimeError):
    """The label store cannot do its work: an unreachable database, a bad URL, a save that
    was cancelled... The message is one line and names no password."""


class UTCDateTime(TypeDecorator):
    """A point in time, stored in UTC (PostgreSQL ``timestamptz``; text in SQLite, which
    keeps no time zone) and read back timezone-aware in UTC."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: object) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"{value}: a time without a time zone")
        return value.astimezone(timezone.utc)

    def process_result_value(self, value: datetime | None, dialect: object) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=timezone.utc)
        return value.astimezone(timezone.utc)


metadata = MetaData()

versions = Table(
    "versions",
    metadata,
    Column("case_name", String(MAX_CASE_NAME_LENGTH), primary_key=True),
    Column("number", Integer, primary_key=True, autoincrement=False),
    Column("user_name", String, nullable=False),
    Column("saved_at", UTCDateTime, nullable=False),
    Column("done", Boolean, nullable=False),
    Column("labelled_voxels", BigInteger, nullable=False),
    Column("labelled_ml", Float, nullable=False),
    Column("file_name", String, nullable=False),
)
"""One row per acknowledged version; its file is ``versions/<case_name>/<file_name>``."""

locks = Table(
    "locks",
    metadata,
    Column("case_name", String(MAX_CASE_NAME_LENGTH), primary_key=True),
    Column("user_name", String, nullable=False),
    Column("expires_at", UTCDateTime, nullable=False),
)
"""Who is editing a case, until when."""

saves_in_progress = Table(
    "saves_in_progress",
    metadata,
    Column("case_name", String(MAX_CASE_NAME_LENGTH), primary_key=True),
    Column("file_name", String, primary_key=True),
    Column("host", String, nullable=False),
    Column("pid", Integer, nullable=False),
    Column("started_at", UTCDateTime, nullable=False),
)
"""A version file being written, committed before the file is created. The save's own
transaction deletes the row as it inserts the version; a check deletes it (claims it) before
removing the files of an abandoned save. Whichever deletes it first decides."""


def latest_versions(cases: Sequence[str] | None = None) -> Select:
    """A query of the latest version's row of each case in ``cases`` (default: every case)
    that has one."""
    latest = select(versions.c.case_name, func.max(versions.c.number).label("number"))
    if cases is not None:
        latest = latest.where(versions.c.case_name.in_(cases))
    latest = latest.group_by(versions.c.case_name).subquery()
    return select(versions).join(
        latest,
        and_(versions.c.case_name == latest.c.case_name, versions.c.number == latest.c.number),
    )


LATEST_VERSION = (
    select(versions)
    .where(versions.c.case_name == bindparam("case"))
    .order_by(versions.c.number.desc())
    .limit(1)
)
"""The latest version's row of one case (``{"case": name}`` given when executed). Built
once: a save reads it several times, and building a query costs about a millisecond."""

START_SAVE = insert(saves_in_progress)
"""Inserts a save in progress (a row's values given when executed)."""
FINISH_SAVE = delete(saves_in_progress).where(
    saves_in_progress.c.case_name == bindparam("case"),
    saves_in_progress.c.file_name == bindparam("file"),
)
"""Ends a save in progress, by its commit or by giving it up (``{"case", "file"}``)."""
INSERT_VERSION = insert(versions)
"""Inserts a version (a row's values given when executed)."""
TAKE_LOCK = insert(locks)
"""Inserts a lock (a row's values given when executed)."""

LOCK_HOLDER = select(locks).where(
    locks.c.case_name == bindparam("case"), locks.c.expires_at > bindparam("now")
)
"""The lock on one case that has not expired at ``now`` (``{"case": name, "now": time}``),
built once for the same reason: every save reads it."""


class Database:
    """The store's tables in the database at ``url``, created if missing.

    Parameters
    ----------
    url : str or URL
        An SQLAlchemy URL: ``sqlite:///<file>`` or ``postgresql+psycopg://user@host/name``.

    Raises
    ------
    StoreError
        When the URL is malformed or of another kind of database, its driver is missing, or
        the database cannot be reached.
    """

    def __init__(self, url: str | URL) -> None:
        self.url = _parse_url(url)
        self.engine = _create_engine(self.url)
        self._barrier = _FORK_BARRIER if self.is_sqlite else nullcontext()
        self._create_tables()

    @property
    def name(self) -> str:
        """The URL without its password."""
        return self.url.render_as_string(hide_password=True)

    @contextmanager
    def transaction(self, *, durable: bool = True) -> Iterator[Connection]:
        """A connection in a transaction, committed at the end of the ``with`` block and
        rolled back on an exception. A uniqueness violation is raised as SQLAlchemy's
        ``IntegrityError`` (the caller decides what it means); any other database error as a
        :class:`StoreError`.

        A transaction that is not ``durable`` is seen by every connection once committed,
        but its commit does not wait for the disk: a power failure may lose it, never a
        later durable commit (SQLite's ``synchronous = NORMAL``, PostgreSQL's
        ``synchronous_commit = off``)."""
        try:
            with self._barrier, self.engine.connect() as connection:
                with _synchronous(connection, durable), connection.begin():
                    if not durable and not self.is_sqlite:
                        connection.exec_driver_sql("SET LOCAL synchronous_commit = off")
                    yield connection
        except IntegrityError:
            raise
        except SQLAlchemyError as error:
            raise StoreError(self.describe(error)) from error

    @property
    def is_sqlite(self) -> bool:
        return self.url.get_backend_name() == "sqlite"

    def describe(self, error: BaseException) -> str:
        """One line naming the database and what went wrong, without the password."""
        text = " ".join(str(getattr(error, "orig", None) or error).split())
        if self.url.password:
            text = text.replace(str(self.url.password), "***")
        return f"database {self.name}: {text}"

    def close(self) -> None:
        """Close the engine's connections."""
        self.engine.dispose()

    def _create_tables(self) -> None:
        # Processes starting at once may each find a table missing and create it: SQLite
        # serialises them (BEGIN IMMEDIATE), PostgreSQL fails all but one, and the others'
        # next attempt finds the tables.
        for attempt in range(3):
            try:
                with self._barrier, self.engine.begin() as connection:
                    metadata.create_all(connection)
                return
            except (IntegrityError, ProgrammingError) as error:
                if attempt == 2:
                    self.close()
                    raise StoreError(self.describe(error)) from error
            except SQLAlchemyError as error:
                self.close()
                raise StoreError(self.describe(error)) from error


def _parse_url(url: str | URL) -> URL:
    try:
        parsed = make_url(url)
    except (ValueError, SQLAlchemyError):
        raise StoreError(
            "the database URL is malformed (expected sqlite:///<file> or "
            "postgresql+psycopg://<user>@<host>/<database>)"
        ) from None
    if parsed.get_backend_name() not in SUPPORTED_BACKENDS:
        raise StoreError(
            f"database {parsed.render_as_string(hide_password=True)}: "
            f"only {' and '.join(SUPPORTED_BACKENDS)} databases are supported"
        )
    return parsed


def _create_engine(url: URL) -> Engine:
    is_sqlite = url.get_backend_name() == "sqlite"
    connect_args = {} if is_sqlite else {"connect_timeout": POSTGRESQL_CONNECT_TIMEOUT_S}
    try:
        engine = create_engine(url, connect_args=connect_args, pool_pre_ping=not is_sqlite)
    except (ImportError, SQLAlchemyError) as error:
        name = url.render_as_string(hide_password=True)
        raise StoreError(f"database {name}: {' '.join(str(error).split())}") from None
    _FORK_BARRIER.engines.add(engine)
    if is_sqlite:
        _configure_sqlite(engine)
    return engine


class _ForkBarrier:
    """Keeps forks and the database connections of :attr:`engines` apart.

    - A child's pools start empty: the parent's connections are left there unclosed and
      unused (``dispose(close=False)``), since closing or even pinging one would disturb
      the parent's use of the same socket.
    - SQLite keeps its record of the process's locks in memory, which a fork copies: a
      child forked while a SQLite connection is open fails with "database is locked" or a
      disk I/O error, or hangs on a mutex a thread held. So a fork waits until no SQLite
      transaction is open (no new one starts while it waits) and closes the idle SQLite
      connections before it forks.
    """

    def __init__(self) -> None:
        self.engines: weakref.WeakSet[Engine] = weakref.WeakSet()
        self._condition = threading.Condition(threading.Lock())
        self._open = 0
        self._forks_waiting = 0
        os.register_at_fork(
            before=self._hold_for_fork,
            after_in_parent=self._release_after_fork,
            after_in_child=self._start_child,
        )

    def __enter__(self) -> None:
        with self._condition:
            self._condition.wait_for(lambda: not self._forks_waiting)
            self._open += 1

    def __exit__(self, *exception: object) -> None:
        with self._condition:
            self._open -= 1
            self._condition.notify_all()

    def _hold_for_fork(self) -> None:
        self._condition.acquire()
        self._forks_waiting += 1
        self._condition.wait_for(lambda: not self._open)
        for engine in list(self.engines):
            if engine.dialect.name == "sqlite":
                engine.dispose()

    def _release_after_fork(self) -> None:
        self._forks_waiting -= 1
        self._condition.notify_all()
        self._condition.release()

    def _start_child(self) -> None:
        for engine in list(self.engines):
            engine.dispose(close=False)
        self._release_after_fork()


_FORK_BARRIER = _ForkBarrier()


@contextmanager
def _synchronous(connection: Connection, durable: bool) -> Iterator[None]:
    """SQLite's commits of the block not flushed to the disk, unless ``durable``; the
    setting cannot change inside a transaction, so it is set on the driver's connection
    around it."""
    if durable or connection.dialect.name != "sqlite":
        yield
        return
    driver = connection.connection.driver_connection
    driver.execute("PRAGMA synchronous = NORMAL")
    try:
        yield
    finally:
        driver.execute("PRAGMA synchronous = FULL")


def _configure_sqlite(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def set_pragmas(dbapi_connection: object, record: object) -> None:
        # The driver's own implicit transactions off: SQLAlchemy's "begin" below opens them.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute(f"PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA journal_mode = WAL")
        cursor.execute("PRAGMA synchronous = FULL")
        cursor.close()

    @event.listens_for(engine, "begin")
    def begin_immediately(connection: Connection) -> None:
        connection.exec_driver_sql("BEGIN IMMEDIATE")
