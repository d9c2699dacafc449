"""A real annotator server (the console script) and headless Chromium driven by Playwright."""

import os
import queue
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from superpixel_annotator.core.volume import load_volume
from superpixel_annotator.web.app import sample_path

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
STARTUP_TIMEOUT_S = 180
# plotly.js 4.1.1 (full bundle or partial) sometimes fails to hover an image trace whose new
# picture is still loading, right after it changed under the pointer; nothing else breaks.
IMAGE_HOVER_RACE = "Cannot read properties of undefined (reading 'el')"


def page_errors(page) -> list[str]:
    """The page's console errors and uncaught exceptions, but plotly.js's image hover race."""
    return [error for error in page.console_errors if IMAGE_HOVER_RACE not in error]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_until_serving(
    process: subprocess.Popen, markers: tuple[str, ...] = ("Running on", "Listening at")
) -> list[str]:
    """Read the process's output until a line holds one of ``markers``.

    Fails when the process exits first or says nothing for ``STARTUP_TIMEOUT_S``. Every
    line also goes to stderr, so a failing test's report shows what its server logged.

    Returns
    -------
    list of str
        The lines read so far; later lines keep being appended to it.
    """
    lines: queue.Queue[str] = queue.Queue()
    said: list[str] = []

    def read() -> None:
        for line in process.stdout:
            said.append(line)
            sys.stderr.write(line)
            lines.put(line)
        lines.put(None)

    threading.Thread(target=read, daemon=True).start()
    while True:
        try:
            line = lines.get(timeout=STARTUP_TIMEOUT_S)
        except queue.Empty:
            raise RuntimeError(
                f"server silent for {STARTUP_TIMEOUT_S} s: {''.join(said)}"
            ) from None
        if line is None:
            raise RuntimeError(f"server exited with {process.wait()}: {''.join(said)}")
        if any(marker in line for marker in markers):
            return said


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("superpixel-cache")


@pytest.fixture(scope="session")
def serve(cache_dir):
    """Start a server on a free port and return its URL; all are stopped at the end.

    By default the ``superpixel-annotator`` console script; ``program`` names another
    Python script that takes ``--port``.
    """
    processes = []

    def start(*arguments: str, program: tuple = ("-m", "superpixel_annotator.cli")) -> str:
        port = free_port()
        env = {**os.environ, "SUPERPIXEL_ANNOTATOR_CACHE": str(cache_dir)}
        command = [sys.executable, *program, *arguments]
        process = subprocess.Popen(
            [*command, "--port", str(port)],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        processes.append(process)
        wait_until_serving(process)
        return f"http://127.0.0.1:{port}/"

    yield start
    for process in processes:
        process.terminate()
        process.wait(timeout=30)


@pytest.fixture(scope="session")
def sample():
    """The bundled phantom every server opens by default."""
    return load_volume(sample_path())


@pytest.fixture(scope="module")
def app_url(serve):
    """A console-script server on the sample, one per test module."""
    return serve()


@pytest.fixture(scope="session")
def browser():
    if not CHROMIUM.exists():
        pytest.skip("Debian chromium is not installed (apt-get install -y chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 1400, "height": 1000}, accept_downloads=True)
    page = context.new_page()
    page.console_errors = []
    page.on("console", lambda m: m.type == "error" and page.console_errors.append(m.text))
    page.on("pageerror", lambda error: page.console_errors.append(str(error)))
    yield page
    context.close()
