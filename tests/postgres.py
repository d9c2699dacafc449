"""A throwaway PostgreSQL server for tests, on loopback, with its data and socket in a
temporary folder.

Debian keeps the server's programs in ``/usr/lib/postgresql/<version>/bin/``, off PATH.
PostgreSQL refuses to run as root: as root (CI) they run as the ``postgres`` system user.
Connections from loopback are trusted (no password). The server does not ``fsync``: the
tests stop clients, never the server or the machine, so that changes nothing they see and
spares the disk.
"""

from __future__ import annotations

import glob
import itertools
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import psycopg

PROGRAMS = ("initdb", "pg_ctl")


class PostgresUnavailable(RuntimeError):
    """The machine cannot run a test server; the message says why."""


def find_programs() -> Path:
    """The folder holding ``initdb`` and ``pg_ctl``: the newest Debian version's, else PATH's.

    Raises
    ------
    PostgresUnavailable
        When they are nowhere.
    """
    folders = sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=_version_key, reverse=True)
    on_path = shutil.which("initdb")
    if on_path:
        folders.append(str(Path(on_path).resolve().parent))
    for folder in folders:
        if all(os.access(Path(folder, program), os.X_OK) for program in PROGRAMS):
            return Path(folder)
    raise PostgresUnavailable(
        "PostgreSQL not installed (no initdb and pg_ctl in /usr/lib/postgresql/*/bin/ or PATH)"
    )


@dataclass
class PostgresServer:
    """A running server: ``folder`` holds its data, socket and log."""

    programs: Path
    folder: Path
    port: int
    run_as: list[str]
    _numbers: itertools.count = field(default_factory=itertools.count)

    @property
    def data(self) -> Path:
        return self.folder / "data"

    def url(self, database: str) -> str:
        """The SQLAlchemy URL of ``database`` on this server."""
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{database}"

    def create_database(self) -> str:
        """A new, empty database; its SQLAlchemy URL."""
        name = f"test_{next(self._numbers)}"
        with psycopg.connect(self._conninfo("postgres"), autocommit=True) as connection:
            connection.execute(f"CREATE DATABASE {name}")
        return self.url(name)

    def stop(self) -> None:
        """Stop the server and remove its folder."""
        pg_ctl = [str(self.programs / "pg_ctl"), "-D", str(self.data)]
        subprocess.run([*self.run_as, *pg_ctl, "-m", "fast", "-w", "stop"], capture_output=True)
        shutil.rmtree(self.folder, ignore_errors=True)

    def _conninfo(self, database: str) -> str:
        return f"host=127.0.0.1 port={self.port} user=postgres dbname={database}"


def start_server() -> PostgresServer:
    """Initialise a cluster in a new temporary folder and start a server on a free port.

    Raises
    ------
    PostgresUnavailable
        When the programs are missing, or the machine runs as root without a ``postgres``
        user to run them.
    """
    programs = find_programs()
    run_as = _run_as()
    folder = Path(tempfile.mkdtemp(prefix="superpixel-annotator-postgres-"))
    if run_as:
        shutil.chown(folder, "postgres", "postgres")
    server = PostgresServer(programs, folder, 0, run_as)
    initdb = [str(programs / "initdb"), "-D", str(server.data), "-U", "postgres"]
    initdb += ["-A", "trust", "-E", "UTF8", "--locale=C", "--no-sync"]
    _run([*run_as, *initdb], server)
    for _ in range(3):
        server.port = _free_port()
        options = f"-h 127.0.0.1 -p {server.port} -k {folder} -c fsync=off"
        pg_ctl = [str(programs / "pg_ctl"), "-D", str(server.data), "-l", str(folder / "log")]
        started = subprocess.run(
            [*run_as, *pg_ctl, "-o", options, "-w", "start"], capture_output=True, text=True
        )
        if started.returncode == 0:
            return server
    log = (folder / "log").read_text(errors="replace") if (folder / "log").exists() else ""
    server.stop()
    raise RuntimeError(f"PostgreSQL did not start: {started.stderr}\n{log}")


def _run(command: list[str], server: PostgresServer) -> None:
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        server.stop()
        raise RuntimeError(f"{' '.join(command)} failed:\n{done.stdout}\n{done.stderr}")


def _run_as() -> list[str]:
    """The command prefix that runs a program as ``postgres`` when we are root."""
    if os.geteuid() != 0:
        return []
    try:
        pwd.getpwnam("postgres")
    except KeyError:
        raise PostgresUnavailable("running as root, and there is no postgres user") from None
    if shutil.which("runuser"):
        return ["runuser", "-u", "postgres", "--"]
    raise PostgresUnavailable("running as root, and runuser is missing")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _version_key(folder: str) -> tuple[int, ...]:
    version = Path(folder).parent.name
    return tuple(int(part) for part in version.split(".") if part.isdigit())
