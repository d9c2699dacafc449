"""A throwaway Orthanc server for tests, with the DICOMweb plugin, its configuration, storage
and logs in a temporary folder.

Debian installs the server as ``/usr/sbin/Orthanc`` (package ``orthanc``) and the plugin as
``/usr/share/orthanc/plugins/libOrthancDicomWeb.so`` (package ``orthanc-dicomweb``, a link
to ``/usr/lib/orthanc/libOrthancDicomWeb.so.<version>``). The package's own service is not
used: the server started here reads only its temporary configuration. Orthanc 1.10 cannot
be told which address to listen on: it listens on all interfaces, but with
``RemoteAccessAllowed`` false it answers loopback clients only. Its DICOM (DIMSE) server is
off, its HTTP server has no authentication, and it runs as root without complaint.
"""

from __future__ import annotations

import glob
import json
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import requests

NAME = "superpixel-annotator-tests"
PLUGIN = "libOrthancDicomWeb.so"
PLUGIN_FOLDERS = ("/usr/share/orthanc/plugins", "/usr/lib/orthanc")
STARTUP_TIMEOUT_S = 60
STOP_TIMEOUT_S = 30
POLL_S = 0.1


class OrthancUnavailable(RuntimeError):
    """The machine cannot run a test server; the message says why."""


def find_program() -> str:
    """The Orthanc executable: on PATH, else Debian's ``/usr/sbin/Orthanc``.

    Raises
    ------
    OrthancUnavailable
        When it is nowhere.
    """
    program = shutil.which("Orthanc") or shutil.which("Orthanc", path="/usr/sbin")
    if not program:
        raise OrthancUnavailable("Orthanc not installed (no Orthanc on PATH or in /usr/sbin)")
    return program


def find_plugin() -> Path:
    """The DICOMweb plugin's shared library.

    Raises
    ------
    OrthancUnavailable
        When the plugin is in none of :data:`PLUGIN_FOLDERS`.
    """
    for folder in PLUGIN_FOLDERS:
        found = sorted(glob.glob(os.path.join(folder, PLUGIN + "*")))
        if found:
            return Path(found[0])
    raise OrthancUnavailable(
        f"Orthanc's DICOMweb plugin not installed (no {PLUGIN} in {', '.join(PLUGIN_FOLDERS)})"
    )


@dataclass
class OrthancServer:
    """A running server: ``folder`` holds its configuration, storage and logs."""

    process: subprocess.Popen
    folder: Path
    port: int

    @property
    def url(self) -> str:
        """The root of Orthanc's REST API."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def dicomweb_url(self) -> str:
        """The root of the DICOMweb API (QIDO-RS, WADO-RS, STOW-RS)."""
        return f"{self.url}/dicom-web"

    def upload(self, paths: Iterable[Path]) -> None:
        """Store DICOM files through Orthanc's REST API (``POST /instances``)."""
        with requests.Session() as session:
            for path in paths:
                answer = session.post(f"{self.url}/instances", data=Path(path).read_bytes())
                answer.raise_for_status()

    def stop(self) -> None:
        """Stop the server and remove its folder."""
        self.process.terminate()
        try:
            self.process.wait(STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        shutil.rmtree(self.folder, ignore_errors=True)

    def log(self) -> str:
        """What the server wrote to its log and output, for a failure message."""
        logs = [self.folder / name for name in ("output.log", "Orthanc.log")]
        return "\n".join(path.read_text(errors="replace") for path in logs if path.exists())


def start_server() -> OrthancServer:
    """Write a configuration in a new temporary folder and start Orthanc on a free port.

    Raises
    ------
    OrthancUnavailable
        When Orthanc or its DICOMweb plugin is missing.
    """
    program, plugin = find_program(), find_plugin()
    folder = Path(tempfile.mkdtemp(prefix="superpixel-annotator-orthanc-"))
    for _ in range(3):
        port = _free_port()
        configuration = folder / "configuration.json"
        configuration.write_text(json.dumps(_configuration(folder, port, plugin), indent=2))
        with open(folder / "output.log", "ab") as output:
            process = subprocess.Popen(
                [program, f"--logdir={folder}", str(configuration)],
                stdout=output,
                stderr=subprocess.STDOUT,
            )
        server = OrthancServer(process, folder, port)
        if _wait_ready(server):
            return server
        process.kill()
        process.wait()
    log = server.log()
    shutil.rmtree(folder, ignore_errors=True)
    raise RuntimeError(f"Orthanc did not start:\n{log}")


def _configuration(folder: Path, port: int, plugin: Path) -> dict:
    storage = str(folder / "storage")
    return {
        "Name": NAME,
        "StorageDirectory": storage,
        "IndexDirectory": storage,
        "HttpPort": port,
        "RemoteAccessAllowed": False,
        "AuthenticationEnabled": False,
        "DicomServerEnabled": False,
        "OrthancExplorerEnabled": False,
        "WebDavEnabled": False,
        "SaveJobs": False,
        "Plugins": [str(plugin)],
        "DicomWeb": {"Enable": True, "Root": "/dicom-web/", "EnableWado": False},
    }


def _wait_ready(server: OrthancServer) -> bool:
    """Poll ``/system`` until this server answers it (True: another program on the port
    would not give its name), or the process exits or the time is out (False)."""
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while time.monotonic() < deadline:
        try:
            answer = requests.get(f"{server.url}/system", timeout=5)
            if answer.ok and answer.json().get("Name") == NAME:
                return True
        except (requests.ConnectionError, ValueError):  # not up yet, or another program
            pass
        try:
            server.process.wait(POLL_S)
            return False
        except subprocess.TimeoutExpired:
            continue
    return False


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]
